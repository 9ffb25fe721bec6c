"""The command line: predict on good and bad files together, evaluate on real X-rays."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, mask_of, requires_data, val_images
from lungseg.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lungseg", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_predict_skips_bad_files_and_still_writes_good_masks(tmp_path, segmenter):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (300, 220), np.uint8)
    Image.fromarray(good).save(inputs / "good.png")
    Image.fromarray(good).convert("RGB").save(inputs / "photo.jpg", quality=95)
    (inputs / "notes.png").write_text("this is a text file")
    (inputs / "empty.png").write_bytes(b"")
    data = (inputs / "good.png").read_bytes()
    (inputs / "truncated.png").write_bytes(data[: len(data) // 2])

    result = run_cli("predict", str(inputs), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    for name in ("notes.png", "empty.png", "truncated.png"):
        assert f"error: {name}" in result.stderr
    assert "2 of 5 image(s) segmented" in result.stdout
    for stem in ("good", "photo"):
        mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}.png"))
        assert mask.shape == (300, 220) and set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / "out" / f"{stem}_overlay.png").size == (220, 300)
    expected = segmenter.predict(inputs / "good.png") * 255
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "good.png")), expected)


def test_predict_all_good_exits_zero(tmp_path):
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "o"), "--no-overlay"]) == 0
    assert (tmp_path / "o" / "a.png").exists() and not (tmp_path / "o" / "a_overlay.png").exists()


def _val_subset(folder, per_group: int = 3):
    """A COVID-QU-Ex style folder with a few real Val X-rays of two classes."""
    for path in val_images(per_group, "Normal") + val_images(per_group, "COVID-19"):
        group = path.parent.parent.name
        for src, sub in ((path, "images"), (mask_of(path), "lung masks")):
            (folder / group / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, folder / group / sub / path.name)
    return folder


@requires_data
def test_evaluate_writes_json_markdown_and_worst_cases(tmp_path):
    data = _val_subset(tmp_path / "Val")
    assert main(["evaluate", "--data", str(data), "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["overall"]["images"] == 6 and set(report["groups"]) == {"Normal", "COVID-19"}
    assert len(report["images"]) == 6 and 0 <= report["overall"]["dice"] <= 1
    table = (tmp_path / "report" / "metrics.md").read_text()
    assert "| all | 6 |" in table and "hd95" in table
    assert Image.open(tmp_path / "report" / "worst.png").size[0] > 300


@requires_data
def test_evaluate_threshold_overrides_the_cards(tmp_path):
    data = _val_subset(tmp_path / "Val", per_group=1)
    recall = {}
    for threshold in ("0.5", "0.999"):
        out = tmp_path / threshold
        assert main(["evaluate", "--data", str(data), "--out", str(out), "--threshold", threshold]) == 0
        recall[threshold] = json.loads((out / "metrics.json").read_text())["overall"]["recall"]
    assert recall["0.999"] < recall["0.5"]
    with pytest.raises(SystemExit, match="--update-card"):
        main(["evaluate", "--data", str(data), "--threshold", "0.4", "--update-card"])
