"""Per-image segmentation metrics on binary masks (numpy; Hausdorff via scipy.ndimage)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

METRICS = ("dice", "iou", "accuracy", "precision", "recall", "hd95")


def _ratio(num: float, den: float, empty: float = 1.0) -> float:
    """num / den, or ``empty`` when both are zero (two empty masks agree perfectly)."""
    return float(num / den) if den else (empty if num == 0 else 0.0)


def border(mask: np.ndarray) -> np.ndarray:
    """The mask's own boundary pixels (those with a background 4-neighbour or on the image edge)."""
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _surface_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (pixels) from each boundary pixel of ``a`` to the nearest boundary pixel of ``b``."""
    return ndimage.distance_transform_edt(~border(b))[border(a)]


def hd95(truth: np.ndarray, pred: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (0 if both empty, inf if one is)."""
    truth, pred = truth.astype(bool), pred.astype(bool)
    if not truth.any() and not pred.any():
        return 0.0
    if not truth.any() or not pred.any():
        return float("inf")
    distances = np.concatenate([_surface_distances(truth, pred), _surface_distances(pred, truth)])
    return float(np.percentile(distances, 95))


def score(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice, IoU, pixel accuracy, precision, recall and HD95 of ``pred`` against ``truth``."""
    if truth.shape != pred.shape:
        raise ValueError(f"mask shapes differ: {truth.shape} vs {pred.shape}")
    t, p = truth.astype(bool), pred.astype(bool)
    tp = float(np.count_nonzero(t & p))
    fp = float(np.count_nonzero(~t & p))
    fn = float(np.count_nonzero(t & ~p))
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "accuracy": float(np.mean(t == p)),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "hd95": hd95(t, p),
    }


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over per-image rows (HD95 mean over finite values)."""
    summary = {}
    for key in METRICS:
        values = np.array([r[key] for r in rows], dtype=float)
        finite = values[np.isfinite(values)]
        summary[key] = float(finite.mean()) if finite.size else float("nan")
    summary["images"] = len(rows)
    return summary
