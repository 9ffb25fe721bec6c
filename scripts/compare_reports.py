#!/usr/bin/env python3
"""Compare two `lungseg evaluate` reports of the same data, image by image.

    .venv/bin/python scripts/compare_reports.py reports/context reports/finetune4 [--metric dice]

Prints each report's mean, the paired mean difference (B - A) with a 95% bootstrap interval,
how many images got better and worse, and, for B, the mean of its worst 5% of images and of
the rest (where its mean loses most).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BOOTSTRAP, WORST_FRACTION, SEED = 5000, 0.05, 0


def per_image(report: Path, metric: str) -> dict[str, float]:
    rows = json.loads((report / "metrics.json").read_text())["images"]
    return {f"{r['group']}/{r['image']}": r[metric] for r in rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="report folder A (the reference)")
    parser.add_argument("b", type=Path, help="report folder B")
    parser.add_argument("--metric", default="dice")
    args = parser.parse_args(argv)
    a, b = per_image(args.a, args.metric), per_image(args.b, args.metric)
    if a.keys() != b.keys():
        raise SystemExit(f"the reports score different images ({len(a.keys() ^ b.keys())} differ)")
    names = sorted(a)
    va, vb = np.array([a[n] for n in names]), np.array([b[n] for n in names])
    diff = vb - va
    rng = np.random.default_rng(SEED)
    means = diff[rng.integers(0, len(diff), (BOOTSTRAP, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    print(f"{len(names)} images, {args.metric}: A {va.mean():.4f}, B {vb.mean():.4f}")
    print(f"B - A: {diff.mean():+.4f} (95% bootstrap interval {low:+.4f} to {high:+.4f}); "
          f"B better on {(diff > 0).sum()}, worse on {(diff < 0).sum()}")
    ranked = np.sort(vb)
    k = max(1, int(WORST_FRACTION * len(ranked)))
    print(f"B: worst {k} images average {ranked[:k].mean():.4f}, the other {len(ranked) - k} "
          f"{ranked[k:].mean():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
