"""Scoring a model on a labelled dataset: per-image and mean metrics, overall and per group.

    python -m lungseg evaluate --data ../shared/data/covidqu-ex/Val --out reports/default
    python -m lungseg evaluate --data ../shared/data/v7-whole-lung --definition whole

``definition`` picks the model's output scored (``Segmenter.output``): the visible lung field
(the default) or the whole lung, against masks drawn in that convention.

Writes ``metrics.json`` (per image, per group, overall), ``metrics.md`` (a Markdown table),
``worst.png`` (the lowest-Dice cases: image, truth, prediction) and ``typical.png`` (cases at
the 10th, 50th and 90th Dice percentile).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import stats
from tqdm.auto import tqdm

from . import metrics, plots, rules
from .datasets import Sample, find_samples
from .imageio import read_image
from .inference import Segmenter

BATCH = 16


def at_truth_size(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The predicted mask resized (nearest) to the manual mask's size: scores compare them there."""
    if pred.shape == truth.shape:
        return pred
    return np.asarray(Image.fromarray(pred).resize(truth.shape[::-1], Image.NEAREST))


def predictions(segmenter: Segmenter, samples: list[Sample], desc: str = "evaluating",
                threshold: float | None = None, definition: str = "visible"):
    """Yield (sample, image, analysis) for every sample (``Segmenter.analyze`` of ``definition``:
    mask, quality, warnings), predicting in batches with a progress bar."""
    for start in tqdm(range(0, len(samples), BATCH), desc=desc, unit="batch"):
        chunk = samples[start:start + BATCH]
        images = [read_image(s.image) for s in chunk]
        yield from zip(chunk, images, segmenter.analyze_batch(images, threshold, definition=definition))


def _scored(sample: Sample, image: np.ndarray, pred: np.ndarray) -> tuple[dict, dict]:
    """The metrics row of one prediction (at the truth's size) and its case for the figures."""
    truth = sample.read_mask()
    pred = at_truth_size(pred, truth)
    row = {"image": sample.name, "group": sample.group, **metrics.score(truth, pred)}
    case = {"image": image, "truth": truth, "pred": pred,
            "title": f"{sample.group}/{sample.name} Dice {row['dice']:.3f}"}
    return row, case


def evaluate(segmenter: Segmenter, data: str | Path, out: str | Path | None = None,
             limit: int | None = None, worst: int = 6, threshold: float | None = None,
             definition: str = "visible") -> dict:
    """Score ``segmenter``'s ``definition`` output (at ``threshold``, default its card's) on every
    pair under ``data``; masks are compared at the truth's size."""
    estimator = segmenter.output(definition).quality
    samples = find_samples(data)[:limit] if limit else find_samples(data)
    rows, started = [], time.perf_counter()
    worst_cases: list[tuple[float, dict]] = []
    for sample, image, result in predictions(segmenter, samples, threshold=threshold, definition=definition):
        row, case = _scored(sample, image, result.mask)
        row.update(quality=result.quality, warnings=[w["code"] for w in result.warnings])
        rows.append(row)
        worst_cases = sorted(worst_cases + [(row["dice"], case)], key=lambda c: c[0])[:worst]
    seconds = time.perf_counter() - started
    groups = sorted({r["group"] for r in rows})
    report = {
        "model": segmenter.name, "definition": definition, "data": str(data), "seconds": round(seconds, 1),
        "overall": metrics.summarize(rows),
        "groups": {g: metrics.summarize([r for r in rows if r["group"] == g]) for g in groups},
        "images": rows,
    }
    if estimator:
        report["quality"] = quality_report(rows, estimator["warn_below"])
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=1))
        (out / "metrics.md").write_text(markdown_table(report))
        if "quality" in report:
            plots.quality_scatter(rows, report["quality"]["warn_below"], out / "quality.png",
                                  f"{segmenter.name} on {data}")
        if worst_cases:
            plots.case_grid([c for _, c in worst_cases], out / "worst.png")
            plots.case_grid([_case(segmenter, samples, rows, q, threshold, definition) for q in (90, 50, 10)],
                            out / "typical.png")
    return report


def quality_report(rows: list[dict], warn_below: float) -> dict:
    """How well the estimated quality tracks the true Dice, and who gets a warning."""
    dice = np.array([r["dice"] for r in rows])
    estimate = np.array([r["quality"] for r in rows])
    warned = np.array([bool(r["warnings"]) for r in rows])
    low_q = estimate < warn_below

    def share(selected: np.ndarray, flags: np.ndarray) -> float | None:
        return round(float(flags[selected].mean()), 4) if selected.any() else None

    return {
        "warn_below": warn_below,
        "spearman": round(float(stats.spearmanr(estimate, dice).statistic), 4),
        "mean_abs_error": round(float(np.abs(estimate - dice).mean()), 4),
        "images_dice_below_0.90": int((dice < 0.90).sum()),
        "warned_dice_below_0.90": share(dice < 0.90, warned),
        "images_dice_0.95_up": int((dice >= 0.95).sum()),
        "warned_dice_0.95_up": share(dice >= 0.95, warned),
        "low_quality_dice_below_0.90": share(dice < 0.90, low_q),
        "low_quality_dice_0.95_up": share(dice >= 0.95, low_q),
        "warned": int(warned.sum()),
        "warning_codes": {c: sum(c in r["warnings"] for r in rows)
                          for c in sorted({c for r in rows for c in r["warnings"]})},
    }


def _case(segmenter: Segmenter, samples: list[Sample], rows: list[dict], percentile: float,
          threshold: float | None, definition: str) -> dict:
    """The case whose Dice sits at ``percentile`` of all rows, predicted again for the figure."""
    dice = np.array([r["dice"] for r in rows])
    index = int(np.argmin(np.abs(dice - np.percentile(dice, percentile))))
    image = read_image(samples[index].image)
    _, case = _scored(samples[index], image, segmenter.analyze(image, threshold, definition=definition).mask)
    return {**case, "title": f"{case['title']} (p{percentile})"}


def markdown_table(report: dict) -> str:
    """Overall and per-group means as a Markdown table."""
    head = "| set | images | " + " | ".join(metrics.METRICS) + " |\n"
    head += "|---|---:|" + "---:|" * len(metrics.METRICS) + "\n"
    lines = []
    for name, summary in [("all", report["overall"]), *report["groups"].items()]:
        values = " | ".join(f"{summary[k]:.2f}" if k == "hd95" else f"{summary[k]:.4f}"
                            for k in metrics.METRICS)
        lines.append(f"| {name} | {summary['images']} | {values} |")
    outline = rules.DEFINITIONS[report.get("definition", "visible")]["name"]
    text = f"Model `{report['model']}` ({outline}) on `{report['data']}`\n\n" + head + "\n".join(lines) + "\n"
    if "quality" in report:
        q = report["quality"]
        text += (f"\nQuality estimate: Spearman {q['spearman']:.3f} with the true Dice, mean absolute "
                 f"error {q['mean_abs_error']:.4f}; warned: {q['warned_dice_below_0.90']} of masks with "
                 f"Dice < 0.90 ({q['images_dice_below_0.90']}), {q['warned_dice_0.95_up']} of masks with "
                 f"Dice >= 0.95 ({q['images_dice_0.95_up']}); warnings: {q['warning_codes']}\n")
    return text
