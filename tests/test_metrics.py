"""Metrics and mask clean-up against cases computed by hand."""
import math

import numpy as np
import pytest

from lungseg.metrics import hd95, score, summarize
from lungseg.postprocess import clean_mask


def test_overlap_metrics_by_hand():
    truth = np.zeros((10, 10), np.uint8)
    pred = np.zeros((10, 10), np.uint8)
    truth[0:2, 0:4] = 1   # 8 lung pixels
    pred[0:2, 2:6] = 1    # 8 predicted, 4 of them right
    s = score(truth, pred)
    # tp=4, fp=4, fn=4, tn=88
    assert s["dice"] == pytest.approx(8 / 16)
    assert s["iou"] == pytest.approx(4 / 12)
    assert s["accuracy"] == pytest.approx(92 / 100)
    assert s["precision"] == pytest.approx(4 / 8)
    assert s["recall"] == pytest.approx(4 / 8)


def test_perfect_and_empty_cases():
    truth = np.zeros((6, 6), np.uint8)
    truth[1:4, 1:4] = 1
    assert score(truth, truth) == {"dice": 1.0, "iou": 1.0, "accuracy": 1.0, "precision": 1.0,
                                   "recall": 1.0, "hd95": 0.0}
    empty = np.zeros_like(truth)
    assert score(empty, empty)["dice"] == 1.0
    missed = score(truth, empty)
    assert missed["dice"] == 0.0 and missed["recall"] == 0.0 and math.isinf(missed["hd95"])


def test_hd95_of_shifted_square_is_the_shift():
    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 1
    shifted = np.roll(truth, 3, axis=1)
    assert hd95(truth, shifted) == pytest.approx(3.0)
    assert hd95(truth, truth) == 0.0


def test_summarize_means_and_skips_infinite_hd95():
    rows = [{"dice": 1.0, "iou": 1.0, "accuracy": 1.0, "precision": 1.0, "recall": 1.0, "hd95": 2.0},
            {"dice": 0.5, "iou": 0.25, "accuracy": 0.5, "precision": 0.5, "recall": 0.5,
             "hd95": float("inf")}]
    s = summarize(rows)
    assert s["dice"] == 0.75 and s["iou"] == 0.625 and s["hd95"] == 2.0 and s["images"] == 2


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        score(np.zeros((4, 4)), np.zeros((4, 5)))


def test_clean_mask_keeps_two_largest_regions_and_fills_holes():
    mask = np.zeros((30, 30), np.uint8)
    mask[2:20, 2:10] = 1        # left lung, 144 px
    mask[8:12, 5:7] = 0         # a hole in it
    mask[2:18, 15:22] = 1       # right lung, 112 px
    mask[25:27, 25:27] = 1      # a speck
    cleaned = clean_mask(mask, keep=2, fill_holes=True)
    assert cleaned[26, 26] == 0                    # speck gone
    assert cleaned[9, 5] == 1                      # hole filled
    assert cleaned.sum() == 144 + 112
    assert cleaned.dtype == np.uint8
    assert clean_mask(mask, keep=0, fill_holes=False).sum() == mask.sum()
