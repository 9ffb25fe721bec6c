"""Segment many files into an output folder, safely: the plain engine behind ``lungseg predict``,
and the planning and writing ``lungseg.ray_engine`` shares, so both keep one set of rules.

    from lungseg.batch import plan, run
    jobs = plan(["scans/"], "masks/", recursive=True)        # raises BatchError if unsafe
    summary = run(jobs, "masks/", segmenter)                 # writes masks, overlays, manifest.csv

Rules it keeps, so that nothing a user gave is lost or overwritten and no count lies:
- every input ``NAME`` (its full file name) gets the outputs of rules.json ``outputs``
  (``NAME.mask.png``, ``NAME.overlay.png``, with ``labels`` ``NAME.labels.png``, for a DICOM
  ``NAME.seg.dcm``) for each lung definition asked (the whole lung's with its prefix:
  ``NAME.whole.mask.png``, ...; one ``NAME.seg.dcm`` for all), in the sub-folder that mirrors
  its place under a folder given; names that
  would clash get ``-2``, ``-3``, ... before the extension, and an input keeps the name an
  earlier run into the same folder gave it;
- inputs are paths or URIs (``lungseg.sources``); folders are searched at their top level, or all
  levels with ``recursive``; hidden files and folders (a name starting with ".") are left out.
  Every other file is an input when its name has an accepted extension (a bad one gets an
  error row), or when its content is an image LungSeg reads (an extensionless PNG, a DICOM in a
  ``.dat``; a DICOM without pixel data, such as a DICOMDIR, is not); the rest are listed in
  ``Plan.left_out``; files that cannot be read get an error row. A folder with no images is an
  error of its own;
- no output goes into a folder that holds an input (the folder given, or the folder of a file
  given), so an output never replaces an input;
- outputs that exist stop the run unless ``existing`` is "skip" (resume) or "overwrite"; "skip"
  keeps an input only when its earlier row says it was segmented (ok or low_quality) and every
  output it needs exists, those of every definition asked now included; failed and incomplete
  inputs are done again;
- an input's outputs are written together (temporary names, then renamed), so an input that
  fails or is interrupted leaves none behind; ``manifest.csv`` gets one row per input and is
  merged with the folder's earlier manifest (rows keyed by input as given), never shrunk;
- ``run`` overlaps reading, the model and writing (the next input is decoded and the previous
  ones written while the model runs: at most READ_AHEAD + 1 + WRITERS = 4 inputs held), and
  writes what one input after the other would: the same files, rows and manifest;
- Ctrl-C raises ``Interrupted`` once the writes under way are done and the manifest of what
  was done is written.
"""
from __future__ import annotations

import csv
import io
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from . import rules, sources
from .dicom import write_seg
from .imageio import ImageError, encode_png, read_input, sniff
from .measure import side_labels
from .sources import Entry, Source

if TYPE_CHECKING:
    from .inference import Analysis

OUTPUTS = rules.OUTPUTS
MANIFEST = OUTPUTS["manifest"]
FIELDS = rules.MANIFEST_COLUMNS
DEFINITIONS = tuple(rules.DEFINITIONS)
#: Each output's manifest column -> (kind, definition): a mask, an overlay and a label image per
#: lung definition (``mask``, ``whole_mask``, ...), and one DICOM Segmentation for them all.
COLUMNS = {**{rules.column(kind, d): (kind, d) for d in DEFINITIONS for kind in ("mask", "overlay", "labels")},
           "dicom_seg": ("seg", "visible")}
#: The manifest columns of each definition: its outputs, areas, quality and warnings.
DEFINITION_COLUMNS = {d: [rules.column(c, d) for c in FIELDS if rules.column(c, "whole") in FIELDS]
                      for d in DEFINITIONS}
EXISTING = ("error", "skip", "overwrite")
DONE = ("ok", "low_quality")         # statuses of an input whose outputs were written
#: DICOM elements that hold an image; a DICOM file without any (a DICOMDIR, a report) is no input.
PIXEL_TAGS = ["PixelData", "FloatPixelData", "DoubleFloatPixelData"]
READ_AHEAD = 1      # inputs read and decoded ahead of the model (by one thread)
WRITERS = 2         # inputs whose outputs are encoded and written at once (threads)
WRITE_FAILED = "{file}: its outputs could not be written ({detail}); none were left behind."


class BatchError(Exception):
    """A run that must not start (unsafe output folder, outputs that exist); says why."""


@dataclass
class Job:
    """One input and where its outputs go (``name``: its path relative to the output folder)."""

    source: Source
    name: Path
    error: str = ""

    def output(self, kind: str, definition: str = "visible") -> Path:
        """An output's path relative to the output folder: the input's full name + the suffix of
        ``kind`` (a key of rules.json ``outputs``: mask, overlay, labels, seg) for ``definition``
        (``rules.output_name``: NAME.mask.png, NAME.whole.mask.png)."""
        return self.name.parent / (self.name.name + rules.output_name(kind, definition))

    def path(self, column: str) -> Path:
        """The output of a manifest column (``COLUMNS``)."""
        return self.output(*COLUMNS[column])


class Plan(list):
    """The jobs of a run, in order, and ``left_out``: what was found in folders and left out, as
    (reason, message): "not_image" (a file that is not an image LungSeg reads) or "loop" (a link
    back to a folder that holds it, not followed: its files are searched where they are)."""

    def __init__(self, jobs: Iterable[Job] = (), left_out: list[tuple[str, str]] | None = None):
        super().__init__(jobs)
        self.left_out = left_out or []


@dataclass
class Summary:
    """What a run did: a manifest row per input done, in plan order, and the counts the user is
    told; ``kept``: the inputs whose earlier row and outputs were kept (``existing="skip"``)."""

    rows: list[dict] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)
    total: int = 0

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def failed(self) -> int:
        return self.count("error") + self.count("low_quality")

    def warned(self) -> int:
        """How many inputs this run segmented got a warning, of any definition."""
        return sum(any(row.get(rules.column("warnings", d)) for d in DEFINITIONS) for row in self.new())

    def new(self) -> list[dict]:
        """The rows of the inputs segmented by this run (kept ones left out)."""
        return [row for row in self.rows if row["status"] in DONE and row["input"] not in self.kept]

    def written(self, column: str) -> int:
        """How many outputs of one kind (its manifest column) this run wrote."""
        return sum(bool(row.get(column)) for row in self.new())


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, raised once the manifest of the inputs done is written."""

    def __init__(self, summary: Summary):
        super().__init__()
        self.summary = summary


def _dicom_has_pixels(path: Path) -> bool:
    """Whether a DICOM file holds an image (reading its elements' headers, not their values)."""
    import pydicom

    try:
        dataset = pydicom.dcmread(path, force=True, specific_tags=PIXEL_TAGS, defer_size=256)
    except Exception:  # noqa: BLE001  (a damaged DICOM is an input: its row says what is wrong)
        return True
    return any(tag in dataset for tag in PIXEL_TAGS)


def _holds_image(entry: Entry) -> bool:
    """Whether a file found in a folder is an input: an accepted extension, or (read by content,
    whatever its name) an image LungSeg reads. A remote file is judged by its name only. Raises
    ImageError when the file cannot be read."""
    if rules.is_supported(entry.rel):
        return True
    path = sources.local(entry.source)
    if path is None:
        return False
    kind = sniff(path, str(entry.source))
    return kind == "image" or (kind == "dicom" and _dicom_has_pixels(path))


def _sort(entry: Entry) -> tuple[str, str]:
    """What a file found in a folder is: ("input", ""), ("error", why it cannot be read), or left
    out as ("not_image" | "loop", message)."""
    if entry.problem == sources.LOOP:
        return "loop", f"{entry.source}: {entry.problem}."
    if entry.problem:
        return "error", rules.message("unreadable", str(entry.source), detail=entry.problem)
    try:
        if _holds_image(entry):
            return "input", ""
    except ImageError as err:
        return "error", str(err)
    return "not_image", rules.message("not_image", str(entry.source))


def _search(folder: Source, recursive: bool) -> tuple[list[Job], list[tuple[str, str]]]:
    """The jobs for the files in ``folder`` (error jobs for those that cannot be read), and what
    was left out (``Plan.left_out``)."""
    jobs, left_out = [], []
    for entry in sources.files(folder, recursive):
        kind, message = _sort(entry)
        if kind in ("input", "error"):
            jobs.append(Job(entry.source, Path(entry.rel), error=message))
        else:
            left_out.append((kind, message))
    return jobs, left_out


def _folder_jobs(folder: Source, recursive: bool, left_out: list[tuple[str, str]]) -> list[Job]:
    jobs, others = _search(folder, recursive)
    left_out += others
    if jobs:
        return jobs
    message = f"{folder}: no images found ({rules.FORMATS})"
    if not recursive:
        deeper = sum(not job.error for job in _search(folder, True)[0])
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


def _name_outputs(jobs: list[Job], earlier: dict[str, dict]) -> None:
    """Name every input's outputs: the name an earlier run into the folder gave it (its manifest
    row), else its own; a name taken (case-insensitively) by another input, of this run or an
    earlier one, gets ``-2``, ``-3``, ... before the extension."""
    named = {row["input"]: row[column][: -len(suffix)] for row in earlier.values()
             for column, suffix in _mask_suffixes() if (row.get(column) or "").endswith(suffix)}
    seen = {name.lower() for name in named.values()}
    fresh = []
    for job in jobs:
        if not job.error and str(job.source) in named:
            job.name = Path(named[str(job.source)])
        elif not job.error:
            fresh.append(job)
    taken = seen | {str(job.name).lower() for job in fresh}
    for job in fresh:
        key = str(job.name).lower()
        if key in seen:
            stem, extension = os.path.splitext(job.name.name)
            k = 2
            while str(job.name.parent / f"{stem}-{k}{extension}").lower() in taken:
                k += 1
            job.name = job.name.parent / f"{stem}-{k}{extension}"
            key = str(job.name).lower()
            taken.add(key)
        seen.add(key)


def _mask_suffixes() -> list[tuple[str, str]]:
    """Each definition's mask column and output suffix, the default's last (the name it gives wins)."""
    return [(rules.column("mask", d), rules.output_name("mask", d)) for d in reversed(DEFINITIONS)]


def _masks_folder(folder: Path) -> Path:
    return folder.parent / (folder.name + "-masks")


def _refuse_out_inside(given: Source, out: Path, recursive: bool) -> None:
    """BatchError if ``out`` is the input folder ``given`` (or inside it, with ``recursive``)."""
    folder = sources.local(given)
    target = sources.local(out)
    if folder is None or not (target == folder or (recursive and folder in target.parents)):
        return
    raise BatchError(
        f"--out {out} is {'the input folder' if target == folder else 'inside the input folder'}"
        f" {given}{' (searched with --recursive)' if recursive else ''}: masks would mix with the "
        f"X-rays (and be read as inputs next time). Choose another folder, e.g. --out "
        f"{_masks_folder(folder)}.")


def _refuse_outputs_beside_inputs(jobs: list[Job], out: Path) -> None:
    """BatchError if an output would go into a folder that holds an input (given by name)."""
    holders: dict[Path, Source] = {}
    for job in jobs:
        path = None if job.error else sources.local(job.source)
        if path is not None:
            holders.setdefault(path.parent, job.source)
    targets = {sources.local(out / job.name.parent) for job in jobs if not job.error} | {sources.local(out)}
    for target in sorted(t for t in targets if t in holders):
        where = f"--out {out} is" if target == sources.local(out) else f"the output sub-folder {target} is"
        raise BatchError(
            f"{where} the input folder of {holders[target]}: masks would mix with the X-rays (and "
            f"be read as inputs next time). Choose another folder, e.g. --out {_masks_folder(target)}.")


def plan(inputs: Iterable[str | Path], out: str | Path, recursive: bool = False,
         overlay: bool = True, existing: str = "error", labels: bool = False,
         definitions: Iterable[str] = ("visible",)) -> Plan:
    """The jobs for files and folders given (paths or URIs), checked to be safe to run into ``out``
    (the outputs of ``definitions``, lung definitions of rules.json, among them)."""
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}")
    if sources.is_uri(out):
        raise BatchError(f"--out {out}: outputs go to a local folder (on a cluster, one every node "
                         f"can write); URIs are for inputs.")
    out = Path(out)
    earlier = read_manifest(out) if existing != "error" else {}
    jobs = Plan()
    for given in inputs:
        given = str(given) if sources.is_uri(given) else Path(given)
        if sources.is_dir(given):
            _refuse_out_inside(given, out, recursive)
            jobs += _folder_jobs(given, recursive, jobs.left_out)
        else:
            jobs.append(Job(given, Path(_name(given))))
    jobs[:] = _once(jobs)
    _name_outputs(jobs, earlier)
    _refuse_outputs_beside_inputs(jobs, out)
    if existing == "error":
        kinds = [("seg", "visible")] + [(kind, d) for d in definitions
                                        for kind in ["mask"] + ["overlay"] * overlay + ["labels"] * labels]
        present = [out / j.output(*k) for j in jobs if not j.error for k in kinds if (out / j.output(*k)).exists()]
        present += [out / MANIFEST] if (out / MANIFEST).exists() else []
        if present:
            raise BatchError(
                f"{len(present)} output file(s) already exist in {out} (e.g. {present[0]}). Rerun with "
                f"--skip-existing to keep them and finish the rest, or --overwrite to replace them.")
    return jobs


def write_together(out: Path, files: dict[Path, bytes]) -> None:
    """Write ``files`` (paths relative to ``out``) whole and together: each to a temporary name
    beside it, then all renamed into place; if one cannot be written, none is."""
    temporaries: dict[Path, Path] = {}
    renamed: list[Path] = []
    try:
        for rel, data in files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            temporaries[path] = path.with_name(f".{path.name}.{os.getpid()}.part")
            temporaries[path].write_bytes(data)
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
            renamed.append(path)
    except BaseException:
        for path in renamed:
            path.unlink(missing_ok=True)
        raise
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)


def read_manifest(out: Path) -> dict[str, dict]:
    """The rows of ``out/manifest.csv`` by input (none when there is no manifest); BatchError for
    a file that is not a LungSeg manifest, which a run must not replace."""
    path = Path(out) / MANIFEST
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            rows = list(reader)
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        detail = sources.why(err) if isinstance(err, OSError) else str(err)
        raise BatchError(f"{path} cannot be read ({detail}): a run adds its rows to it, so move it "
                         f"away or choose another --out.") from None
    if not {"input", "status"} <= set(reader.fieldnames or ()):
        raise BatchError(f"{path} is not a LungSeg manifest (no input and status columns): move it "
                         f"away or choose another --out.")
    return {row["input"]: row for row in rows}


def _kept_columns(out: Path, row: dict, earlier: dict | None) -> dict:
    """``row`` with the columns of the definitions it leaves empty taken from the input's earlier
    row, where both segmented it and that definition's mask is still on disk (a visible-only
    rerun keeps the whole lung's outputs it did not touch named)."""
    if earlier is None or row["status"] not in DONE or earlier.get("status") not in DONE:
        return row
    for columns in DEFINITION_COLUMNS.values():
        mask = earlier.get(columns[0])
        if not row.get(columns[0]) and mask and (out / mask).is_file():
            row = {**row, **{c: earlier.get(c, "") for c in columns}}
    return row


def write_manifest(out: Path, rows: list[dict]) -> Path:
    """Merge ``rows`` into ``out/manifest.csv`` (FIELDS; floats with six decimals): an input's
    row replaces its earlier one (``_kept_columns``), the other earlier rows stay in their order,
    new ones follow."""
    earlier = read_manifest(out)
    merged = {**earlier, **{row["input"]: _kept_columns(Path(out), row, earlier.get(row["input"])) for row in rows}}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in merged.values():
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    write_together(Path(out), {Path(MANIFEST): buffer.getvalue().encode()})
    return Path(out) / MANIFEST


def error_message(job: Job, err: Exception) -> str:
    """Why an input could not be segmented: an ImageError's message, a read error in words, else
    the error named."""
    if isinstance(err, ImageError):
        return str(err)
    if isinstance(err, OSError):
        return rules.message("unreadable", str(job.source), detail=sources.why(err))
    return f"{job.source}: could not be segmented ({type(err).__name__}: {err})"


def _float(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Writer:
    """Writes one input's outputs into ``out`` and gives its manifest row: the one way both engines
    (``run`` here, ``lungseg.ray_engine``) turn a job into files and a row.

    ``definitions``: the lung definitions asked for (rules.json ``definitions``; the model's
    ``Segmenter.chosen``). Each gets its mask and overlay (and with ``labels`` its label image,
    1 = right lung, 2 = left lung), named by ``rules.output_name`` (``NAME.mask.png``,
    ``NAME.whole.mask.png``), and fills its own manifest columns (``rules.column``: areas,
    estimated quality, warning codes); the columns of the others stay empty. ``message`` holds
    the warnings' messages. With ``min_quality``, an input with a definition estimated below it
    is written but its row's status is "low_quality", which counts as a failure. A DICOM input
    also gets ``NAME.seg.dcm``, one DICOM Segmentation referencing it with a segment per
    definition (per side with ``labels``), and its areas in cm². An input whose outputs cannot
    all be made and written gets none.
    """

    out: Path
    overlay: bool = True
    labels: bool = False
    min_quality: float | None = None
    definitions: tuple[str, ...] = ("visible",)

    @property
    def asked(self) -> str:
        """The ``definition`` argument of ``Segmenter.analyze`` for these definitions."""
        return self.definitions[0] if len(self.definitions) == 1 else "both"

    def present(self, job: Job) -> dict[str, str]:
        """The manifest columns of ``job``'s outputs: each names its file if it exists, else ""."""
        return {column: str(job.path(column)) if (self.out / job.path(column)).is_file() else ""
                for column in COLUMNS}

    def _status(self, qualities: Iterable[float | None]) -> str:
        low = self.min_quality is not None and any(q is not None and q < self.min_quality for q in qualities)
        return "low_quality" if low else "ok"

    def failed(self, job: Job, message: str) -> dict:
        """The row of an input that failed; it names the outputs of an earlier run still there."""
        present = self.present(job)
        left = [name for name in present.values() if name]
        if left:
            message += f" (outputs of an earlier run left as they were: {', '.join(left)})"
        return {"input": str(job.source), "status": "error", **present, "message": message}

    def settled(self, job: Job, existing: str, earlier: dict[str, dict]) -> dict | None:
        """The row of a job that needs no model, else None: a planning error's, or with
        ``existing="skip"`` the earlier row of an input that run segmented (ok or low_quality,
        judged again against this ``min_quality`` on the definitions asked now) whose every
        output needed here exists (each definition's mask, the overlay and labels if asked, the
        DICOM Segmentation if it wrote one)."""
        if job.error:
            return self.failed(job, job.error)
        row = earlier.get(str(job.source)) if existing == "skip" else None
        if row is None or row.get("status") not in DONE or any(
                row.get(rules.column("mask", d)) != str(job.output("mask", d)) for d in self.definitions):
            return None
        present = self.present(job)
        needed = [rules.column(kind, d) for d in self.definitions
                  for kind in ["mask"] + ["overlay"] * self.overlay + ["labels"] * self.labels]
        if not all(present[column] for column in needed + ["dicom_seg"] * bool(row.get("dicom_seg"))):
            return None
        qualities = [_float(row.get(rules.column("quality", d))) for d in self.definitions]
        return {**row, **present, "status": self._status(qualities)}

    def _files(self, job: Job, result: Analysis, segmenter) -> dict[str, bytes]:
        """Every output of ``job``, encoded (manifest column -> bytes); nothing is written yet."""
        from .plots import overlay as tint

        files = {}
        for definition, outline in result.outlines.items():
            files[rules.column("mask", definition)] = encode_png(outline.mask)
            if self.overlay:
                files[rules.column("overlay", definition)] = encode_png(tint(outline.image, outline.mask))
            if self.labels:
                files[rules.column("labels", definition)] = encode_png(side_labels(outline.mask), scale=False)
        if result.dicom:
            files["dicom_seg"] = write_seg(result.dicom, {d: o.mask for d, o in result.outlines.items()},
                                           segmenter.name, str(segmenter.card.get("version", "")), self.labels)
        return files

    def segmented(self, job: Job, segmenter, analyze: Callable[[], Analysis]) -> dict:
        """Analyse ``job`` (``analyze()``), write its outputs, return its row; a failure becomes an
        error row, leaves no output of this run behind and never stops the run."""
        try:
            result = analyze()
            files = self._files(job, result, segmenter)
        except Exception as err:  # noqa: BLE001  (one file's failure must not stop the batch)
            return self.failed(job, error_message(job, err))
        try:
            write_together(self.out, {job.path(column): data for column, data in files.items()})
        except OSError as err:
            return self.failed(job, WRITE_FAILED.format(
                file=job.source, detail=f"{sources.why(err)}: {err.filename}"))
        outlines = result.outlines
        row = {"input": str(job.source), "status": self._status(o.quality for o in outlines.values()),
               **{column: str(job.path(column)) if column in files else "" for column in COLUMNS},
               "width": result.mask.shape[1], "height": result.mask.shape[0],
               "spacing_source": result.dicom.spacing_source if result.dicom else "",
               "message": messages({d: o.warnings for d, o in outlines.items()})}
        for definition, outline in outlines.items():
            row.update({rules.column(name, definition): value for name, value in outline.areas.items()})
            row[rules.column("quality", definition)] = outline.quality
            row[rules.column("warnings", definition)] = " ".join(w["code"] for w in outline.warnings)
        return row


def messages(warnings: dict[str, list[dict]]) -> str:
    """The manifest's ``message``: the warnings of every definition analysed ({definition:
    [{"code", "message"}]}), each once; with more than one definition, those of one definition
    only start with its label ("Whole lung: ..."). The app's zip writes the same."""
    said = [[w["message"] for w in found] for found in warnings.values()]
    shared = set.intersection(*map(set, said))
    out = []
    for definition, own in zip(warnings, said):
        label = f"{rules.DEFINITIONS[definition]['label']}: " if len(warnings) > 1 else ""
        out += [m if m in shared else label + m for m in own if not (m in shared and m in out)]
    return " ".join(out)


def _read(job: Job) -> tuple:
    """An input's pixels and DICOM facts (``imageio.read_input``), as the model takes them."""
    return read_input(sources.fetch(job.source), str(job.source))


def _handing_over(analyze: Callable[[], Analysis]) -> Callable[[], Analysis]:
    """``analyze`` run now; what it gave (or raised) given again by the function returned, for
    ``Writer.segmented`` to write (or turn into an error row) on another thread."""
    try:
        result = analyze()
    except Exception as err:  # noqa: BLE001  (raised again where the row is made)
        error = err

        def failed() -> Analysis:
            raise error
        return failed
    return lambda: result


def _scheduled(jobs: Iterable[Job], settle: Callable[[Job], dict | None],
               reading: ThreadPoolExecutor) -> Iterator[tuple[Job, dict | None, Future | None]]:
    """Each job with the row it is settled with, or else the future of its read, started READ_AHEAD
    inputs before the job is handed out."""
    window: deque = deque()
    for job in jobs:
        row = settle(job)
        window.append((job, row, None if row is not None else reading.submit(_read, job)))
        while window and (window[0][1] is not None or sum(read is not None for *_, read in window) > READ_AHEAD):
            yield window.popleft()
    yield from window


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C ignored inside (when run in the main thread, where it arrives): a second one cannot
    cut short the wait for the writes under way or the manifest, so every input whose files
    were written has its row."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(jobs: list[Job], out: str | Path, segmenter, threshold: float | None = None,
        overlay: bool = True, existing: str = "error", min_quality: float | None = None,
        labels: bool = False, progress: Callable[[list[Job]], Iterable[Job]] = iter,
        definitions: Iterable[str] = ("visible",)) -> Summary:
    """Segment every job into ``out`` (``Writer`` says what is written); bad files become error
    rows and never stop the run.

    Reading, the model and writing overlap: a thread reads and decodes READ_AHEAD inputs ahead of
    the model, which runs here on one input at a time, while WRITERS threads encode and write the
    outputs of the inputs before it; so at most READ_AHEAD + 1 + WRITERS inputs are held at once.
    Rows, files and the manifest are those of one input after the other: a row is kept once its
    input's files are written. The manifest is merged at the end, also on Ctrl-C, which then
    raises ``Interrupted`` (with the summary so far) once the writes under way are done (a
    second Ctrl-C meanwhile is ignored); ``existing="skip"`` finishes the rest later.
    """
    out = Path(out)
    writer = Writer(out, overlay, labels, min_quality, tuple(definitions))
    earlier = read_manifest(out) if existing == "skip" else {}
    done: list[tuple[dict, bool] | None] = [None] * len(jobs)   # (row, kept) of each job done
    free = threading.BoundedSemaphore(WRITERS)

    def write(index: int, job: Job, analyze: Callable[[], Analysis]) -> None:
        try:
            done[index] = writer.segmented(job, segmenter, analyze), False
        finally:
            free.release()

    reading = ThreadPoolExecutor(1, thread_name_prefix="lungseg-read")
    writing = ThreadPoolExecutor(WRITERS, thread_name_prefix="lungseg-write")
    writes: list[Future] = []
    stopped = False
    try:
        settle = partial(writer.settled, existing=existing, earlier=earlier)
        for index, (job, row, read) in enumerate(_scheduled(progress(jobs), settle, reading)):
            if row is not None:
                done[index] = row, row["status"] in DONE
                continue
            analyze = _handing_over(
                lambda: segmenter.analyze_read([read.result()], threshold, definition=writer.asked)[0])
            free.acquire()
            writes.append(writing.submit(write, index, job, analyze))
    except KeyboardInterrupt:
        stopped = True
    finally:
        with _ctrl_c_held():
            reading.shutdown(cancel_futures=True)
            writing.shutdown()
            finished = [entry for entry in done if entry is not None]
            summary = Summary([row for row, _ in finished], {row["input"] for row, kept in finished if kept},
                              len(jobs))
            if summary.rows:
                write_manifest(out, summary.rows)
    if stopped:
        raise Interrupted(summary)
    for future in writes:
        future.result()    # raises what Writer.segmented does not make a row of (no input's fault)
    return summary
