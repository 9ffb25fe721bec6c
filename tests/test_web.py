"""The in-browser page (web/) in Debian's Chromium on 127.0.0.1, wasm backend.

One server and one page are shared by the tests of this module (module-scoped fixtures), so
the model loads once. The page must: segment real X-rays and let the user download masks at
the original size that match Python inference of the same model; report bad files per file
while the others finish; request nothing outside its own origin; not leak tensors.
"""
import io
import json
import os
import sys
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
    page.wait_for_function(
        f"document.querySelectorAll('li.result[data-status=done], li.result[data-status=error]').length >= {count}",
        timeout=TIMEOUT)


def _png_bytes(array, **kw):
    buffer = io.BytesIO()
    image = array if isinstance(array, Image.Image) else Image.fromarray(array)
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def test_page_shows_model_and_backend_from_metadata(app):
    status = app.inner_text("#status")
    assert META["name"] in status and META["version"] in status
    assert "wasm" in status
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
    # All masks as a zip: one PNG per good file.
    with app.expect_download() as info:
        app.click("#download-all")
    info.value.save_as(tmp_path / "all.zip")
    archive = zipfile.ZipFile(tmp_path / "all.zip")
    assert archive.testzip() is None
    names = archive.namelist()
    assert {Path(g.name).stem + "_mask.png" for g in good} <= set(names)
    for name in names:
        assert archive.read(name)[:8] == b"\x89PNG\r\n\x1a\n"
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
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(sixteen), str(odd)])
    _wait_all(app, before + 2)
    for index, path in enumerate([sixteen, odd]):
        item = app.locator("li.result").nth(before + index)
        assert item.get_attribute("data-status") == "done", item.inner_text()
        with app.expect_download() as info:
            item.locator("button.download").click()
        info.value.save_as(tmp_path / f"m{index}.png")
        mask = np.asarray(Image.open(tmp_path / f"m{index}.png")) > 0
        expected = python_seg.predict(path)
        assert mask.shape == expected.shape
        assert eb.iou(mask, expected) >= 0.99, path.name


def test_huge_image_is_refused(app, tmp_path):
    huge = tmp_path / "huge.png"
    Image.new("L", (5200, 5000)).save(huge)   # 26 MP > the page's limit
    before = app.locator("li.result").count()
    app.set_input_files("#files", [str(huge)])
    _wait_all(app, before + 1)
    item = app.locator("li.result").nth(before)
    assert item.get_attribute("data-status") == "error"
    assert "5200x5000" in item.locator(".error").inner_text()


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
    item = app.locator("li.result[data-status=done]").first
    pixels = ("(el) => { const c = el.querySelector('canvas.overlay');"
              " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"
              ".reduce((a, b) => a + b, 0); }")
    info = item.locator(".info").inner_text()
    app.get_by_label("Overlay opacity").fill("90")
    assert app.inner_text("#opacity-value") == "90%"
    dark = item.evaluate(pixels)
    app.get_by_label("Overlay opacity").fill("10")
    assert item.evaluate(pixels) != dark
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
