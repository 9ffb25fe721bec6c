#!/usr/bin/env python3
"""Train the default model's whole-lung branch on v7-whole-lung and save the two-output candidate.

    nice -n 19 .venv/bin/python scripts/train_whole.py --out runs/whole

Splits v7-whole-lung (lungseg.whole.split: a fixed held-out part), trains the branch with the
default's layers frozen, keeps the best held-out epoch, then scores both outputs on the held-out
part and on Shenzhen (reported only: never trained or tuned on). Writes ``OUT/best`` (model.keras
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

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFINITIONS = {
    whole.VISIBLE: "the visible lung field: the air, stopping at the heart's border and the dome of the diaphragm",
    whole.WHOLE: "the whole lung: the lung behind the heart and below the dome of the diaphragm included",
}


def card_for(base_card: dict, training: dict, held: list, figures: dict, data: Path) -> dict:
    """The default's card, extended with both outputs, their thresholds and figures."""
    card = {**base_card, "name": "lungseg-context-whole", "version": time.strftime("%Y.%m.%d"),
            "output": "two lung probabilities per pixel at the input's size: visible field, whole lung"}
    card["outputs"] = {name: {"definition": text, "threshold": card["threshold"] if name == whole.VISIBLE
                              else whole.THRESHOLD} for name, text in DEFINITIONS.items()}
    card["thresholds"] = {name: out["threshold"] for name, out in card["outputs"].items()}
    card["whole_lung"] = {
        "branch": "lungseg.whole.build: on the default's decoder features, trained with all else frozen",
        "data": f"{data.as_posix()}: {training['train_images']} X-rays with whole-lung masks",
        "held_out": {"rule": whole.split.__doc__.split("\n\n")[1].strip(), "images": held},
        "training": {k: v for k, v in training.items() if k != "history"},
        "metrics": figures,
    }
    return card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "v7-whole-lung")
    parser.add_argument("--shenzhen", type=Path, default=SHARED / "shenzhen")
    parser.add_argument("--out", type=Path, default=Path("runs/whole"))
    parser.add_argument("--epochs", type=int, default=whole.EPOCHS)
    args = parser.parse_args(argv)

    train_samples, held = whole.split(args.data)
    base, base_card = bundle.load(bundle.DEFAULT_MODEL)
    model = whole.build(base)
    training = whole.train(model, train_samples, held, out=args.out, epochs=args.epochs)
    figures = {"held_out": whole.evaluate(model, held, base_card),
               "shenzhen": whole.evaluate(model, find_samples(args.shenzhen), base_card)}
    card = card_for(base_card, training, [s.image.name for s in held],
                    {k: v["summary"] for k, v in figures.items()}, args.data)
    bundle.save(model, card, args.out / "best")
    (args.out / "metrics.json").write_text(json.dumps(figures, indent=1))
    size = (args.out / "best" / bundle.MODEL_FILE).stat().st_size
    print(json.dumps({"training": card["whole_lung"]["training"], "metrics": card["whole_lung"]["metrics"],
                      "model_bytes": size}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
