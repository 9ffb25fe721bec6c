"""What the app computes for each upload, kept in one byte-bounded store shared by every session.

Per X-ray and model the store keeps a display copy (at most PREVIEW_SIDE pixels), the model's
output at its working size (``ProbabilityMap`` values, 147 kB whatever the X-ray's size) with what
``Segmenter.analyze`` says at the card's threshold (estimated quality, warnings, DICOM pixel
spacing) and, per threshold, the mask bit-packed (an eighth of a byte per pixel) with its figures
and display copy; each threshold's mask is made from the model's output as ``Segmenter.predict``
makes it. A DICOM's header (patient data) is not kept: downloads that need it re-read the upload.
Full-size images and masks exist only while one X-ray is processed, and one X-ray is processed at
a time in the whole process (``WORK``), so the server needs at most: the app with its models + the
store's budget (env LUNGSEG_CACHE_MB, default 256) + one X-ray's work. Whatever the store evicts
is recomputed from the upload, with the same result.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator

import numpy as np
import streamlit as st
from PIL import Image

from app import analysis
from app.store import ByteLRU
from lungseg import ImageError, Segmenter, read_image, rules
from lungseg.dicom import write_seg
from lungseg.imageio import encode_png, read_input
from lungseg.inference import Analysis
from lungseg.measure import lung_areas, side_labels
from lungseg.postprocess import ProbabilityMap, full_size_mask

PREVIEW_SIDE = 1024            # pixels; on-screen images are at most this, downloads are full size
CACHE_ENV = "LUNGSEG_CACHE_MB"
DEFAULT_CACHE_MB = 256
WORK = threading.RLock()       # one X-ray's full-size work at a time, across all sessions
#: What analyze() found at the card's threshold, passed on to every threshold's result.
FACTS = ("quality", "warnings", "inverted", "dicom", "spacing", "spacing_source")
log = logging.getLogger("lungseg.app")


@st.cache_resource(show_spinner=False)
def store() -> ByteLRU:
    """The process's result store, shared by all sessions."""
    return ByteLRU(int(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB)) * 2**20)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def load_segmenter(folder: str) -> Segmenter:
    """One model per folder and process, shared read-only by all sessions (calls hold WORK)."""
    return Segmenter.load(folder)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def thresholds(*extra: float) -> tuple[float, ...]:
    """The thresholds the app offers, 0.05 to 0.95 by 0.01, with ``extra`` ones (a card's own)."""
    return tuple(sorted({round(0.05 + 0.01 * i, 2) for i in range(91)} | set(map(float, extra))))


def preview(array: np.ndarray, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """A display copy no larger than ``max_side`` pixels (bilinear); an RGB image whose channels
    are equal is resized as one channel (the same pixels, without Pillow's 4-byte RGB copy)."""
    height, width = array.shape[:2]
    if max(height, width) <= max_side:
        return array
    if array.ndim == 3 and all(np.array_equal(array[..., 0], array[..., c]) for c in (1, 2)):
        return np.repeat(preview(array[..., 0], max_side)[..., None], 3, axis=2)
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR))


def decode(data: bytes, name: str) -> np.ndarray:
    """The full-size X-ray (uint8 RGB), decoded while holding WORK."""
    with WORK:
        return read_image(data, name=name)


def image_preview(data: bytes, name: str) -> np.ndarray:
    """The X-ray's display copy."""
    def compute():
        with WORK:
            return preview(decode(data, name))
    return store().get_or_compute(("preview", digest(data)), compute)


def _analysis(data: bytes, name: str, seg: Segmenter) -> tuple[dict, Analysis]:
    """Segmenter.analyze at the card's threshold, and what is kept of it: the model's output at its
    working size (the inverse's for a negative, so every threshold segments the same input) with
    its FACTS; the X-ray's display copy goes to the store."""
    with WORK:
        start = time.perf_counter()
        result = seg.analyze(data, name=name)
        model_ms = (time.perf_counter() - start) * 1000.0
        store().put(("preview", digest(data)), preview(result.image))
        result.image = None                       # the full-size pixels: not needed any more
        dicom = result.dicom
        kept = {"values": result.probability_map.values, "shape": result.probability_map.shape,
                "model_ms": model_ms, "quality": result.quality, "warnings": result.warnings,
                "inverted": result.inverted, "dicom": dicom is not None,
                "spacing": dicom.spacing if dicom else None,
                "spacing_source": dicom.spacing_source if dicom else ""}
        return kept, result


def _figures(mask: np.ndarray, model: dict, post_ms: float) -> dict:
    """One threshold's result: figures, packed mask, display copy, and the model's FACTS."""
    start = time.perf_counter()
    height, width = mask.shape
    out = {"width": width, "height": height, **lung_areas(mask, model["spacing"]),
           "bits": np.packbits(mask), "preview": preview(mask * 255), **{k: model[k] for k in FACTS}}
    out["inference_ms"] = model["model_ms"] + post_ms + (time.perf_counter() - start) * 1000.0
    return out


def _mask(data: bytes, name: str, folder: str, threshold: float) -> dict:
    """The result at ``threshold``: the model runs once per X-ray and model (its output is
    stored), each threshold's mask is made from that output as ``Segmenter.predict`` makes it."""
    seg = load_segmenter(folder)
    key = ("model", digest(data), folder)
    with WORK:
        model = store().get(key)
        if model is None:
            model, result = _analysis(data, name, seg)
            store().put(key, model)
            if threshold == seg.threshold:            # analyze made this mask already
                return _figures(result.mask, model, 0.0)
            del result
        start = time.perf_counter()
        probability = ProbabilityMap(model["values"], model["shape"], seg.head)
        mask = full_size_mask(probability, threshold, seg.keep_regions, seg.fill_holes, features=False)[0]
        return _figures(mask, model, (time.perf_counter() - start) * 1000.0)


def segment(data: bytes, name: str, folder: str, threshold: float) -> dict:
    """One upload at one threshold: width, height, areas (fractions, and cm² when a DICOM gave the
    spacing), inference_ms, the packed mask (``bits``, see full_mask), its display copy
    (``preview``, 0/255) and FACTS (of the card's threshold); or {"error": message}."""
    key = digest(data)
    error = store().get(("error", key, name))
    if error is not None:
        return error
    try:
        return store().get_or_compute(("mask", key, folder, threshold),
                                      lambda: _mask(data, name, folder, threshold))
    except ImageError as err:
        return store().put(("error", key, name), {"error": str(err)})


def full_mask(result: dict) -> np.ndarray:
    """The full-size (H, W) 0/1 uint8 mask of a segment() result."""
    count = result["width"] * result["height"]
    return np.unpackbits(result["bits"], count=count).reshape(result["height"], result["width"])


def truth(result: dict, data: bytes, folder: str, threshold: float, truth_data: bytes,
          truth_name: str) -> dict:
    """Dice and IoU against a ground-truth mask file, and its display copy; or {"error"}."""
    def compute():
        with WORK:
            mask = analysis.read_truth(truth_data, truth_name, (result["height"], result["width"]))
            return {**analysis.overlap(mask, full_mask(result)), "preview": preview(mask * 255)}
    key = ("truth", digest(data), folder, threshold, digest(truth_data), truth_name)
    try:
        return {"file": truth_name, **store().get_or_compute(key, compute)}
    except ImageError as err:
        return {"file": truth_name, "error": str(err)}


def labels_png(result: dict) -> bytes:
    """The mask labelled by side (1 = the patient's right lung, 2 = left) as a PNG."""
    with WORK:
        return encode_png(side_labels(full_mask(result)), scale=False)


def overlay_png(data: bytes, name: str, result: dict, opacity: float) -> bytes:
    """The full-size X-ray with its mask tinted, as a PNG."""
    with WORK:
        return encode_png(analysis.tint(decode(data, name), full_mask(result), opacity))


def _seg(xray, mask: np.ndarray, seg: Segmenter) -> bytes:
    """The DICOM Segmentation of ``mask`` by ``seg``'s model, right and left lung as two segments
    (as ``lungseg predict --labels`` writes it, beside NAME.labels.png)."""
    return write_seg(xray, mask, seg.name, str(seg.card.get("version", "")), labelled=True)


def dicom_seg(data: bytes, name: str, result: dict, seg: Segmenter) -> bytes:
    """A DICOM upload's mask as a DICOM Segmentation (its header re-read from the upload)."""
    with WORK:
        return _seg(read_input(data, name)[1], full_mask(result), seg)


def _seg_failure(err: Exception, name: str) -> str:
    log.error("writing a DICOM Segmentation failed", exc_info=err)   # no file name: it may name the patient
    return rules.message("seg_failed", name, detail=f"{type(err).__name__}: {err}")


def seg_failure(data: bytes, name: str, result: dict, folder: str) -> str:
    """Why a DICOM upload's Segmentation cannot be written ("" when it can): tried once per mask
    and model, so a failure is said on the page, not at the download. Only the verdict is kept."""
    def attempt() -> str:
        try:
            dicom_seg(data, name, result, load_segmenter(folder))
        except Exception as err:  # noqa: BLE001  (any failure: the user is told, the rest goes on)
            return _seg_failure(err, name)
        return ""
    key = ("seg_failure", digest(data), name, folder, hashlib.sha256(result["bits"]).hexdigest()[:24])
    return store().get_or_compute(key, attempt)


def _bundled(entry: dict, opacity: float, seg: Segmenter) -> tuple[dict, dict[str, bytes]]:
    """One upload's manifest row and output files, with a DICOM Segmentation by ``seg``'s model
    for a DICOM input (one that cannot be written is left out and its row says why)."""
    name, out, result = entry["name"], entry["out"], entry["result"]
    if "error" in result:
        return analysis.manifest_row(name, out, result), {}
    with WORK:
        image, xray = read_input(entry["data"], name)
        mask = full_mask(result)
        written, failure = None, ""
        if xray is not None:
            try:
                written = _seg(xray, mask, seg)
            except Exception as err:  # noqa: BLE001  (the zip goes on without it)
                failure = _seg_failure(err, name)
        return (analysis.manifest_row(name, out, result, failure),
                analysis.output_files(out, image, mask, opacity, written))


def bundle(entries: list[dict], scores: list[dict], opacity: float, seg: Segmenter) -> Iterator[memoryview]:
    """The all-results zip (analysis.zip_pieces) of every upload (entries: name, out, data,
    result) with ``seg``'s DICOM Segmentations, a piece at a time: each X-ray's files are made
    (holding WORK) when the zip reaches it, and only they are held while they go out."""
    return analysis.zip_pieces((_bundled(entry, opacity, seg) for entry in entries), scores)
