#!/usr/bin/env python3
"""A drop of hundreds of X-rays of mixed sizes on the web page (issue 21), in headless Chromium.

    .venv/bin/python bench/bench_web_drop.py                     # 300 X-rays up to 25 MP, then the zip
    .venv/bin/python bench/bench_web_drop.py --count 30          # a shorter run
    .venv/bin/python bench/bench_web_drop.py --before 5ed2695    # + the page of that revision first

Builds the X-rays from real Val X-rays (COVID-QU-Ex, 256x256) upscaled (bilinear) to mixed sizes,
of every 10: 4 at their own size, 2 at 1000x1000, 2 at 2000x2250, 1 at 3000x3000 and 1 at
5000x5000 (25 MP), as PNG files in a temporary folder; drops them on the page at once (Playwright
set_input_files), waits for every one, then clicks Download all (.zip) and waits for the file.
Prints, per size, the X-rays and the median seconds per X-ray (from one X-ray finishing to the
next: decoding, model, mask, checks and display copies); the drop's total; the main thread's
longest task (Long Tasks API: every task over 50 ms is reported) and its longest pause (a 10 ms
timer) during the drop and during the zip (on a machine busy with other work the operating
system may hold the page's thread back: that lengthens both); peak memory, sampled 4 times a
second: the resident memory (RSS) of all Chromium processes together and of the largest renderer
(the page with its workers); the page's JS heap with its ArrayBuffers at the end (CDP
Runtime.getHeapUsage); the zip's time and size. --before REV first runs the page of git revision
REV (its web/js, index.html, css and sw.js, with today's vendor/ and model/) on the first
--before-count X-rays of the same folder, in the same run, for a before/after comparison.
Targets (issue 21): every X-ray segmented; no main-thread task over 100 ms; memory that does not
grow with the number of X-rays.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export import browser as eb  # noqa: E402

#: Sizes of every 10 X-rays in turn (None: the X-ray's own size, 256x256).
PATTERN = [None, (1000, 1000), None, (2000, 2250), None, (1000, 1000), (3000, 3000), None, (2000, 2250),
           (5000, 5000)]
LONG_TASK_MS = 100
WAIT_S = 3 * 3600
PAGE_FILES = ["web/js", "web/index.html", "web/css", "web/sw.js"]

# The main thread's long tasks, its pauses (with `pauses`: a 10 ms timer, itself a task to run),
# and when each item finished (by its data-id).
WATCH_JS = """(pauses) => {
  const w = window.benchWatch = { longTasks: [], maxGap: 0, last: performance.now(), finished: {} };
  new PerformanceObserver((list) => { for (const e of list.getEntries()) w.longTasks.push(e.duration); })
    .observe({ type: 'longtask' });
  if (pauses) setInterval(() => { const now = performance.now(); w.maxGap = Math.max(w.maxGap, now - w.last); w.last = now; }, 10);
  new MutationObserver((records) => {
    for (const { target: li } of records) {
      if (['done', 'error', 'cancelled'].includes(li.dataset.status) && !(li.dataset.id in w.finished)) w.finished[li.dataset.id] = performance.now();
    }
  }).observe(document.querySelector('#results'), { subtree: true, attributes: true, attributeFilter: ['data-status'] });
}"""
# Read and restart the main thread's figures: {longest task, longest pause} (ms) since the last call.
TAKE_JS = """() => { const w = window.benchWatch, out = { longest: Math.max(0, ...w.longTasks), tasks: w.longTasks.length, pause: w.maxGap };
  w.longTasks = []; w.maxGap = 0; w.last = performance.now(); return out; }"""
UNFINISHED_JS = "document.querySelectorAll('li.result[data-status=pending], li.result[data-status=segmenting]').length"


def build_inputs(folder: Path, count: int, pattern=PATTERN) -> list[Path]:
    """``count`` PNG X-rays in ``folder``, made from distinct real Val X-rays at the sizes of
    ``pattern`` in turn (None: copied as they are)."""
    from PIL import Image

    sources = eb.val_images(count)
    if len(sources) < count:
        raise SystemExit(f"only {len(sources)} Val X-rays found under {eb.DATA}")
    paths = []
    for index, source in enumerate(sources):
        size = pattern[index % len(pattern)]
        if size is None:
            path = folder / f"{index:03d}-{source.stem}.png"
            shutil.copyfile(source, path)
        else:
            path = folder / f"{index:03d}-{source.stem}-{size[0]}x{size[1]}.png"
            Image.open(source).convert("L").resize(size, Image.BILINEAR).save(path, compress_level=1)
        paths.append(path)
    return paths


def megapixels(path: Path) -> float:
    from PIL import Image

    with Image.open(path) as image:
        return image.width * image.height / 1e6


class MemorySampler:
    """Peak RSS of this process's Chromium processes (all together, and the largest renderer),
    sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.psutil, self.interval = psutil, interval
        self.peak_all = self.peak_renderer = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> tuple[int, int]:
        total = renderer = 0
        for process in self.psutil.Process().children(recursive=True):
            try:
                if "chrom" not in process.name():
                    continue
                rss = process.memory_info().rss
                total += rss
                if "--type=renderer" in process.cmdline():
                    renderer = max(renderer, rss)
            except self.psutil.Error:
                continue
        return total, renderer

    def _run(self):
        while not self.stopping.is_set():
            total, renderer = self.sample()
            self.peak_all, self.peak_renderer = max(self.peak_all, total), max(self.peak_renderer, renderer)
            self.stopping.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()


def heap_mb(page) -> float:
    """The page's main-thread JS heap with its ArrayBuffers' backing stores, MB (CDP)."""
    session = page.context.new_cdp_session(page)
    try:
        usage = session.send("Runtime.getHeapUsage")
    finally:
        session.detach()
    return (usage["usedSize"] + usage.get("backingStorageSize", 0)) / 1e6


def open_page(browser, base: str):
    page = browser.new_page()
    page.goto(base + "?backend=wasm&nosw")
    page.wait_for_function("document.body.dataset.ready", timeout=120_000)
    if page.evaluate("document.body.dataset.ready") != "true":
        raise SystemExit(f"the page could not load the model: {page.inner_text('#status')}")
    page.evaluate(WATCH_JS, True)
    return page


def drop(page, paths: list[Path], timeout_s: float = WAIT_S) -> dict:
    """Drop ``paths`` on the page and wait for all: {seconds, per_file (s, in order), statuses,
    dropping (the main thread's figures while the browser hands the files over), main (after)}."""
    before = page.locator("li.result").count()
    page.evaluate(TAKE_JS)
    started = page.evaluate("performance.now()")
    page.set_input_files("#files", [str(p) for p in paths])
    dropping = page.evaluate(TAKE_JS)
    deadline, shown = time.monotonic() + timeout_s, time.monotonic()
    while page.locator("li.result").count() < before + len(paths) or page.evaluate(UNFINISHED_JS):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every X-ray finished in {timeout_s} s")
        if time.monotonic() - shown > 30:
            left = page.evaluate(UNFINISHED_JS)
            print(f"  {len(paths) - left} of {len(paths)} finished", file=sys.stderr, flush=True)
            shown = time.monotonic()
        time.sleep(0.5)
    main = page.evaluate(TAKE_JS)
    items = page.evaluate(f"""[...document.querySelectorAll('li.result')].slice({before})
        .map((li) => [li.dataset.status, window.benchWatch.finished[li.dataset.id]])""")
    times = [started] + [t for _, t in items]
    return {"seconds": (times[-1] - started) / 1000, "per_file": [(b - a) / 1000 for a, b in zip(times, times[1:])],
            "statuses": [s for s, _ in items], "dropping": dropping, "main": main}


def download_zip(page, folder: Path, timeout_s: float = WAIT_S) -> dict:
    """Click Download all (.zip), wait for the file: {seconds, mb, entries, main}, the zip checked."""
    page.evaluate(TAKE_JS)
    started = time.monotonic()
    with page.expect_download(timeout=timeout_s * 1000) as info:
        page.click("#download-all")
    path = folder / "lungseg-results.zip"
    info.value.save_as(path)
    seconds = time.monotonic() - started
    main = page.evaluate(TAKE_JS)
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        entries = len(archive.namelist())
    if bad:
        raise SystemExit(f"the zip is damaged at {bad}")
    size = path.stat().st_size / 1e6
    path.unlink()
    return {"seconds": seconds, "mb": size, "entries": entries, "main": main}


@contextlib.contextmanager
def page_of_revision(revision: str):
    """The page of git revision ``revision`` in a temporary folder (today's vendor/ and model/)."""
    with tempfile.TemporaryDirectory(prefix="lungseg-page-") as folder:
        archive = subprocess.run(["git", "archive", revision, *PAGE_FILES], cwd=ROOT, check=True, capture_output=True)
        tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(folder, filter="data")
        web = Path(folder) / "web"
        for name in ("vendor", "model"):
            (web / name).symlink_to(ROOT / "web" / name)
        yield web


def run(playwright, root: Path, paths: list[Path], folder: Path, label: str) -> None:
    """Serve ``root``, drop ``paths`` on its page in a browser of its own, zip, print the figures."""
    server, base = eb.load_serve().start(root, quiet=True, isolate=True)
    browser = playwright.chromium.launch(executable_path=eb.CHROMIUM, args=eb.CHROMIUM_ARGS)
    try:
        with MemorySampler() as memory:
            page = open_page(browser, base)
            result = drop(page, paths)
            heap = heap_mb(page)
            zipped = download_zip(page, folder) if "done" in result["statuses"] else None
    finally:
        browser.close()
        server.shutdown()
        server.server_close()
    report(label, paths, result, heap, zipped, memory)


def report(label, paths, result, heap, zipped, memory) -> None:
    statuses = result["statuses"]
    failed = ", ".join(f"{statuses.count(s)} {s}" for s in ("error", "cancelled") if s in statuses) or "none failed"
    print(f"\n{label}: {len(paths)} X-rays dropped, {statuses.count('done')} segmented ({failed}) "
          f"in {result['seconds']:.1f} s ({result['seconds'] / len(paths):.2f} s per X-ray)")
    by_size: dict[float, list[float]] = {}
    for path, seconds in zip(paths, result["per_file"]):
        by_size.setdefault(round(megapixels(path), 2), []).append(seconds)
    for mp, times in sorted(by_size.items()):
        print(f"  {mp:6.2f} MP: {len(times):3d} X-rays, median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    main, dropping = result["main"], result["dropping"]
    print(f"  main thread: the drop itself (the file list handed over, the items listed) longest task "
          f"{dropping['longest']:.0f} ms; then while segmenting longest task {main['longest']:.0f} ms "
          f"({main['tasks']} over 50 ms), longest pause {main['pause']:.0f} ms (target: no task over {LONG_TASK_MS} ms)")
    print(f"  memory: peak RSS {memory.peak_all / 1e6:.0f} MB all Chromium processes, "
          f"{memory.peak_renderer / 1e6:.0f} MB the page's renderer; page JS heap + ArrayBuffers at the end {heap:.1f} MB")
    if zipped:
        z = zipped["main"]
        print(f"  zip: {zipped['seconds']:.1f} s, {zipped['mb']:.1f} MB, {zipped['entries']} files; main thread: "
              f"longest task {z['longest']:.0f} ms ({z['tasks']} over 50 ms), longest pause {z['pause']:.0f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="X-rays dropped at once (default 300)")
    parser.add_argument("--before", metavar="REV", help="also run the page of this git revision first")
    parser.add_argument("--before-count", type=int, default=10, help="X-rays for --before (default 10)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="lungseg-drop-") as tmp:
        folder = Path(tmp)
        (folder / "in").mkdir()
        started = time.monotonic()
        paths = build_inputs(folder / "in", max(args.count, args.before_count if args.before else 0))
        total = sum(megapixels(p) for p in paths[:args.count])
        print(f"{args.count} X-rays built from Val X-rays in {time.monotonic() - started:.0f} s: "
              f"{total:.0f} megapixels, {sum(p.stat().st_size for p in paths[:args.count]) / 1e6:.0f} MB of PNG "
              f"(Chromium {eb.CHROMIUM}, {os.cpu_count()} cores, wasm backend)")
        with sync_playwright() as playwright:
            if args.before:
                with page_of_revision(args.before) as old:
                    run(playwright, old, paths[:args.before_count], folder, f"before ({args.before})")
            run(playwright, ROOT / "web", paths[:args.count], folder, "this page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
