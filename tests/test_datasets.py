"""Pairing X-rays with masks in each supported layout, by name, with unmatched files reported."""
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, requires_data
from lungseg.datasets import find_samples


def write(path, value: int, size=(16, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def test_covidqu_layout_pairs_by_name_across_classes(tmp_path):
    for cls, names in {"COVID-19": ["b", "a"], "Normal": ["c"]}.items():
        for i, name in enumerate(names):
            write(tmp_path / "Train" / cls / "images" / f"{name}.png", 10 * i + 1)
            write(tmp_path / "Train" / cls / "lung masks" / f"{name}.png", 255)
    samples = find_samples(tmp_path / "Train")
    assert [(s.group, s.name) for s in samples] == [("COVID-19", "a"), ("COVID-19", "b"), ("Normal", "c")]
    for s in samples:
        assert s.masks[0].name == s.image.name and s.masks[0].parent.name == "lung masks"


def test_radiography_layout_and_unmatched_files_are_reported(tmp_path, caplog):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    write(root / "Viral Pneumonia" / "images" / "vp-1.png", 1)
    write(root / "Viral Pneumonia" / "images" / "vp-2.png", 2)   # no mask
    write(root / "Viral Pneumonia" / "masks" / "vp-1.png", 255)
    write(root / "Viral Pneumonia" / "masks" / "vp-9.png", 255)  # no image
    with caplog.at_level(logging.WARNING):
        samples = find_samples(root)
    assert [s.name for s in samples] == ["vp-1"]
    assert "vp-2.png: no mask" in caplog.text and "vp-9.png: no image" in caplog.text


def test_montgomery_layout_unions_left_and_right_masks(tmp_path):
    root = tmp_path / "MontgomerySet"
    write(root / "CXR_png" / "MCUCXR_0001_0.png", 100, (8, 8))
    left = np.zeros((8, 8), np.uint8); left[:, :3] = 255
    right = np.zeros((8, 8), np.uint8); right[:, 5:] = 255
    for side, array in (("leftMask", left), ("rightMask", right)):
        (root / "ManualMask" / side).mkdir(parents=True)
        Image.fromarray(array).save(root / "ManualMask" / side / "MCUCXR_0001_0.png")
    (sample,) = find_samples(root)
    mask = sample.read_mask()
    assert mask.sum() == 8 * 3 + 8 * 3 and mask[:, 3:5].sum() == 0


def test_plain_images_and_masks_match_by_stem_not_position(tmp_path):
    # Sorted lists would pair "a.jpg" with "a_mask.png"... only if matched by name.
    for name, value in (("z", 3), ("a", 1), ("m", 2)):
        write(tmp_path / "images" / f"{name}.png", value)
    for name, value in (("m_mask", 20), ("a_mask", 10), ("z_mask", 30)):
        write(tmp_path / "masks" / f"{name}.png", value)
    samples = find_samples(tmp_path)
    pairs = {s.name: s.masks[0].name for s in samples}
    assert pairs == {"a": "a_mask.png", "m": "m_mask.png", "z": "z_mask.png"}


def test_no_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image/mask pairs"):
        find_samples(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_samples(tmp_path / "absent")


@requires_data
def test_real_val_set_pairs_completely():
    samples = find_samples(DATA / "Val")
    assert len(samples) == 478
    assert {s.group for s in samples} == {"COVID-19", "Non-COVID", "Normal"}
    mask = samples[0].read_mask()
    assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 1}
