"""Segment many files into an output folder, safely: the plain engine behind ``lungseg predict``,
and the planning and writing ``lungseg.ray_engine`` shares, so both keep one set of rules.

    from lungseg.batch import plan, run
    jobs = plan(["scans/"], "masks/", recursive=True)        # raises BatchError if unsafe
    summary = run(jobs, "masks/", segmenter)                 # writes masks, overlays, manifest.csv

Rules it keeps, so that nothing a user gave is lost or overwritten:
- every input gets its own outputs: ``<file name>.mask.png`` and ``<file name>.overlay.png``
  (the full file name, extension included), in the sub-folder that mirrors the input's place
  under a folder given; same names from different inputs get ``-2``, ``-3``, ... before the
  extension;
- inputs are paths or URIs (``lungseg.sources``); folders are searched for accepted image files (``rules.EXTENSIONS``) at their top level, or
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
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from . import rules, sources
from .dicom import write_seg
from .imageio import ImageError, encode_png
from .measure import side_labels
from .sources import Source

if TYPE_CHECKING:
    from .inference import Analysis

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

    source: Source
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


def _images(folder: Source, recursive: bool) -> list[tuple[Source, PurePosixPath]]:
    """Accepted image files in ``folder`` (all levels with ``recursive``) with their paths relative
    to it, sorted; hidden files and folders are left out."""
    return sorted(((source, rel) for source, rel in sources.files(folder, recursive)
                   if rules.is_supported(rel) and not any(p.startswith(".") for p in rel.parts)),
                  key=lambda found: found[1])


def _folder_jobs(folder: Source, recursive: bool) -> list[Job]:
    files = _images(folder, recursive)
    if files:
        return [Job(source, Path(rel)) for source, rel in files]
    message = f"{folder}: no images found ({rules.FORMATS})"
    if not recursive:
        deeper = len(_images(folder, True))
        if deeper:
            message += f"; {deeper} in its sub-folders: add --recursive to search them"
    return [Job(folder, Path(_name(folder)), error=message + ".")]


def _name(source: Source) -> str:
    return PurePosixPath(str(source).rstrip("/")).name


def _key(source: Source) -> Path | str:
    """What makes two sources the same file: the local path, or the URI."""
    return sources.local(source) or str(source)


def _once(jobs: list[Job]) -> list[Job]:
    """Each file once, also when it is given both by name and inside a folder given."""
    seen: set[Path | str] = set()
    kept = []
    for job in jobs:
        key = _key(job.source)
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


def _refuse_out_inside(given: Source, out: Path, recursive: bool) -> None:
    """BatchError if ``out`` is the input folder ``given`` (or inside it, with ``recursive``)."""
    folder = sources.local(given)
    if folder is None or not (out.resolve() == folder or (recursive and folder in out.resolve().parents)):
        return
    raise BatchError(
        f"--out {out} is {'the input folder' if out.resolve() == folder else 'inside the input folder'}"
        f" {given}{' (searched with --recursive)' if recursive else ''}: masks would mix with the "
        f"X-rays (and be read as inputs next time). Choose another folder, e.g. --out "
        f"{folder.parent / (folder.name + '-masks')}.")


def plan(inputs: Iterable[str | Path], out: str | Path, recursive: bool = False,
         overlay: bool = True, existing: str = "error") -> list[Job]:
    """The jobs for files and folders given (paths or URIs), checked to be safe to run into ``out``."""
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}")
    if sources.is_uri(out):
        raise BatchError(f"--out {out}: outputs go to a local folder (on a cluster, one every node "
                         f"can write); URIs are for inputs.")
    out = Path(out)
    jobs: list[Job] = []
    for given in inputs:
        given = str(given) if sources.is_uri(given) else Path(given)
        if sources.is_dir(given):
            _refuse_out_inside(given, out, recursive)
            jobs += _folder_jobs(given, recursive)
        else:
            jobs.append(Job(given, Path(_name(given))))
    jobs = _once(jobs)
    _unique(jobs)
    inputs_here = {sources.local(j.source) for j in jobs if not j.error}
    clash = [out / p for j in jobs for p in j.outputs(overlay) if (out / p).resolve() in inputs_here]
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


def write_manifest(out: Path, rows: list[dict]) -> Path:
    """``out/manifest.csv``: one row per input (FIELDS), floats with six decimals."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_atomic(out / MANIFEST, buffer.getvalue().encode())
    return out / MANIFEST


def error_row(job: Job, err: Exception) -> dict:
    """The row of an input that could not be segmented: an ImageError's message, else the error named."""
    message = str(err) if isinstance(err, ImageError) else \
        f"{job.source}: could not be segmented ({type(err).__name__}: {err})"
    return {"input": str(job.source), "status": "error", "mask": "", "overlay": "", "message": message}


@dataclass(frozen=True)
class Writer:
    """Writes one input's outputs into ``out`` and gives its manifest row: the one way both engines
    (``run`` here, ``lungseg.ray_engine``) turn a job into files and a row.

    Each row carries the mask's estimated quality and its warnings (codes in ``warnings``, the
    messages in ``message``); with ``min_quality``, a mask estimated below it is written but
    its row's status is "low_quality", which counts as a failure. With ``labels``, also
    ``<name>.labels.png`` (1 = right lung, 2 = left lung). A DICOM input also gets
    ``<name>.seg.dcm``, a DICOM Segmentation referencing it (two segments with ``labels``), and
    its areas in cm².
    """

    out: Path
    overlay: bool = True
    labels: bool = False
    min_quality: float | None = None

    def settled(self, job: Job, existing: str, previous: dict[str, dict]) -> dict | None:
        """The row of a job that needs no model (a planning error, or outputs kept with
        ``existing="skip"``, with the ``previous`` manifest's figures), else None."""
        row = {"input": str(job.source), "mask": "", "overlay": "", "message": job.error}
        if job.error:
            return {**row, "status": "error"}
        outputs = job.outputs(self.overlay)
        if existing == "skip" and all((self.out / p).exists() for p in outputs):
            return {**previous.get(str(job.source), {}), **row, "status": "skipped",
                    "mask": str(outputs[0]), "overlay": str(outputs[1]) if self.overlay else "",
                    "message": "outputs exist; kept"}
        return None

    def segmented(self, job: Job, segmenter, analyze: Callable[[], Analysis]) -> dict:
        """Analyse ``job`` (``analyze()``), write its outputs, return its row; a failure becomes an
        error row and never stops the run."""
        from .plots import overlay as tint

        outputs = job.outputs(self.overlay)
        try:
            result = analyze()
            mask = result.mask
            write_atomic(self.out / outputs[0], encode_png(mask))
            if self.overlay:
                write_atomic(self.out / outputs[1], encode_png(tint(result.image, mask)))
            if self.labels:
                write_atomic(self.out / job.sibling(LABELS_SUFFIX), encode_png(side_labels(mask), scale=False))
            seg = ""
            if result.dicom:
                seg = str(job.sibling(SEG_SUFFIX))
                write_atomic(self.out / seg, write_seg(result.dicom, mask, segmenter.name,
                                                       str(segmenter.card.get("version", "")), self.labels))
        except Exception as err:  # noqa: BLE001  (one file's failure must not stop the batch)
            return error_row(job, err)
        low = self.min_quality is not None and result.quality is not None and result.quality < self.min_quality
        return {
            "input": str(job.source), "status": "low_quality" if low else "ok", "mask": str(outputs[0]),
            "overlay": str(outputs[1]) if self.overlay else "", "width": mask.shape[1],
            "height": mask.shape[0], **result.areas, "quality": result.quality,
            "spacing_source": result.dicom.spacing_source if result.dicom else "", "dicom_seg": seg,
            "warnings": " ".join(w["code"] for w in result.warnings),
            "message": " ".join(w["message"] for w in result.warnings)}


def previous_rows(out: Path, existing: str) -> dict[str, dict]:
    """The last manifest's rows by input when resuming (``existing="skip"``), so skipped files keep
    their figures; else none."""
    if existing != "skip":
        return {}
    try:
        with (out / MANIFEST).open(newline="") as file:
            return {row["input"]: row for row in csv.DictReader(file)}
    except (OSError, csv.Error, KeyError):
        return {}


def run(jobs: list[Job], out: str | Path, segmenter, threshold: float | None = None,
        overlay: bool = True, existing: str = "error", min_quality: float | None = None,
        labels: bool = False, progress: Callable[[list[Job]], Iterable[Job]] = iter) -> Summary:
    """Segment every job into ``out``, one after the other (``Writer`` says what is written); bad
    files become error rows and never stop the run.

    The manifest is written at the end, also when the run is interrupted (then it lists the
    files done so far), so ``existing="skip"`` can finish the rest later.
    """
    out = Path(out)
    writer = Writer(out, overlay, labels, min_quality)
    previous = previous_rows(out, existing)
    summary = Summary()
    try:
        for job in progress(jobs):
            summary.rows.append(writer.settled(job, existing, previous) or writer.segmented(
                job, segmenter, lambda: segmenter.analyze(sources.fetch(job.source), threshold=threshold,
                                                          name=str(job.source))))
    finally:
        if summary.rows:
            write_manifest(out, summary.rows)
    return summary
