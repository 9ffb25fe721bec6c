"""Which models the app offers: the committed default, the seed baseline and deployed folders."""
from __future__ import annotations

import os
from pathlib import Path

from lungseg.bundle import CARD_FILE, DEFAULT_MODEL, MODEL_FILE, SEED_MODEL, read_card

MODELS_DIR_ENV = "LUNGSEG_MODELS_DIR"


def available_models() -> dict[str, str]:
    """Label -> model folder: default, seed, then each folder with a model.keras under
    $LUNGSEG_MODELS_DIR (a deployer drops ``<name>/model.keras`` + ``card.json`` there)."""
    models = {"default (committed)": str(DEFAULT_MODEL), "seed baseline": str(SEED_MODEL)}
    folder = os.environ.get(MODELS_DIR_ENV)
    if folder and Path(folder).is_dir():
        for sub in sorted(Path(folder).iterdir()):
            if (sub / MODEL_FILE).is_file():
                models[f"{sub.name} (deployed)"] = str(sub)
    return models


def card_summary(folder: str) -> dict:
    """A model card flattened for display: identity, data, metrics, size on disk."""
    try:
        card = read_card(folder)
    except (OSError, ValueError) as err:      # a deployer's unreadable card must not break the page
        card = {"card_error": f"card.json unreadable ({err})"}
    training = card.get("training", {})
    size = (Path(folder) / MODEL_FILE).stat().st_size
    summary = {
        "name": card.get("name", Path(folder).name),
        "version": card.get("version", "?"),
        "architecture": card.get("architecture", "?"),
        "input size": card.get("input_size", "?"),
        "threshold": float(card.get("threshold", 0.5)),
        "clean-up": card.get("postprocess", {}),
        "training data": {k: training[k] for k in ("dataset", "train_images", "val_images", "epochs",
                                                   "best_epoch", "epochs_in_all") if k in training},
        "backbone": card.get("backbone", "?"),
        "metrics": card.get("metrics") or {k: v for k, v in training.items() if k.startswith("val_")},
        "size on disk": f"{size / 1e6:.1f} MB",
        "folder": folder,
        "has card": (Path(folder) / CARD_FILE).is_file(),
    }
    if "card_error" in card:
        summary["card error"] = card["card_error"]
    return summary
