"""A saved model: ``model.keras`` plus ``card.json``, the metadata every consumer reads.

The card says what the model is (name, version, architecture, input size), how to turn its
probabilities into a mask (threshold, clean-up), and how it was trained and scored. The
Python API, the CLI, the Streamlit app and the TF.js export all read these values from the
card, so none of them is written twice.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

#: The committed models, shipped inside the package.
PACKAGED = Path(__file__).parent / "weights"
DEFAULT_MODEL = PACKAGED / "default"
SEED_MODEL = PACKAGED / "seed"

MODEL_FILE, CARD_FILE, README_FILE = "model.keras", "card.json", "README.md"


def resolve(path: str | Path) -> Path:
    """The folder of a saved model, given the folder or its model.keras file."""
    path = Path(path)
    folder = path.parent if path.suffix == ".keras" else path
    if not (folder / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{path}: no {MODEL_FILE} there")
    return folder


def read_card(path: str | Path) -> dict:
    """The card of a saved model (folder or model.keras path)."""
    card_path = resolve(path) / CARD_FILE
    return json.loads(card_path.read_text()) if card_path.is_file() else {}


def load(path: str | Path = DEFAULT_MODEL) -> tuple[keras.Model, dict]:
    """Load a saved model and its card (inference only; no optimizer state)."""
    import keras

    from . import layers, losses  # noqa: F401  (registers the custom objects the .keras file names)
    folder = resolve(path)
    model = keras.models.load_model(folder / MODEL_FILE, compile=False)
    return model, read_card(folder)


def outputs(card: dict) -> dict[str, dict]:
    """Each lung definition the card's model outlines -> its facts (``layer`` when named,
    ``threshold``, ``quality`` (None without an estimator), ``meaning``, ``metrics``): the card's
    ``outputs``; a card without them describes one output, the visible lung field. The card's
    top-level threshold and quality are the visible field's. Python and the page's export read
    them here."""
    found = {}
    for definition, facts in (card.get("outputs") or {"visible": {}}).items():
        visible = definition == "visible"
        found[definition] = {**facts,
                             "threshold": float(facts.get("threshold", card.get("threshold", 0.5) if visible else 0.5)),
                             "quality": facts.get("quality", card.get("quality") if visible else None)}
    return found


def save(model: keras.Model, card: dict, folder: str | Path) -> Path:
    """Write ``model`` (without optimizer state) and its card into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE, include_optimizer=False)
    write_card(card, folder)
    return folder


def write_card(card: dict, folder: str | Path) -> None:
    """Write ``card.json`` and its human-readable rendering ``README.md`` into ``folder``."""
    folder = Path(folder)
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (folder / README_FILE).write_text(render_card(card))


def trained_to_withstand(card: dict) -> str:
    """Every augmentation the model saw, over all its training stages (a fine-tune's lineage)."""
    seen, training = [], card.get("training", {})
    while training:
        for part in re.split(r"[,;] ", training.get("augmentation", "")):
            if part and part not in seen:
                seen.append(part)
        training = training.get("started_from", {}).get("training", {})
    return ", ".join(seen)


def render_card(card: dict) -> str:
    """The model card as Markdown: what the model is, how it was trained, how it scores."""
    lines = [f"# Model card: {card.get('name')} ({card.get('version')})", ""]
    for key in ("architecture", "backbone", "input", "input_size", "output", "threshold",
                "postprocess", "data", "licence"):
        if key in card:
            lines.append(f"- **{key}**: {card[key]}")
    if "outputs" in card:
        lines += ["", "## Outputs (lung definitions)", ""] + _outputs(card["outputs"])
    if "training" in card:
        lines += ["", "## Training", ""] + _bullets(card["training"])
    if "quality" in card:
        fitted = card["quality"].get("fitted_on", {})
        lines += ["", "## Quality estimate", "",
                  f"- estimated Dice from {', '.join(card['quality']['features'])} (ridge on logit Dice)",
                  f"- warning below {card['quality']['warn_below']}"] + _bullets({"fitted on": fitted})
    if "robustness" in card:
        robust = card["robustness"]
        lines += ["", "## Robustness", "", f"- trained to withstand: {robust['trained_to_withstand']}",
                  f"- scored by: {robust['benchmark']}", "", "| set | Dice |", "|---|---:|"]
        lines += [f"| {name} | {dice:.4f} |" for name, dice in robust["dice"].items()]
    if "whole_lung" in card:
        lines += ["", "## Whole-lung branch", ""] + _bullets(card["whole_lung"])
    if "metrics" in card:
        lines += ["", f"## Metrics ({card['metrics'].get('data', '')})", "",
                  "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in card["metrics"].items() if isinstance(v, float)]
    return "\n".join(lines) + "\n"


def _outputs(outputs: dict) -> list[str]:
    """Each output: what it outlines, its threshold and quality estimate, and a table of its
    figures per data set."""
    lines = []
    for name, facts in outputs.items():
        lines += [f"### {name}: {facts.get('meaning', '')}", "",
                  f"- layer `{facts.get('layer')}`, threshold {facts.get('threshold')}"]
        if "quality" in facts:
            fitted = {k: v for k, v in facts["quality"].get("fitted_on", {}).items() if not isinstance(v, dict)}
            lines.append(f"- quality estimate from {', '.join(facts['quality']['features'])}, "
                         f"warning below {facts['quality']['warn_below']} ({fitted})")
        figures = facts.get("metrics", {})
        if figures:
            lines += ["", "| data | images | Dice | IoU | precision | recall | HD95 |", "|---|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {data} | {m.get('images')} | {m['dice']:.4f} | {m['iou']:.4f} | {m['precision']:.4f} "
                      f"| {m['recall']:.4f} | {m['hd95']:.1f} |" for data, m in figures.items()]
        lines.append("")
    return lines[:-1]


def _bullets(values: dict, depth: int = 0) -> list[str]:
    """A dict as a Markdown list, nested dicts (e.g. the model a fine-tune started from) indented."""
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * depth}- {key}:"] + _bullets(value, depth + 1)
        else:
            lines.append(f"{'  ' * depth}- {key}: {value}")
    return lines
