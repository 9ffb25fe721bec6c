"""Figures: lung overlays, training curves and the worst-cases grid (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .measure import bounding_box  # noqa: E402
from .rules import OVERLAY_OPACITY, OVERLAY_RGB  # noqa: E402

MISSED_RGB = (255, 64, 64)     # lung the model missed
EXTRA_RGB = (255, 200, 0)      # non-lung the model called lung


def overlay(image: np.ndarray, mask: np.ndarray, opacity: float = OVERLAY_OPACITY,
            color: tuple[int, int, int] = OVERLAY_RGB) -> np.ndarray:
    """The (H, W, 3) uint8 image with ``mask`` (H, W, 0/1) tinted in ``color``: each lung pixel
    becomes ``(1 - opacity) * pixel + opacity * color``, rounded. The 256 values of each channel
    are computed once (in float32, as pixel by pixel) and looked up on the crop around the mask."""
    levels = np.arange(256, dtype=np.float32)[:, None]
    table = ((1 - opacity) * levels + opacity * np.array(color, np.float32)).round().astype(np.uint8)
    out = image.astype(np.uint8, copy=True)
    crop = bounding_box(mask)
    part, selected = out[crop], mask[crop].astype(bool)
    for channel in range(3):
        values = part[..., channel]
        np.copyto(values, table[values, channel], where=selected)
    return out


def difference_overlay(image: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                       opacity: float = 0.6) -> np.ndarray:
    """Missed lung (in truth, not predicted) and extra lung (predicted, not in truth) tinted apart."""
    missed = truth.astype(bool) & ~pred.astype(bool)
    extra = pred.astype(bool) & ~truth.astype(bool)
    return overlay(overlay(image, missed, opacity, MISSED_RGB), extra, opacity, EXTRA_RGB)


def training_curves(history: list[dict], path: str | Path) -> None:
    """Loss and validation Dice/IoU per epoch, saved as a PNG."""
    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(epochs, [row["loss"] for row in history], marker="o", label="train loss")
    left.set_xlabel("epoch"), left.set_title("loss"), left.legend()
    for key in ("val_dice", "val_iou"):
        if key in history[0]:
            right.plot(epochs, [row[key] for row in history], marker="o", label=key)
    right.set_xlabel("epoch"), right.set_title("validation")
    if right.lines:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def case_grid(cases: list[dict], path: str | Path) -> None:
    """A row per case: image, truth, prediction (with Dice); cases hold image/truth/pred/title."""
    fig, axes = plt.subplots(len(cases), 3, figsize=(7.5, 2.6 * len(cases)), squeeze=False)
    for row, case in zip(axes, cases):
        row[0].imshow(case["image"]), row[0].set_title(case["title"], fontsize=8)
        row[1].imshow(overlay(case["image"], case["truth"])), row[1].set_title("truth", fontsize=8)
        row[2].imshow(difference_overlay(case["image"], case["truth"], case["pred"]))
        row[2].set_title("prediction (red missed, yellow extra)", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def quality_scatter(rows: list[dict], warn_below: float, path: str | Path, title: str = "") -> None:
    """Estimated quality against the true Dice per image, warned images marked, the threshold drawn."""
    dice = np.array([r["dice"] for r in rows])
    estimate = np.array([r["quality"] for r in rows])
    warned = np.array([bool(r["warnings"]) for r in rows])
    fig, ax = plt.subplots(figsize=(5, 4.6))
    ax.scatter(dice[~warned], estimate[~warned], s=8, alpha=0.6, label="no warning")
    ax.scatter(dice[warned], estimate[warned], s=14, color="tab:red", marker="x", label="warned")
    low = min(0.8, float(dice.min()), float(estimate.min()))
    ax.plot([low, 1], [low, 1], color="grey", lw=0.8)
    ax.axhline(warn_below, color="tab:red", lw=0.8, ls="--", label=f"warning below {warn_below:g}")
    ax.set(xlim=(low, 1), ylim=(low, 1), xlabel="true Dice", ylabel="estimated quality", title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
