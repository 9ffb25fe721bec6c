"""Parity: the exported model in headless Chromium (wasm) against Keras on real Val X-rays.

    python -m export.parity                                  # web/model/ (what the page ships)
    python -m export.parity --dtypes float32,float16,uint8   # export each to a temp dir, compare
    python -m export.parity --images 8 --backend wasm

Per image and lung definition the model outlines (the visible lung field, the whole lung): max
|probability difference| and the IoU of the final masks (the definition's threshold and the
clean-up applied on each side: lungseg/postprocess.py in Python, web/js/postprocess.js in the
browser), and the estimated quality of each definition (Segmenter.analyze(definition="both") vs
the page's, its pair features included; within --max-quality-diff, 0.01).
The Python side is ``Segmenter`` as every surface uses it (the model at its working size, the
full-size map made band by band, equal to the whole graph: tests/test_full_size.py).
The images are real Val X-rays plus one resized to an odd, non-square size (dynamic input).
A precision passes when every mask IoU >= --min-iou (0.999) and every quality is within
--max-quality-diff. Exit status 1 if any fails.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .browser import (DATA, ROOT, WEB, analyze_in_page, browser_page, iou, load_in_page, segment_in_page,
                      source_model, val_images)


def test_inputs(count: int) -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    from lungseg import read_image

    paths = val_images(count)
    inputs = [(p.name, read_image(p)) for p in paths]
    if paths:   # the dynamic input size: an odd, non-square size
        odd = np.asarray(Image.fromarray(inputs[0][1]).resize((301, 227), Image.BILINEAR))
        inputs.append((f"{paths[0].stem}@301x227", odd))
    return inputs


def keras_outputs(seg, inputs) -> list[dict]:
    """Python's side of each input: {"proba": {definition: full-size probability}, "analysis":
    {definition: Analysis}} (Segmenter.analyze with every definition the model outlines)."""
    out = []
    for _, rgb in inputs:
        analysis = seg.analyze(rgb, definition="both")
        out.append({"proba": {d: seg.predict_proba(rgb, definition=d) for d in seg.definitions},
                    "analysis": analysis.outlines})
    return out


def _png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def check(exports: dict, seg, inputs, keras_out, backend: str, min_iou: float, source: Path,
          verbose: bool = True, max_quality_diff: float = 0.01) -> dict:
    """Run each exported folder in Chromium on ``inputs``, every definition; {name: (bytes, max
    diff, min IoU, max quality diff (None: no estimator), ok)}, the worst over definitions."""
    say = print if verbose else (lambda *a, **k: None)
    mounts = {f"/_parity/{name}/": path for name, path in exports.items()}
    pngs = [_png(rgb) for _, rgb in inputs]
    summary = {}
    with browser_page(mounts) as (page, base):
        for name, path in exports.items():
            info = load_in_page(page, f"/_parity/{name}/", backend)
            size = json.loads((path / "metadata.json").read_text())["bytes"]
            shown = source.relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
            say(f"\n== {name}: {size / 1e6:.2f} MB, backend {info['label']} vs Keras ({shown})")
            say(f"{'image':34s} {'size':>9s} {'outline':>8s} {'max|dp|':>9s} {'mask IoU':>9s} {'|dq|':>7s}")
            ious, diffs, quality_diffs = [], [], []
            for (image_name, rgb), png, python in zip(inputs, pngs, keras_out):
                page_analysis = analyze_in_page(page, png, "both" if len(seg.definitions) > 1 else "visible")
                for definition in seg.definitions:
                    out = segment_in_page(page, rgb, definition=definition)
                    prob = python["proba"][definition]
                    diff = float(np.abs(out["probability"] - prob).max())
                    score = iou(out["mask"], seg.to_mask(prob, definition=definition))
                    expected = python["analysis"][definition].quality
                    dq = None if expected is None else abs(page_analysis[definition]["quality"] - expected)
                    ious.append(score)
                    diffs.append(diff)
                    quality_diffs += [dq] if dq is not None else []
                    say(f"{image_name:34s} {rgb.shape[1]:>4d}x{rgb.shape[0]:<4d} {definition:>8s} {diff:9.2e} "
                        f"{score:9.5f} {'n/a' if dq is None else f'{dq:.4f}':>7s}")
            worst_q = max(quality_diffs) if quality_diffs else None
            ok = min(ious) >= min_iou and (worst_q is None or worst_q <= max_quality_diff)
            summary[name] = (size, max(diffs), min(ious), worst_q, ok)
            say(f"-> {name}: max |dp| {max(diffs):.2e}, min IoU {min(ious):.5f}, max |quality diff| "
                f"{'n/a' if worst_q is None else f'{worst_q:.4f}'}: {'PASS' if ok else 'FAIL'} "
                f"(IoU >= {min_iou} on every image and definition, quality within {max_quality_diff})")
    return summary


def choose_dtype(source: Path, images: int = 6, backend: str = "wasm", min_iou: float = 0.999,
                 candidates=("uint8", "float16")) -> tuple[str, dict]:
    """The smallest precision whose browser masks match Keras (IoU >= min_iou on every image);
    float32 when none does or when the check cannot run. Returns (dtype, figures)."""
    from .browser import CHROMIUM, vendor_ready
    from .convert import export_model

    if not (DATA.is_dir() and vendor_ready() and Path(CHROMIUM).exists()):
        print("parity check unavailable (needs ../shared data, web/vendor and chromium): using float32")
        return "float32", {}
    from lungseg import Segmenter

    seg = Segmenter.load(source)
    inputs = test_inputs(images)
    keras_out = keras_outputs(seg, inputs)
    with tempfile.TemporaryDirectory(prefix="lungseg-auto-") as tmp:
        exports = {}
        for dtype in candidates:
            exports[dtype] = Path(tmp) / dtype
            export_model(source, exports[dtype], dtype, quiet=True)
        summary = check(exports, seg, inputs, keras_out, backend, min_iou, source, verbose=False)
    figures = {name: {"bytes": size, "max_prob_diff": round(diff, 6), "min_mask_iou": round(score, 6),
                      "max_quality_diff": None if dq is None else round(dq, 6), "pass": ok}
               for name, (size, diff, score, dq, ok) in summary.items()}
    for name, f in figures.items():
        dq = "n/a" if f["max_quality_diff"] is None else f"{f['max_quality_diff']:.4f}"
        print(f"  {name}: {f['bytes'] / 1e6:.2f} MB, max |dp| {f['max_prob_diff']:.2e}, min mask IoU "
              f"{f['min_mask_iou']:.5f}, max |quality diff| {dq} on {len(inputs)} images, "
              f"{'/'.join(seg.definitions)}: {'PASS' if f['pass'] else 'FAIL'}")
    passing = [name for name in candidates if figures[name]["pass"]]
    best = min(passing, key=lambda n: figures[n]["bytes"]) if passing else "float32"
    return best, {"rule": f"smallest precision with mask IoU >= {min_iou} vs Keras on every checked "
                          f"image and lung definition, quality within 0.01 ({backend}); float32 otherwise",
                  "images": len(inputs), "definitions": seg.definitions,
                  "candidates": figures, "chosen": best}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.parity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(WEB / "model"), help="exported model folder (default web/model)")
    parser.add_argument("--dtypes", default="", help="comma list: export the source model at these precisions and check each")
    parser.add_argument("--source", default=None, help="saved Keras model folder (default: the one metadata.json names)")
    parser.add_argument("--images", type=int, default=6, help="Val X-rays to check (plus one odd-size copy)")
    parser.add_argument("--backend", default="wasm")
    parser.add_argument("--min-iou", type=float, default=0.999)
    parser.add_argument("--max-quality-diff", type=float, default=0.01)
    args = parser.parse_args(argv)

    if not DATA.is_dir():
        print(f"no Val X-rays at {DATA}", file=sys.stderr)
        return 2
    from lungseg import Segmenter

    model_dir = Path(args.model_dir)
    metadata = json.loads((model_dir / "metadata.json").read_text()) if (model_dir / "metadata.json").is_file() else {}
    source = Path(args.source) if args.source else source_model(metadata)
    seg = Segmenter.load(source)
    inputs = test_inputs(args.images)
    keras_out = keras_outputs(seg, inputs)

    with tempfile.TemporaryDirectory(prefix="lungseg-parity-") as tmp:
        exports = {}
        if args.dtypes:
            from .convert import export_model
            for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
                out = Path(tmp) / dtype
                export_model(source, out, dtype)
                exports[dtype] = out
        else:
            exports[metadata.get("dtype", "model")] = model_dir
        summary = check(exports, seg, inputs, keras_out, args.backend, args.min_iou, source,
                        max_quality_diff=args.max_quality_diff)
    if len(summary) > 1:
        print("\nprecision  size MB  max|dp|   min IoU   max|dq|  verdict")
        for name, (size, diff, score, dq, ok) in summary.items():
            shown = "n/a" if dq is None else f"{dq:.4f}"
            print(f"{name:9s} {size / 1e6:8.2f} {diff:9.2e} {score:9.5f} {shown:>8s}  {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for *_, ok in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
