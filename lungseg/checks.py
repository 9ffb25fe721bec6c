"""Warnings a person understands, for the input and for the mask (limits and wording: rules.json).

    stats = image_stats(image)                  # grey-level figures of the X-ray
    image_warnings(stats)                       # not an X-ray? low contrast? small?
    mask_warnings(feats, quality, threshold)    # not two lungs? area? low estimated quality?

Each warning is ``{"code": ..., "message": ...}``; codes are stable (see README, "When not to
trust a mask"). The web page applies the same rules (web/js/quality.js).
"""
from __future__ import annotations

import numpy as np

from .rules import RULES

LIMITS = RULES["checks"]
TEMPLATES = RULES["warnings"]


def warning(code: str, **fields) -> dict:
    return {"code": code, "message": TEMPLATES[code].format(**fields)}


def image_stats(image: np.ndarray) -> dict:
    """Grey-level figures of a (H, W, 3) uint8 image on g = floor((R + G + B) / 3): the 1st and
    99th percentiles, the standard deviation, colourfulness (mean max - min channel) and noise
    (mean absolute difference of horizontal neighbours over std + 1)."""
    grey = ((image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]) // 3).astype(np.uint8)
    counts = np.bincount(grey.ravel(), minlength=256)
    levels = np.arange(256.0)
    mean = float(counts @ levels) / grey.size
    std = float(np.sqrt(counts @ (levels - mean) ** 2 / grey.size))
    cumulative = np.cumsum(counts) / grey.size
    grey_only = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    return {
        "width": image.shape[1], "height": image.shape[0],
        "p1": int(np.searchsorted(cumulative, 0.01)), "p99": int(np.searchsorted(cumulative, 0.99)),
        "std": std, "colour": 0.0 if grey_only else float((image.max(axis=2) - image.min(axis=2)).mean()),
        "noise": float(np.abs(np.diff(grey.astype(np.int16), axis=1)).mean() / (std + 1.0)),
    }


def image_warnings(stats: dict) -> list[dict]:
    """Warnings about the X-ray itself: not an X-ray, exposure, size."""
    out = []
    if stats["colour"] > LIMITS["colour_above"]:
        out.append(warning("colour"))
    if stats["std"] < LIMITS["flat_std_below"]:
        out.append(warning("flat"))
    elif stats["noise"] > LIMITS["noise_above"]:
        out.append(warning("noise"))
    elif stats["p1"] > LIMITS["washed_out_p1_above"]:
        out.append(warning("washed_out", p1=stats["p1"]))
    elif stats["p99"] < LIMITS["dark_p99_below"]:
        out.append(warning("dark", p99=stats["p99"]))
    elif stats["p99"] - stats["p1"] < LIMITS["low_contrast_below"]:
        out.append(warning("low_contrast", p1=stats["p1"], p99=stats["p99"]))
    if min(stats["width"], stats["height"]) < LIMITS["small_side_below"]:
        out.append(warning("small_image", width=stats["width"], height=stats["height"],
                           small_side=LIMITS["small_side_below"]))
    return out


def mask_warnings(feats: dict, quality: float, threshold: float) -> list[dict]:
    """Warnings about the mask: anatomically implausible, or low estimated quality."""
    out = []
    low, high = LIMITS["area_range"]
    if feats["lungs"] != 2:
        out.append(warning("not_two_lungs", regions=int(feats["lungs"])))
    if not low <= feats["area"] <= high:
        out.append(warning("lung_area", area=f"{100 * feats['area']:.1f}", low=f"{100 * low:g}",
                           high=f"{100 * high:g}"))
    if feats["lungs"] == 2 and feats["balance"] < LIMITS["balance_below"]:
        out.append(warning("unbalanced"))
    if feats["edge"] > LIMITS["edge_above"]:
        out.append(warning("cut_off"))
    if quality < threshold:
        out.append(warning("low_quality", quality=f"{quality:.3f}", threshold=f"{threshold:.3f}"))
    return out


def plausible(feats: dict) -> bool:
    """Whether a mask looks like two lungs of a sensible size (used to try an inverted input)."""
    low, high = LIMITS["area_range"]
    return feats["lungs"] == 2 and low <= feats["area"] <= high and feats["balance"] >= LIMITS["balance_below"]


def inverse_is_better(feats: dict, quality: float | None, inverse_feats: dict,
                      inverse_quality: float | None) -> bool:
    """Whether a doubtful input is a negative: its inverse gives plausible lungs whose estimated
    quality is higher by more than ``invert_gain_above`` (a mere doubt, e.g. a blurred X-ray, is no
    reason to flip it); without an estimate, when its own mask is not plausible lungs."""
    if not plausible(inverse_feats):
        return False
    if quality is None or inverse_quality is None:
        return not plausible(feats)
    return inverse_quality - quality > LIMITS["invert_gain_above"]
