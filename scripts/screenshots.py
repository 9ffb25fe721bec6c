#!/usr/bin/env python3
"""The docs' screenshots from a real X-ray: docs/app.png (the Streamlit app) and docs/web.png (the
in-browser page), each showing one COVID-QU-Ex Val X-ray segmented. Rerun it for each release.

    .venv/bin/python scripts/screenshots.py [--xray PATH] [--out docs] [--only app|web]

It starts both servers the way `make run` does (scripts/start.py, on free ports), drives Debian's
Chromium headless with Playwright (as tests/conftest.py does), uploads the X-ray to each, waits
for its result, and saves small palette PNGs.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from export.browser import CHROMIUM, CHROMIUM_ARGS, DATA  # noqa: E402
from lungseg.rules import DEFINITIONS  # noqa: E402

XRAY = DATA / "Val" / "COVID-19" / "images" / "covid_1902.png"
# The app scrolls inside its own frame, so its window is made tall enough to show the upload, the
# results table and the X-ray's images at a common laptop width; the page is taken whole.
APP_VIEW = {"width": 1366, "height": 1400}
WEB_VIEW = {"width": 1200, "height": 1000}
COLOURS = 96           # palette size: keeps each PNG near 100 kB
TIMEOUT_MS = 180_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"scripts/start.py exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer in {timeout:.0f} s")


def start_servers() -> tuple[subprocess.Popen, str, str]:
    """scripts/start.py on free ports, the page's comparison on wasm (headless: no GPU)."""
    port, web_port = free_port(), free_port()
    env = {**os.environ, "LUNGSEG_BROWSER_BACKEND": "wasm"}
    env.pop("LUNGSEG_WEB_URL", None)
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "start.py"), "--port", str(port),
                                "--web-port", str(web_port)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app, web = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{web_port}/"
    try:
        wait_for(app + "_stcore/health", process)
        wait_for(web, process)
    except BaseException:
        stop(process)
        raise
    return process, app, web


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a user stops `make run`."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def save(png: bytes, path: Path) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size / 1e3:.0f} kB")


def app_screenshot(browser, url: str, xray: Path, path: Path) -> None:
    """The app with the X-ray segmented, both lung definitions chosen: the choice with what each
    means, upload box, results tables, the X-ray's overlay and mask."""
    page = browser.new_page(viewport=APP_VIEW)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stRadio").get_by_text("Both").click()
    sidebar.get_by_text(DEFINITIONS["whole"]["means"]).wait_for()
    page.locator("input[type=file]").first.set_input_files(str(xray))
    page.get_by_test_id("stMetric").filter(has_text="Lung area").first.wait_for()
    page.get_by_test_id("stImage").first.wait_for()
    page.wait_for_timeout(1000)               # let images and fonts settle
    save(page.screenshot(), path)
    page.close()


def web_screenshot(browser, url: str, xray: Path, path: Path) -> None:
    """The page (wasm) with the X-ray segmented, both lung definitions chosen, once it is saved
    for offline use."""
    page = browser.new_page(viewport=WEB_VIEW)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url + "?backend=wasm")
    page.wait_for_function("document.body.dataset.ready === 'true'")
    page.wait_for_function("document.querySelector('#offline').textContent.includes('Saved')")
    page.check("#definition input[value=both]")
    page.set_input_files("#files", [str(xray)])
    page.wait_for_selector("li.result[data-status=done]")
    page.wait_for_timeout(500)
    save(page.screenshot(full_page=True), path)
    page.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--xray", type=Path, default=XRAY, help=f"the X-ray to show (default {XRAY})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of app.png and web.png")
    parser.add_argument("--only", choices=("app", "web"), help="make one of the two")
    args = parser.parse_args(argv)
    if not args.xray.is_file():
        parser.error(f"{args.xray}: no such X-ray (the real data is at {DATA})")
    if not Path(CHROMIUM).exists():
        parser.error(f"Debian's chromium is needed at {CHROMIUM} (make browser)")

    from playwright.sync_api import sync_playwright

    process, app, web = start_servers()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            if args.only in (None, "app"):
                app_screenshot(browser, app, args.xray, args.out / "app.png")
            if args.only in (None, "web"):
                web_screenshot(browser, web, args.xray, args.out / "web.png")
            browser.close()
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
