"""How a model holds up under the degradations real devices and exports make, and on another hospital.

    .venv/bin/python bench/robustness.py [--model DIR ...] [--limit N] [--out reports/robustness]
        [--warnings] [--update-card]

Scores the model on COVID-QU-Ex Val as it is and under each of lungseg.perturb.PERTURBATIONS
(washed-out, under-exposed, gamma 0.5/2, noise sigma 8, blur sigma 2, JPEG quality 10, downscale
to 128 px and back, rotation 5-10 degrees, a crop of 10-25% at one side; seeded per X-ray), and on
../shared/data/shenzhen (a hospital it never saw). Prints a Markdown table per model (mean Dice,
the drop from clean, the worst 5% mean Dice, precision and recall) and, for several --model,
their Dice and drops side by side; writes them with per-image rows to --out. --warnings scores
the masks Segmenter.analyze gives and counts how many poor ones (Dice < 0.90) and good ones
(>= 0.95) got a warning. --update-card stores each model's table in its card ("robustness"),
beside what it was trained to withstand.
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


def score_set(seg: Segmenter, samples, perturbation=None, seed: int = 0, warnings: bool = False) -> list[dict]:
    """Per-image scores of ``seg`` on ``samples``, each degraded by ``perturbation`` if given; with
    ``warnings``, of the masks ``Segmenter.analyze`` gives (as the CLI and the app do) and whether
    each got a warning."""
    rows = []
    for index, sample in enumerate(tqdm(samples, desc=getattr(perturbation, "__name__", "clean"), leave=False)):
        image, truth = read_image(sample.image), sample.read_mask()
        if perturbation:
            image, truth = perturbation(image, truth, np.random.default_rng([seed, index]))
        if warnings:
            result = seg.analyze(image)
            mask, extra = result.mask, {"warned": bool(result.warnings)}
        else:
            mask, extra = seg.predict(image), {}
        rows.append({"image": sample.name, **metrics.score(truth, at_truth_size(mask, truth)), **extra})
    return rows


def summary(rows: list[dict]) -> dict:
    dice = np.sort([r["dice"] for r in rows])
    table = {"images": len(rows), "dice": float(dice.mean()),
             "worst_5pct": float(dice[: max(1, len(dice) // 20)].mean()),
             "precision": float(np.mean([r["precision"] for r in rows])),
             "recall": float(np.mean([r["recall"] for r in rows]))}
    if "warned" in rows[0]:   # masks under Dice 0.90 that got a warning, and good ones (>= 0.95) that did
        for name, keep in (("poor_warned", lambda d: d < 0.90), ("good_warned", lambda d: d >= 0.95)):
            chosen = [r["warned"] for r in rows if keep(r["dice"])]
            table[name] = f"{sum(chosen)}/{len(chosen)}"
    return table


def model_table(seg: Segmenter, val, shenzhen, warnings: bool = False) -> dict[str, list[dict]]:
    """Per-image rows of ``seg`` on clean Val, each perturbation of it, and Shenzhen."""
    results = {"clean": score_set(seg, val, warnings=warnings)}
    for name, perturbation in PERTURBATIONS.items():
        results[name] = score_set(seg, val, perturbation, warnings=warnings)
    if shenzhen:
        results["shenzhen (clean)"] = score_set(seg, shenzhen, warnings=warnings)
    return results


def drop(name: str, table: dict[str, dict]) -> str:
    """The set's Dice minus clean Val's; none for clean Val and Shenzhen (another dataset)."""
    return "" if name.startswith("shenzhen") or name == "clean" else \
        f"{table[name]['dice'] - table['clean']['dice']:+.4f}"


def markdown(title: str, table: dict[str, dict]) -> list[str]:
    warned = "poor_warned" in table["clean"]
    lines = [title, "", "| set | images | Dice | drop from clean | worst 5% | precision | recall |"
             + (" Dice < 0.90 warned | Dice >= 0.95 warned |" if warned else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if warned else "")]
    for name, s in table.items():
        lines.append(f"| {name} | {s['images']} | {s['dice']:.4f} | {drop(name, table)} | {s['worst_5pct']:.4f} | "
                     f"{s['precision']:.4f} | {s['recall']:.4f} |"
                     + (f" {s['poor_warned']} | {s['good_warned']} |" if warned else ""))
    return lines + [""]


def side_by_side(tables: dict[str, dict]) -> list[str]:
    """Dice (drop from clean) and worst 5% of each model, one column pair per model."""
    names = list(tables)
    lines = ["| set | " + " | ".join(f"{n}: Dice (drop) | {n}: worst 5%" for n in names) + " |",
             "|---|" + "---:|---:|" * len(names)]
    for row in tables[names[0]]:
        cells = []
        for n in names:
            change = drop(row, tables[n])
            cells += [f"{tables[n][row]['dice']:.4f}" + (f" ({change})" if change else ""),
                      f"{tables[n][row]['worst_5pct']:.4f}"]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="saved model folder; repeat to compare "
                        "(default: the packaged default)")
    parser.add_argument("--limit", type=int, help="first N Val X-rays only")
    parser.add_argument("--out", type=Path, default=Path("reports/robustness"))
    parser.add_argument("--warnings", action="store_true",
                        help="score the masks Segmenter.analyze gives (as the CLI and the app) and count "
                        "those under Dice 0.90 (and >= 0.95) that get a warning")
    parser.add_argument("--update-card", action="store_true",
                        help="store each model's table in its card (robustness)")
    args = parser.parse_args()
    val = find_samples(SHARED / "covidqu-ex" / "Val")[: args.limit]
    shenzhen = find_samples(SHARED / "shenzhen") if (SHARED / "shenzhen").is_dir() else []
    tables, lines, rows = {}, [], {}
    for folder in args.model or [str(bundle.DEFAULT_MODEL)]:
        seg = Segmenter.load(folder)
        label = Path(folder).as_posix()
        rows[label] = model_table(seg, val, shenzhen, args.warnings)
        tables[label] = {name: summary(r) for name, r in rows[label].items()}
        lines += markdown(f"Model `{seg.name} {seg.card.get('version', '')}` ({label}); Val {len(val)} X-rays",
                          tables[label])
        if args.update_card:
            card = bundle.read_card(folder)
            card["robustness"] = {"trained_to_withstand": bundle.trained_to_withstand(card),
                                  "benchmark": "bench/robustness.py (lungseg.perturb)",
                                  "dice": {name: round(t["dice"], 4) for name, t in tables[label].items()}}
            bundle.write_card(card, bundle.resolve(folder))
    if len(tables) > 1:
        lines += side_by_side(tables)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "robustness.md").write_text("\n".join(lines))
    (args.out / "robustness.json").write_text(json.dumps({"summary": tables, "images": rows}, indent=0))


if __name__ == "__main__":
    main()
