"""What the app computes for each upload, kept in one byte-bounded store shared by every session.

Per X-ray and model the store keeps a display copy (at most PREVIEW_SIDE pixels), the model's
outputs at their working size (``ProbabilityMap`` values, 147 kB each whatever the X-ray's size:
the visible lung field and, for a model that outlines it, the whole lung, from one pass) with what
``Segmenter.analyze`` says of each at its card threshold (estimated quality, warnings, DICOM pixel
spacing) and, per definition and threshold, the mask bit-packed (an eighth of a byte per pixel)
with its figures and display copy; each threshold's mask is made from the model's output as
``Segmenter.predict`` makes it. A DICOM's header (patient data) is not kept: downloads that need
it re-read the upload. Full-size images and masks exist only while one X-ray is processed, and one
X-ray is processed at a time in the whole process (``WORK``), so the server needs at most: the app
with its models + the store's budget (env LUNGSEG_CACHE_MB, default 256) + one X-ray's work.
Whatever the store evicts is recomputed from the upload, with the same result.

Which definition decides whether a negative X-ray is segmented inverted follows
``Segmenter.analyze``: the whole lung when only it is asked, else the visible field; so the model's
outputs are kept per deciding definition (``decider``), and "visible" and "both" share them.
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
from lungseg.inference import BOTH, Analysis
from lungseg.measure import lung_areas, side_labels
from lungseg.postprocess import ProbabilityMap, full_size_mask

PREVIEW_SIDE = 1024            # pixels; on-screen images are at most this, downloads are full size
CACHE_ENV = "LUNGSEG_CACHE_MB"
DEFAULT_CACHE_MB = 256
WORK = threading.RLock()       # one X-ray's full-size work at a time, across all sessions
#: What analyze() found of the X-ray, passed on to every threshold's result of every definition.
FACTS = ("inverted", "dicom", "spacing", "spacing_source")
#: What analyze() found of each definition's mask at its card threshold, passed on likewise.
OUTLINE_FACTS = ("quality", "warnings")
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


def decider(asked: str) -> str:
    """The definition whose mask decides, for ``asked`` ("visible", "whole" or "both"), whether a
    negative is segmented inverted (``Segmenter.analyze_read``: the first it analyses)."""
    return "whole" if asked == "whole" else "visible"


def _analysis(data: bytes, name: str, seg: Segmenter, decided_by: str) -> tuple[dict, dict[str, Analysis]]:
    """Segmenter.analyze of every definition ``decided_by`` leads (the visible field: every one the
    model gives; the whole lung: itself) at their card thresholds, and what is kept of it: each
    output at its working size (the inverse's for a negative, so every threshold segments the same
    input) with its OUTLINE_FACTS, and the X-ray's FACTS; the display copy goes to the store."""
    with WORK:
        start = time.perf_counter()
        result = seg.analyze(data, name=name, definition=BOTH if decided_by == "visible" else decided_by)
        model_ms = (time.perf_counter() - start) * 1000.0
        store().put(("preview", digest(data)), preview(result.image))
        outlines = result.outlines
        for outline in outlines.values():
            outline.image = None                  # the full-size pixels: not needed any more
        dicom = result.dicom
        kept = {"values": {d: a.probability_map.values for d, a in outlines.items()},
                "shape": result.probability_map.shape, "model_ms": model_ms,
                "outlines": {d: {k: getattr(a, k) for k in OUTLINE_FACTS} for d, a in outlines.items()},
                "inverted": result.inverted, "dicom": dicom is not None,
                "spacing": dicom.spacing if dicom else None,
                "spacing_source": dicom.spacing_source if dicom else ""}
        return kept, outlines


def _figures(mask: np.ndarray, model: dict, definition: str, post_ms: float) -> dict:
    """One definition's result at one threshold: figures, packed mask, display copy, the model's
    FACTS and the definition's OUTLINE_FACTS."""
    start = time.perf_counter()
    height, width = mask.shape
    out = {"definition": definition, "width": width, "height": height,
           **lung_areas(mask, model["spacing"]), "bits": np.packbits(mask),
           "preview": preview(mask * 255), **{k: model[k] for k in FACTS},
           **model["outlines"][definition]}
    out["inference_ms"] = model["model_ms"] + post_ms + (time.perf_counter() - start) * 1000.0
    return out


def _mask(data: bytes, name: str, folder: str, threshold: float, definition: str, decided_by: str) -> dict:
    """The ``definition``'s result at ``threshold``: the model runs once per X-ray, model and
    deciding definition (its outputs are stored), each threshold's mask is made from that output
    as ``Segmenter.predict`` makes it."""
    seg = load_segmenter(folder)
    output = seg.output(definition)
    key = ("model", digest(data), folder, decided_by)
    with WORK:
        model = store().get(key)
        if model is None:
            model, outlines = _analysis(data, name, seg, decided_by)
            store().put(key, model)
            if threshold == output.threshold:     # analyze made this mask already
                return _figures(outlines[definition].mask, model, definition, 0.0)
            del outlines
        start = time.perf_counter()
        probability = ProbabilityMap(model["values"][definition], model["shape"], output.head)
        mask = full_size_mask(probability, threshold, seg.keep_regions, seg.fill_holes, features=False)[0]
        return _figures(mask, model, definition, (time.perf_counter() - start) * 1000.0)


def segment(data: bytes, name: str, folder: str, threshold: float, definition: str = "visible",
            asked: str | None = None) -> dict:
    """One upload's ``definition`` ("visible" or "whole") at one threshold, as analysed when the
    user asked for ``asked`` (default: that definition alone): width, height, areas (fractions,
    and cm² when a DICOM gave the spacing), inference_ms, the packed mask (``bits``, see
    full_mask), its display copy (``preview``, 0/255), FACTS and OUTLINE_FACTS (of the card's
    threshold); or {"error": message}."""
    key, decided_by = digest(data), decider(asked or definition)
    error = store().get(("error", key, name))
    if error is not None:
        return error
    try:
        return store().get_or_compute(("mask", key, folder, decided_by, definition, threshold),
                                      lambda: _mask(data, name, folder, threshold, definition, decided_by))
    except ImageError as err:
        return store().put(("error", key, name), {"error": str(err)})


def full_mask(result: dict) -> np.ndarray:
    """The full-size (H, W) 0/1 uint8 mask of a segment() result."""
    count = result["width"] * result["height"]
    return np.unpackbits(result["bits"], count=count).reshape(result["height"], result["width"])


def mask_digest(result: dict) -> str:
    """What tells one segment() mask from another (of the same X-ray)."""
    return hashlib.sha256(result["bits"]).hexdigest()[:24]


def truth(result: dict, data: bytes, folder: str, truth_data: bytes, truth_name: str) -> dict:
    """Dice and IoU of a segment() result against a ground-truth mask file, and its display copy;
    or {"error"}."""
    def compute():
        with WORK:
            mask = analysis.read_truth(truth_data, truth_name, (result["height"], result["width"]))
            return {**analysis.overlap(mask, full_mask(result)), "preview": preview(mask * 255)}
    key = ("truth", digest(data), folder, mask_digest(result), digest(truth_data), truth_name)
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


def masks(outlines: dict[str, dict]) -> dict[str, np.ndarray]:
    """The full-size masks of an upload's segment() results, by definition."""
    return {definition: full_mask(result) for definition, result in outlines.items()}


def _seg(xray, masks_: dict[str, np.ndarray], seg: Segmenter) -> bytes:
    """The DICOM Segmentation of the masks ({definition: mask}) by ``seg``'s model, each
    definition's right and left lung as two segments (as ``lungseg predict --labels`` writes it,
    beside NAME.labels.png)."""
    return write_seg(xray, masks_, seg.name, str(seg.card.get("version", "")), labelled=True)


def dicom_seg(data: bytes, name: str, outlines: dict[str, dict], seg: Segmenter) -> bytes:
    """A DICOM upload's masks as a DICOM Segmentation (its header re-read from the upload)."""
    with WORK:
        return _seg(read_input(data, name)[1], masks(outlines), seg)


def _seg_failure(err: Exception, name: str) -> str:
    log.error("writing a DICOM Segmentation failed", exc_info=err)   # no file name: it may name the patient
    return rules.message("seg_failed", name, detail=f"{type(err).__name__}: {err}")


def seg_failure(data: bytes, name: str, outlines: dict[str, dict], folder: str) -> str:
    """Why a DICOM upload's Segmentation cannot be written ("" when it can): tried once per masks
    and model, so a failure is said on the page, not at the download. Only the verdict is kept."""
    def attempt() -> str:
        try:
            dicom_seg(data, name, outlines, load_segmenter(folder))
        except Exception as err:  # noqa: BLE001  (any failure: the user is told, the rest goes on)
            return _seg_failure(err, name)
        return ""
    key = ("seg_failure", digest(data), name, folder, *(f"{d}:{mask_digest(r)}" for d, r in outlines.items()))
    return store().get_or_compute(key, attempt)


def _bundled(entry: dict, opacity: float, seg: Segmenter) -> tuple[dict, dict[str, bytes]]:
    """One upload's manifest row and output files (every definition shown), with a DICOM
    Segmentation by ``seg``'s model for a DICOM input (one that cannot be written is left out and
    its row says why)."""
    name, out, outlines = entry["name"], entry["out"], entry["outlines"]
    if "error" in entry["result"]:
        return analysis.manifest_row(name, out, outlines), {}
    with WORK:
        image, xray = read_input(entry["data"], name)
        full = masks(outlines)
        written, failure = None, ""
        if xray is not None:
            try:
                written = _seg(xray, full, seg)
            except Exception as err:  # noqa: BLE001  (the zip goes on without it)
                failure = _seg_failure(err, name)
        return (analysis.manifest_row(name, out, outlines, failure),
                analysis.output_files(out, image, full, opacity, written))


def bundle(entries: list[dict], scores: list[dict], opacity: float, seg: Segmenter) -> Iterator[memoryview]:
    """The all-results zip (analysis.zip_pieces) of every upload (entries: name, out, data,
    result, outlines: {definition: result}) with ``seg``'s DICOM Segmentations, a piece at a
    time: each X-ray's files are made (holding WORK) when the zip reaches it, and only they are
    held while they go out."""
    return analysis.zip_pieces((_bundled(entry, opacity, seg) for entry in entries), scores)
