"""Segment an archive on Ray Data: the engine behind ``lungseg predict --engine ray``.

    from lungseg.batch import plan
    from lungseg.ray_engine import run
    summary = run(plan(["scans/"], "masks/", recursive=True), "masks/", workers=2)

The jobs, output names, existing-output rule, outputs and manifest rows are lungseg.batch's:
the driver settles the jobs that need no model (planning errors, inputs kept with "skip");
Ray tasks read and decode the others in parallel (paths, or URIs through lungseg.sources); a
pool of actors, each with one loaded model (and a GPU where the cluster has them), segments
them in batches and writes each input's outputs with ``batch.Writer`` where it runs, so masks
and overlays never travel back; the driver gathers the rows and merges them into
``manifest.csv`` in plan order, also on Ctrl-C (then ``batch.Interrupted`` is raised; rerun
with ``existing="skip"`` to finish): what actors wrote for inputs whose rows never came back
is removed, so the files match the manifest (with an embedded Ray, stopped first; on a
cluster, actors still busy may finish an input after that). On a cluster, ``out`` must be a
folder every node can write (a shared filesystem).

Without ``address`` an embedded local Ray is started on this machine for the run.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray

from . import bundle, rules, sources
from .batch import COLUMNS, DONE, Interrupted, Job, Summary, Writer, error_message, read_manifest, write_manifest
from .imageio import read_input

BATCH = 8   # X-rays per model call in an actor
STOP_SECONDS = 30   # how long Ctrl-C waits for Ray Data's executor to stop
#: Memory a decode task reserves: the largest accepted image, decoded (16-bit stretched in float64,
#: then 3 channels of uint8). It keeps parallel decodes within a node's memory, and, as the model
#: actors reserve none, it keeps Ray Data from fusing decoding into the actors.
DECODE_MEMORY = rules.MAX_PIXELS * 12


def _decode(item: dict) -> dict:
    """Read and decode one input (a Ray task): its pixels and DICOM facts, or why it failed."""
    try:
        array, dicom = read_input(sources.fetch(item["read"]), item["source"])
        return {**item, "image": array, "dicom": pickle.dumps(dicom), "error": ""}
    except Exception as err:  # noqa: BLE001  (a bad file is a row of the manifest)
        error = error_message(Job(item["source"], Path(item["name"])), err)
        return {**item, "image": np.zeros((1, 1, 3), np.uint8), "dicom": b"", "error": error}


class _Segment:
    """An actor of the pool: one loaded model; segments a batch and writes its outputs."""

    def __init__(self, model: str | None, writer: Writer, threshold: float | None):
        from .inference import Segmenter

        self.segmenter = Segmenter.load(model or bundle.DEFAULT_MODEL)   # the node's own copy
        self.writer, self.threshold = writer, threshold

    def _analyses(self, decoded: list) -> list[Callable]:
        """The analyses of a batch; one by one if the batch fails, so a bad input fails alone."""
        try:
            results = self.segmenter.analyze_read(decoded, self.threshold, BATCH, self.writer.asked)
            return [lambda r=r: r for r in results]
        except Exception:  # noqa: BLE001
            return [lambda d=d: self.segmenter.analyze_read([d], self.threshold, definition=self.writer.asked)[0]
                    for d in decoded]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jobs = [Job(str(source), Path(str(name))) for source, name in zip(batch["source"], batch["name"])]
        rows = [self.writer.failed(job, str(error)) if error else None for job, error in zip(jobs, batch["error"])]
        todo = [i for i, row in enumerate(rows) if row is None]
        analyses = self._analyses([(batch["image"][i], pickle.loads(batch["dicom"][i])) for i in todo])
        for i, analyze in zip(todo, analyses):
            rows[i] = self.writer.segmented(jobs[i], self.segmenter, analyze)
        return {"index": batch["index"], "row": np.array([json.dumps(row) for row in rows], dtype=object)}


@contextmanager
def _ray(address: str | None) -> Iterator[None]:
    """Connect to the cluster at ``address``, or start an embedded local Ray (unless one runs)."""
    started = not ray.is_initialized()
    if started:
        local = {} if address else {"num_cpus": os.cpu_count(), "include_dashboard": False}
        warnings.filterwarnings("ignore", "Tip: In future versions of Ray", FutureWarning)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, **local)
    context = ray.data.DataContext.get_current()      # (imports ray.data, which sets its logging)
    context.enable_operator_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@contextmanager
def _ctrl_c() -> Iterator[threading.Event]:
    """Ctrl-C as a flag the driver reads between rows. A KeyboardInterrupt raised inside Ray's own
    calls can end the process (exit code 1, nothing printed, no manifest) on Ray 2.50."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda *_: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _pool_size(workers: int | None) -> tuple[int, int]:
    """Actors and GPUs per actor: ``workers`` (default: one per GPU, else one per node)."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    nodes = sum(node["Alive"] for node in ray.nodes())
    return workers or gpus or nodes, 1 if gpus else 0


def _stop(stream: Iterator) -> None:
    """Stop Ray Data's pipeline after Ctrl-C, before Ray is shut down. Ray 2.50 leaves the
    executor of an abandoned iterator running and its statistics thread calling into Ray, which
    then ends the process (exit code 1, before the manifest is written) at ``ray.shutdown()``."""
    from ray.data._internal.execution.streaming_executor import StreamingExecutor
    from ray.data._internal.stats import StatsManager

    stream.close()
    for thread in threading.enumerate():
        if isinstance(thread, StreamingExecutor):
            thread.shutdown(force=False)
            thread.join(timeout=STOP_SECONDS)
    with StatsManager._stats_lock:
        StatsManager._last_iteration_stats.clear()
        StatsManager._last_execution_stats.clear()
    # The iterator's own threads (block prefetching, batch formatting) still fetch blocks; one
    # that reaches Ray after ray.shutdown() ends the process. Let them run dry first.
    deadline = time.monotonic() + STOP_SECONDS
    for thread in threading.enumerate():
        if thread.name == "Prefetcher" or thread.name.startswith("map_tp_"):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _discard_unfinished(writer: Writer, jobs: list[Job], rows: list, before: dict[int, dict]) -> None:
    """After Ctrl-C, remove what actors wrote for inputs whose rows never came back (outputs that
    were not there when the run started, and temporaries), so the files match the manifest."""
    for index, present in before.items():
        if rows[index] is not None:
            continue
        for column, name in writer.present(jobs[index]).items():
            if name and not present[column]:
                (writer.out / name).unlink(missing_ok=True)
        for column in COLUMNS:
            output = writer.out / jobs[index].path(column)
            for temporary in output.parent.glob(f".{glob.escape(output.name)}.*.part"):
                temporary.unlink(missing_ok=True)


def run(jobs: list[Job], out: str | Path, model: str | Path = bundle.DEFAULT_MODEL,
        threshold: float | None = None, overlay: bool = True, existing: str = "error",
        min_quality: float | None = None, labels: bool = False, workers: int | None = None,
        address: str | None = None, definitions: tuple[str, ...] = ("visible",)) -> Summary:
    """``batch.run`` on Ray: the same outputs and manifest; ``workers`` model actors, on the
    cluster at ``address`` (e.g. "auto" or "ray://host:10001") or an embedded local Ray."""
    writer = Writer(Path(out).absolute(), overlay, labels, min_quality, tuple(definitions))
    shipped = None if Path(model) == bundle.DEFAULT_MODEL else str(Path(model).absolute())
    earlier = read_manifest(Path(out)) if existing == "skip" else {}
    rows = [writer.settled(job, existing, earlier) for job in jobs]
    kept = {row["input"] for row in rows if row is not None and row["status"] in DONE}
    items = [{"index": i, "source": str(job.source), "name": str(job.name),
              "read": str(job.source) if sources.is_uri(job.source) else str(Path(job.source).absolute())}
             for i, (job, row) in enumerate(zip(jobs, rows)) if row is None]
    before = {item["index"]: writer.present(jobs[item["index"]]) for item in items}
    try:
        if items:
            with _ray(address), _ctrl_c() as pressed:
                actors, gpus = _pool_size(workers)
                decoded = ray.data.from_items(items).map(_decode, memory=DECODE_MEMORY)
                results = decoded.map_batches(
                    _Segment, fn_constructor_kwargs={"model": shipped, "writer": writer, "threshold": threshold},
                    batch_size=BATCH, batch_format="numpy", concurrency=actors, num_gpus=gpus)
                stream = iter(results.iter_rows())
                for result in stream:
                    rows[result["index"]] = json.loads(result["row"])
                    if pressed.is_set():
                        _stop(stream)
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        _discard_unfinished(writer, jobs, rows, before)
        raise Interrupted(Summary([row for row in rows if row], kept, len(jobs))) from None
    finally:
        done = [row for row in rows if row]
        if done:
            write_manifest(Path(out), done)
    return Summary(done, kept, len(jobs))
