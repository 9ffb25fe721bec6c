"""Warnings a person understands, for the input and for the mask (limits and wording: rules.json).

    stats = image_stats(image)                  # grey-level figures of the X-ray
    image_warnings(stats)                       # not an X-ray? low contrast? small?
    mask_warnings(feats, quality, threshold)    # not two lungs? area? low estimated quality?

Each warning is ``{"code": ..., "message": ...}``; codes are stable (see README, "When not to
trust a mask"). The web page applies the same rules (web/js/quality.js).
"""
from __future__ import annotations

import numpy as np

from .measure import BAND_PIXELS
from .rules import RULES

LIMITS = RULES["checks"]
TEMPLATES = RULES["warnings"]


def warning(code: str, **fields) -> dict:
    return {"code": code, "message": TEMPLATES[code].format(**fields)}


def image_stats(image: np.ndarray) -> dict:
    """Grey-level figures of a (H, W, 3) uint8 image on g = floor((R + G + B) / 3): the 1st and
    99th percentiles, the standard deviation, colourfulness (mean max - min channel) and noise
    (mean absolute difference of horizontal neighbours over std + 1).

    Summed a band of rows at a time (about BAND_PIXELS pixels), in exact integers: no full-size
    copy, and the figures of the whole image bit for bit."""
    height, width = image.shape[:2]
    rows = max(1, BAND_PIXELS // max(width, 1))
    counts = np.zeros(256, np.int64)
    spread = steps = 0             # sums of max - min channel and of |g[x + 1] - g[x]|
    for top in range(0, height, rows):
        band = image[top:top + rows]
        red, green, blue = band[..., 0], band[..., 1], band[..., 2]
        if np.array_equal(red, green) and np.array_equal(green, blue):    # grey: g = R, no spread
            grey = np.ascontiguousarray(red)
        else:
            grey = ((red.astype(np.uint16) + green + blue) // 3).astype(np.uint8)
            spread += int((np.maximum(np.maximum(red, green), blue)
                           - np.minimum(np.minimum(red, green), blue)).sum(dtype=np.int64))
        counts += np.bincount(grey.ravel(), minlength=256)
        step = np.subtract(grey[:, 1:], grey[:, :-1], dtype=np.int16)
        steps += int(np.abs(step, out=step).sum(dtype=np.int64))
    pixels = height * width
    levels = np.arange(256.0)
    mean = float(counts @ levels) / pixels
    std = float(np.sqrt(counts @ (levels - mean) ** 2 / pixels))
    cumulative = np.cumsum(counts) / pixels
    return {
        "width": width, "height": height,
        "p1": int(np.searchsorted(cumulative, 0.01)), "p99": int(np.searchsorted(cumulative, 0.99)),
        "std": std, "colour": float(np.float64(spread) / pixels),
        "noise": float(np.float64(steps) / (height * (width - 1)) / (std + 1.0)),
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
