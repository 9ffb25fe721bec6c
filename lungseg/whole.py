"""The two-output model: the visible lung field (today's default) and the whole lung, one VGG19 pass.

COVID-QU-Ex's masks, and so the default model, outline the visible lung field; V7's outline the
whole lung (behind the heart and below the dome of the diaphragm too). Shenzhen's, said to be
whole-lung, mostly stop at the heart's border: its masks are 0.99 of the visible output's area
(median over 200), V7's 1.30. ``build`` keeps
every layer and weight of the default, so its ``probability`` output is today's bit for bit, and adds
a small branch on the default's own decoder features that outputs ``whole_probability``. ``train``
fits that branch alone (everything shared frozen) on the training part of v7-whole-lung
(``split``: a fixed held-out part); ``describe`` writes both outputs into the card, and
``evaluate`` scores both, as lungseg.inference makes them, against whole-lung masks.

    .venv/bin/python scripts/train_whole.py --out runs/whole
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import keras
import numpy as np

from . import losses, metrics
from .augment import AUGMENTATION, make_augmenter
from .datasets import Sample, find_samples
from .evaluation import at_truth_size
from .imageio import read_image
from .inference import Segmenter
from .layers import Resize, ResizeLike
from .models import conv_bn_relu
from .rules import DEFINITIONS as DEFINITIONS_RULES
from .training import SEED, dataset, load_arrays

VISIBLE, WHOLE = "probability", "whole_probability"   # the two outputs' layer names
DEFINITIONS = {"visible": VISIBLE, "whole": WHOLE}   # what each output outlines -> its layer
PREFIX = "whole_"             # every layer of the branch; all others are the default's, frozen
WIDTH = 48                    # the branch's channels at 1/4 scale (then 32 at 1/2)
HELD_OUT = 0.2                # share of v7-whole-lung held out for selection and figures
PAIRS = "pairs.csv"           # v7-whole-lung's table: which X-rays COVID-QU-Ex also holds
PAIRED_IN_VAL = "covidqu-ex/Val/"
THRESHOLD = 0.5
EPOCHS, BATCH_SIZE, LEARNING_RATE = 16, 8, 2e-3
WORST_SHARE = 0.05            # "worst 5%": the mean Dice of the lowest 5% of X-rays


def split(root: str | Path, seed: int = SEED) -> tuple[list[Sample], list[Sample]]:
    """(training, held-out) X-rays of v7-whole-lung, fixed by ``seed`` whatever the listing order.

    Held out: every X-ray whose COVID-QU-Ex copy is in Val (the default was selected on Val; it
    must not train the branch either), then a seeded draw of those COVID-QU-Ex does not hold here,
    up to ``HELD_OUT`` of all. So no held-out X-ray was ever seen by the default's training (its
    Train copies all train the branch), and held-out figures are out of sample for the whole net.
    """
    root = Path(root)
    samples = {s.image.name: s for s in find_samples(root)}
    with open(root / PAIRS, newline="") as table:
        copy = {row["image"]: row["same_xray_in_covidqu_ex"] for row in csv.DictReader(table)}
    names = sorted(samples)
    in_val = [n for n in names if copy.get(n, "").startswith(PAIRED_IN_VAL)]
    unpaired = [n for n in names if not copy.get(n)]
    wanted = round(HELD_OUT * len(names)) - len(in_val)
    drawn = [unpaired[i] for i in np.random.default_rng(seed).permutation(len(unpaired))[:max(wanted, 0)]]
    held = set(in_val) | set(drawn)
    return ([samples[n] for n in names if n not in held], [samples[n] for n in names if n in held])


def build(base: keras.Model) -> keras.Model:
    """The default ``base`` with a whole-lung branch: outputs [``probability``, ``whole_probability``].

    The branch reads the decoder's context at 1/4 scale (``global_add``) and its fused map at 1/2
    (``half_fuse_relu``), and adds what it finds, made at 1/2 scale, to the visible logits (the
    whole lung contains the visible field, and where their borders meet, at the ribs, the visible
    logits keep the full-scale detail): it starts as the visible output and learns the difference.
    Nothing of it runs at full scale but one resize and one sum: 135 M multiply-adds beside the
    default's 4.85 G (+2.8%); the same branch ending at full scale on block1's features cost
    about 4 points more time per X-ray (a TF graph on CPU) for +0.0015 held-out Dice. Base's
    layers are shared, not copied.
    """
    size = base.get_layer("preprocess").size
    w = conv_bn_relu(base.get_layer("global_add").output, WIDTH, 3, PREFIX + "ctx")
    w = conv_bn_relu(w, WIDTH, 3, PREFIX + "ctx_d2", dilation=2)
    w = keras.layers.Concatenate(name=PREFIX + "half_cat")(
        [Resize(size // 2, name=PREFIX + "half_up")(w), base.get_layer("half_fuse_relu").output])
    w = conv_bn_relu(w, 32, 1, PREFIX + "half")
    extra = keras.layers.Conv2D(1, 1, kernel_initializer="zeros", name=PREFIX + "extra")(w)
    logits = keras.layers.Add(name=PREFIX + "logits")(
        [base.get_layer("logits").output, Resize(size, name=PREFIX + "full_up")(extra)])
    logits = ResizeLike(name=PREFIX + "to_input_size")([logits, base.input])
    whole = keras.layers.Activation("sigmoid", name=WHOLE)(logits)
    return keras.Model(base.input, [base.output, whole], name=f"{base.name}_whole")


def branch_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The whole-lung branch's own layers (the only ones ``train`` changes)."""
    return [layer for layer in model.layers if layer.name.startswith(PREFIX) or layer.name == WHOLE]


def freeze_shared(model: keras.Model) -> None:
    """Everything but the branch frozen (its batch norms in inference mode too)."""
    branch = {id(layer) for layer in branch_layers(model)}
    for layer in model.layers:
        layer.trainable = id(layer) in branch


def describe(card: dict) -> dict:
    """``card`` (the default's) with both outputs described afresh as lungseg.inference reads
    them: each definition's layer, meaning and threshold (the visible one keeps the default's)."""
    thresholds = {"visible": card.get("threshold", THRESHOLD), "whole": THRESHOLD}
    return {**card, "outputs": {name: {"layer": layer, "meaning": DEFINITIONS_RULES[name]["means"],
                                       "threshold": thresholds[name]} for name, layer in DEFINITIONS.items()}}


def visible_only(model: keras.Model) -> keras.Model:
    """The one-output default inside ``model`` (itself when it has no whole-lung branch): what
    ``build`` adds a branch to."""
    return model if len(model.outputs) == 1 else keras.Model(model.input, model.get_layer(VISIBLE).output,
                                                              name=model.name.removesuffix("_whole"))


def evaluate(segmenter: Segmenter, samples: list[Sample]) -> dict:
    """Both outputs scored against each sample's (whole-lung) mask at the truth's size: per-image
    Dice and, per definition, the mean metrics, the mean Dice of the worst ``WORST_SHARE`` and the
    lowest; also how much of the visible mask lies outside the whole-lung one (should be ~0), and
    how many manual masks are closer to the whole-lung output than to the visible one and how
    large they are beside it."""
    rows = []
    for sample in samples:
        image, truth = read_image(sample.image), sample.read_mask()
        found = {name: at_truth_size(segmenter.predict(image, definition=name), truth) for name in DEFINITIONS}
        scores = {name: metrics.score(truth, m) for name, m in found.items()}
        visible = max(int(found["visible"].sum()), 1)
        leak = np.count_nonzero(found["visible"].astype(bool) & ~found["whole"].astype(bool)) / visible
        rows.append({"image": sample.name, "scores": scores, "visible_outside_whole": float(leak),
                     "truth_over_visible": float(truth.astype(bool).sum() / visible)})
    summary = {"images": len(rows)}
    for name in DEFINITIONS:
        scores = [r["scores"][name] for r in rows]
        dice = np.sort([s["dice"] for s in scores])
        worst = dice[:max(1, round(WORST_SHARE * len(dice)))]
        summary[name] = {**metrics.summarize(scores), "dice_worst_5pct": float(worst.mean()),
                         "dice_min": float(dice[0])}
    summary["visible_outside_whole"] = float(np.mean([r["visible_outside_whole"] for r in rows]))
    # Which convention the manual masks follow: how many are closer (Dice) to the whole-lung
    # output than to the visible field, and their area over the visible output's (median).
    summary["closer_to_whole"] = sum(r["scores"]["whole"]["dice"] > r["scores"]["visible"]["dice"] for r in rows)
    summary["truth_over_visible_median"] = float(np.median([r["truth_over_visible"] for r in rows]))
    per_image = [{"image": r["image"], "visible_outside_whole": r["visible_outside_whole"],
                  "truth_over_visible": r["truth_over_visible"],
                  **{f"{n}_dice": r["scores"][n]["dice"] for n in DEFINITIONS}} for r in rows]
    return {"summary": summary, "images": per_image}


class HeldOutDice(keras.callbacks.Callback):
    """After each epoch, the whole-lung Dice on held-out images at the training size (thresholded,
    no clean-up): the figure the best epoch is chosen on."""

    def __init__(self, images: np.ndarray, truth: np.ndarray):
        super().__init__()
        self.images, self.truth = images.astype(np.float32), truth[..., 0].astype(bool)

    def on_epoch_end(self, epoch, logs=None):
        probs = self.model.predict(self.images, batch_size=BATCH_SIZE, verbose=0)[..., 0]
        logs["val_dice"] = float(np.mean([metrics.score(t, p >= THRESHOLD)["dice"]
                                          for t, p in zip(self.truth, probs)]))


def train(model: keras.Model, train_samples: list[Sample], held_samples: list[Sample] | None = None,
          out: str | Path | None = None, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
          learning_rate: float = LEARNING_RATE, seed: int = SEED, augment: bool = True) -> dict:
    """Fit the whole-lung branch of ``model`` (from ``build``) on ``train_samples``, all else frozen.

    Augmented as lungseg.augment does (geometry with the mask, photometry), BCE + soft Dice loss,
    cosine-decayed Adam. With ``held_samples`` the branch weights of the best held-out epoch are
    kept. With ``out``, each epoch's figures go to ``out/history.json``. Returns the summary.
    """
    keras.utils.set_random_seed(seed)
    freeze_shared(model)
    trainer = keras.Model(model.input, model.get_layer(WHOLE).output, name="whole_trainer")
    steps = epochs * int(np.ceil(len(train_samples) / batch_size))
    trainer.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        learning_rate, steps, alpha=0.02)), loss=losses.bce_dice_loss)
    train_x, train_y = load_arrays(train_samples)
    data = dataset(train_x, train_y, batch_size, make_augmenter(seed) if augment else None, shuffle_seed=seed)
    history, best = [], None
    callbacks = [keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: history.append({"started": time.time()}))]
    if held_samples:
        callbacks.append(HeldOutDice(*load_arrays(held_samples)))

    def record(epoch, logs):
        nonlocal best
        row = history[-1]
        row.update(epoch=epoch + 1, seconds=round(time.time() - row.pop("started"), 1),
                   **{k: float(v) for k, v in logs.items()})
        if held_samples and (best is None or row["val_dice"] > best[0]["val_dice"]):
            best = (dict(row), [layer.get_weights() for layer in branch_layers(model)])
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "history.json").write_text(json.dumps(history, indent=1))
    callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=record))
    trainer.fit(data, epochs=epochs, callbacks=callbacks, verbose=0)
    if best:
        for layer, weights in zip(branch_layers(model), best[1]):
            layer.set_weights(weights)
    for layer in model.layers:      # saved as the default is: no layer frozen (a fine-tune would not train)
        layer.trainable = True
    chosen = best[0] if best else history[-1]
    return {"best_epoch": chosen["epoch"], "epochs": epochs, "train_images": len(train_samples),
            "held_out_images": len(held_samples or []), "held_out_dice_at_best": chosen.get("val_dice"),
            "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"],
            "training_seconds": round(sum(r["seconds"] for r in history)),
            "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed,
            "augmentation": AUGMENTATION if augment else "none", "history": history}

