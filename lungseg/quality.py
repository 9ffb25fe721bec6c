"""How far to trust a mask: features of the probability map and the mask, and the estimated Dice.

The estimate is a small linear model on the logit of Dice, fitted (``fit``) on out-of-sample
predictions: a twin of the model trained on half of Train (``lungseg train --folds 2``), scored
on the other half, as it is and degraded (``perturb.py``). Its coefficients live in the model's
card (``card["quality"]``), versioned with the model they describe; the web page computes the
same features (web/js/quality.js) with the same coefficients (metadata.json).

A model that outlines both the visible lung field and the whole lung also gives what the two
outputs say of each other (``pair_features``): a visible field leaking outside the whole lung, or a
whole lung far larger than the visible field, is a sign of a wrong mask. The whole lung's estimate
reads them (fitted on folds of v7-whole-lung: scripts/fit_whole_quality.py).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .measure import bounding_box, region_sizes

#: Feature names of one mask, in the order of the card's coefficients.
FEATURES = ("soft_dice", "uncertain", "confidence", "area", "regions", "removed", "balance")
#: What the visible and the whole-lung outputs say of each other (``pair_features``).
PAIR_FEATURES = ("visible_outside", "whole_over_visible")
UNCERTAIN = (0.1, 0.9)       # probabilities between these count as undecided
MIN_REGION = 0.001           # raw regions smaller than this share of the image are not counted
EPS = 1e-3                   # Dice is clipped to [EPS, 1 - EPS] before its logit


def _region_sizes(mask: np.ndarray) -> np.ndarray:
    """Pixel counts of the 8-connected regions (the label image is freed at once: it is large)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    return region_sizes(labels, count)


def probability_sums(proba: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """What ``features`` reads of the probability map, each a sum over pixels (so it adds up over
    parts of the image, as lungseg.postprocess makes full-size maps band by band): the total
    probability, the total inside ``mask`` and the count of undecided pixels."""
    low, high = np.float64(UNCERTAIN[0]), np.float64(UNCERTAIN[1])  # compared as doubles, as the page does
    return {"total": float(proba.sum(dtype=np.float64)),
            "inside": float(proba[mask.astype(bool)].sum(dtype=np.float64)),
            "undecided": float(((proba > low) & (proba < high)).sum())}


def features(proba: np.ndarray, raw: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Features of one prediction: ``proba`` (H, W) float, ``raw`` the thresholded map before
    clean-up and ``mask`` after it (both 0/1); see ``features_of_sums``."""
    return features_of_sums(probability_sums(proba, mask), raw, mask)


def features_of_sums(sums: dict[str, float], raw: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Features of one prediction from its ``probability_sums`` and its masks before (``raw``)
    and after clean-up (``mask``):

    - soft_dice: Dice between the probability map and the mask (the model's own expected Dice)
    - uncertain: undecided pixels (0.1 < p < 0.9) per lung pixel
    - confidence: mean probability inside the mask
    - area: lung share of the image
    - regions: raw regions of at least 0.1% of the image (two lungs give 2)
    - removed: share of the raw lung that the clean-up dropped
    - balance: the smaller lung's area over the larger's (two largest regions of the mask)
    - lungs: regions of the mask; edge: the largest share of one side of the image that lung
      pixels cover, as a crop through the lungs leaves (neither is a regression feature;
      checks.py reads them)
    """
    pixels, height, width = float(mask.size), *mask.shape
    edge = max(float(mask[0].sum()) / width, float(mask[-1].sum()) / width,
               float(mask[:, 0].sum()) / height, float(mask[:, -1].sum()) / height)
    # The rest on the crop around both masks' pixels (nothing outside it counts), as booleans.
    crop = bounding_box(np.logical_or(raw, mask))
    mask, raw = mask[crop].astype(bool), raw[crop].astype(bool)
    lung = float(mask.sum())
    sizes = _region_sizes(raw)
    kept_sizes = np.sort(_region_sizes(mask))[::-1]
    kept = len(kept_sizes)
    inside = sums["inside"]
    return {
        "soft_dice": 2 * inside / max(sums["total"] + lung, 1.0),
        "uncertain": sums["undecided"] / max(lung, 1.0),
        "confidence": inside / lung if lung else 0.0,
        "area": lung / pixels,
        "regions": float((sizes >= MIN_REGION * pixels).sum()),
        "removed": float((raw & ~mask).sum()) / max(float(raw.sum()), 1.0),
        "balance": float(kept_sizes[1] / kept_sizes[0]) if kept >= 2 else 0.0,
        "lungs": float(kept),
        "edge": edge,
    }


def pair_features(visible: np.ndarray, whole: np.ndarray) -> dict[str, float]:
    """What the two outputs say of each other, from their thresholded maps at the model's working
    size (before clean-up; the same size whatever the X-ray's):

    - visible_outside: the share of the visible field that lies outside the whole lung (~0 when
      both are right: the whole lung contains the visible field)
    - whole_over_visible: the natural log of the whole lung's area over the visible field's
      (about 0.26 on V7's X-rays: the lung behind the heart and below the dome)
    """
    visible, whole = visible.astype(bool), whole.astype(bool)
    inside, outside = float(visible.sum()), float((visible & ~whole).sum())
    return {"visible_outside": outside / max(inside, 1.0),
            "whole_over_visible": float(np.log(max(float(whole.sum()), 1.0) / max(inside, 1.0)))}


def _design(rows: list[dict], names: tuple[str, ...] | list[str] = FEATURES) -> np.ndarray:
    return np.array([[row[name] for name in names] for row in rows], np.float64)


def estimate(row: dict, params: dict) -> float:
    """The estimated Dice of one prediction from its features and the card's ``quality`` params
    (0 for an empty mask: there is nothing to trust, and the fit has not seen one)."""
    if row["area"] == 0:
        return 0.0
    x = (_design([row], params["features"])[0] - np.array(params["mean"])) / np.array(params["scale"])
    logit = float(params["intercept"] + np.dot(params["coef"], x))
    return float(1.0 / (1.0 + np.exp(-logit)))


def fit(rows: list[dict], dice: list[float], ridge: float = 1.0,
        names: tuple[str, ...] = FEATURES) -> dict:
    """Ridge regression of logit(Dice) on the standardised features ``names``: the card's ``quality``."""
    x = _design(rows, names)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-8] = 1.0     # a constant feature (its std a rounding error): no scaling, no division by ~0
    z = (x - mean) / scale
    y = np.clip(np.asarray(dice, np.float64), EPS, 1 - EPS)
    y = np.log(y / (1 - y))
    a = np.c_[np.ones(len(z)), z]
    penalty = ridge * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    solution = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return {"features": list(names), "mean": mean.round(8).tolist(), "scale": scale.round(8).tolist(),
            "intercept": round(float(solution[0]), 8), "coef": solution[1:].round(8).tolist()}
