"""The app end to end: scripts/start.py (streamlit run + web/serve.py) on free 127.0.0.1 ports,
driven by Playwright in Debian's Chromium: `make run`'s start-up (addresses printed once both
servers answer), a real upload at 1366 and 1920 px wide windows (tables and labels whole), the
zip streamed from the app's own route, and the server-vs-browser comparison running web/js +
web/model in the browser.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, mask_of, requires_data, val_images

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

WEB = ROOT / "web"
NEEDED = [WEB / "vendor" / "tf.min.js", WEB / "model" / "model.json", WEB / "js" / "segmenter.js"]
missing = [str(p.relative_to(ROOT)) for p in NEEDED if not p.is_file()]
if missing and os.environ.get("CI"):
    pytest.fail(f"the in-browser model is not built: missing {', '.join(missing)}",
                pytrace=False)
pytestmark = pytest.mark.skipif(bool(missing), reason=f"web page not built (missing "
                                f"{', '.join(missing)}): run `make setup` and the TF.js export")
READY = "Ctrl-C stops both."          # scripts/start.py's last line once both servers answer
TIMEOUT_MS = 180_000
expect.set_options(timeout=TIMEOUT_MS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    app, web = f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{web_port}/"
    try:
        deadline = time.monotonic() + 120
        while READY not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        printed = log.read_text()
        answers = {}
        for url in (app + "_stcore/health", web):    # at once: both must answer already
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    answers[url] = response.status
            except OSError as err:
                answers[url] = str(err)
        yield {"app": app, "web": web, "printed": printed, "answers": answers}
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


def test_make_run_prints_the_addresses_when_both_servers_answer(servers):
    """scripts/start.py says it is loading the model first, and prints the two addresses only
    once the app (its model loaded and warmed up) and the page both answer; nothing else prints
    an address before."""
    printed = servers["printed"]
    assert printed.startswith("LungSeg: loading the model…")
    assert list(servers["answers"].values()) == [200, 200], servers["answers"]
    warm = printed.index("LungSeg: default model loaded and warmed up")
    urls = printed.index(f"LungSeg app (server-side inference): {servers['app']}")
    assert warm < urls < printed.index(f"LungSeg web page (in-browser, nothing uploaded): {servers['web']}")
    assert printed[:urls].count(servers["web"].rstrip("/")) == 0      # web/serve.py's own banner


def whole(page) -> None:
    """Every results table spans the page's width, like the upload box, and shows every column
    whole (no sideways scrolling); every metric label shows whole (no "Patient's righ…")."""
    full = page.get_by_test_id("stFileUploader").first.bounding_box()["width"]
    for table in page.get_by_test_id("stDataFrame").all():
        assert table.bounding_box()["width"] >= full - 2
        scroller = table.locator(".dvn-scroller").first
        assert scroller.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "a table scrolls"
    labels = page.get_by_test_id("stMetricLabel").locator(".stMarkdownEllipsis")
    assert labels.count() >= 10
    cut = labels.evaluate_all("els => els.filter((e) => e.scrollWidth > e.clientWidth + 1)"
                              ".map((e) => e.textContent)")
    assert cut == []


@requires_data
def test_upload_download_and_compare(servers, page, xray, expected, tmp_path):
    from dicoms import dataset, encode
    from lungseg import rules
    from lungseg.imageio import encode_png

    page.set_default_timeout(TIMEOUT_MS)
    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(servers["app"])
    link = page.get_by_role("link", name="in-browser page")
    expect(link).to_have_attribute("href", servers["web"])
    expect(page.get_by_test_id("stFileUploader").first).to_contain_text("100MB per file")

    grey = np.asarray(Image.open(xray).convert("L"))
    washed = tmp_path / "washed.png"                     # a flagged X-ray: its warning in the table
    washed.write_bytes(encode_png((204 + grey.astype(int) * 51 // 255).astype(np.uint8)))
    chest = tmp_path / "chest.dcm"                       # areas in cm² beside the PNGs' "—"
    chest.write_bytes(encode(dataset(grey.astype(np.uint16) * 16, PixelSpacing=[0.7, 0.7])))
    bad = tmp_path / "notes.png"
    bad.write_text("not an X-ray\n")
    page.get_by_text("Ground-truth masks").click()       # Dice and IoU: the widest table
    page.locator("input[type=file]").nth(1).set_input_files([str(mask_of(xray))])
    page.locator("input[type=file]").first.set_input_files([str(xray), str(washed), str(chest), str(bad)])
    zip_link = page.get_by_role("link", name="Download all: masks, overlays and figures (zip)")
    expect(zip_link).to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="IoU")).to_have_count(1)
    expect(page.get_by_test_id("stAlert").filter(
        has_text=rules.message("text_file", "notes.png"))).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
    for width in (1366, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(1000)                      # the grid lays out again
        whole(page)

    with page.expect_download() as info:                 # streamed from the app's own route
        zip_link.click()
    assert info.value.suggested_filename == "lungseg-results.zip"
    path = tmp_path / "results.zip"
    info.value.save_as(path)
    address = info.value.url
    assert address.startswith(servers["app"] + "lungseg-results/")
    with pytest.raises(urllib.error.HTTPError) as gone:      # an address no session holds
        urllib.request.urlopen(address.replace("lungseg-results/", "lungseg-results/x"), timeout=10)
    assert gone.value.code == 404
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        mask = np.asarray(Image.open(io.BytesIO(bundle.read(f"{xray.name}.mask.png"))))
        rows = bundle.read("manifest.csv").decode().splitlines()
    assert {f"{n}.{k}.png" for n in (xray.name, "washed.png", "chest.dcm") for k in ("mask", "overlay", "labels")} \
        | {"chest.dcm.seg.dcm", "manifest.csv", "scores.csv"} == set(names)
    assert len(rows) == 5 and rows[4].startswith("notes.png,error")
    assert mask.shape == expected.shape
    assert np.array_equal(mask, expected * 255)
    areas = page.get_by_test_id("stMetric").filter(has_text="Lung area").get_by_test_id("stMetricValue")
    assert f"{expected.mean():.1%}" in areas.all_inner_texts()

    page.get_by_text("Compare with the in-browser model").click()   # the first upload: xray
    agreement = page.get_by_test_id("stMetric").filter(has_text="Agreement (IoU)")
    expect(agreement).to_be_visible()
    iou = float(agreement.get_by_test_id("stMetricValue").inner_text())
    browser = page.get_by_test_id("stMetric").filter(has_text="Browser (TF.js")
    browser_ms = browser.get_by_test_id("stMetricValue").inner_text()
    print(f"server vs browser IoU {iou:.4f}; browser {browser_ms}")
    assert iou >= 0.99
    assert browser_ms.endswith(" ms")

    whole_lung = rules.DEFINITIONS["whole"]["name"]                  # the whole lung, in the browser too
    page.get_by_test_id("stSidebar").get_by_text("Both, one after the other").click()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(3)     # a table per definition, refused
    page.get_by_test_id("stRadio").filter(has_text="Lung definition to compare").get_by_text(
        rules.DEFINITIONS["whole"]["label"]).click()
    expect(page.get_by_text(f"browser (TF.js, wasm), {whole_lung}")).to_be_visible()
    page.wait_for_timeout(2000)                                      # the run that shows it ends
    whole_iou = float(agreement.get_by_test_id("stMetricValue").inner_text())
    print(f"server vs browser IoU, {whole_lung}: {whole_iou:.4f}")
    assert whole_iou >= 0.99
    if os.environ.get("LUNGSEG_SCREENSHOT"):
        page.screenshot(path=os.environ["LUNGSEG_SCREENSHOT"], full_page=True)
