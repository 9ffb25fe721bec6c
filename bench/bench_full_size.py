#!/usr/bin/env python3
"""Full-size X-rays through ``Segmenter.analyze``: the whole graph at the input's size (before)
against the model at its working size with full-size results made band by band (now).

    .venv/bin/python bench/bench_full_size.py [--before REV] [--megapixels 22] [--repeats 3]
    .venv/bin/python bench/bench_full_size.py --val     # every Val X-ray: now vs the whole graph

Side by side: ``lungseg/`` of revision REV (default: the last one before the change) and of this
checkout each run in a fresh process, back to back, on the same X-ray: a real Val X-ray upscaled
(bicubic, a little noise, as load_app.py --large makes them). Each prints the resident memory
(RSS) with the model loaded and the X-ray decoded, the peak, what the process keeps after, and
the seconds per ``analyze`` of the decoded X-ray (median of --repeats, after a warm-up on a small
crop). ``--val`` checks the masks, estimated quality and warnings against the whole graph's on
all of Val (mask IoU, equal masks, largest quality difference).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "covidqu-ex"
#: The last revision that ran the whole graph at the input's size.
BEFORE = "0708253"
ASPECT = 0.86           # width / height of a typical PA chest detector image


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def large_xray(source: Path, megapixels: float, folder: Path) -> Path:
    """``source`` upscaled to about ``megapixels``, saved as a PNG in ``folder``."""
    height = round((megapixels * 1e6 / ASPECT) ** 0.5)
    size = (round(height * ASPECT), height)
    grey = np.asarray(Image.open(source).convert("L").resize(size, Image.Resampling.BICUBIC))
    noise = np.random.default_rng(0).normal(0, 3, grey.shape)
    target = folder / f"{source.stem}_{size[0]}x{size[1]}.png"
    Image.fromarray(np.clip(grey + noise, 0, 255).astype(np.uint8)).save(target, compress_level=1)
    return target


def child(path: str, repeats: int) -> None:
    """One side: load the model, decode the X-ray, time analyze; print the figures as JSON."""
    from lungseg import Segmenter, read_image

    seg = Segmenter.load()
    image = read_image(path)
    seg.analyze(image[:512, :512])                         # warm-up: tracing, allocation
    loaded = rss_mb()
    times, quality = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = seg.analyze(image)
        times.append(time.perf_counter() - start)
        quality, lung = result.quality, int(result.mask.sum())
        del result
    print(json.dumps({"loaded_mb": loaded, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "kept_mb": rss_mb(), "seconds": statistics.median(times), "all_seconds": times,
                      "quality": quality, "lung_pixels": lung}))


def run_side(label: str, tree: Path, path: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--repeats", str(repeats)],
                         env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{label:7s} loaded {figures['loaded_mb']:6.0f} MB  peak {figures['peak_mb']:6.0f} MB "
          f"(+{figures['peak_mb'] - figures['loaded_mb']:4.0f})  kept {figures['kept_mb']:6.0f} MB  "
          f"analyze {figures['seconds']:5.2f} s/X-ray (runs: "
          f"{', '.join(f'{t:.2f}' for t in figures['all_seconds'])})  quality {figures['quality']:.6f}  "
          f"lung pixels {figures['lung_pixels']}")
    return figures


def side_by_side(args) -> int:
    source = sorted(DATA.glob("Val/Normal/images/*.png"))[0]
    with tempfile.TemporaryDirectory(prefix="lungseg-full-size-") as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "lungseg"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        path = large_xray(source, args.megapixels, Path(tmp))
        with Image.open(path) as im:
            width, height = im.size
        print(f"{os.cpu_count()} CPU(s); {path.name}: {width}x{height} ({width * height / 1e6:.1f} MP), "
              f"PNG {path.stat().st_size / 2**20:.1f} MB; Segmenter.analyze, one fresh process per side")
        before_figures = run_side(f"before ({args.before})", before, path, args.repeats)
        now_figures = run_side("now", ROOT, path, args.repeats)
    same = before_figures["lung_pixels"] == now_figures["lung_pixels"]
    print(f"peak {before_figures['peak_mb']:.0f} -> {now_figures['peak_mb']:.0f} MB, kept "
          f"{before_figures['kept_mb']:.0f} -> {now_figures['kept_mb']:.0f} MB, "
          f"{before_figures['seconds']:.2f} -> {now_figures['seconds']:.2f} s per X-ray; "
          f"same lung pixel count: {same}, quality difference "
          f"{abs(before_figures['quality'] - now_figures['quality']):.2e}")
    return 0


def val_check(batch: int = 16) -> int:
    """Every Val X-ray: analyze (now) against masks, quality and warnings of the whole graph."""
    sys.path.insert(0, str(ROOT))
    from lungseg import Segmenter, checks, quality, read_image

    seg = Segmenter.load()
    paths = sorted(DATA.glob("Val/*/images/*.png"))
    ious, equal, dq, warned_alike = [], 0, 0.0, 0
    for start in range(0, len(paths), batch):
        images = [read_image(p) for p in paths[start:start + batch]]
        # the visible field: the first of the default model's two outputs
        probas = np.asarray(seg.model(np.stack(images).astype(np.float32), training=False)[0])[..., 0]
        for image, proba, result in zip(images, probas, seg.analyze_batch(images)):
            if result.inverted:                 # compared against the graph on the inverse
                proba = np.asarray(seg.model((255 - image)[None].astype(np.float32), training=False)[0])[0, ..., 0]
            raw = (proba >= seg.threshold).astype(np.uint8)
            mask = seg.to_mask(proba)
            feats = quality.features(proba, raw, mask)
            estimate = quality.estimate(feats, seg.quality_params)
            found = checks.image_warnings(checks.image_stats(image))
            found += checks.mask_warnings(feats, estimate, seg.quality_params["warn_below"])
            codes = ["inverted"] * result.inverted + [w["code"] for w in found]
            union = np.logical_or(mask, result.mask).sum()
            ious.append(np.logical_and(mask, result.mask).sum() / union if union else 1.0)
            equal += bool(np.array_equal(mask, result.mask))
            dq = max(dq, abs(estimate - result.quality))
            warned_alike += codes == [w["code"] for w in result.warnings]
    print(f"Val: {len(paths)} X-rays; mask IoU vs the whole graph: min {min(ious):.6f}; masks equal: "
          f"{equal}/{len(paths)}; largest |quality difference| {dq:.2e}; same warnings: "
          f"{warned_alike}/{len(paths)}")
    return 0 if min(ious) >= 0.999 and warned_alike == len(paths) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help=f"revision to compare with (default {BEFORE})")
    parser.add_argument("--megapixels", type=float, default=22.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--val", action="store_true", help="check every Val X-ray against the whole graph")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.repeats)
        return 0
    if not DATA.is_dir():
        print(f"needs the real X-rays at {DATA}", file=sys.stderr)
        return 2
    return val_check() if args.val else side_by_side(args)


if __name__ == "__main__":
    sys.exit(main())
