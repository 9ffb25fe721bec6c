"""How a model holds up under the degradations real devices and exports make, and on another hospital.

    .venv/bin/python bench/robustness.py [--model DIR] [--limit N] [--out reports/robustness]

Scores the model on COVID-QU-Ex Val as it is and under each of lungseg.perturb.PERTURBATIONS
(washed-out, under-exposed, gamma 0.5/2, noise sigma 8, blur sigma 2, JPEG quality 10, downscale
to 128 px and back, rotation 5-10 degrees, a crop of 10-25% at one side; seeded per X-ray), and on
../shared/data/shenzhen (a hospital it never saw). Prints a Markdown table: mean Dice, the drop
from clean, the worst 5% mean Dice, precision and recall; writes it with per-image rows to --out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lungseg import Segmenter, bundle, metrics, read_image
from lungseg.datasets import find_samples
from lungseg.evaluation import at_truth_size
from lungseg.perturb import PERTURBATIONS

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def score_set(seg: Segmenter, samples, perturbation=None, seed: int = 0) -> list[dict]:
    """Per-image scores of ``seg`` on ``samples``, each degraded by ``perturbation`` if given."""
    rows = []
    for index, sample in enumerate(tqdm(samples, desc=getattr(perturbation, "__name__", "clean"), leave=False)):
        image, truth = read_image(sample.image), sample.read_mask()
        if perturbation:
            image, truth = perturbation(image, truth, np.random.default_rng([seed, index]))
        rows.append({"image": sample.name, **metrics.score(truth, at_truth_size(seg.predict(image), truth))})
    return rows


def summary(rows: list[dict]) -> dict:
    dice = np.sort([r["dice"] for r in rows])
    return {"images": len(rows), "dice": float(dice.mean()),
            "worst_5pct": float(dice[: max(1, len(dice) // 20)].mean()),
            "precision": float(np.mean([r["precision"] for r in rows])),
            "recall": float(np.mean([r["recall"] for r in rows]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=bundle.DEFAULT_MODEL)
    parser.add_argument("--limit", type=int, help="first N Val X-rays only")
    parser.add_argument("--out", type=Path, default=Path("reports/robustness"))
    args = parser.parse_args()
    seg = Segmenter.load(args.model)
    val = find_samples(SHARED / "covidqu-ex" / "Val")[: args.limit]
    results = {"clean": score_set(seg, val)}
    for name, perturbation in PERTURBATIONS.items():
        results[name] = score_set(seg, val, perturbation)
    if (SHARED / "shenzhen").is_dir():
        results["shenzhen (clean)"] = score_set(seg, find_samples(SHARED / "shenzhen"))
    table = {name: summary(rows) for name, rows in results.items()}
    clean = table["clean"]["dice"]
    lines = [f"Model `{seg.name}` ({args.model}); Val {len(val)} X-rays", "",
             "| set | images | Dice | drop from clean | worst 5% | precision | recall |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in table.items():
        drop = "" if name.startswith("shenzhen") or name == "clean" else f"{s['dice'] - clean:+.4f}"
        lines.append(f"| {name} | {s['images']} | {s['dice']:.4f} | {drop} | {s['worst_5pct']:.4f} | "
                     f"{s['precision']:.4f} | {s['recall']:.4f} |")
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.md").write_text("\n".join(lines) + "\n")
    (args.out / "robustness.json").write_text(json.dumps({"summary": table, "images": results}, indent=0))


if __name__ == "__main__":
    main()
