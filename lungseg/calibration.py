"""Fitting a model's quality estimate on out-of-sample predictions, and storing it in its card.

    lungseg train --data $D/Train --out runs/twin-h0 --folds 2 --holdout 0   # the twin
    lungseg fit-quality --twin runs/twin-h0/best --data $D/Train                # fit, write card

The twin is the same architecture trained on Train without one seeded part; on that held-out
part its masks are out of sample, like the shipped model's on a user's X-rays. Each held-out
X-ray is scored as it is and once degraded (a seeded choice of ``perturb.PERTURBATIONS``), so
the fit also sees the masks that go wrong. The warning threshold is the highest estimate at
which at most ``false_alarms`` of the good masks (Dice >= 0.95) of the fit fall below it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats
from tqdm.auto import tqdm

from . import bundle, metrics, quality
from .datasets import find_samples, holdout_split
from .evaluation import at_truth_size
from .imageio import read_image
from .inference import Segmenter
from .perturb import PERTURBATIONS

GOOD_DICE = 0.95


def held_out_rows(twin: Segmenter, data: str | Path, seed: int = 1234, limit: int | None = None) -> list[dict]:
    """Features and true Dice of the twin's masks on its held-out X-rays, clean and degraded."""
    split = twin.card["training"]["held_out"]
    _, samples = holdout_split(find_samples(data), split["folds"], split["holdout"], split["seed"])
    rng = np.random.default_rng(seed)
    names = sorted(PERTURBATIONS)
    cases = []                                 # (name, variant, image, truth)
    for sample in samples[:limit] if limit else samples:
        image, truth = read_image(sample.image), sample.read_mask()
        kind = names[rng.integers(len(names))]
        cases += [(sample.name, "clean", image, truth),
                  (sample.name, kind, *PERTURBATIONS[kind](image, truth, rng))]
    rows = []
    for start in tqdm(range(0, len(cases), 32), desc="scoring held-out", unit="batch"):
        chunk = cases[start:start + 32]
        for (name, variant, _, truth), proba in zip(chunk, twin.predict_proba_batch([c[2] for c in chunk])):
            raw = (proba >= twin.threshold).astype(np.uint8)
            mask = twin.to_mask(proba)
            rows.append({"image": name, "variant": variant,
                         "dice": metrics.score(truth, at_truth_size(mask, truth))["dice"],
                         **quality.features(proba, raw, mask)})
    return rows


def warning_threshold(estimates: np.ndarray, dice: np.ndarray, false_alarms: float,
                      good_dice: float = GOOD_DICE) -> float:
    """The highest estimate (0.005 steps) below which at most ``false_alarms`` of good masks
    (Dice >= ``good_dice``) fall."""
    good = estimates[dice >= good_dice]
    best = 0.5
    for t in np.arange(0.5, 0.99, 0.005):
        if (good < t).mean() <= false_alarms:
            best = float(t)
    return round(best, 3)


def fit_card_quality(twin_folder: str | Path, data: str | Path, model: str | Path = bundle.DEFAULT_MODEL,
                     false_alarms: float = 0.03, limit: int | None = None, write: bool = True) -> dict:
    """Fit the estimator on the twin's held-out rows and store it as ``card["quality"]`` of ``model``."""
    twin = Segmenter.load(twin_folder)
    rows = held_out_rows(twin, data, limit=limit)
    params = quality.fit(rows, [r["dice"] for r in rows])
    estimates = np.array([quality.estimate(r, params) for r in rows])
    dice = np.array([r["dice"] for r in rows])
    params["warn_below"] = warning_threshold(estimates, dice, false_alarms)
    params["fitted_on"] = {
        "twin": Path(twin_folder).as_posix(), "data": Path(data).as_posix(),
        "held_out": twin.card["training"]["held_out"], "rows": len(rows),
        "variants": "each held-out X-ray as it is and once degraded (" + ", ".join(sorted(PERTURBATIONS)) + ")",
        "spearman": round(float(stats.spearmanr(estimates, dice).statistic), 4),
        "mean_abs_error": round(float(np.abs(estimates - dice).mean()), 4),
        "good_masks_below_threshold": false_alarms,
    }
    if write:
        folder = bundle.resolve(model)
        bundle.write_card({**bundle.read_card(folder), "quality": params}, folder)
    return {"params": params, "rows": rows}


def save_rows(rows: list[dict], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows, indent=0))
