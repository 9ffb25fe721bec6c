"""Run exported models in headless Chromium (Playwright) next to Keras: shared by
``python -m export.parity``, bench/bench_web.py and the tests.

The page side is web/js/segmenter.js itself, imported by a blank harness page served from the
same origin as web/, so the browser runs exactly the code the page ships: the model runs in the
page's module worker, or on the harness page's own thread with ``worker=False``.
"""
from __future__ import annotations

import base64
import contextlib
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DATA = ROOT.parent / "shared" / "data" / "covidqu-ex"


def load_serve():
    """web/serve.py as a module (it is a stand-alone script, not part of a package)."""
    spec = importlib.util.spec_from_file_location("lungseg_web_serve", WEB / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vendor_ready() -> bool:
    return (WEB / "vendor" / "tf.min.js").is_file()


def val_images(count: int) -> list[Path]:
    """``count`` Val X-rays, taken in turn from each class (sorted, so runs are repeatable)."""
    groups = [sorted((g / "images").glob("*.png")) for g in sorted((DATA / "Val").glob("*")) if g.is_dir()]
    picked, index = [], 0
    while len(picked) < count and any(index < len(g) for g in groups):
        picked += [g[index] for g in groups if index < len(g)]
        index += 1
    return picked[:count]


@contextlib.contextmanager
def serve_web(mounts: dict[str, Path] | None = None, isolate: bool = True):
    """Serve web/ (plus the harness at /_export/ and ``mounts``) on a free port: yields the base URL."""
    if not vendor_ready():
        raise SystemExit("web/vendor/ is missing: cd web && npm ci && node scripts/vendor.mjs")
    server, base = load_serve().start(WEB, quiet=True, isolate=isolate,
                                      mounts={"/_export/": Path(__file__).parent, **(mounts or {})})
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def harness_page(browser, mounts: dict[str, Path] | None = None, isolate: bool = True):
    """A page of ``browser`` (Playwright) on the harness: yields (page, base URL)."""
    with serve_web(mounts, isolate) as base:
        context = browser.new_context(service_workers="block")
        try:
            page = context.new_page()
            page.goto(base + "_export/harness.html")
            yield page, base
        finally:
            context.close()


@contextlib.contextmanager
def browser_page(mounts: dict[str, Path] | None = None, isolate: bool = True):
    """Launch headless Chromium and open the harness: yields (page, base URL)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with harness_page(browser, mounts, isolate) as result:
                yield result
        finally:
            browser.close()


LOAD_JS = """async ({modelUrl, backend, worker}) => {
  const t0 = performance.now();
  const { loadSegmenter } = await import('/js/segmenter.js');
  if (window.seg) window.seg.dispose();
  window.seg = await loadSegmenter({ modelUrl, backend, worker });
  return { backend: window.seg.backend, label: window.seg.backendLabel, notes: window.seg.notes,
           userNote: window.seg.userNote, inWorker: window.seg.inWorker,
           loadMs: performance.now() - t0, meta: window.seg.meta,
           isolated: globalThis.crossOriginIsolated };
}"""

SEGMENT_JS = """async ({rgb, width, height, repeats, definition}) => {
  const bytes = Uint8Array.from(atob(rgb), (c) => c.charCodeAt(0));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[4 * i] = bytes[3 * i]; rgba[4 * i + 1] = bytes[3 * i + 1]; rgba[4 * i + 2] = bytes[3 * i + 2]; rgba[4 * i + 3] = 255;
  }
  const image = new ImageData(rgba, width, height);
  const times = [];
  let out;
  for (let k = 0; k < repeats; k++) { out = await window.seg.segment(image, definition); times.push(out.ms); }
  const mask = window.seg.mask(out.probability, out.width, out.height, window.seg.meta.outputs[definition].threshold);
  const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
  return { probability: b64(new Uint8Array(out.probability.buffer)), mask: b64(mask),
           width: out.width, height: out.height, times, tensors: await window.seg.numTensors() };
}"""


def load_in_page(page, model_url: str, backend: str = "wasm", worker: bool = True) -> dict:
    """Load the segmenter (in its worker unless ``worker`` is False) in the harness page."""
    return page.evaluate(LOAD_JS, {"modelUrl": model_url, "backend": backend, "worker": worker})


ANALYZE_JS = """async ({png, definition}) => {
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const out = await window.seg.segmentFile(new Blob([bytes], { type: 'image/png' }), null, definition);
  const pick = ({ definition, quality, features, warnings, inverted }) => ({ definition, quality, features, warnings, inverted });
  return [pick(out), ...(out.whole ? [pick(out.whole)] : [])];
}"""


def segment_in_page(page, rgb: np.ndarray, repeats: int = 1, definition: str = "visible") -> dict:
    """Run the loaded segmenter on an (H, W, 3) uint8 array: ``definition``'s probability and
    mask (its threshold, the clean-up), times (ms, as the page waits: worker round trip included),
    tensors (the model's thread's live tensor count)."""
    height, width = rgb.shape[:2]
    out = page.evaluate(SEGMENT_JS, {"rgb": base64.b64encode(np.ascontiguousarray(rgb, np.uint8).tobytes()).decode(),
                                     "width": width, "height": height, "repeats": repeats, "definition": definition})
    out["probability"] = np.frombuffer(base64.b64decode(out["probability"]), np.float32).reshape(height, width)
    out["mask"] = np.frombuffer(base64.b64decode(out["mask"]), np.uint8).reshape(height, width)
    return out


def analyze_in_page(page, png: bytes, definition: str = "both") -> dict:
    """The page's Segmenter.analyze of a PNG file: {definition: {quality, features, warnings,
    inverted}} of each definition asked for ("visible", "whole" or "both")."""
    out = page.evaluate(ANALYZE_JS, {"png": base64.b64encode(png).decode(), "definition": definition})
    return {outline["definition"]: outline for outline in out}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def source_model(metadata: dict) -> Path:
    """The saved model folder an export came from (recorded in its metadata.json)."""
    path = Path(metadata.get("source", {}).get("model_dir", "lungseg/weights/default"))
    return path if path.is_absolute() else ROOT / path


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
