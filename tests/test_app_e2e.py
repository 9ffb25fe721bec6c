"""The app end to end: scripts/start.py (streamlit run + web/serve.py) on free 127.0.0.1 ports,
driven by Playwright in Debian's Chromium: a real upload, the zip download, and the
server-vs-browser comparison running web/js + web/model inside the browser.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, requires_data, val_images

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

WEB = ROOT / "web"
NEEDED = [WEB / "vendor" / "tf.min.js", WEB / "model" / "model.json", WEB / "js" / "segmenter.js"]
missing = [str(p.relative_to(ROOT)) for p in NEEDED if not p.is_file()]
if missing and os.environ.get("CI"):
    pytest.fail(f"the in-browser model is not built: missing {', '.join(missing)}",
                pytrace=False)
pytestmark = [
    requires_data,
    pytest.mark.skipif(bool(missing), reason=f"web page not built (missing {', '.join(missing)}): "
                       "run `make setup` and the TF.js export"),
]
TIMEOUT_MS = 180_000
expect.set_options(timeout=TIMEOUT_MS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "scripts/start.py exited early"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """The app and the web page, started the way `make run` starts them; stopped with Ctrl-C."""
    port, web_port = free_port(), free_port()
    env = {**os.environ, "LUNGSEG_BROWSER_BACKEND": "wasm", "PYTHONUNBUFFERED": "1"}
    env.pop("LUNGSEG_WEB_URL", None)
    log = tmp_path_factory.mktemp("servers") / "start.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "start.py"), "--port", str(port),
         "--web-port", str(web_port)], cwd=ROOT, env=env, stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/_stcore/health", process)
        answered = log.read_text()                   # what start.py had printed when the app answered
        wait_for(f"http://127.0.0.1:{web_port}/", process)
        yield {"app": f"http://127.0.0.1:{port}/", "web": f"http://127.0.0.1:{web_port}/",
               "log_at_answer": answered}
    finally:
        process.send_signal(signal.SIGINT)           # Ctrl-C stops both servers
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        output = log.read_text()
        assert code == 0, output
        for p in (port, web_port):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", p)) != 0, f"port {p} still open:\n{output}"


@pytest.fixture(scope="module")
def xray():
    return val_images(1, "Normal")[0]


@pytest.fixture(scope="module")
def expected(xray):
    from lungseg import Segmenter
    return Segmenter.load().predict(xray)


def test_model_is_warm_before_the_app_answers(servers):
    """scripts/start.py runs app.serve, which loads the model before Streamlit serves."""
    assert "LungSeg: default model loaded and warmed up" in servers["log_at_answer"]


def test_upload_download_and_compare(servers, page, xray, expected, tmp_path):
    from lungseg import rules

    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(servers["app"])
    link = page.get_by_role("link", name="in-browser page")
    expect(link).to_have_attribute("href", servers["web"])

    bad = tmp_path / "notes.png"
    bad.write_text("not an X-ray\n")
    page.locator("input[type=file]").first.set_input_files([str(xray), str(bad)])
    zip_button = page.get_by_role("button", name="Download all: masks, overlays and figures (zip)")
    expect(zip_button).to_be_visible()
    metric = page.get_by_test_id("stMetric").filter(has_text="Lung area")
    expect(metric.get_by_test_id("stMetricValue")).to_have_text(f"{expected.mean():.1%}")
    expect(page.get_by_test_id("stAlert").filter(
        has_text=rules.message("text_file", "notes.png"))).to_be_visible()
    # At 1400 px the results tables (segmented, not segmented) span the page's width, like the
    # upload box, and show every column whole, without scrolling sideways.
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
    full = page.get_by_test_id("stFileUploader").first.bounding_box()["width"]
    for table in page.get_by_test_id("stDataFrame").all():
        assert table.bounding_box()["width"] >= full - 2
        scroller = table.locator(".dvn-scroller").first
        assert scroller.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "a table scrolls"

    with page.expect_download() as info:
        zip_button.click()
    path = tmp_path / "results.zip"
    info.value.save_as(path)
    with zipfile.ZipFile(path) as bundle:
        masks = [n for n in bundle.namelist() if n.startswith("masks/")]
        assert masks == [f"masks/{xray.stem}.png"]
        mask = np.asarray(Image.open(io.BytesIO(bundle.read(masks[0]))))
        rows = bundle.read("results.csv").decode().splitlines()
    assert len(rows) == 3 and rows[2].startswith("notes.png,error")
    assert mask.shape == expected.shape
    assert np.array_equal(mask, expected * 255)

    page.get_by_text("Compare with the in-browser model").click()
    agreement = page.get_by_test_id("stMetric").filter(has_text="Agreement (IoU)")
    expect(agreement).to_be_visible()
    iou = float(agreement.get_by_test_id("stMetricValue").inner_text())
    browser = page.get_by_test_id("stMetric").filter(has_text="Browser (TF.js")
    browser_ms = browser.get_by_test_id("stMetricValue").inner_text()
    print(f"server vs browser IoU {iou:.4f}; browser {browser_ms}")
    assert iou >= 0.99
    assert browser_ms.endswith(" ms")
    if os.environ.get("LUNGSEG_SCREENSHOT"):
        page.screenshot(path=os.environ["LUNGSEG_SCREENSHOT"], full_page=True)
