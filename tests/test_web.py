"""The in-browser page (web/) in Debian's Chromium on 127.0.0.1, wasm backend.

One server and one page are shared by the tests of this module (module-scoped fixtures), so
the model loads once. The page must: segment real X-rays (PNG, JPEG, TIFF, BMP, WebP) in a
worker, the page staying responsive, and let the user download masks at the original size that
match Python inference of the same model; report bad files per file, in Python's words (the
messages of lungseg/rules.json), while the others finish; let the user cancel a batch; request
nothing outside its own origin; not leak tensors; keep developer details out of the user's sight.
"""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, ROOT, requires_data, val_images

sys.path.insert(0, str(ROOT))
from export import browser as eb  # noqa: E402

WEB = ROOT / "web"
META = json.loads((WEB / "model" / "metadata.json").read_text())
TIMEOUT = 120_000


def _require_vendor():
    if not eb.vendor_ready():
        if os.environ.get("CI"):
            pytest.fail("web/vendor missing: cd web && npm ci && node scripts/vendor.mjs")
        pytest.skip("web/vendor missing (cd web && npm ci && node scripts/vendor.mjs)")


@pytest.fixture(scope="module")
def site():
    _require_vendor()
    with eb.serve_web() as base:
        yield base


@pytest.fixture(scope="module")
def app(browser, site):
    """The page, loaded once (wasm), with every request and page error recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests, errors = [], []
    context.on("request", lambda r: requests.append(r.url))
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site + "?backend=wasm")
    page.wait_for_function("document.body.dataset.ready", timeout=TIMEOUT)
    assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#status")
    page.requests, page.errors, page.base = requests, errors, site
    yield page
    context.close()


@pytest.fixture(scope="module")
def python_seg():
    from lungseg import Segmenter

    return Segmenter.load(eb.source_model(META))


def _wait_all(page, count):
    """Wait until the page lists ``count`` files and none is waiting or being segmented."""
    page.wait_for_function(
        f"document.querySelectorAll('li.result').length >= {count} && "
        "!document.querySelector('li.result[data-status=pending], li.result[data-status=segmenting]')",
        timeout=TIMEOUT)


def _downloaded_masks(app, paths, tmp_path):
    """Open files on the page, then yield (path, mask) from each item's "Download mask PNG"."""
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(p) for p in paths])
    _wait_all(app, before + len(paths))
    for index, path in enumerate(paths):
        item = app.locator("li.result").nth(before + index)
        assert item.get_attribute("data-status") == "done", item.inner_text()
        with app.expect_download() as info:
            item.locator("button.download").click()
        info.value.save_as(tmp_path / f"m{index}.png")
        yield path, np.asarray(Image.open(tmp_path / f"m{index}.png")) > 0


def _png_bytes(array, **kw):
    buffer = io.BytesIO()
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def test_page_shows_model_and_backend_from_metadata(app):
    status = app.inner_text("#status")
    assert META["name"] in status and META["version"] in status
    assert "running on the CPU (WebAssembly" in status
    assert app.evaluate("window.lungsegApp.state.segmenter.backend") == "wasm"
    assert app.input_value("#threshold") == str(META["threshold"]) or \
        float(app.input_value("#threshold")) == pytest.approx(META["threshold"])
    assert "offline" in app.inner_text("#offline").lower()
    assert not app.errors


@requires_data
def test_batch_with_bad_files_and_download_matches_python(app, python_seg, tmp_path):
    good = val_images(2, "COVID-19") + val_images(1, "Normal")
    truncated = good[0].read_bytes()
    files = [{"name": p.name, "mimeType": "image/png", "buffer": p.read_bytes()} for p in good] + [
        {"name": "notes.png", "mimeType": "image/png", "buffer": b"this is not an image\n" * 10},
        {"name": "truncated.png", "mimeType": "image/png", "buffer": truncated[: len(truncated) // 2]},
        {"name": "empty.png", "mimeType": "image/png", "buffer": b""},
    ]
    before = app.locator("li.result").count()
    app.set_input_files("#files", files)
    _wait_all(app, before + len(files))
    items = app.locator("li.result").all()[before:]
    status = {i.locator(".name").inner_text(): i.get_attribute("data-status") for i in items}
    assert status == {good[0].name: "done", good[1].name: "done", good[2].name: "done",
                      "notes.png": "error", "truncated.png": "error", "empty.png": "error"}
    messages = {i.locator(".name").inner_text(): i.locator(".error").inner_text() for i in items[3:]}
    assert "not an image" in messages["notes.png"]
    assert "truncated" in messages["truncated.png"]
    assert "empty" in messages["empty.png"]
    # Download one mask: a PNG at the original size matching Python inference of the same model.
    with app.expect_download() as info:
        items[0].locator("button.download").click()
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mask = np.asarray(Image.open(path))
    original = Image.open(good[0])
    assert mask.shape == (original.height, original.width)
    assert set(np.unique(mask)) <= {0, 255}
    assert eb.iou(mask > 0, python_seg.predict(good[0])) >= 0.99
    assert info.value.suggested_filename == f"{good[0].name}.mask.png"
    # Everything as a zip: mask, overlay and side labels PNGs per good file, and manifest.csv.
    with app.expect_download() as info:
        app.click("#download-all")
    assert info.value.suggested_filename == "lungseg-results.zip"
    info.value.save_as(tmp_path / "all.zip")
    archive = zipfile.ZipFile(tmp_path / "all.zip")
    assert archive.testzip() is None
    names = archive.namelist()
    assert {f"{g.name}.{kind}.png" for g in good for kind in ("mask", "overlay", "labels")} <= set(names)
    assert "manifest.csv" in names
    for name in names:
        assert name == "manifest.csv" or archive.read(name)[:8] == b"\x89PNG\r\n\x1a\n"
    assert not app.errors


@requires_data
def test_16bit_png_and_odd_size_match_python(app, python_seg, tmp_path):
    """A 16-bit grey PNG is stretched min..max like lungseg.imageio; any size works."""
    grey = np.asarray(Image.open(val_images(1, "Non-COVID")[0]).convert("L"), np.float64)
    wide = (grey * 150 + 1000).astype(np.uint16)          # 1000..39250, as a 16-bit scan might be
    sixteen = tmp_path / "scan16.png"
    Image.fromarray(wide).save(sixteen)                     # PIL writes 16-bit grey (I;16)
    odd = tmp_path / "odd.png"
    Image.fromarray(grey.astype(np.uint8)).resize((283, 219), Image.BILINEAR).save(odd)
    for path, mask in _downloaded_masks(app, [sixteen, odd], tmp_path):
        expected = python_seg.predict(path)
        assert mask.shape == expected.shape
        assert eb.iou(mask, expected) >= 0.99, path.name


def _python_message(path):
    """What lungseg.read_image says about a file (None if it reads it)."""
    from lungseg import ImageError, read_image

    try:
        read_image(path)
    except ImageError as err:
        return str(err)
    return None


def _bad_files(folder):
    """Bad files of every kind the page and Python both refuse, written to ``folder``."""
    rng = np.random.default_rng(5)
    noise = _png_bytes(rng.integers(0, 256, (128, 128), np.uint8))
    files = {
        "empty.png": b"",
        "notes.png": b"this is not an image\n" * 10,
        "blob.png": bytes(range(256)) * 4,
        "huge.png": _png_bytes(Image.new("1", (6000, 6000))),   # 36 MP > 25 MP, a few kB
        "tiny.png": _png_bytes(Image.new("L", (4, 4))),
        "truncated.png": noise[: len(noise) // 2],
        "cut-utf8.txt": b"a" * 511 + "\u00e9".encode(),          # not text for Python: the cut char
        "control.png": b"abc\x00def" * 20,
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_bad_files_get_pythons_messages(app, tmp_path):
    """Each bad file's message on the page is lungseg.read_image's (rules.json), word for word;
    for a corrupt file, up to the detail in parentheses."""
    paths = _bad_files(tmp_path)
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(p) for p in paths])
    _wait_all(app, before + len(paths))
    items = app.locator("li.result").all()[before:]
    for path, item in zip(paths, items):
        expected = _python_message(path)
        assert expected, path.name
        assert item.get_attribute("data-status") == "error", path.name
        got = item.locator(".error").inner_text()
        if "corrupt" in expected:
            assert got.split("(")[0] == expected.split("(")[0], (got, expected)
        else:
            assert got == expected
    assert "36.0 MP" in items[3].locator(".error").inner_text()


def test_failed_and_waiting_items_are_compact(app, tmp_path):
    """A failed file is one line (name and reason): no image boxes, no download button."""
    (tmp_path / "broken.png").write_bytes(b"not an image")
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(tmp_path / "broken.png")])
    _wait_all(app, before + 1)
    item = app.locator("li.result").nth(before)
    assert item.get_attribute("data-status") == "error"
    assert not item.locator("img").first.is_visible()
    assert not item.locator("img").nth(1).is_visible()
    assert not item.locator("button.download").is_visible()
    assert item.bounding_box()["height"] < 60
    assert item.inner_text().strip() == _python_message(tmp_path / "broken.png")


WATCH_JS = """() => {   // the main thread's pauses while a batch runs, from a 10 ms timer
  const w = window.watch = { ticks: 0, maxGap: 0, stalled: 0, last: performance.now(), seen: new Set(), waitingHeight: 0 };
  w.timer = setInterval(() => {
    const now = performance.now(), gap = now - w.last;
    w.maxGap = Math.max(w.maxGap, gap); w.last = now; w.ticks++;
    if (gap > 100) w.stalled += gap;
    const p = document.querySelector('#progress-text');
    if (p && p.offsetParent) w.seen.add(p.textContent.replace(/:.*/, ''));
    if (document.querySelector('li.result[data-status=segmenting] .info')?.textContent === 'segmenting…') w.seen.add('marked');
    for (const li of document.querySelectorAll('li.result[data-status=pending]')) {
      w.waitingHeight = Math.max(w.waitingHeight, li.getBoundingClientRect().height);
    }
  }, 10);
}"""


@requires_data
def test_model_runs_in_a_worker_and_the_page_stays_responsive(app):
    """While six X-rays are segmented, the main thread never stalls (the model runs in a
    worker); the page shows "Segmenting k of 6" and marks the file being segmented."""
    assert app.evaluate("window.lungsegApp.inWorker()") is True
    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    images = [str(p) for p in val_images(6, "Normal")]
    before = app.locator("li.result").count()
    app.evaluate(WATCH_JS)
    started = time.monotonic()
    app.set_input_files("#files", images)
    _wait_all(app, before + len(images))
    elapsed = time.monotonic() - started
    watch = app.evaluate("() => { clearInterval(window.watch.timer); return {...window.watch, seen: [...window.watch.seen]}; }")
    model_ms = app.evaluate(f"window.lungsegApp.state.results.slice({before}).map((r) => r.ms)")
    # On the main thread, each inference (about 450 ms here) would stall the page for its length.
    assert watch["maxGap"] < min(model_ms), (watch, model_ms)
    assert watch["stalled"] < 0.25 * sum(model_ms), (watch, model_ms)
    assert watch["ticks"] > elapsed * 1000 / 100, (watch, elapsed)
    assert "marked" in watch["seen"] and "Segmenting 1 of 6" in watch["seen"], watch
    assert 0 < watch["waitingHeight"] < 60, watch    # waiting files: one compact line each
    assert any(s.startswith("Segmenting") and s.endswith(" of 6") and s != "Segmenting 1 of 6" for s in watch["seen"])
    assert not app.is_visible("#progress")


@requires_data
def test_cancel_stops_the_batch(app):
    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    images = [str(p) for p in val_images(8, "COVID-19")]
    before = app.locator("li.result").count()
    app.set_input_files("#files", images)
    app.wait_for_function(f"document.querySelectorAll('li.result[data-status=done]').length > "
                          f"{app.locator('li.result[data-status=done]').count()}", timeout=TIMEOUT)
    app.click("#cancel")
    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    statuses = [i.get_attribute("data-status") for i in app.locator("li.result").all()[before:]]
    assert set(statuses) <= {"done", "cancelled"}, statuses
    assert 1 <= statuses.count("done") < len(images) and statuses.count("cancelled") >= 1, statuses
    assert statuses == sorted(statuses, key=lambda s: s != "done"), statuses   # done first, the rest cancelled
    cancelled = app.locator("li.result[data-status=cancelled]").last
    text = cancelled.inner_text()
    assert Path(images[-1]).name in text and text.endswith("cancelled"), text
    assert cancelled.bounding_box()["height"] < 60 and not cancelled.locator("img").first.is_visible()
    assert "cancelled" in app.inner_text("#summary")
    assert not app.is_visible("#cancel")


def test_no_developer_details_in_sight(browser, site, app):
    """The footer names the validation set in words (no path), and the whole lung's held-out
    figure; with no GPU the backend note says so plainly (no driver string); the raw backend
    notes go to the console."""
    footer = app.inner_text("#model-info")
    assert "/" not in footer and "shared" not in footer and "validated on" in footer
    assert f"Dice {META['metrics']['dice']:.3f}" in footer
    held_out = META["outputs"]["whole"]["metrics"]["v7-whole-lung held out"]
    assert f"whole lung: Dice {held_out['dice']:.3f} on {held_out['images']} X-rays of v7-whole-lung held out" in footer
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    console = []
    page.on("console", lambda m: console.append(m.text))
    try:
        page.goto(site + "?nosw")   # backend auto: no GPU here (WebGL is SwiftShader)
        page.wait_for_function("document.body.dataset.ready", timeout=TIMEOUT)
        note = page.inner_text("#backend-note")
        threads = min(8, max(2, page.evaluate("navigator.hardwareConcurrency") // 2))   # served isolated
        assert note == f"No GPU found: running on the CPU (WebAssembly, {threads} threads), which is slower.", note
        for detail in ("SwiftShader", "0x", "ANGLE", "skipped"):
            assert detail not in page.inner_text("body")
        assert any("skipped" in line for line in console), console
    finally:
        context.close()


@requires_data
def test_no_tensor_leak(app):
    images = [str(p) for p in val_images(2, "Normal")]
    app.set_input_files("#files", images[:1])
    app.wait_for_function("!window.lungsegApp.state.busy && !window.lungsegApp.state.queue.length", timeout=TIMEOUT)
    start = app.evaluate("window.lungsegApp.numTensors()")
    before = app.locator("li.result").count()
    app.set_input_files("#files", images * 2)
    _wait_all(app, before + 4)
    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    assert app.evaluate("window.lungsegApp.numTensors()") == start


@requires_data
def test_sliders_update_overlay_live(app):
    if not app.locator("li.result[data-status=done]").count():
        app.set_input_files("#files", [str(val_images(1)[0])])
        app.wait_for_selector("li.result[data-status=done]", timeout=TIMEOUT)
    from lungseg.rules import OVERLAY_OPACITY

    item = app.locator("li.result[data-status=done]").first
    overlay = item.locator(".stack")
    overlay.scroll_into_view_if_needed()
    app.wait_for_function("(el) => [...el.querySelectorAll('img')].every((i) => i.complete && i.naturalWidth)",
                          arg=overlay.element_handle())
    info = item.locator(".info").inner_text()
    app.get_by_label("Overlay opacity").fill("90")
    assert app.inner_text("#opacity-value") == "90%"
    shown = lambda: np.asarray(Image.open(io.BytesIO(overlay.screenshot())).convert("RGB"), np.int64)  # noqa: E731
    strong = shown()
    app.get_by_label("Overlay opacity").fill("10")
    faint = shown()
    # The lung layer is cyan: at 90% the overlay is far bluer-greener than at 10%.
    tint = lambda rgb: float((rgb[..., 1] + rgb[..., 2] - 2 * rgb[..., 0]).mean())  # noqa: E731
    app.get_by_label("Overlay opacity").fill(str(round(100 * OVERLAY_OPACITY)))   # the default, as the zip tests expect
    assert tint(strong) > tint(faint) + 20, (tint(strong), tint(faint))
    app.get_by_label("Threshold").fill("0.05")
    app.wait_for_function("(t) => document.querySelector('li.result[data-status=done] .info').textContent !== t", arg=info)
    assert item.locator(".info").inner_text() != info
    app.click("#threshold-reset")
    assert float(app.input_value("#threshold")) == pytest.approx(META["threshold"])


def test_no_request_outside_own_origin(app):
    assert app.requests, "no requests recorded"
    foreign = [u for u in app.requests if not (u.startswith(app.base) or u.startswith(("blob:", "data:")))]
    assert not foreign
    # The vendored TF.js and the model came from the same origin.
    assert any(u.endswith("/vendor/tf.min.js") for u in app.requests)
    assert any(u.endswith("/model/model.json") for u in app.requests)


def test_accessible_and_phone_sized(browser, site):
    context = browser.new_context(viewport={"width": 375, "height": 740}, service_workers="block")
    page = context.new_page()
    try:
        page.goto(site + "?backend=wasm&nosw")
        for label in ("Overlay opacity", "Threshold", "Choose X-ray files"):
            assert page.get_by_label(label).count() == 1, label
        page.focus("#drop")
        assert page.evaluate("document.activeElement.id") == "drop"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375
    finally:
        context.close()


def test_works_offline_after_first_visit(browser, site):
    """The service worker precaches page, TF.js and model: a reload offline still loads the model."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(site + "?backend=wasm")
        page.wait_for_function("document.body.dataset.ready === 'true'", timeout=TIMEOUT)
        page.wait_for_function("document.querySelector('#offline').textContent.includes('Saved')", timeout=TIMEOUT)
        page.evaluate("""async () => { const c = await caches.open('lungseg-v1');
            for (let i = 0; i < 100 && !(await c.match('model/model.json')); i++) await new Promise(r => setTimeout(r, 100)); }""")
        context.set_offline(True)
        page.reload()
        page.wait_for_function("document.body.dataset.ready", timeout=TIMEOUT)
        assert page.evaluate("document.body.dataset.ready") == "true", page.inner_text("#status")
    finally:
        context.close()


# --- the page's own modules against their Python counterparts (no model needed) -----------

@pytest.fixture(scope="module")
def harness(browser, site):
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    page.goto(site + "_export/harness.html")
    yield page
    context.close()


POSTPROCESS_JS = """async ({prob, width, height, t, post}) => {
  const { toMask } = await import('/js/postprocess.js');
  return Array.from(toMask(Float32Array.from(prob), width, height, t, post));
}"""


def test_postprocess_js_equals_python(harness):
    from scipy import ndimage

    from lungseg.postprocess import clean_mask

    rng = np.random.default_rng(7)
    for case in range(8):
        height, width = rng.integers(20, 90, 2)
        prob = ndimage.gaussian_filter(rng.random((height, width)), 2.0 + case % 3).astype(np.float32)
        prob = (prob - prob.min()) / (prob.max() - prob.min())
        keep, fill, t = int(case % 4), bool(case % 2), float(rng.uniform(0.3, 0.7))
        expected = clean_mask((prob >= t).astype(np.uint8), keep, fill)
        got = harness.evaluate(POSTPROCESS_JS, {"prob": prob.ravel().tolist(), "width": int(width),
                                                "height": int(height), "t": t,
                                                "post": {"keep_largest": keep, "fill_holes": fill}})
        assert np.array_equal(np.array(got, np.uint8).reshape(height, width), expected), (case, keep, fill)


FULL_SIZE_JS = """async ({logits, workWidth, workHeight, width, height, rgb, size, t}) => {
  const { ProbabilityMap, fullSizeMask } = await import('/js/postprocess.js');
  const { resizeInput } = await import('/js/resize.js');
  const { featuresOfSums } = await import('/js/quality.js');
  const { sideLabels, lungAreas } = await import('/js/measure.js');
  const runs = await import('/js/runs.js');
  const rgba = new Uint8ClampedArray(width * height * 4).fill(255);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) rgba[4 * i + c] = rgb[3 * i + c];
  const map = new ProbabilityMap(Float32Array.from(logits), workWidth, workHeight, width, height, ['Sigmoid']);
  const { mask, raw, rawRegions, sums } = fullSizeMask(map, t, { keep_largest: 2, fill_holes: true });
  return { input: Array.from(resizeInput(rgba, width, height, size)), inverted: Array.from(resizeInput(rgba, width, height, size, true)),
           full: Array.from(map.full()), mask: Array.from(runs.toMask(mask)), sides: Array.from(sideLabels(mask)),
           areas: lungAreas(mask, [0.5, 0.4]), features: featuresOfSums(sums, raw, rawRegions, mask) };
}"""


def test_working_size_path_equals_python(harness):
    """The page's full-size path is Python's: the model's input resize (layers.resize_input, exact,
    also of the negative), full-size probabilities from a working-size map (postprocess.ProbabilityMap,
    to float32 rounding of the sigmoid), the cleaned mask, side labels, areas and quality features
    (postprocess.full_size_mask, measure) of ragged maps with many regions and holes."""
    import tensorflow as tf

    from lungseg.layers import resize_input
    from lungseg.measure import lung_areas, side_labels
    from lungseg.postprocess import ProbabilityMap, full_size_mask

    rng = np.random.default_rng(21)
    for height, width in [(37, 53), (300, 211), (90, 7), (16, 16)]:
        logits = (rng.normal(size=(12, 12)) * 4).astype(np.float32)
        rgb = rng.integers(0, 256, (height, width, 3), np.uint8)
        got = harness.evaluate(FULL_SIZE_JS, {"logits": logits.ravel().tolist(), "workWidth": 12, "workHeight": 12,
                                              "width": width, "height": height, "rgb": rgb.ravel().tolist(),
                                              "size": 16, "t": 0.5})
        assert np.array_equal(np.float32(got["input"]).reshape(16, 16, 3), resize_input(rgb, 16))
        assert np.array_equal(np.float32(got["inverted"]).reshape(16, 16, 3), resize_input(rgb, 16, invert=True))
        probability = ProbabilityMap(logits, (height, width), lambda band: np.asarray(tf.sigmoid(band)))
        assert np.abs(np.float32(got["full"]).reshape(height, width) - probability.full()).max() <= 2.5e-7
        mask, features = full_size_mask(probability, 0.5, 2, True)
        assert np.array_equal(np.uint8(got["mask"]).reshape(height, width), mask), (height, width)
        assert np.array_equal(np.uint8(got["sides"]).reshape(height, width), side_labels(mask))
        assert got["areas"] == pytest.approx(lung_areas(mask, (0.5, 0.4)), rel=1e-12)
        assert got["features"] == pytest.approx(features, rel=1e-6), (height, width)


DECODE_JS = """async ({b64, name}) => {
  const { decodeImage } = await import('/js/decode.js');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    const { imageData, width, height } = await decodeImage(new File([bytes], name));
    const rgb = []; const d = imageData.data;
    for (let i = 0; i < d.length; i += 4) rgb.push(d[i], d[i + 1], d[i + 2]);
    return { width, height, rgb };
  } catch (err) { return { error: err.message }; }
}"""


def test_png_decoding_equals_python(harness):
    """Every PNG flavour decodes to the same RGB pixels as lungseg.read_image."""
    import base64

    from lungseg import read_image

    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (23, 37), np.uint8)
    rgb = rng.integers(0, 256, (23, 37, 3), np.uint8)
    flavours = {
        "grey8": Image.fromarray(grey),
        "rgb8": Image.fromarray(rgb),
        "rgba8": Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (23, 37), np.uint8)])),
        "la8": Image.fromarray(grey).convert("LA"),
        "palette": Image.fromarray(rgb).quantize(17),
        "bilevel": Image.fromarray(grey).convert("1"),
        "grey16": Image.fromarray((grey.astype(np.uint16) * 97 + 300).astype(np.uint16)),
    }
    for name, image in flavours.items():
        data = _png_bytes(image)
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name + ".png"})
        assert "error" not in out, (name, out)
        got = np.array(out["rgb"], np.uint8).reshape(out["height"], out["width"], 3)
        assert np.array_equal(got, read_image(data)), name
    # JPEG goes through the browser's decoder (libjpeg-turbo, like Pillow's): near-identical.
    buffer = io.BytesIO()
    Image.fromarray(grey).resize((74, 46)).save(buffer, "JPEG", quality=90)
    out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(buffer.getvalue()).decode(), "name": "x.jpg"})
    got = np.array(out["rgb"], np.uint8).reshape(out["height"], out["width"], 3)
    assert np.abs(got.astype(int) - read_image(buffer.getvalue()).astype(int)).max() <= 2
    bad = {"text.png": b"hello, not an image", "cut.png": _png_bytes(grey)[:60],
           "cut.jpg": buffer.getvalue()[: len(buffer.getvalue()) // 2]}
    for name, data in bad.items():
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name})
        assert "error" in out, name


# --- formats: TIFF, BMP, WebP next to PNG and JPEG ------------------------------------------

def _encoded(image, fmt, **kw):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def test_tiff_bmp_webp_decoding_equals_python(harness):
    """TIFF (8- and 16-bit grey, RGB, deflate), BMP (grey, RGB) and lossless WebP decode to the
    same RGB pixels as lungseg.read_image."""
    from lungseg import read_image

    rng = np.random.default_rng(11)
    grey = rng.integers(0, 256, (29, 41), np.uint8)
    rgb = rng.integers(0, 256, (29, 41, 3), np.uint8)
    wide = (grey.astype(np.uint16) * 181 + 517).astype(np.uint16)
    files = {
        "grey8.tif": _encoded(Image.fromarray(grey), "TIFF"),
        "grey16.tif": _encoded(Image.fromarray(wide), "TIFF"),
        "rgb.tif": _encoded(Image.fromarray(rgb), "TIFF"),
        "deflate.tiff": _encoded(Image.fromarray(grey), "TIFF", compression="tiff_adobe_deflate"),
        "lzw.tif": _encoded(Image.fromarray(rgb), "TIFF", compression="tiff_lzw"),
        "grey.bmp": _encoded(Image.fromarray(grey), "BMP"),
        "rgb.bmp": _encoded(Image.fromarray(rgb), "BMP"),
        "rgb.webp": _encoded(Image.fromarray(rgb), "WEBP", lossless=True),
        "grey.webp": _encoded(Image.fromarray(grey), "WEBP", lossless=True),
    }
    for name, data in files.items():
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name})
        assert "error" not in out, (name, out)
        got = np.array(out["rgb"], np.uint8).reshape(out["height"], out["width"], 3)
        assert np.array_equal(got, read_image(data)), name


def test_format_errors_equal_python(harness, tmp_path):
    """Truncated TIFF/BMP/WebP/JPEG files and a file over max_file_bytes: Python's messages."""
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, (64, 64), np.uint8))
    files = {name: data[: len(data) // 2] for name, data in {
        "cut.tif": _encoded(image, "TIFF"), "cut.bmp": _encoded(image, "BMP"),
        "cut.webp": _encoded(image, "WEBP", lossless=True), "cut.jpg": _encoded(image, "JPEG")}.items()}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        expected = _python_message(tmp_path / name)
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name})
        assert out.get("error", "").split("(")[0] == expected.split("(")[0], (name, out, expected)
    rules = json.loads((ROOT / "lungseg" / "rules.json").read_text())
    big = tmp_path / "big.png"
    with big.open("wb") as f:   # sparse: no disk used
        f.truncate(rules["max_file_bytes"] + 3 * 2**19)
    got = harness.evaluate("""async (size) => {
      const { decodeImage } = await import('/js/decode.js');
      try { await decodeImage(new File([new Uint8Array(size)], 'big.png')); } catch (err) { return err.message; }
    }""", big.stat().st_size)
    assert got == _python_message(big)


def test_number_formatting_equals_python(harness):
    """The figures in messages are formatted as Python formats them (ties round to even)."""
    cases = [(x, d) for x in (26.25, 26.35, 36.0, 100.5, 101.5, 0.05, 2.5, 3.5, 25.000001, 1e-7) for d in (0, 1)]
    got = harness.evaluate("""async (cases) => {
      const { toFixedEven, formatG } = await import('/js/rules.js');
      return cases.map(([x, d]) => [toFixedEven(x, d), formatG(x)]);
    }""", cases)
    assert got == [[f"{x:.{d}f}", f"{x:g}"] for x, d in cases]


def test_inverse_decision_equals_python(harness):
    """Whether a doubtful input is taken as a negative: the page decides as checks.inverse_is_better
    (the figures: a blurred real X-ray that must not flip, a negative that must, no estimate)."""
    from lungseg import checks

    lungs = lambda area: {"lungs": 2, "area": area, "balance": 0.8}
    cases = [(lungs(0.41), 0.955, lungs(0.041), 0.9998), (lungs(0.051), 0.2406, lungs(0.238), 0.9828),
             (lungs(0.3), 0.5, {"lungs": 1, "area": 0.2, "balance": 0.0}, 0.99),
             ({"lungs": 1, "area": 0.01, "balance": 0.0}, None, lungs(0.2), None), (lungs(0.3), None, lungs(0.2), None)]
    got = harness.evaluate("""async (cases) => {
      const { loadRules } = await import('/js/rules.js');
      const { inverseIsBetter } = await import('/js/quality.js');
      const rules = await loadRules();
      return cases.map(([f, q, g, r]) => inverseIsBetter(rules, f, q, g, r));
    }""", cases)
    assert got == [checks.inverse_is_better(*case) for case in cases] == [False, True, False, True, False]


PAIR_JS = """async ({logits, size, thresholds, params, row}) => {
  const { ProbabilityMap } = await import('/js/postprocess.js');
  const { pairFeatures, estimate } = await import('/js/quality.js');
  const [visible, whole] = logits.map((l) => new ProbabilityMap(Float32Array.from(l), size, size, 300, 200, ['Sigmoid']));
  const masks = [visible.thresholded(thresholds[0]), whole.thresholded(thresholds[1])];
  return { masks: masks.map((m) => Array.from(m)), pair: pairFeatures(...masks), estimate: estimate(row, params) };
}"""


def test_pair_features_and_whole_estimate_equal_python(harness):
    """What the two outputs say of each other (quality.pair_features on inference._working_mask:
    the working-size maps, head applied, thresholded) and an estimate that reads them
    (quality.estimate with the whole lung's 9 features), on built maps and coefficients."""
    import tensorflow as tf

    from lungseg import quality
    from lungseg.inference import _working_mask
    from lungseg.postprocess import ProbabilityMap

    rng = np.random.default_rng(22)
    names = list(quality.FEATURES + quality.PAIR_FEATURES)
    for case in range(4):
        logits = [(rng.normal(size=(24, 24)) * 4 + shift).astype(np.float32) for shift in (-case, case)]
        thresholds = [0.5, float(rng.uniform(0.3, 0.7))]
        params = {"features": names, "mean": rng.random(9).tolist(), "scale": (rng.random(9) + 0.1).tolist(),
                  "intercept": float(rng.normal()), "coef": rng.normal(size=9).tolist()}
        row = dict(zip(names, rng.random(9).tolist()), area=0.3)
        got = harness.evaluate(PAIR_JS, {"logits": [l.ravel().tolist() for l in logits], "size": 24,
                                         "thresholds": thresholds, "params": params, "row": row})
        maps = [ProbabilityMap(l, (200, 300), lambda band: np.asarray(tf.sigmoid(band))) for l in logits]
        masks = [_working_mask(m, t) for m, t in zip(maps, thresholds)]
        for mine, want in zip(got["masks"], masks):
            assert np.array_equal(np.array(mine, bool).reshape(24, 24), want), case
        assert got["pair"] == pytest.approx(quality.pair_features(*masks), rel=1e-12, abs=1e-12), case
        assert got["estimate"] == pytest.approx(quality.estimate(row, params), rel=1e-12), case


@requires_data
def test_tiff_bmp_webp_masks_match_python(app, python_seg, tmp_path):
    """A real X-ray as 16-bit TIFF, BMP and lossless WebP: the page's masks are Python's."""
    grey = np.asarray(Image.open(val_images(1, "COVID-19")[0]).convert("L"))
    paths = [tmp_path / "scan16.tif", tmp_path / "scan.bmp", tmp_path / "scan.webp"]
    Image.fromarray((grey.astype(np.uint16) * 200 + 300).astype(np.uint16)).save(paths[0])
    Image.fromarray(grey).save(paths[1])
    Image.fromarray(grey).convert("RGB").save(paths[2], lossless=True)
    for path, mask in _downloaded_masks(app, paths, tmp_path):
        assert eb.iou(mask, python_seg.predict(path)) >= 0.999, path.name


# --- rules and the static server ----------------------------------------------------------

def test_rules_are_vendored_and_not_duplicated():
    """vendor/rules.json is lungseg/rules.json (precached by the service worker); the page's code
    holds no limit or message of its own."""
    _require_vendor()
    rules = (ROOT / "lungseg" / "rules.json").read_text()
    assert (WEB / "vendor" / "rules.json").read_text() == rules, "run: cd web && node scripts/vendor.mjs"
    assert "rules.json" in json.loads((WEB / "vendor" / "files.json").read_text())["files"]
    code = "\n".join(p.read_text() for p in (WEB / "js").glob("*.js")) + (WEB / "index.html").read_text()
    assert "MAX_PIXELS" not in code and "25_000_000" not in code and "25000000" not in code
    for text in json.loads(rules)["messages"].values():
        words = text.split(": ", 1)[-1].split("{")[0].strip()
        assert len(words) < 12 or words not in code, words


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("verbose", [False, True])
def test_serve_py_is_quiet_and_lists_no_folders(verbose):
    _require_vendor()   # else its first line is a warning about vendor/
    port = _free_port()
    command = [sys.executable, str(WEB / "serve.py"), "--port", str(port)] + (["--verbose"] if verbose else [])
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in first and "threaded wasm on machines with 4+ cores" in first
        codes = {}
        for path in ("", "index.html", "vendor/", "node_modules/", "node_modules/fflate/package.json", "js/"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}") as response:
                    codes[path] = response.status
                    if path == "":
                        assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            except urllib.error.HTTPError as err:
                codes[path] = err.code
        assert codes == {"": 200, "index.html": 200, "vendor/": 404, "node_modules/": 404,
                         "node_modules/fflate/package.json": 404, "js/": 404}
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    assert out.strip() == ""          # nothing after the start-up line
    assert ("GET /vendor/" in err) == verbose, err


COMPONENT_JS = """async ({image, mime}) => {   // what the Streamlit app sends, and the component's answers
  const answers = [];
  window.addEventListener('message', (e) => { if (e.data?.type === 'streamlit:setComponentValue') answers.push(e.data.value); });
  const render = async (args) => {
    const count = answers.length;
    window.postMessage({ type: 'streamlit:render', args: { image, mime, threshold: 0.5, backend: 'wasm', ...args } }, '*');
    while (answers.length === count) await new Promise((r) => setTimeout(r, 50));
    return answers.at(-1);
  };
  return [await render({ token: 't1' }), await render({ token: 't2', definition: 'whole' })];
}"""


@requires_data
def test_streamlit_component_segments_once(browser, site, python_seg):
    """web/component.html (the app's server-vs-browser comparison) answers with Python's mask,
    one inference time and the load time; asked for the whole lung, with Python's whole lung."""
    path = val_images(1, "Non-COVID")[0]
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    try:
        page.goto(site + "component.html")
        values = page.evaluate(COMPONENT_JS, {"image": base64.b64encode(path.read_bytes()).decode(), "mime": "image/png"})
    finally:
        context.close()
    for value, definition in zip(values, ("visible", "whole")):
        assert "error" not in value, value
        assert value["definition"] == definition
        runs = np.repeat(np.arange(len(value["rle"])) % 2, value["rle"]).astype(np.uint8)
        mask = runs.reshape(value["height"], value["width"])
        assert eb.iou(mask, python_seg.predict(path, definition=definition)) >= 0.999, definition
        assert value["ms"] > 0 and value["load_ms"] > 0 and value["backend"].startswith("wasm")


# --- quality and warnings: Segmenter.analyze in the browser ---------------------------------

RESULTS_JS = """async (start) => {   // each result, its masks (kept as runs) made full size
  const { toMask } = await import('/js/runs.js');
  const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
  const outline = (o) => ({ definition: o.definition, quality: o.quality, warnings: o.warnings, areas: o.areas,
    features: o.features, mask: o.mask ? b64(toMask(o.mask)) : null });
  return window.lungsegApp.state.results.slice(start).map((r) => ({ ...outline(r),
    name: r.name, status: r.status, inverted: r.inverted, width: r.width, height: r.height,
    whole: r.whole ? outline(r.whole) : null, info: r.el.querySelector('.info').textContent,
    flagged: r.el.dataset.flagged, shown: r.el.querySelector('.quality').textContent,
    captions: [...r.el.querySelectorAll('figure.outline figcaption')].map((c) => c.textContent),
    listed: [...r.el.querySelectorAll('.warnings li')].map((li) => li.textContent) }));
}"""


def _page_results(page, before):
    out = page.evaluate(RESULTS_JS, before)
    for r in out:
        for outline in (r, r["whole"]):
            if outline and outline["mask"]:
                outline["mask"] = np.frombuffer(base64.b64decode(outline["mask"]), np.uint8).reshape(r["height"], r["width"])
    return out


def _quality_inputs():
    """name -> PNG bytes: real Val X-rays, an inverted, a washed-out and a cropped one, and three
    probes."""
    import skimage.data

    from probes import synthetic

    reals = val_images(2, "COVID-19") + val_images(2, "Non-COVID") + val_images(2, "Normal")
    files = {p.name: p.read_bytes() for p in reals}
    grey = np.asarray(Image.open(val_images(41)[40]).convert("L"))
    files["inverted.png"] = _png_bytes(255 - grey)
    files["washed-out.png"] = _png_bytes((204 + grey.astype(int) * 51 // 255).astype(np.uint8))
    files["cropped.png"] = _png_bytes(grey[:, : grey.shape[1] * 3 // 4])
    probes = synthetic()
    files["noise_grey.png"] = _png_bytes(probes["noise_grey"])
    files["flat_grey.png"] = _png_bytes(probes["flat_grey"])
    files["astronaut.png"] = _png_bytes(skimage.data.astronaut())
    return files


PROBES = {"noise_grey.png", "flat_grey.png", "astronaut.png"}
MODEL_PRECISION = {"flat_grey.png"}   # mask figures within model precision only (see below)


def _no_figures(message):
    import re

    return re.sub(r"\d+(\.\d+)?", "#", message)


def _upload_all(app, files: dict, mime: str) -> dict:
    """Add {name: bytes} to the page, wait for all, and return the page's results by name."""
    before = app.locator("li.result").count()
    app.set_input_files("#files", [{"name": n, "mimeType": mime, "buffer": b} for n, b in files.items()])
    _wait_all(app, before + len(files))
    return {r["name"]: r for r in _page_results(app, before)}


@requires_data
def test_quality_and_warnings_equal_python(app, python_seg, tmp_path):
    """Per X-ray: the page's estimated Dice is Segmenter.analyze's (within 0.01), its warnings
    (codes and messages) are Python's, flagged items are marked and counted; a negative X-ray
    is segmented inverted with Python's mask; the zip's manifest.csv has the CLI's columns."""
    assert META.get("quality"), "web/model/metadata.json has no quality estimator"
    files = _quality_inputs()
    page = _upload_all(app, files, "image/png")
    for name, data in files.items():
        expected = python_seg.analyze(data, name=name)
        got = page[name]
        assert got["status"] == "done", name
        assert abs(got["quality"] - expected.quality) <= 0.01, (name, got["quality"], expected.quality)
        assert got["inverted"] == expected.inverted, name
        assert got["listed"] == [w["message"] for w in got["warnings"]], name
        assert got["shown"] == f"estimated Dice {got['quality']:.2f}"
        assert got["flagged"] == str(bool(expected.warnings)).lower(), name
        if name in MODEL_PRECISION:
            # ~900 pixels of the blank image lie within 0.01 of the threshold: float16 (page) and
            # float32 (Keras) masks differ by a few pixels, so may the area figure's last digit.
            assert [w["code"] for w in got["warnings"]] == [w["code"] for w in expected.warnings], name
            assert [_no_figures(w["message"]) for w in got["warnings"]] == \
                [_no_figures(w["message"]) for w in expected.warnings], name
        else:
            assert got["warnings"] == expected.warnings, (name, got["warnings"], expected.warnings)
        # Probes' masks are small or ragged (model precision shows); X-rays' masks are Python's.
        assert eb.iou(got["mask"], expected.mask) >= (0.99 if name in PROBES else 0.999), name
    assert page["inverted.png"]["inverted"] and page["inverted.png"]["warnings"][0]["code"] == "inverted"
    assert {w["code"] for w in page["washed-out.png"]["warnings"]} >= {"washed_out"}
    assert "cut_off" in {w["code"] for w in page["cropped.png"]["warnings"]}
    flagged = sum(1 for r in page.values() if r["warnings"])
    assert f"with warnings" in app.inner_text("#summary") and flagged >= 4
    # manifest.csv in the zip: the manifest's columns, a row per file, Python's figures.
    with app.expect_download() as info:
        app.click("#download-all")
    info.value.save_as(tmp_path / "all.zip")
    import csv

    from lungseg.rules import MANIFEST_COLUMNS
    rows = list(csv.DictReader(io.StringIO(zipfile.ZipFile(tmp_path / "all.zip").read("manifest.csv").decode())))
    assert list(rows[0]) == MANIFEST_COLUMNS
    by_name = {r["input"]: r for r in rows}
    archive = zipfile.ZipFile(tmp_path / "all.zip")
    from lungseg.measure import lung_areas, side_labels
    for name, got in page.items():
        row = by_name[name]
        assert row["status"] == "ok" and row["quality"] == f"{got['quality']:.6f}"
        assert row["warnings"] == " ".join(w["code"] for w in got["warnings"])
        assert row["message"] == " ".join(w["message"] for w in got["warnings"])
        for key, value in lung_areas(got["mask"]).items():
            assert row[key] == f"{value:.6f}", (name, key)
        labels = np.asarray(Image.open(io.BytesIO(archive.read(row["mask"].replace(".mask.png", ".labels.png")))))
        assert np.array_equal(labels, side_labels(got["mask"])), name


def _download_all(page, path) -> dict[str, bytes]:
    """The page's "Download all" zip, saved to ``path``: {name: bytes}."""
    with page.expect_download() as info:
        page.click("#download-all")
    info.value.save_as(path)
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist()}


@requires_data
def test_zip_is_laid_out_like_the_cli_output_folder(app, python_seg, dicom_grey, tmp_path, monkeypatch):
    """The page's zip and ``lungseg predict --labels`` on the same files (two called xray.png and a
    DICOM): the same names (the page writes no .seg.dcm), the same manifest columns and values
    (figures within model precision: the page runs the float16 export), overlays exactly
    lungseg.plots.overlay of the page's mask, and the per-file buttons' names."""
    import csv

    from dicoms import dataset, encode
    from lungseg.cli import main
    from lungseg.imageio import read_image
    from lungseg.measure import side_labels
    from lungseg.plots import overlay

    first, second = val_images(2, "Non-COVID")
    dicom = encode(dataset(dicom_grey.astype(np.uint16) * 16 + 8, PixelSpacing=[0.5, 0.4]))
    given = {"one/xray.png": first.read_bytes(), "two/xray.png": second.read_bytes(), "three/chest.dcm": dicom}
    for name, data in given.items():
        (tmp_path / name).parent.mkdir()
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *given, "--out", "out", "--labels"]) == 0
    cli = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    if app.evaluate("window.lungsegApp.state.results.length"):
        app.click("#clear")                               # the zip holds this test's files only
    app.set_input_files("#files", [{"name": Path(n).name, "mimeType": "application/octet-stream", "buffer": b}
                                   for n, b in given.items()])
    _wait_all(app, 3)
    second_item = app.locator("li.result").nth(1)
    for kind in ("mask", "overlay", "labels"):
        with app.expect_download() as info:
            second_item.locator(f"button.download-{kind}").click()
        assert info.value.suggested_filename == f"xray-2.png.{kind}.png"
    page = _download_all(app, tmp_path / "page.zip")
    assert sorted(page) == sorted(n for n in cli if not n.endswith(".seg.dcm"))

    rows = list(csv.DictReader(io.StringIO(page["manifest.csv"].decode())))
    expected = list(csv.DictReader(io.StringIO(cli["manifest.csv"].decode())))
    assert page["manifest.csv"].decode().splitlines()[0] == cli["manifest.csv"].decode().splitlines()[0]
    assert [r["input"] for r in rows] == ["xray.png", "xray.png", "chest.dcm"]
    for row, want, (name, data) in zip(rows, expected, given.items()):
        for key in ("status", "mask", "overlay", "width", "height", "spacing_source", "warnings"):
            assert row[key] == want[key], (name, key)
        assert row["dicom_seg"] == "" and want["dicom_seg"] == ("chest.dcm.seg.dcm" if name.endswith("dcm") else "")
        for key in ("lung_fraction", "image_left_fraction", "image_right_fraction", "quality"):
            assert abs(float(row[key]) - float(want[key])) <= 0.01, (name, key)
        assert (row["lung_cm2"] == "") == (want["lung_cm2"] == "")
        mask = np.asarray(Image.open(io.BytesIO(page[row["mask"]]))) // 255
        assert eb.iou(mask, python_seg.predict(data)) >= 0.999, name
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(page[row["overlay"]]))),
                              overlay(read_image(data), mask)), name
        labels = np.asarray(Image.open(io.BytesIO(page[row["mask"].replace(".mask.", ".labels.")])))
        assert np.array_equal(labels, side_labels(mask)), name
    assert not app.errors


def _choose(app, definition):
    """Pick a lung definition on the page and wait until every result shows it."""
    app.check(f"#definition input[value={definition}]")
    app.wait_for_function("(d) => window.lungsegApp.state.results.every((r) => r.status !== 'done' || r.definition === d)",
                          arg="visible" if definition == "both" else definition, timeout=TIMEOUT)


@requires_data
def test_both_definitions_equal_python_and_the_cli(app, python_seg, tmp_path, monkeypatch):
    """The choice of lung definition (rules.json's labels and meanings, the visible field the
    default): with "Both", each X-ray's visible field and whole lung are Segmenter.analyze(
    definition="both")'s (masks, estimated quality, pair features, warnings), its whole-lung
    downloads are named NAME.whole.mask.png, and the zip is `lungseg predict --definition both
    --labels`'s folder (names, manifest); "Whole lung" alone recomputes the kept results."""
    import csv

    from lungseg.cli import main
    from lungseg.rules import DEFINITIONS, MANIFEST_COLUMNS

    radios = app.locator("#definition label")
    for index, (key, facts) in enumerate(DEFINITIONS.items()):
        assert facts["label"] in radios.nth(index).inner_text() and facts["means"] in radios.nth(index).inner_text()
    assert app.is_checked("#definition input[value=visible]") and "(default)" in radios.nth(0).inner_text()
    v7 = DATA.parent / "v7-whole-lung"
    whole_xray = sorted((v7 / "images").iterdir())[0] if v7.is_dir() else None
    given = {"chest.png": val_images(1, "Normal")[0].read_bytes()}
    if whole_xray:   # a V7 X-ray (JPEG) as PNG: the same pixels on both sides
        given["v7.png"] = _png_bytes(Image.open(whole_xray).convert("RGB"))
    for name, data in given.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", *given, "--out", "out", "--labels", "--definition", "both"]) == 0
    cli = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}

    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    if app.evaluate("window.lungsegApp.state.results.length"):
        app.click("#clear")
    _choose(app, "both")
    try:
        page = _upload_all(app, given, "image/png")
        for name, data in given.items():
            expected, got = python_seg.analyze(data, definition="both"), page[name]
            assert got["status"] == "done" and got["definition"] == "visible", name
            assert got["captions"] == [f"{DEFINITIONS[d]['label']} (overlay)" for d in DEFINITIONS]
            for mine, want in ((got, expected), (got["whole"], expected.whole)):
                assert mine["definition"] == want.definition
                assert eb.iou(mine["mask"], want.mask) >= 0.999, (name, want.definition)
                assert (mine["quality"] is None) == (want.quality is None), (name, want.definition)
                if want.quality is not None:
                    assert abs(mine["quality"] - want.quality) <= 0.01, (name, want.definition)
                for feature in ("visible_outside", "whole_over_visible"):
                    assert abs(mine["features"][feature] - want.features[feature]) <= 0.01, (name, feature)
                assert [w["code"] for w in mine["warnings"]] == [w["code"] for w in want.warnings], name
            for facts in DEFINITIONS.values():
                assert facts["name"] in got["info"], got["info"]
        item = app.locator("li.result").nth(0)
        with app.expect_download() as info:
            item.locator("button.download-mask[data-definition=whole]").click()
        assert info.value.suggested_filename == "chest.png.whole.mask.png"
        zipped = _download_all(app, tmp_path / "page.zip")
        assert sorted(zipped) == sorted(n for n in cli if not n.endswith(".seg.dcm"))
        rows = list(csv.DictReader(io.StringIO(zipped["manifest.csv"].decode())))
        expected_rows = list(csv.DictReader(io.StringIO(cli["manifest.csv"].decode())))
        assert list(rows[0]) == MANIFEST_COLUMNS
        for row, want in zip(rows, expected_rows):
            for key in ("input", "status", "mask", "overlay", "labels", "whole_mask", "whole_overlay",
                        "whole_labels", "width", "height", "warnings", "whole_warnings"):
                assert row[key] == want[key], (row["input"], key)
            for key in ("lung_fraction", "whole_lung_fraction", "whole_image_left_fraction", "quality", "whole_quality"):
                assert (row[key] == "") == (want[key] == ""), key
                assert row[key] == "" or abs(float(row[key]) - float(want[key])) <= 0.01, (row["input"], key)
            assert _no_figures(row["message"]) == _no_figures(want["message"])
            whole = np.asarray(Image.open(io.BytesIO(zipped[row["whole_mask"]]))) // 255
            assert eb.iou(whole, python_seg.predict(given[row["input"]], definition="whole")) >= 0.999

        _choose(app, "whole")   # the kept results recomputed for the whole lung alone
        for got in _page_results(app, 0):
            assert got["definition"] == "whole" and got["whole"] is None
            assert eb.iou(got["mask"], python_seg.predict(given[got["name"]], definition="whole")) >= 0.999
            assert got["captions"] == [f"{DEFINITIONS['whole']['label']} (overlay)"]
    finally:
        _choose(app, "visible")


@requires_data
def test_threshold_slider_recomputes_quality(app, python_seg):
    """Moving the threshold recomputes mask, quality and mask warnings as Python's analyze does
    at that threshold (an ordinary X-ray: no inversion either way)."""
    app.wait_for_function("!window.lungsegApp.state.busy", timeout=TIMEOUT)
    path = val_images(3, "Normal")[2]
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(path)])
    _wait_all(app, before + 1)
    try:
        app.get_by_label("Threshold").fill("0.2")
        app.wait_for_function("(i) => window.lungsegApp.state.results[i].threshold === 0.2", arg=before)
        got = _page_results(app, before)[0]
        expected = python_seg.analyze(path, threshold=0.2)
        assert abs(got["quality"] - expected.quality) <= 0.01
        assert got["warnings"] == expected.warnings
        assert eb.iou(got["mask"], expected.mask) >= 0.999
    finally:
        app.click("#threshold-reset")


# --- DICOM: lungseg/dicom.py's pixels, messages, warnings and areas -------------------------

def _dicom_files(grey):
    from dicoms import jpeg_baseline, variants

    files = {f"{name}.dcm": data for name, data in variants(grey).items()}
    files["jpeg-baseline.dcm"] = jpeg_baseline(grey)[0]
    return files


def test_dicom_pixels_equal_python(harness, dicom_grey):
    """Every transfer syntax and LUT of tests/dicoms.py decodes to lungseg.read_input's pixels."""
    from lungseg.imageio import read_input

    for name, data in _dicom_files(dicom_grey).items():
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name})
        assert "error" not in out, (name, out)
        got = np.array(out["rgb"], np.uint8).reshape(out["height"], out["width"], 3)
        expected = read_input(data, name)[0]
        tolerance = 1 if name.startswith("jpeg-") else 0     # a JPEG decoder may round differently
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance, name


def test_dicom_refusals_equal_python(harness):
    """A multi-frame image, an object without pixel data and a truncated file: Python's messages,
    word for word."""
    from pydicom.data import get_testdata_file

    from dicoms import dataset, encode

    good = encode(dataset(np.zeros((64, 64), np.uint16) + 5))
    cases = {"rtplan.dcm": Path(get_testdata_file("rtplan.dcm")).read_bytes(),
             "multi.dcm": encode(dataset(np.zeros((2 * 64, 64), np.uint16), NumberOfFrames=2, Rows=64)),
             "truncated.dcm": good[: len(good) // 2]}
    for name, data in cases.items():
        from lungseg import ImageError
        from lungseg.imageio import read_input

        with pytest.raises(ImageError) as error:
            read_input(data, name)
        expected = str(error.value)
        out = harness.evaluate(DECODE_JS, {"b64": base64.b64encode(data).decode(), "name": name})
        assert out.get("error", "") == expected


@requires_data
def test_dicom_masks_warnings_and_areas_equal_python(app, python_seg, dicom_grey):
    """On the page: each DICOM's mask is Python's, a lateral view gets Python's warning, and a
    DICOM with Pixel Spacing gets Python's cm² (shown, and in the results)."""
    from dicoms import dataset, encode

    files = _dicom_files(dicom_grey)
    twelve = dicom_grey.astype(np.uint16) * 16 + 8
    files["lateral.dcm"] = encode(dataset(twelve, ViewPosition="LL"))
    files["spacing.dcm"] = encode(dataset(twelve, PixelSpacing=[0.5, 0.4]))
    page = _upload_all(app, files, "application/dicom")
    for name, data in files.items():
        expected = python_seg.analyze(data, name=name)
        got = page[name]
        assert got["status"] == "done", name
        assert eb.iou(got["mask"], expected.mask) >= 0.999, name
        assert got["warnings"] == expected.warnings, (name, got["warnings"], expected.warnings)
        assert abs(got["quality"] - expected.quality) <= 0.01, name
    assert page["lateral.dcm"]["warnings"][0]["code"] == "dicom_lateral"
    spaced, expected = page["spacing.dcm"], python_seg.analyze(files["spacing.dcm"])
    areas = spaced["areas"]
    for key in ("lung_cm2", "image_left_cm2", "image_right_cm2"):   # the same mask: the same figures
        assert areas[key] == pytest.approx(expected.areas[key], rel=1e-12 if np.array_equal(
            spaced["mask"], expected.mask) else 2e-3), key
    item = app.locator("li.result", has=app.locator("h3.name", has_text="spacing.dcm")).last
    assert f"{areas['lung_cm2']:.1f} cm²" in item.locator(".info").inner_text()


def test_dicom_is_offered(app):
    """The file chooser and the drop zone offer DICOM (from rules.json)."""
    assert ".dcm" in app.get_attribute("#files", "accept")
    assert "DICOM" in app.inner_text("#drop-formats")
