"""Per-X-ray figures, mask encodings and the download bundle (pure numpy; no Streamlit).

All inference goes through ``lungseg.Segmenter``; this module only measures and packages.
"""
from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from pathlib import PurePath

import numpy as np
from PIL import Image

from lungseg import ImageError, read_image, read_mask
from lungseg.imageio import encode_png
from lungseg.measure import PATIENT_SIDE_NOTE, lung_areas  # noqa: F401  (re-exported for the app)
from lungseg.metrics import score
from lungseg.plots import overlay

#: Largest X-ray the app segments, in pixels (8000 x 8000). lungseg.imageio refuses more than
#: 144 Mpx; the app is stricter because the server holds the image, its probability map and
#: its overlays in memory for every session. Override with env LUNGSEG_MAX_PIXELS.
DEFAULT_MAX_PIXELS = 64_000_000

CSV_FIELDS = ["file", "status", "width", "height", "lung_fraction", "image_left_fraction",
              "image_right_fraction", "inference_ms", "model", "threshold", "dice", "iou", "error"]


def check_size(data: bytes, max_pixels: int, name: str = "upload") -> None:
    """Refuse an image whose header announces more than ``max_pixels``, before decoding it."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except Exception:  # unreadable headers are reported by read_image with its own message
        return
    if width * height > max_pixels:
        raise ImageError(f"{name}: the image is {width}x{height} pixels; this server accepts at "
                         f"most {max_pixels:,} pixels per X-ray.")


def decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The X-ray as uint8 (H, W, 3), or ImageError naming the file."""
    check_size(data, max_pixels, name)
    try:
        return read_image(data)
    except ImageError as err:
        raise ImageError(str(err).replace("upload:", f"{name}:", 1)) from None


def probability(seg, image: np.ndarray) -> tuple[np.ndarray, float]:
    """The model's lung probability map and the milliseconds it took."""
    start = time.perf_counter()
    proba = seg.predict_proba(image)
    return proba, (time.perf_counter() - start) * 1000.0


def figures(seg, proba: np.ndarray, threshold: float) -> tuple[np.ndarray, dict, float]:
    """Mask (with the card's clean-up), its area figures, and the milliseconds the clean-up took."""
    start = time.perf_counter()
    mask = seg.to_mask(proba, threshold)
    ms = (time.perf_counter() - start) * 1000.0
    return mask, lung_areas(mask), ms


def compare_truth(image: np.ndarray, truth_bytes: bytes, mask: np.ndarray, name: str) -> dict:
    """Dice/IoU of ``mask`` against an uploaded ground-truth mask file (ImageError if unusable)."""
    try:
        truth = read_mask(truth_bytes)
    except ImageError as err:
        raise ImageError(str(err).replace("upload:", f"{name}:", 1)) from None
    if truth.shape != mask.shape:
        raise ImageError(f"{name}: the mask is {truth.shape[1]}x{truth.shape[0]} pixels but the "
                         f"X-ray is {mask.shape[1]}x{mask.shape[0]}.")
    return {"truth": truth, **score(truth, mask)}


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


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def build_zip(items: list[dict], rows: list[dict]) -> bytes:
    """masks/<stem>.png (0/255, original size), overlays/<stem>.png and results.csv."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for item in items:
            bundle.writestr(f"masks/{item['stem']}.png", encode_png(item["mask"]))
            bundle.writestr(f"overlays/{item['stem']}.png",
                            encode_png(overlay(item["image"], item["mask"], item["opacity"])))
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
