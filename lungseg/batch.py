"""Segment many files into an output folder, safely: the engine behind ``lungseg predict``.

    from lungseg.batch import plan, run
    jobs = plan(["scans/"], "masks/", recursive=True)        # raises BatchError if unsafe
    summary = run(jobs, "masks/", segmenter)                 # writes masks, overlays, manifest.csv

Rules it keeps, so that nothing a user gave is lost or overwritten:
- every input gets its own outputs: ``<file name>.mask.png`` and ``<file name>.overlay.png``
  (the full file name, extension included), in the sub-folder that mirrors the input's place
  under a folder given; same names from different inputs get ``-2``, ``-3``, ... before the
  extension;
- folders are searched for accepted image files (``rules.EXTENSIONS``) at their top level, or
  all levels with ``recursive``; hidden files and folders are left out; a folder with none is an
  error of its own;
- an output never replaces an input, and the output folder may not be an input folder (or lie
  inside one searched recursively);
- outputs that exist stop the run unless ``existing`` is "skip" (resume) or "overwrite";
- each file is written whole (to a temporary name, then renamed), so an interrupted run never
  leaves a partial mask; ``manifest.csv`` lists every input with its outputs, status and message.
"""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import rules
from .dicom import write_seg
from .imageio import ImageError, encode_png
from .measure import side_labels

MASK_SUFFIX, OVERLAY_SUFFIX, MANIFEST = ".mask.png", ".overlay.png", "manifest.csv"
LABELS_SUFFIX, SEG_SUFFIX = ".labels.png", ".seg.dcm"
FIELDS = ["input", "status", "mask", "overlay", "width", "height", "lung_fraction",
          "image_left_fraction", "image_right_fraction", "lung_cm2", "image_left_cm2",
          "image_right_cm2", "spacing_source", "quality", "warnings", "dicom_seg", "message"]
EXISTING = ("error", "skip", "overwrite")


class BatchError(Exception):
    """A run that must not start (unsafe output folder, outputs that exist); says why."""


@dataclass
class Job:
    """One input and where its outputs go (``name``: its path relative to the output folder)."""

    source: Path
    name: Path
    error: str = ""

    def sibling(self, suffix: str) -> Path:
        """An output's path relative to the output folder: the input's full name + ``suffix``."""
        return self.name.parent / (self.name.name + suffix)

    def outputs(self, overlay: bool = True) -> list[Path]:
        return [self.sibling(MASK_SUFFIX)] + ([self.sibling(OVERLAY_SUFFIX)] if overlay else [])


@dataclass
class Summary:
    """What a run did: one manifest row per input, and the counts the user is told."""

    rows: list[dict] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def failed(self) -> int:
        return self.count("error") + self.count("low_quality")


def _hidden(path: Path, top: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(top).parts)


def _images(folder: Path, recursive: bool) -> list[Path]:
    """Accepted image files in ``folder`` (all levels with ``recursive``), hidden ones left out."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and rules.is_supported(p) and not _hidden(p, folder))


def _folder_jobs(folder: Path, recursive: bool) -> list[Job]:
    files = _images(folder, recursive)
    if files:
        return [Job(p, p.relative_to(folder)) for p in files]
    message = f"{folder}: no images found ({rules.FORMATS})"
    if not recursive:
        deeper = len(_images(folder, True))
        if deeper:
            message += f"; {deeper} in its sub-folders: add --recursive to search them"
    return [Job(folder, Path(folder.name), error=message + ".")]


def _once(jobs: list[Job]) -> list[Job]:
    """Each file once, also when it is given both by name and inside a folder given."""
    seen: set[Path] = set()
    kept = []
    for job in jobs:
        key = job.source.resolve()
        if job.error or key not in seen:
            kept.append(job)
            seen.add(key)
    return kept


def _unique(jobs: list[Job]) -> None:
    """Give inputs that would share output names (case-insensitively) ``-2``, ``-3``, ..."""
    taken = {str(j.name).lower() for j in jobs}
    seen: set[str] = set()
    for job in jobs:
        key = str(job.name).lower()
        if key in seen:
            stem, suffix = os.path.splitext(job.name.name)
            k = 2
            while str(job.name.parent / f"{stem}-{k}{suffix}").lower() in taken:
                k += 1
            job.name = job.name.parent / f"{stem}-{k}{suffix}"
            key = str(job.name).lower()
            taken.add(key)
        seen.add(key)


def plan(inputs: Iterable[str | Path], out: str | Path, recursive: bool = False,
         overlay: bool = True, existing: str = "error") -> list[Job]:
    """The jobs for files and folders given, checked to be safe to run into ``out``."""
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}")
    out = Path(out)
    jobs: list[Job] = []
    for given in map(Path, inputs):
        if given.is_dir():
            inside = out.resolve() == given.resolve() or (recursive and given.resolve() in out.resolve().parents)
            if inside:
                raise BatchError(
                    f"--out {out} is {'the input folder' if out.resolve() == given.resolve() else 'inside the input folder'}"
                    f" {given}{' (searched with --recursive)' if recursive else ''}: masks would mix with the "
                    f"X-rays (and be read as inputs next time). Choose another folder, e.g. --out "
                    f"{given.parent / (given.name + '-masks')}.")
            jobs += _folder_jobs(given, recursive)
        else:
            jobs.append(Job(given, Path(given.name)))
    jobs = _once(jobs)
    _unique(jobs)
    sources = {j.source.resolve() for j in jobs if not j.error}
    clash = [out / p for j in jobs for p in j.outputs(overlay) if (out / p).resolve() in sources]
    if clash:
        raise BatchError(f"{clash[0]} is an input and would be overwritten by an output; "
                         f"choose another --out.")
    if existing == "error":
        present = [out / p for j in jobs if not j.error for p in j.outputs(overlay) if (out / p).exists()]
        present += [out / MANIFEST] if (out / MANIFEST).exists() else []
        if present:
            raise BatchError(
                f"{len(present)} output file(s) already exist in {out} (e.g. {present[0]}). Rerun with "
                f"--skip-existing to keep them and finish the rest, or --overwrite to replace them.")
    return jobs


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _previous_rows(out: Path) -> dict[str, dict]:
    """The last manifest's rows by input, so a resumed run keeps the figures of skipped files."""
    try:
        with (out / MANIFEST).open(newline="") as file:
            return {row["input"]: row for row in csv.DictReader(file)}
    except (OSError, csv.Error, KeyError):
        return {}


def write_manifest(out: Path, rows: list[dict]) -> Path:
    """``out/manifest.csv``: one row per input (FIELDS), floats with six decimals."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_atomic(out / MANIFEST, buffer.getvalue().encode())
    return out / MANIFEST


def run(jobs: list[Job], out: str | Path, segmenter, threshold: float | None = None,
        overlay: bool = True, existing: str = "error", min_quality: float | None = None,
        labels: bool = False, progress: Callable[[list[Job]], Iterable[Job]] = iter) -> Summary:
    """Segment every job into ``out``; bad files become error rows and never stop the run.

    Each row carries the mask's estimated quality and its warnings (codes in ``warnings``, the
    messages in ``message``); with ``min_quality``, a mask estimated below it is written but
    its row's status is "low_quality", which counts as a failure. With ``labels``, also
    ``<name>.labels.png`` (1 = right lung, 2 = left lung). A DICOM input also gets
    ``<name>.seg.dcm``, a DICOM Segmentation referencing it (two segments with ``labels``), and
    its areas in cm².

    The manifest is written at the end, also when the run is interrupted (then it lists the
    files done so far), so ``existing="skip"`` can finish the rest later.
    """
    from .plots import overlay as tint

    out = Path(out)
    summary = Summary()
    previous = _previous_rows(out) if existing == "skip" else {}
    try:
        for job in progress(jobs):
            row = {"input": str(job.source), "mask": "", "overlay": "", "message": job.error}
            outputs = job.outputs(overlay)
            if job.error:
                summary.rows.append({**row, "status": "error"})
                continue
            if existing == "skip" and all((out / p).exists() for p in outputs):
                kept = previous.get(str(job.source), {})
                summary.rows.append({**kept, **row, "status": "skipped", "mask": str(outputs[0]),
                                     "overlay": str(outputs[1]) if overlay else "",
                                     "message": "outputs exist; kept"})
                continue
            try:
                result = segmenter.analyze(job.source, threshold=threshold, name=str(job.source))
                mask = result.mask
                write_atomic(out / outputs[0], encode_png(mask))
                if overlay:
                    write_atomic(out / outputs[1], encode_png(tint(result.image, mask)))
                if labels:
                    write_atomic(out / job.sibling(LABELS_SUFFIX), encode_png(side_labels(mask), scale=False))
                seg = ""
                if result.dicom:
                    seg = str(job.sibling(SEG_SUFFIX))
                    write_atomic(out / seg, write_seg(result.dicom, mask, segmenter.name,
                                                      str(segmenter.card.get("version", "")), labels))
            except ImageError as err:
                summary.rows.append({**row, "status": "error", "message": str(err)})
                continue
            except Exception as err:  # noqa: BLE001  (one file's failure must not stop the batch)
                summary.rows.append({**row, "status": "error",
                                     "message": f"{job.source}: could not be segmented ({type(err).__name__}: {err})"})
                continue
            low = min_quality is not None and result.quality is not None and result.quality < min_quality
            summary.rows.append({
                **row, "status": "low_quality" if low else "ok", "mask": str(outputs[0]),
                "overlay": str(outputs[1]) if overlay else "", "width": mask.shape[1],
                "height": mask.shape[0], **result.areas, "quality": result.quality,
                "spacing_source": result.dicom.spacing_source if result.dicom else "", "dicom_seg": seg,
                "warnings": " ".join(w["code"] for w in result.warnings),
                "message": " ".join(w["message"] for w in result.warnings)})
    finally:
        if summary.rows:
            write_manifest(out, summary.rows)
    return summary
