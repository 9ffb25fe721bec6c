#!/usr/bin/env python3
"""Fit the whole-lung output's quality estimate out of sample, and store it in a model's card.

    nice -n 19 .venv/bin/python scripts/fit_whole_quality.py --out runs/whole-quality

As the visible field's estimate was fitted (lungseg.calibration), on a twin's held-out X-rays:
v7-whole-lung's training part (lungseg.whole.split) is cut into ``FOLDS`` seeded parts; for each,
a twin branch is trained on the others (the default's shared layers, frozen, as in the real
model) and scores the part it never saw, each X-ray as it is and degraded (``VARIANTS`` seeded
choices of lungseg.perturb). The estimator reads the whole-lung mask's own features and what the
two outputs say of each other (quality.PAIR_FEATURES). It is then checked where it was not
fitted: the real model on v7-whole-lung's held-out part, and Shenzhen (reported only). Twins
are kept in OUT/fold-K (a rerun reuses them); OUT/rows.json holds the fit's rows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

from lungseg import bundle, metrics, quality, whole
from lungseg.calibration import warning_threshold
from lungseg.datasets import find_samples, holdout_split
from lungseg.evaluation import at_truth_size
from lungseg.imageio import read_image
from lungseg.inference import Segmenter
from lungseg.perturb import PERTURBATIONS

SHARED = Path("../shared/data")   # beside the project, as the card names it
FOLDS, SEED = 4, 1234
VARIANTS = 2                 # degraded copies of each held-out X-ray, besides the clean one
GOOD_DICE = 0.93             # a good whole-lung mask (the target on v7-whole-lung)
FALSE_ALARMS = 0.05          # share of good masks of the fit allowed below the warning threshold
NAMES = quality.FEATURES + quality.PAIR_FEATURES


def twin(base, base_card: dict, samples: list, folder: Path) -> Segmenter:
    """The branch trained on ``samples`` (kept in ``folder``; reused when there)."""
    if not (folder / bundle.MODEL_FILE).is_file():
        model = whole.build(base)
        training = whole.train(model, samples, out=folder)
        bundle.save(model, {**whole.describe(base_card), "whole_lung": {"training": {
            k: v for k, v in training.items() if k != "history"}}}, folder)
    return Segmenter(*bundle.load(folder))


def rows_of(segmenter: Segmenter, samples: list, rng: np.random.Generator, variants: int) -> list[dict]:
    """The whole-lung mask's features (its own and the pair's) and true Dice, clean and degraded."""
    names, rows = sorted(PERTURBATIONS), []
    for sample in samples:
        image, truth = read_image(sample.image), sample.read_mask()
        cases = [("clean", image, truth)]
        for kind in rng.choice(names, variants, replace=False):
            cases.append((str(kind), *PERTURBATIONS[kind](image, truth, rng)))
        for variant, pixels, mask in cases:
            result = segmenter.analyze(pixels, name=sample.name, definition="whole")
            rows.append({"image": sample.name, "variant": variant,
                         "dice": metrics.score(mask, at_truth_size(result.mask, mask))["dice"],
                         **{k: result.features[k] for k in NAMES}})
    return rows


def check(params: dict, rows: list[dict]) -> dict:
    """How the estimator ranks and warns on ``rows`` it was not fitted on."""
    estimates = np.array([quality.estimate(r, params) for r in rows])
    dice = np.array([r["dice"] for r in rows])
    bad, good = dice < 0.90, dice >= GOOD_DICE
    return {"rows": len(rows), "spearman": round(float(stats.spearmanr(estimates, dice).statistic), 4),
            "mean_abs_error": round(float(np.abs(estimates - dice).mean()), 4),
            "under_0.90": int(bad.sum()), "under_0.90_warned": round(float((estimates[bad] < params["warn_below"]).mean()), 4) if bad.any() else None,
            "good": int(good.sum()), "good_warned": round(float((estimates[good] < params["warn_below"]).mean()), 4) if good.any() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "v7-whole-lung")
    parser.add_argument("--shenzhen", type=Path, default=SHARED / "shenzhen")
    parser.add_argument("--model", type=Path, default=bundle.DEFAULT_MODEL, help="two-output model whose card gets the estimate")
    parser.add_argument("--out", type=Path, default=Path("runs/whole-quality"))
    parser.add_argument("--write", action="store_true", help="store the estimate in --model's card")
    args = parser.parse_args(argv)

    train_samples, held = whole.split(args.data)
    base, base_card = bundle.load(args.model)
    base, base_card = whole.visible_only(base), {k: v for k, v in base_card.items() if k not in ("outputs", "whole_lung")}
    rng, rows = np.random.default_rng(SEED), []
    for fold in range(FOLDS):
        fitting, scored = holdout_split(train_samples, FOLDS, fold, SEED)
        rows += rows_of(twin(base, base_card, fitting, args.out / f"fold-{fold}"), scored, rng, VARIANTS)
        print(f"fold {fold}: {len(rows)} rows", flush=True)
    params = quality.fit(rows, [r["dice"] for r in rows], names=NAMES)
    params["warn_below"] = warning_threshold(np.array([quality.estimate(r, params) for r in rows]),
                                             np.array([r["dice"] for r in rows]), FALSE_ALARMS, GOOD_DICE)
    own = quality.fit(rows, [r["dice"] for r in rows])      # without the pair's features, to compare
    own["warn_below"] = warning_threshold(np.array([quality.estimate(r, own) for r in rows]),
                                          np.array([r["dice"] for r in rows]), FALSE_ALARMS, GOOD_DICE)
    final = Segmenter.load(args.model)
    checks = {"v7-whole-lung held out": rows_of(final, held, np.random.default_rng(SEED + 1), VARIANTS),
              "shenzhen": rows_of(final, find_samples(args.shenzhen), np.random.default_rng(SEED + 2), 0)}
    params["fitted_on"] = {
        "twins": f"{FOLDS} folds of {args.data.as_posix()}'s training part (seed {SEED}), each branch "
                 f"trained on the other folds", "rows": len(rows),
        "variants": f"each X-ray as it is and {VARIANTS} times degraded (seeded choices of "
                    + ", ".join(sorted(PERTURBATIONS)) + ")",
        "good_dice": GOOD_DICE, "good_masks_below_threshold": FALSE_ALARMS,
        **check(params, rows), "checked": {name: check(params, r) for name, r in checks.items()}}
    report = {"with_pair_features": params, "own_features_only": {
        "in_sample": check(own, rows), **{name: check(own, r) for name, r in checks.items()}}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps({"fit": rows, **checks}, indent=0))
    (args.out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if args.write:
        folder = bundle.resolve(args.model)
        card = bundle.read_card(folder)
        card["outputs"]["whole"]["quality"] = params
        bundle.write_card(card, folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
