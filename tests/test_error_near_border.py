"""scripts/error_near_border.py on masks built with known errors, and end to end on a folder."""
import importlib.util

import numpy as np
from PIL import Image

from conftest import ROOT

spec = importlib.util.spec_from_file_location("error_near_border", ROOT / "scripts" / "error_near_border.py")
error_near_border = importlib.util.module_from_spec(spec)
spec.loader.exec_module(error_near_border)


def _square(shift=0):
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10 + shift:30 + shift] = 1
    return mask


def test_a_border_one_pixel_off_is_all_within_one_pixel():
    row = error_near_border.tally(_square(), _square(shift=1))
    assert row["wrong"] == 40 and row["within_1"] == 40 and row["within_2"] == 40
    assert row["dice"] == 2 * 380 / 800 and row["dice_border_fixed"] == 1.0


def test_a_region_far_from_the_border_is_not_counted_near_it():
    pred = _square()
    pred[35:38, 35:38] = 1          # 9 false pixels, >= 5 px from the square's border
    row = error_near_border.tally(_square(), pred)
    assert row["wrong"] == 9 and row["within_1"] == 0 and row["within_2"] == 0
    assert row["dice_border_fixed"] == row["dice"] < 1.0


def test_the_script_scores_a_folder_with_the_default_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for folder, array in (("images", rng.integers(0, 255, (64, 64), np.uint8)), ("masks", _square() * 255)):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(array).save(tmp_path / folder / f"{name}.png")
    assert error_near_border.main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 images, ") and "within 1 px of the manual border: " in out
