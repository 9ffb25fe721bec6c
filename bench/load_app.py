#!/usr/bin/env python3
"""Load check of the Streamlit app: N browser sessions upload X-rays at the same time.

    .venv/bin/python bench/load_app.py --sessions 4 [--per-session 1] [--port 0]

Starts ``streamlit run streamlit_app.py`` on a free 127.0.0.1 port, warms it up (model load),
then opens N pages in Debian's Chromium (Playwright) that each upload different real X-rays
from ../shared at once, wait for the results, download the zip and check every mask against
``lungseg`` Python inference (exact). Prints throughput, latencies and the largest resident
memory (RSS) the server process reached.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
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


async def session(browser, url: str, files: list[Path], tmp: Path, index: int) -> dict:
    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    page.set_default_timeout(600_000)
    try:
        await page.goto(url)
        file_input = page.locator("input[type=file]").first
        await file_input.wait_for(state="attached")
        started = time.perf_counter()
        await file_input.set_input_files([str(f) for f in files])
        button = page.get_by_role("button", name=ZIP_BUTTON)
        await button.wait_for(state="visible")
        # The zip button appears once every upload of this session has a result.
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


async def run_sessions(url: str, groups: list[list[Path]], tmp: Path) -> list[dict]:
    from playwright.async_api import async_playwright
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(session(browser, url, files, tmp, i)
                                          for i, files in enumerate(groups)))
        finally:
            await browser.close()


def check(results: list[dict]) -> int:
    """Every zip holds one mask per X-ray, equal to lungseg's own prediction."""
    sys.path.insert(0, str(ROOT))
    from app.analysis import unique_stems
    from lungseg import Segmenter
    seg = Segmenter.load()
    checked = 0
    for result in results:
        with zipfile.ZipFile(result["zip"]) as bundle:
            for path, stem in zip(result["files"], unique_stems([f.name for f in result["files"]])):
                mask = np.asarray(Image.open(io.BytesIO(bundle.read(f"masks/{stem}.png"))))
                expected = seg.predict(path) * 255
                if mask.shape != expected.shape or not np.array_equal(mask, expected):
                    raise AssertionError(f"wrong mask for {path.name} in {result['zip'].name}")
                checked += 1
    return checked


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--per-session", type=int, default=1, help="X-rays each session uploads")
    parser.add_argument("--port", type=int, default=0, help="app port (0: a free one)")
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
    groups = [rest[i * args.per_session:(i + 1) * args.per_session] for i in range(args.sessions)]

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    monitor = RssMonitor(server.pid)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "_stcore/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the app did not start")
                time.sleep(0.5)
        monitor.start()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            asyncio.run(run_sessions(url, [[warmup]], Path(tmp)))
            warm_s = time.perf_counter() - t0
            idle_rss = rss_bytes(server.pid)
            t0 = time.perf_counter()
            results = asyncio.run(run_sessions(url, groups, Path(tmp)))
            wall = time.perf_counter() - t0
            checked = check(results)
        monitor.stopped.set()
        monitor.join()
        latencies = [r["seconds"] for r in results]
        total = args.sessions * args.per_session
        print(f"sessions: {args.sessions} at once, {args.per_session} X-ray(s) each "
              f"({total} X-rays, 256x256 PNG, distinct files); masks checked: {checked}/{total} "
              f"equal to lungseg")
        print(f"warm-up (first session, model load): {warm_s:.1f} s")
        window = max(r["finished"] for r in results) - min(r["started"] for r in results)
        print(f"uploads in flight together: first upload to last result {window:.1f} s; "
              f"throughput {total / window:.2f} X-rays/s")
        print(f"wall time incl. opening {args.sessions} browser pages and downloading the zips: "
              f"{wall:.1f} s ({total / wall:.2f} X-rays/s)")
        print(f"upload-to-results latency: median {statistics.median(latencies):.2f} s, "
              f"max {max(latencies):.2f} s")
        print(f"server RSS: after warm-up {idle_rss / 2**20:.0f} MiB, "
              f"peak {monitor.peak / 2**20:.0f} MiB")
        return 0
    finally:
        monitor.stopped.set()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
