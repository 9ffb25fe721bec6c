"""The page as `make site` builds it, served the way a static host serves it: Python's plain
``http.server`` (no COOP/COEP or any other special header), in Debian's Chromium.

The built folder must hold everything the page loads; the page must make itself cross-origin
isolated through its service worker (so threaded WebAssembly runs), segment real X-rays with
Python's masks, work offline after the first visit, and pick the thread count from the page's
cores (Chromium's hardware-concurrency emulation stands in for an 8-core laptop).
"""
import functools
import http.server
import json
import subprocess
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, requires_data, val_images
from test_web import META, TIMEOUT, _downloaded_masks, _require_vendor, python_seg  # noqa: F401

READY = "document.body.dataset.ready === 'true'"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`make site`'s folder, built into a temporary folder."""
    _require_vendor()
    out = tmp_path_factory.mktemp("site") / "dist"
    done = subprocess.run(["node", str(ROOT / "web" / "scripts" / "site.mjs"), "--out", str(out)],
                          capture_output=True, text=True, check=True)
    assert "copy it to any static host" in done.stdout
    return out


@pytest.fixture(scope="module")
def host(built):
    """A plain static server of the built folder: the standard library's, default headers only."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(built)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _open(browser, url, cores=None):
    """A new context and page at ``url``, after the service worker's one reload; ``cores``
    emulates navigator.hardwareConcurrency."""
    context = browser.new_context()
    page = context.new_page()
    if cores:
        page.context.new_cdp_session(page).send("Emulation.setHardwareConcurrencyOverride",
                                                {"hardwareConcurrency": cores})
    page.goto(url)
    page.wait_for_function("document.querySelector('#offline').textContent.includes('Saved')", timeout=TIMEOUT)
    page.wait_for_function(READY, timeout=TIMEOUT)
    return context, page


def test_build_holds_what_the_page_loads(built):
    build = json.loads((built / "build.json").read_text())
    assert (build["model"], build["version"]) == (META["name"], META["version"])
    on_disk = [p for p in built.rglob("*") if p.is_file() and p.name != "build.json"]
    assert build["files"] == len(on_disk) and build["bytes"] == sum(p.stat().st_size for p in on_disk)
    assert build["cache"].startswith(f'{META["name"]}-{META["version"]}-')
    assert f'const CACHE = "{build["cache"]}";' in (built / "sw.js").read_text()
    for name in json.loads((built / "vendor" / "files.json").read_text())["files"]:
        assert (built / "vendor" / name).is_file(), name
    assert not (built / "component.html").exists() and not (built / "node_modules").exists()


@requires_data
def test_plain_host_isolated_by_its_service_worker_and_offline(browser, host, python_seg, tmp_path):
    context, page = _open(browser, host + "?backend=wasm")
    try:
        assert page.evaluate("window.crossOriginIsolated")
        headers = page.evaluate("fetch('index.html').then((r) => r.headers.get('cross-origin-embedder-policy'))")
        assert headers == "require-corp"     # added by sw.js: the host sent none
        threads = min(8, max(2, page.evaluate("navigator.hardwareConcurrency") // 2))   # js/engine.js wasmThreads
        assert page.evaluate("window.lungsegApp.state.segmenter.threads") == threads, page.inner_text("#status")
        assert f"running on the CPU (WebAssembly, {threads} threads)" in page.inner_text("#status")
        paths = val_images(2)
        for path, mask in _downloaded_masks(page, paths, tmp_path):
            expected = python_seg.predict(np.asarray(Image.open(path).convert("RGB")))
            assert (mask == expected.astype(bool)).mean() > 0.999, path.name

        context.set_offline(True)
        page.reload()
        page.wait_for_function("document.body.dataset.ready", timeout=TIMEOUT)
        assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#status")
        assert page.evaluate("window.crossOriginIsolated")
    finally:
        context.close()


def test_eight_cores_get_four_threads(browser, host):
    context, page = _open(browser, host + "?backend=wasm", cores=8)
    try:
        assert page.evaluate("navigator.hardwareConcurrency") == 8
        assert page.evaluate("window.lungsegApp.state.segmenter.threads") == 4, page.inner_text("#status")
        assert "4 threads" in page.inner_text("#status")
    finally:
        context.close()
