"""Training a model on a dataset folder: seeded, augmented, checkpointed, resumable.

    python -m lungseg train --data ../shared/data/covidqu-ex/Train \
        --val ../shared/data/covidqu-ex/Val --out runs/context

Writes into ``--out``: ``checkpoints/last.keras`` every epoch (a rerun resumes from it),
``best/`` (the model with the best validation Dice, with its card), ``history.json`` and
``curves.png``.
"""
from __future__ import annotations

import functools
import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm
from tqdm.keras import TqdmCallback

from . import bundle, losses, metrics, plots
from .augment import AUGMENTATION, ROBUST_AUGMENTATION, make_augmenter
from .backbone import load_vgg19_weights
from .datasets import Sample, find_samples, holdout_split
from .imageio import read_image
from .models import ARCHITECTURES, TRAIN_INTENSITY

log = logging.getLogger(__name__)

TRAIN_SIZE = 256        # images and masks are brought to this size to be batched
SEED = 1234
DEFAULTS = {  # per architecture: epochs, batch size, learning rate, loss
    "seed": dict(epochs=19, batch_size=16, learning_rate=1e-3, loss="bce_loss"),
    "context": dict(epochs=10, batch_size=8, learning_rate=2e-3, loss="bce_dice_loss"),
}
FINE_TUNE = dict(epochs=2, learning_rate=1e-4)  # second stage: the VGG layers train too
THRESHOLD = 0.5
POSTPROCESS = {"keep_largest": 2, "fill_holes": True}
STRATEGIES = ("default", "mirrored", "multiworker")
LICENCE = ("weights trained by LungSeg's own pipeline (MIT, as the code); VGG19 ImageNet weights "
           "by Oxford VGG, CC BY 4.0; training data under its own terms (see the dataset page)")


@functools.cache
def distribution(strategy: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named: "default" (one device), "mirrored" (every GPU of this
    machine, or its logical CPU devices when it has none) or "multiworker" (the machines TF_CONFIG
    lists, each with its GPUs); the batch size given to ``train`` is split across the replicas.
    One per process: TF's collectives expect a process to keep its strategy."""
    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")])
    if strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if strategy == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}")


def load_arrays(samples: list[Sample], size: int = TRAIN_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Images as (N, size, size, 3) uint8 and masks as (N, size, size, 1) float32 0/1."""
    images = np.zeros((len(samples), size, size, 3), np.uint8)
    masks = np.zeros((len(samples), size, size, 1), np.float32)
    for i, sample in enumerate(tqdm(samples, desc="loading", unit="img", leave=False)):
        image, mask = read_image(sample.image), sample.read_mask()
        if image.shape[:2] != (size, size):
            image = tf.image.resize(image, (size, size)).numpy().round().clip(0, 255)
            mask = tf.image.resize(mask[..., None], (size, size), method="nearest").numpy()[..., 0]
        images[i], masks[i, ..., 0] = image, mask
    return images, masks


def dataset(images, masks, batch_size: int, augment=None, shuffle_seed: int | None = None):
    """A tf.data pipeline over in-memory arrays, shuffled and augmented when asked."""
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class ValidationDice(keras.callbacks.Callback):
    """After each epoch, score thresholded masks on validation images (lungseg.metrics)."""

    def __init__(self, images, masks):
        super().__init__()
        self.images, self.truth = images, masks[..., 0].astype(np.uint8)

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.images.astype(np.float32), batch_size=16, verbose=0)
        rows = [metrics.score(t, (p[..., 0] >= THRESHOLD)) for t, p in zip(self.truth, probs)]
        summary = metrics.summarize(rows)
        logs.update({f"val_{k}": summary[k] for k in ("dice", "iou", "accuracy")})


class SaveHistory(keras.callbacks.Callback):
    """Append each epoch's logs (with its wall time) to history.json and redraw curves.png."""

    def __init__(self, out: Path, history: list[dict]):
        super().__init__()
        self.out, self.history = out, history

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.started, 1)}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.history.append(row)
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        plots.training_curves(self.history, self.out / "curves.png")


def train(data: str | Path, out: str | Path, val: str | Path | None = None,
          architecture: str = "context", backbone_weights: str = "imagenet",
          epochs: int | None = None, batch_size: int | None = None,
          learning_rate: float | None = None, limit: int | None = None,
          val_limit: int | None = 120, seed: int = SEED, name: str | None = None,
          fine_tune: str | Path | None = None, folds: int | None = None,
          holdout: int | None = None, strategy: str = "default", robust: bool = False) -> dict:
    """Train ``architecture`` on ``data`` (validating on ``val``), resuming from ``out`` if it holds a run.

    With ``fine_tune`` (a saved model folder), start from that model instead and train its
    VGG19 layers too, at a lower learning rate. Returns the summary (best epoch, validation
    figures, time) also written to the card. With ``folds`` and ``holdout``, part ``holdout`` of
    ``folds`` seeded parts of ``data`` is left out (datasets.holdout_split), so the model can be
    scored out of sample on it (the quality estimate is fitted that way). ``strategy`` trains on
    several devices (``distribution``); with "multiworker", workers other than the chief write
    their run into ``out/worker-<index>``. With ``robust``, the model standardises each X-ray's
    intensities (models.TRAIN_INTENSITY) and trains on degraded copies too (augment.py); a
    fine-tune keeps the standardisation of the model it starts from.
    """
    if fine_tune:
        architecture = bundle.read_card(fine_tune)["architecture"]
    settings = {**DEFAULTS[architecture], **(FINE_TUNE if fine_tune else {})}
    epochs = epochs or settings["epochs"]
    batch_size = batch_size or settings["batch_size"]
    learning_rate = learning_rate or settings["learning_rate"]
    distributed = distribution(strategy)
    out = Path(out)
    if not distributed.extended.should_checkpoint:
        out = out / f"worker-{distributed.cluster_resolver.task_id}"
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)

    rng = np.random.default_rng(seed)
    train_samples = find_samples(data)
    if folds:
        train_samples, _ = holdout_split(train_samples, folds, holdout or 0, seed)
    if limit:
        train_samples = [train_samples[i] for i in sorted(rng.permutation(len(train_samples))[:limit])]
    val_samples = find_samples(val) if val else []
    if val_samples and val_limit:
        val_samples = [val_samples[i] for i in sorted(rng.permutation(len(val_samples))[:val_limit])]
    log.info("training on %d images, validating on %d", len(train_samples), len(val_samples))
    train_x, train_y = load_arrays(train_samples)

    history_path, last = out / "history.json", out / "checkpoints" / "last.keras"
    history = json.loads(history_path.read_text()) if history_path.exists() and last.exists() else []
    with distributed.scope():   # the model's variables mirrored on every replica
        if history:
            model = keras.models.load_model(last)
            log.info("resuming %s after epoch %d", last, len(history))
        elif fine_tune:  # today's architecture, with the weights of the model fine-tuned
            from .whole import visible_only     # (whole.py trains on top of this module)
            source = visible_only(bundle.load(fine_tune)[0])   # a whole-lung branch is not carried over
            model = ARCHITECTURES[architecture](
                intensity=TRAIN_INTENSITY if robust else source.get_layer("preprocess").intensity)
            for layer in source.layers:
                if layer.weights:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
            for layer in model.layers:
                layer.trainable = True
            log.info("fine-tuning %s with its VGG19 layers unfrozen", fine_tune)
        else:
            model = ARCHITECTURES[architecture](intensity=TRAIN_INTENSITY if robust else None)
            load_vgg19_weights(model, backbone_weights)
        if not history:
            steps = epochs * int(np.ceil(len(train_x) / batch_size))
            schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
            model.compile(optimizer=keras.optimizers.Adam(schedule),
                          loss=getattr(losses, settings["loss"]))

    callbacks = [TqdmCallback(verbose=1)]
    if val_samples:
        val_x, val_y = load_arrays(val_samples)
        callbacks.append(ValidationDice(val_x, val_y))
    callbacks += [
        SaveHistory(out, history),
        keras.callbacks.ModelCheckpoint(last),
        keras.callbacks.ModelCheckpoint(out / "checkpoints" / "best.keras", save_best_only=True,
                                        monitor="val_dice" if val_samples else "loss",
                                        mode="max" if val_samples else "min"),
    ]
    started = time.time()
    model.fit(dataset(train_x, train_y, batch_size, make_augmenter(seed, robust), shuffle_seed=seed),
              epochs=epochs, initial_epoch=len(history), callbacks=callbacks, verbose=0)

    key = "val_dice" if val_samples else "loss"
    best = (max if val_samples else min)(history, key=lambda r: r[key])
    summary = {
        "best_epoch": best["epoch"], "epochs": len(history),
        "train_images": len(train_x), "val_images": len(val_samples),
        "val_dice_at_best": best.get("val_dice"),
        "training_seconds": round(sum(r["seconds"] for r in history)),
        "this_run_seconds": round(time.time() - started),
        "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
        "augmentation": ROBUST_AUGMENTATION if robust else AUGMENTATION,
    }
    if folds:
        summary["held_out"] = {"folds": folds, "holdout": holdout or 0, "seed": seed}
    if fine_tune:  # the model it started from, how that was trained, and the totals
        base = bundle.read_card(fine_tune).get("training", {})
        summary["epochs_in_all"] = summary["epochs"] + base.get("epochs_in_all", base.get("epochs", 0))
        summary["training_seconds_in_all"] = summary["training_seconds"] + base.get(
            "training_seconds_in_all", base.get("training_seconds", 0))
        summary["started_from"] = {"model": Path(fine_tune).as_posix(), "training": base}
    best_model = keras.models.load_model(out / "checkpoints" / "best.keras", compile=False)
    card = {
        "name": name or f"lungseg-{architecture}", "version": time.strftime("%Y.%m.%d"),
        "architecture": architecture, "input_size": int(best_model.get_layer("preprocess").size),
        "input": "raw RGB pixels 0-255, any size (resized, "
                 + ("grey levels standardised per X-ray, " if best_model.get_layer("preprocess").intensity else "")
                 + "and VGG-normalised inside the model)",
        "output": "lung probability per pixel at the input's size",
        "threshold": THRESHOLD, "postprocess": POSTPROCESS if architecture != "seed" else {},
        "backbone": "VGG19 (ImageNet weights); its layers as named in the model; "
                    + (f"fine-tuned, starting from {Path(fine_tune).as_posix()}" if fine_tune else "frozen"),
        "data": f"{Path(data).as_posix()}: {len(train_x)} X-rays with manual lung masks",
        "licence": LICENCE,
        "training": summary,
    }
    bundle.save(best_model, card, out / "best")
    log.info("done: %s", json.dumps(summary))
    return summary
