#!/usr/bin/env python3
"""Load check of the Streamlit app: N browser sessions upload X-rays at the same time.

    .venv/bin/python bench/load_app.py --sessions 4 [--per-session 1] [--port 0]
    .venv/bin/python bench/load_app.py --large [--sessions 3 --per-session 2] [--root CHECKOUT]
    .venv/bin/python bench/load_app.py --large --sessions 1 --per-session 6 --steps 2   # 3, then 3 more

Starts the app as ``make run`` does (``scripts/start.py --no-web``) on a free 127.0.0.1 port,
times the first visit (one page uploads one X-ray right after the server answers), then opens
N pages in Debian's Chromium (Playwright) that each upload different real X-rays from
../shared at once, wait for the results, download the zip and check every mask against
``lungseg`` Python inference (exact). Prints throughput, latencies and the server's resident
memory (RSS): its peak and what it keeps after the sessions close, with the load average (other
work on the machine slows the sessions down). ``--large`` uploads 20-25 megapixel X-rays made from
real ones (upscaled); ``--steps`` makes each session add its X-rays in that many uploads, each
once the results of the one before are shown; ``--root`` runs another checkout's app (e.g. an
older commit, to compare).
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "covidqu-ex"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ZIP_BUTTON = "Download all: masks, overlays and figures (zip)"
LARGE_SIZES = [(4500, 5500), (4000, 5000), (5000, 4800), (4300, 5700), (4800, 5200), (4200, 5400)]


def large_xrays(images: list[Path], folder: Path) -> list[Path]:
    """Each X-ray upscaled (bicubic) to a 20-25 megapixel PNG in ``folder``, sizes in turn, with
    a little noise (as a detector has) so the files are as large as real ones (about 20 MB)."""
    out = []
    for index, path in enumerate(images):
        size = LARGE_SIZES[index % len(LARGE_SIZES)]
        grey = np.asarray(Image.open(path).convert("L").resize(size, Image.Resampling.BICUBIC))
        noise = np.random.default_rng(index).normal(0, 3, grey.shape)
        target = folder / f"{path.stem}_{size[0]}x{size[1]}.png"
        Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8)).save(target, compress_level=1)
        out.append(target)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (Linux /proc)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class RssMonitor(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak, self.stopped = pid, every, 0, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(self.every)


async def session(browser, url: str, files: list[Path], tmp: Path, index: int, steps: int = 1) -> dict:
    """One page adds ``files`` in ``steps`` uploads, each once the one before has its results,
    then downloads the zip; the seconds from the first upload to the last results."""
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(600_000)
    try:
        await page.goto(url)
        file_input = page.locator("input[type=file]").first
        await file_input.wait_for(state="attached")
        started = time.perf_counter()
        size = -(-len(files) // steps)
        for first in range(0, len(files), size):
            await file_input.set_input_files([str(f) for f in files[first:first + size]])
            shown = min(len(files), first + size)       # the uploader adds to what it holds
            await page.get_by_text(re.compile(rf"^{shown} of {shown} file\(s\) segmented")).wait_for()
        # The zip's link (a button in apps before the streamed zip) appears once every upload of
        # this session has a result.
        button = page.get_by_role("link", name=ZIP_BUTTON).or_(page.get_by_role("button", name=ZIP_BUTTON))
        await button.wait_for(state="visible")
        finished = time.perf_counter()
        async with page.expect_download() as info:
            await button.click()
        download = await info.value
        path = tmp / f"session-{index}.zip"
        await download.save_as(path)
        return {"started": started, "finished": finished, "seconds": finished - started,
                "zip": path, "files": files}
    finally:
        await context.close()


async def run_sessions(url: str, groups: list[list[Path]], tmp: Path, steps: int = 1) -> list[dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(session(browser, url, files, tmp, i, steps)
                                          for i, files in enumerate(groups)))
        finally:
            await browser.close()


def zipped_masks(bundle: zipfile.ZipFile) -> dict[str, str]:
    """Upload name -> its mask's file in an app zip: from manifest.csv (the layout of a
    ``lungseg predict`` output folder), or masks/STEM.png (the apps before it, for --root)."""
    if "manifest.csv" in bundle.namelist():
        rows = csv.DictReader(io.StringIO(bundle.read("manifest.csv").decode()))
        return {row["input"]: row["mask"] for row in rows if row.get("mask")}
    return {Path(name).stem: name for name in bundle.namelist() if name.startswith("masks/")}


def check(results: list[dict]) -> int:
    """Every zip holds one mask per X-ray, equal to lungseg's own prediction."""
    from lungseg import Segmenter
    seg = Segmenter.load()
    checked = 0
    for result in results:
        with zipfile.ZipFile(result["zip"]) as bundle:
            masks = zipped_masks(bundle)
            for path in result["files"]:
                entry = masks.get(path.name) or masks.get(path.stem)
                mask = np.asarray(Image.open(io.BytesIO(bundle.read(entry)))) if entry else None
                expected = seg.predict(path) * 255
                if mask is None or mask.shape != expected.shape or not np.array_equal(mask, expected):
                    raise AssertionError(f"wrong or missing mask for {path.name} in {result['zip'].name}")
                checked += 1
    return checked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--per-session", type=int, default=1, help="X-rays each session uploads")
    parser.add_argument("--steps", type=int, default=1,
                        help="uploads each session adds its X-rays in, one after the other's results")
    parser.add_argument("--port", type=int, default=0, help="app port (0: a free one)")
    parser.add_argument("--large", action="store_true",
                        help="upload 20-25 megapixel X-rays (real ones upscaled) instead of 256x256")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose app to start (default: this one)")
    args = parser.parse_args(argv)

    images = sorted(DATA.glob("Val/*/images/*.png"))
    need = args.sessions * args.per_session + 1
    if len(images) < need:
        print(f"need {need} X-rays under {DATA}; found {len(images)}", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    step = max(1, len(images) // need)            # spread over the groups of the Val set
    picked = images[::step][:need]
    warmup, rest = picked[0], picked[1:]
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory() as tmp:
        if args.large:
            rest = large_xrays(rest, Path(tmp))
        groups = [rest[i * args.per_session:(i + 1) * args.per_session]
                  for i in range(args.sessions)]
        started = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, str(args.root / "scripts" / "start.py"), "--no-web", "--port", str(port)],
            cwd=args.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            return measure(args, server, started, url, warmup, groups, Path(tmp))
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)       # start.py stops the app it started
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)


def measure(args, server, started: float, url: str, warmup: Path, groups: list[list[Path]],
            tmp: Path) -> int:
    monitor = RssMonitor(server.pid)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the app did not start")
                time.sleep(0.2)
        ready_s = time.perf_counter() - started
        monitor.start()
        t0 = time.perf_counter()
        first = asyncio.run(run_sessions(url, [[warmup]], tmp))[0]
        first_s = time.perf_counter() - t0
        idle_rss = rss_bytes(server.pid)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        results = asyncio.run(run_sessions(url, groups, tmp, args.steps))
        wall = time.perf_counter() - t0
        load_after = os.getloadavg()[0]
        time.sleep(5)                                  # sessions closed: what does the server keep?
        after_rss = rss_bytes(server.pid)
        checked = check(results)
        monitor.stopped.set()
        monitor.join()
        latencies = [r["seconds"] for r in results]
        total = args.sessions * args.per_session
        sizes = sorted({Image.open(f).size for r in results for f in r["files"]})
        mb = max(f.stat().st_size for r in results for f in r["files"]) / 2**20
        print(f"app: {args.root}")
        print(f"sessions: {args.sessions} at once, {args.per_session} X-ray(s) each "
              f"{f'in {args.steps} uploads ' if args.steps > 1 else ''}"
              f"({total} X-rays, PNG, distinct files, sizes "
              f"{', '.join(f'{w}x{h}' for w, h in sizes)}, largest file {mb:.2f} MB); "
              f"masks checked: {checked}/{total} equal to lungseg")
        print(f"server start to first answer: {ready_s:.1f} s; first visit (page load, upload of "
              f"one 256x256 X-ray, result): {first_s:.1f} s, of which upload to result "
              f"{first['seconds']:.1f} s")
        window = max(r["finished"] for r in results) - min(r["started"] for r in results)
        print(f"uploads in flight together: first upload to last result {window:.1f} s; "
              f"throughput {total / window:.2f} X-rays/s")
        print(f"wall time incl. opening {args.sessions} browser pages and downloading the zips: "
              f"{wall:.1f} s ({total / wall:.2f} X-rays/s)")
        print(f"upload-to-results latency: median {statistics.median(latencies):.2f} s, "
              f"max {max(latencies):.2f} s")
        print(f"server RSS: after the first visit {idle_rss / 2**20:.0f} MiB, "
              f"peak {monitor.peak / 2**20:.0f} MiB, "
              f"5 s after the sessions closed {after_rss / 2**20:.0f} MiB")
        print(f"load average (1 min) on this machine: {load_before:.2f} before the sessions, "
              f"{load_after:.2f} after ({os.cpu_count()} cores)")
        return 0
    finally:
        monitor.stopped.set()


if __name__ == "__main__":
    sys.exit(main())
