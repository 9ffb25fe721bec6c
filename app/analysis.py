"""Ground-truth matching and scores, mask encodings and the download bundle (no Streamlit).

All inference goes through ``lungseg.Segmenter`` (see app.results); this module only measures
and packages. Downloads are named as ``lungseg predict --labels`` names its outputs (rules.json
``outputs`` and ``definitions``): ``NAME.mask.png``, ``NAME.overlay.png``, ``NAME.labels.png``,
``NAME.seg.dcm``, and for the whole lung ``NAME.whole.mask.png`` and so on, NAME the upload's full
file name; the zip is laid out like its output folder, with ``manifest.csv`` (each definition's
columns, rules.column), plus ``scores.csv`` for what only the app knows (model, definition,
threshold, time, Dice against a truth).
"""
from __future__ import annotations

import csv
import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import PurePath

import numpy as np

from lungseg import ImageError, read_mask, rules
from lungseg.batch import DEFINITION_COLUMNS, messages
from lungseg.imageio import encode_png
from lungseg.measure import side_labels
from lungseg.plots import overlay

OVERLAY_ROWS = 512     # full-size overlays are made in bands of rows, in the X-ray's own pixels
PIECE_BYTES = 2**20    # the zip goes out in pieces of about this at most
SCORES = "scores.csv"
SCORE_COLUMNS = ["input", "model", "definition", "threshold", "inference_ms", "dice", "iou"]
#: Each definition's output files, by rules.json ``outputs`` kind (also its manifest column).
KINDS = ("mask", "overlay", "labels")


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


def tint(image: np.ndarray, mask: np.ndarray, opacity: float) -> np.ndarray:
    """lungseg.plots.overlay of a full-size X-ray made in its own pixels, a band of rows at a time:
    ``image`` (a copy the caller may give up, copied first only if read-only) becomes the overlay."""
    image = np.require(image, requirements="W")
    for top in range(0, image.shape[0], OVERLAY_ROWS):
        rows = slice(top, top + OVERLAY_ROWS)
        image[rows] = overlay(image[rows], mask[rows], opacity)
    return image


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


def output_names(names: list[str]) -> list[str]:
    """What each upload's outputs are named after, as ``lungseg predict`` does it: the file's full
    name, and for a name already taken (case-insensitively) ``-2``, ``-3``, ... before its
    extension, in upload order."""
    names = [PurePath(name).name or "upload" for name in names]
    taken = {name.lower() for name in names}
    seen: set[str] = set()
    out = []
    for name in names:
        if name.lower() in seen:
            stem, suffix = os.path.splitext(name)
            k = 2
            while f"{stem}-{k}{suffix}".lower() in taken:
                k += 1
            name = f"{stem}-{k}{suffix}"
            taken.add(name.lower())
        seen.add(name.lower())
        out.append(name)
    return out


def output(name: str, kind: str, definition: str = "visible") -> str:
    """An output's file name: ``name`` + rules.json's suffix of ``kind`` (mask, overlay, ...) for
    ``definition`` (rules.output_name: ``NAME.mask.png``, ``NAME.whole.mask.png``)."""
    return name + rules.output_name(kind, definition)


def manifest_row(name: str, out: str, outlines: dict[str, dict], seg_error: str = "") -> dict:
    """An upload's row of manifest.csv, as ``lungseg predict --definition ... --labels`` writes
    it: per definition shown (``outlines``: {definition: result}) its outputs, figures and warning
    codes under that definition's columns (lungseg.batch.DEFINITION_COLUMNS; the others stay
    empty), the messages as the CLI words them; an upload not segmented is an error row with its
    message. ``seg_error``: why its DICOM Segmentation could not be written (the row is then an
    error that names the outputs the zip still holds)."""
    first = next(iter(outlines.values()))
    if "error" in first:
        return {"input": name, "status": "error", "message": first["error"]}
    row = {"input": name, "status": "error" if seg_error else "ok", "width": first["width"],
           "height": first["height"], "spacing_source": first["spacing_source"],
           "dicom_seg": output(out, "seg") if first["dicom"] and not seg_error else ""}
    for definition, result in outlines.items():
        for base, column in zip(DEFINITION_COLUMNS["visible"], DEFINITION_COLUMNS[definition]):
            if base in KINDS:
                row[column] = output(out, base, definition)
            elif base == "warnings":
                row[column] = " ".join(w["code"] for w in result["warnings"])
            elif base in result:
                row[column] = result[base]
    said = messages({d: r["warnings"] for d, r in outlines.items()})
    return {**row, "message": " ".join(filter(None, [said, seg_error]))}


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """Rows as CSV with ``columns``, as lungseg.batch writes manifest.csv (floats with six
    decimals, "\\n" line ends, none as empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def output_files(out: str, image: np.ndarray, masks: dict[str, np.ndarray], opacity: float,
                 seg: bytes | None) -> dict[str, bytes]:
    """One X-ray's output files by name: per definition (``masks``: {definition: mask}) the mask
    (0/255), overlay and side labels; for a DICOM whose Segmentation was written, that. ``image``
    is tinted in place for the last definition (see ``tint``), copies of it for the others."""
    files = {}
    last = list(masks)[-1]
    for definition, mask in masks.items():
        files[output(out, "mask", definition)] = encode_png(mask)
        files[output(out, "labels", definition)] = encode_png(side_labels(mask), scale=False)
        tinted = tint(image if definition == last else image.copy(), mask, opacity)
        files[output(out, "overlay", definition)] = encode_png(tinted)
        del tinted
    if seg is not None:
        files[output(out, "seg")] = seg
    return files


class _Pieces(io.RawIOBase):
    """A write-only stream that keeps what is written until it is ``take``n. It cannot seek, so
    zipfile writes each member's sizes after its data and the zip can go out as it is written."""

    def __init__(self):
        super().__init__()
        self._pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._pieces.append(bytes(data))
        return len(self._pieces[-1])

    def take(self) -> list[bytes]:
        pieces, self._pieces = self._pieces, []
        return pieces


def zip_pieces(items: Iterable[tuple[dict, dict[str, bytes]]], scores: list[dict]) -> Iterator[bytes]:
    """The zip of (manifest row, output files) items, an iterator, written as the items come and
    handed out as it is written, in pieces of about PIECE_BYTES at most, so that one X-ray's files
    are held at a time, never the whole zip: the files at the top level, then manifest.csv
    (rules.json's columns) and scores.csv.

    PNGs are deflated already: they go in at deflate level 0 (copied in stored blocks, a slice at a
    time; deflating them again gained nothing and took as long as encoding them), the rest at
    zlib's default level."""
    stream = _Pieces()
    rows = []
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED, compresslevel=0) as bundle:
        for row, files in items:
            rows.append(row)
            for name in list(files):
                data = files.pop(name)
                if name.endswith(".png"):
                    with bundle.open(name, "w") as member:
                        for start in range(0, len(data), PIECE_BYTES):
                            member.write(memoryview(data)[start:start + PIECE_BYTES])
                            yield from stream.take()
                else:
                    bundle.writestr(name, data, compresslevel=zlib.Z_DEFAULT_COMPRESSION)
                del data                         # not held while the next file is made
                yield from stream.take()
        for name, text in ((rules.OUTPUTS["manifest"], csv_text(rows, rules.MANIFEST_COLUMNS)),
                           (SCORES, csv_text(scores, SCORE_COLUMNS))):
            bundle.writestr(name, text, compresslevel=zlib.Z_DEFAULT_COMPRESSION)
    yield from stream.take()                     # the last members and the central directory


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
