#!/usr/bin/env python3
"""Where a model's wrong pixels lie: how far from the manual mask's border.

    .venv/bin/python scripts/error_near_border.py --data ../shared/data/covidqu-ex/Val [--model DIR]

Prints the share of wrong pixels within 1 and 2 px of the manual border, and the mean Dice if
every wrong pixel within 1 px were right: how much of the gap is placing the border to the
pixel rather than missing or adding whole regions.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from lungseg import Segmenter, bundle, metrics
from lungseg.datasets import find_samples
from lungseg.evaluation import at_truth_size, predictions

BANDS = (1, 2)  # pixels from the manual border


def tally(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Wrong pixels in all and within each band of the border, and Dice as is and with the 1 px band right."""
    truth, pred = truth.astype(bool), pred.astype(bool)
    wrong = truth ^ pred
    distance = ndimage.distance_transform_edt(~metrics.border(truth))
    row = {"wrong": int(wrong.sum())}
    row.update({f"within_{b}": int((wrong & (distance <= b)).sum()) for b in BANDS})
    fixed = np.where(wrong & (distance <= 1), truth, pred)
    row["dice"] = metrics.score(truth, pred)["dice"]
    row["dice_border_fixed"] = metrics.score(truth, fixed)["dice"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="labelled dataset folder")
    parser.add_argument("--model", default=bundle.DEFAULT_MODEL, help="saved model folder")
    args = parser.parse_args(argv)
    rows = []
    for sample, _, result in predictions(Segmenter.load(args.model), find_samples(args.data), "scoring"):
        truth = sample.read_mask()
        rows.append(tally(truth, at_truth_size(result.mask, truth)))
    wrong = sum(r["wrong"] for r in rows)
    print(f"{len(rows)} images, {wrong} wrong pixels")
    for b in BANDS:
        print(f"within {b} px of the manual border: {sum(r[f'within_{b}'] for r in rows) / wrong:.1%}")
    print(f"mean Dice {np.mean([r['dice'] for r in rows]):.4f}; with every wrong pixel within 1 px "
          f"right: {np.mean([r['dice_border_fixed'] for r in rows]):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
