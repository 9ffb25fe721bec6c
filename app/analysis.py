"""Ground-truth matching and scores, mask encodings and the download bundle (no Streamlit).

All inference goes through ``lungseg.Segmenter`` (see app.results); this module only measures
and packages.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterable
from pathlib import PurePath

import numpy as np

from lungseg import ImageError, read_mask
from lungseg.imageio import encode_png
from lungseg.plots import overlay

CSV_FIELDS = ["file", "status", "width", "height", "lung_fraction", "image_left_fraction",
              "image_right_fraction", "lung_cm2", "image_left_cm2", "image_right_cm2",
              "spacing_source", "quality", "warnings", "inference_ms", "model", "threshold", "dice",
              "iou", "error"]
OVERLAY_ROWS = 512     # full-size overlays are made in bands of rows, to keep their copies small


def read_truth(data: bytes, name: str, shape: tuple[int, int]) -> np.ndarray:
    """An uploaded ground-truth mask (0/1) of an X-ray of ``shape``; ImageError if unusable."""
    truth = read_mask(data, name=name)
    if truth.shape != shape:
        raise ImageError(f"{name}: the mask is {truth.shape[1]}x{truth.shape[0]} pixels but the "
                         f"X-ray is {shape[1]}x{shape[0]}.")
    return truth


def overlap(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Dice and IoU of two 0/1 masks of the same shape (1.0 when both are empty)."""
    t, p = truth.astype(bool), pred.astype(bool)
    both, either = np.count_nonzero(t & p), np.count_nonzero(t | p)
    total = np.count_nonzero(t) + np.count_nonzero(p)
    return {"dice": 2 * both / total if total else 1.0, "iou": both / either if either else 1.0}


def full_overlay(image: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """lungseg.plots.overlay of a full-size X-ray, computed in bands of rows."""
    out = np.empty_like(image)
    for top in range(0, image.shape[0], OVERLAY_ROWS):
        rows = slice(top, top + OVERLAY_ROWS)
        out[rows] = overlay(image[rows], mask[rows], opacity)
    return out


_MASK_SUFFIX = re.compile(r"([ _.-]?(lung[ _-]?)?(mask|gt|truth|label|seg))+$", re.IGNORECASE)


def truth_key(file_name: str) -> str:
    """The name an X-ray and its ground-truth mask share: the stem without a mask suffix."""
    return _MASK_SUFFIX.sub("", PurePath(file_name).stem).lower()


def match_truths(image_names: list[str], truth_names: list[str]) -> dict[str, str]:
    """X-ray name -> ground-truth file name; an exact file name match wins over a stem match."""
    exact = {n: n for n in truth_names}
    by_key: dict[str, str] = {}
    for name in truth_names:
        by_key.setdefault(truth_key(name), name)
    out = {}
    for name in image_names:
        if name in exact:
            out[name] = name
        elif truth_key(name) in by_key:
            out[name] = by_key[truth_key(name)]
    return out


def unique_stems(names: list[str]) -> list[str]:
    """File stems safe for a zip, made unique (``a``, ``a-2``, ...) in upload order."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        stem = re.sub(r"[^\w.()\[\] +-]+", "_", PurePath(name).stem).strip(" .") or "xray"
        seen[stem] = seen.get(stem, 0) + 1
        out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return out


def csv_fields(result: dict) -> dict:
    """A segmented X-ray's CSV fields (app.results.segment): figures, quality, warning codes."""
    return {**{k: result[k] for k in CSV_FIELDS if k in result},
            "warnings": " ".join(w["code"] for w in result["warnings"])}


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def build_zip(items: Iterable[tuple[str, np.ndarray, np.ndarray, bytes | None]], rows: list[dict],
              opacity: float) -> bytes:
    """masks/<stem>.png (0/255, original size), overlays/<stem>.png, for DICOM inputs
    segmentations/<stem>.seg.dcm, and results.csv, from (stem, image, mask, DICOM-SEG bytes or
    None) items (an iterator, so one full-size X-ray is held at a time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for stem, image, mask, seg in items:
            bundle.writestr(f"masks/{stem}.png", encode_png(mask))
            bundle.writestr(f"overlays/{stem}.png", encode_png(full_overlay(image, mask, opacity)))
            if seg is not None:
                bundle.writestr(f"segmentations/{stem}.seg.dcm", seg)
        bundle.writestr("results.csv", csv_text(rows))
    return buffer.getvalue()


def rle_encode(mask: np.ndarray) -> list[int]:
    """Run lengths of a 0/1 mask in row-major order, starting with a run of 0s (maybe empty)."""
    flat = mask.ravel().astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat.size and flat[0] == 1 else runs


def rle_decode(runs: list[int], width: int, height: int) -> np.ndarray:
    """Inverse of rle_encode (and of web/component.html's encoder): (H, W) uint8 0/1."""
    runs = np.asarray(runs, dtype=np.int64)
    if runs.sum() != width * height or (runs < 0).any():
        raise ValueError(f"run lengths cover {int(runs.sum())} pixels, not {width}x{height}")
    values = np.arange(runs.size, dtype=np.int64) % 2
    return np.repeat(values.astype(np.uint8), runs).reshape(height, width)
