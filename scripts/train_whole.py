#!/usr/bin/env python3
"""Train the default model's whole-lung branch on v7-whole-lung and save the two-output candidate.

    nice -n 19 .venv/bin/python scripts/train_whole.py --out runs/whole

Splits v7-whole-lung (lungseg.whole.split: a fixed held-out part), trains the branch with the
default's layers frozen, keeps the best held-out epoch, then scores both outputs on the held-out
part and on Shenzhen (reported only: never trained or tuned on). ``--trained DIR`` scores and
cards a saved candidate again without training. Writes ``OUT/best`` (model.keras
and card.json with both outputs' thresholds and figures), ``OUT/history.json`` and
``OUT/metrics.json`` (per image), and prints the figures.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lungseg import bundle, whole
from lungseg.datasets import find_samples
from lungseg.inference import Segmenter

SHARED = Path("../shared/data")   # beside the project, as the card names it


def card_for(base_card: dict, training: dict, held: list[str], figures: dict, data: Path) -> dict:
    """The default's card, extended with both outputs: their layer, meaning, threshold and figures."""
    card = {**whole.describe(base_card), "version": time.strftime("%Y.%m.%d"),
            "output": "two lung probabilities per pixel at the input's size (see outputs)"}
    metrics = {"visible": {"covidqu-ex/Val": base_card["metrics"]},
               "whole": {}}
    for data_set, result in figures.items():
        for name in whole.DEFINITIONS:
            metrics[name][data_set] = result[name]
    for name in whole.DEFINITIONS:
        card["outputs"][name]["metrics"] = metrics[name]
    card["whole_lung"] = {
        "branch": "lungseg.whole.build: on the default's decoder features, trained with all else frozen",
        "data": f"{data.as_posix()}: {training['train_images']} X-rays with whole-lung masks",
        "held_out": {"rule": " ".join(whole.split.__doc__.split("\n\n")[1].split()), "images": held},
        "training": {k: v for k, v in training.items() if k != "history"},
        "visible_outside_whole": {k: v["visible_outside_whole"] for k, v in figures.items()},
        "closer_to_whole": {k: f"{v['closer_to_whole']} of {v['images']} manual masks" for k, v in figures.items()},
        "truth_over_visible_median": {k: round(v["truth_over_visible_median"], 3) for k, v in figures.items()},
    }
    return card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "v7-whole-lung")
    parser.add_argument("--shenzhen", type=Path, default=SHARED / "shenzhen")
    parser.add_argument("--out", type=Path, default=Path("runs/whole"))
    parser.add_argument("--epochs", type=int, default=whole.EPOCHS)
    parser.add_argument("--trained", type=Path, help="score and card this saved two-output model instead of training")
    args = parser.parse_args(argv)

    train_samples, held = whole.split(args.data)
    base, base_card = bundle.load(bundle.DEFAULT_MODEL)
    base = whole.visible_only(base)
    if args.trained:
        model, training = bundle.load(args.trained)[0], bundle.read_card(args.trained)["whole_lung"]["training"]
    else:
        model = whole.build(base)
        training = whole.train(model, train_samples, held, out=args.out, epochs=args.epochs)
    segmenter = Segmenter(model, whole.describe(base_card))
    figures = {"v7-whole-lung held out": whole.evaluate(segmenter, held),
               "shenzhen": whole.evaluate(segmenter, find_samples(args.shenzhen))}
    card = card_for(base_card, training, [s.image.name for s in held],
                    {k: v["summary"] for k, v in figures.items()}, args.data)
    bundle.save(model, card, args.out / "best")
    (args.out / "metrics.json").write_text(json.dumps(figures, indent=1))
    size = (args.out / "best" / bundle.MODEL_FILE).stat().st_size
    print(json.dumps({"training": card["whole_lung"]["training"],
                      "metrics": {name: out["metrics"] for name, out in card["outputs"].items()},
                      "model_bytes": size}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
