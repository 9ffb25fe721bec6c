#!/usr/bin/env python3
"""Benchmark the shipped browser model (web/model) in headless Chromium against Keras.

    .venv/bin/python bench/bench_web.py                 # wasm, wasm threaded; Keras in the same run
    .venv/bin/python bench/bench_web.py --backends wasm,wasm-threaded,webgl,cpu --repeats 5
    .venv/bin/python bench/bench_web.py --dice 50       # + mean Dice on 50 Val X-rays, browser vs Keras
    .venv/bin/python bench/bench_web.py --main-thread   # + each backend on the page's own thread
    .venv/bin/python bench/bench_web.py --backends wasm --quality 20   # + the cost of quality and warnings
    .venv/bin/python bench/bench_web.py --backends wasm --repeats 3 --page 12 --baseline 79a7579
        # + the page's time per X-ray, this model beside web/model of commit 79a7579 (one output)

Prints the model download size, load time (fresh page: TF.js + model download, backend
start-up, warm-up), first and median inference per backend at the model's input size and at
256x256, the Keras time for the same inputs on this machine, and the browser/Keras ratio.
The model runs in the page's module worker, as on the page (times include the round trip to
it); --main-thread adds rows with the model on the page's own thread ("/main"), the way the
page ran it before the worker. "wasm" is served without COOP/COEP (single-threaded: the plain
build), "wasm-threaded" with them (threads as js/engine.js wasmThreads picks them: 2 on a 2-core
machine), so the two rows are single- vs multi-threaded side by side. WebGL and cpu
are software-only in headless Chromium here (no GPU); on users' machines WebGL/WebGPU are faster.
--quality N times, per Val X-ray (at its own size, then scaled to 2048x2048), the model, the
mask alone (threshold + clean-up: the page without quality) and js/quality.js's analyze (mask,
quality, warnings: the page with it), side by side in one page.
--page N times what the page does per X-ray (js/segmenter.js processFile in its worker: decode the
PNG, the model, masks, quality, warnings, areas, thumbnails) on N Val X-rays, each lung definition
choice in turn, for this model and for --baseline (web/model of a git commit, or a folder) in
two pages of one browser, the X-rays taken in turn by each (the machine's load falls on both).
Targets: median wasm inference <= 500 ms, model download <= 5 MB, Dice within 0.002 of Keras,
quality and warnings <= 10% of the time per X-ray; the page's time per X-ray (visible field, the
default) within 10% of the baseline's.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from export import browser as eb  # noqa: E402

TARGET_MS, TARGET_BYTES, TARGET_DICE, TARGET_QUALITY, TARGET_PAGE = 500, 5_000_000, 0.002, 0.10, 0.10
MODEL_FILES = ("model.json", "metadata.json", "group1-shard1of1.bin")   # what a commit's web/model holds
PAGE_JS = """async ({png, definition}) => {   // the page's time per X-ray: processFile in the worker
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const t0 = performance.now();
  await window.seg.processFile(new Blob([bytes], { type: 'image/png' }), null, definition);
  return performance.now() - t0;
}"""
QUALITY_JS = """async ({rgb, width, height}) => {   // model, mask alone, analyze: times in ms
  const { analyze } = await import('/js/quality.js');
  const rules = await (await import('/js/rules.js')).loadRules();
  const bytes = Uint8Array.from(atob(rgb), (c) => c.charCodeAt(0));
  const rgba = new Uint8ClampedArray(width * height * 4).fill(255);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) rgba[4 * i + c] = bytes[3 * i + c];
  const image = new ImageData(rgba, width, height);
  const out = await window.seg.segment(image);
  let t = performance.now();
  window.seg.mask(out.probability, width, height);
  const maskMs = performance.now() - t;
  t = performance.now();
  const { FullMap } = await import('/js/postprocess.js');
  const inverse = async () => {   // the negative's map (js/engine.js makes it at the working size instead)
    const negative = Uint8ClampedArray.from(rgba, (v, i) => (i % 4 === 3 ? v : 255 - v));
    return new FullMap((await window.seg.segment(new ImageData(negative, width, height))).probability, width, height);
  };
  const a = await analyze(rules, window.seg.meta, rgba, width, height, { visible: new FullMap(out.probability, width, height) },
    async () => ({ visible: await inverse() }));
  return { modelMs: out.ms, maskMs, qualityMs: performance.now() - t, inverted: a.inverted };
}"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / "web" / "model"))
    parser.add_argument("--backends", default="wasm,wasm-threaded",
                        help="comma list of wasm, wasm-threaded, webgl, cpu (webgl/cpu: software-only here)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per size after the first")
    parser.add_argument("--main-thread", action="store_true",
                        help="also run each backend on the page's own thread (no worker)")
    parser.add_argument("--quality", type=int, default=0, metavar="N",
                        help="time quality and warnings (js/quality.js) on N Val X-rays, with and without")
    parser.add_argument("--dice", type=int, default=0, metavar="N", help="mean Dice on N Val X-rays, browser vs Keras")
    parser.add_argument("--page", type=int, default=0, metavar="N",
                        help="the page's time per X-ray (processFile) on N Val X-rays, per definition choice")
    parser.add_argument("--baseline", default="", metavar="COMMIT|DIR",
                        help="with --page: also time this model (web/model of a git commit, or a folder)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright
    from PIL import Image

    from lungseg import Segmenter, read_image, read_mask

    model_dir = Path(args.model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    vendor = json.loads((ROOT / "web" / "vendor" / "files.json").read_text())
    print(f"model {meta['name']} {meta['version']} ({meta['dtype']}, input {meta['input_size']} px) from {model_dir}")
    print(f"model download: {meta['bytes'] / 1e6:.2f} MB ({'OK' if meta['bytes'] <= TARGET_BYTES else 'over'} "
          f"target {TARGET_BYTES / 1e6:.0f} MB); TF.js files: {sum(v for f, v in vendor['files'].items() if f.startswith('tf')) / 1e6:.2f} MB "
          f"(the page uses tf.min.js + one backend's files); machine: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")

    images = eb.val_images(1)
    base = read_image(images[0]) if images else np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8)
    sizes = sorted({int(meta["input_size"]), 256})
    inputs = {s: np.asarray(Image.fromarray(base).resize((s, s), Image.BILINEAR)) for s in sizes}

    seg = Segmenter.load(eb.source_model(meta))
    keras_ms = {}
    for s, rgb in inputs.items():
        times = []
        for _ in range(args.repeats + 1):
            t0 = time.perf_counter()
            seg.predict_proba(rgb)
            times.append((time.perf_counter() - t0) * 1000)
        keras_ms[s] = (times[0], statistics.median(times[1:]))

    rows = []
    mounts = {"/_bench/": model_dir}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=eb.CHROMIUM, args=eb.CHROMIUM_ARGS)
        names = [b.strip() for b in args.backends.split(",") if b.strip()]
        runs = [(name, worker) for name in names for worker in ((True, False) if args.main_thread else (True,))]
        for name, worker in runs:
            backend = "wasm" if name.startswith("wasm") else name
            isolate = name == "wasm-threaded"
            name = name if worker else f"{name}/main"
            with eb.harness_page(browser, mounts, isolate=isolate) as (page, _):
                try:
                    info = eb.load_in_page(page, "/_bench/", backend, worker=worker)
                except Exception as err:  # noqa: BLE001
                    print(f"{name}: failed to load: {err}")
                    continue
                if info["backend"] != backend:
                    print(f"{name}: fell back to {info['backend']} ({'; '.join(info['notes'])})")
                for s, rgb in inputs.items():
                    repeats = args.repeats if backend in ("wasm", "webgpu") else min(args.repeats, 2)
                    out = eb.segment_in_page(page, rgb, repeats=repeats + 1)
                    first, median = out["times"][0], statistics.median(out["times"][1:])
                    rows.append((name, info["label"], info["loadMs"], s, first, median, keras_ms[s][1]))
        print(f"\n{'backend':19s} {'in use':16s} {'load ms':>8s} {'size':>8s} {'first ms':>9s} {'median ms':>10s} "
              f"{'Keras ms':>9s} {'ratio':>6s}")
        for name, label, load, s, first, median, keras in rows:
            print(f"{name:19s} {label:16s} {load:8.0f} {s:>4d}x{s:<3d} {first:9.0f} {median:10.0f} {keras:9.0f} "
                  f"{median / keras:6.1f}")
        print("(Keras: median of the same runs in this process, TensorFlow on the CPU; first call "
              + ", ".join(f"{s} px {keras_ms[s][0]:.0f} ms" for s in sizes) + ")")
        wasm = [r for r in rows if r[0].startswith("wasm") and not r[0].endswith("/main")]
        if wasm:
            best = min(r[5] for r in wasm)
            print(f"median wasm inference: best {best:.0f} ms, worst {max(r[5] for r in wasm):.0f} ms: "
                  f"{'OK' if max(r[5] for r in wasm) <= TARGET_MS else 'over'} target {TARGET_MS} ms")

        if args.dice:
            paths = eb.val_images(args.dice)
            with eb.harness_page(browser, mounts, isolate=True) as (page, _):
                eb.load_in_page(page, "/_bench/", "wasm")
                web_d, keras_d, agree = [], [], []
                for path in paths:
                    rgb = read_image(path)
                    truth = read_mask(path.parent.parent / "lung masks" / path.name)
                    web_mask = eb.segment_in_page(page, rgb)["mask"]
                    keras_mask = seg.predict(rgb)
                    web_d.append(eb.dice(web_mask, truth))
                    keras_d.append(eb.dice(keras_mask, truth))
                    agree.append(eb.iou(web_mask, keras_mask))
            diff = abs(np.mean(web_d) - np.mean(keras_d))
            print(f"\nDice on {len(paths)} Val X-rays (vs manual masks): browser {np.mean(web_d):.4f}, "
                  f"Keras {np.mean(keras_d):.4f}, difference {diff:.4f} "
                  f"({'OK' if diff <= TARGET_DICE else 'over'} target {TARGET_DICE}); "
                  f"browser-vs-Keras mask IoU min {min(agree):.4f}, mean {np.mean(agree):.4f}")
        if args.quality:
            quality_cost(browser, mounts, [read_image(p) for p in eb.val_images(args.quality)])
        if args.page:
            page_time(browser, model_dir, args.baseline, eb.val_images(args.page))
        browser.close()
    return 0


def baseline_folder(what: str, tmp: Path) -> Path:
    """A model folder: ``what`` itself, or web/model of git commit ``what`` written into ``tmp``."""
    import subprocess

    if Path(what).is_dir():
        return Path(what)
    for name in MODEL_FILES:
        data = subprocess.run(["git", "show", f"{what}:web/model/{name}"], cwd=ROOT, capture_output=True, check=True).stdout
        (tmp / name).write_bytes(data)
    return tmp


def page_time(browser, model_dir: Path, baseline: str, paths: list) -> None:
    """The page's time per X-ray (wasm, worker, no isolation: the plain build) of this model per
    definition choice, and of the baseline model, the X-rays taken in turn by each page."""
    import contextlib
    import tempfile

    pngs = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    with tempfile.TemporaryDirectory(prefix="lungseg-baseline-") as tmp, contextlib.ExitStack() as stack:
        models = {"this": model_dir}
        if baseline:
            models[f"baseline {baseline}"] = baseline_folder(baseline, Path(tmp))
        mounts = {f"/_m{i}/": folder for i, folder in enumerate(models.values())}
        pages = {}
        for i, (label, folder) in enumerate(models.items()):
            page, _ = stack.enter_context(eb.harness_page(browser, mounts, isolate=False))
            info = eb.load_in_page(page, f"/_m{i}/", "wasm")
            choices = ["visible"] + (["whole", "both"] if len(info["meta"]["outputs"]) > 1 else [])
            meta = json.loads((folder / "metadata.json").read_text())
            print(f"\n{label}: {meta['name']} {meta['version']}, {meta['bytes'] / 1e6:.2f} MB, outputs "
                  f"{', '.join(info['meta']['outputs'])}")
            pages[label] = (page, choices)
        times = {(label, d): [] for label, (_, choices) in pages.items() for d in choices}
        order = list(times)
        for k, png in enumerate([pngs[0]] + pngs):   # the first X-ray once more, untimed: warm-up
            for label, definition in order[k % len(order):] + order[:k % len(order)]:   # each goes first in turn
                times[(label, definition)].append(pages[label][0].evaluate(PAGE_JS, {"png": png, "definition": definition}))
        print(f"\nthe page's time per X-ray (processFile in the worker, wasm, {len(paths)} Val X-rays, "
              f"load average {os.getloadavg()[0]:.1f}):")
        for (label, definition), found in times.items():
            print(f"  {label:22s} {definition:8s} median {statistics.median(found[1:]):6.0f} ms, "
                  f"mean {statistics.mean(found[1:]):6.0f} ms")
        if baseline:
            new, old = times[("this", "visible")][1:], times[(f"baseline {baseline}", "visible")][1:]
            paired = statistics.median(n / o for n, o in zip(new, old)) - 1
            print(f"this model, visible field (the default) vs baseline: median of the paired ratios "
                  f"{100 * paired:+.1f}%, of the medians {100 * (statistics.median(new) / statistics.median(old) - 1):+.1f}% "
                  f"({'OK' if paired <= TARGET_PAGE else 'over'} target +{100 * TARGET_PAGE:.0f}%)")


def quality_cost(browser, mounts: dict, images: list) -> None:
    """Per X-ray time without quality (model + mask) and with it (model + analyze), wasm, worker."""
    from PIL import Image

    cases = {"own size": images,
             "2048x2048": [np.asarray(Image.fromarray(i).resize((2048, 2048), Image.BILINEAR)) for i in images[:5]]}
    with eb.harness_page(browser, mounts, isolate=False) as (page, _):
        eb.load_in_page(page, "/_bench/", "wasm")
        print()
        for label, rgbs in cases.items():
            runs = []
            for rgb in rgbs:
                height, width = rgb.shape[:2]
                runs.append(page.evaluate(QUALITY_JS, {"rgb": base64.b64encode(rgb.tobytes()).decode(),
                                                       "width": width, "height": height}))
            plain = [r["modelMs"] + r["maskMs"] for r in runs if not r["inverted"]]
            full = [r["modelMs"] + r["qualityMs"] for r in runs if not r["inverted"]]
            extra = statistics.median(f / p - 1 for f, p in zip(full, plain))
            print(f"quality, {label} ({len(runs)} X-rays, {sum(r['inverted'] for r in runs)} tried inverted): "
                  f"median per X-ray {statistics.median(plain):.0f} ms without, {statistics.median(full):.0f} ms "
                  f"with (model {statistics.median(r['modelMs'] for r in runs):.0f}, mask alone "
                  f"{statistics.median(r['maskMs'] for r in runs):.1f}, analyze "
                  f"{statistics.median(r['qualityMs'] for r in runs):.1f}): +{100 * extra:.1f}% "
                  f"({'OK' if extra <= TARGET_QUALITY else 'over'} target {100 * TARGET_QUALITY:.0f}%)")


if __name__ == "__main__":
    sys.exit(main())
