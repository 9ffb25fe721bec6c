"""The two-output model (lungseg.whole): today's visible output untouched, a whole-lung branch that
trains with everything shared frozen, and v7-whole-lung's fixed held-out split."""
import csv

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, requires_data, val_images
from lungseg import Segmenter, bundle, whole
from lungseg.datasets import find_samples
from lungseg.imageio import read_image

V7 = SHARED / "data" / "v7-whole-lung"
requires_v7 = pytest.mark.skipif(not V7.is_dir(), reason=f"v7-whole-lung not found at {V7}")


@pytest.fixture(scope="module")
def default():
    """The default's visible-field network and its card, as ``whole.build`` starts from."""
    model, card = bundle.load(bundle.DEFAULT_MODEL)
    return whole.visible_only(model), {k: v for k, v in card.items() if k not in ("outputs", "whole_lung")}


def chest(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A built X-ray-like image: two dark lungs in a bright body, and as mask the lungs grown
    downwards and inwards (as the whole lung reaches behind the heart and below the dome)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    lungs = np.zeros(shape, bool)
    whole_lung = np.zeros(shape, bool)
    for cx in (0.3, 0.7):
        cx += rng.uniform(-0.03, 0.03)
        lungs |= ((x - cx) / 0.14) ** 2 + ((y - 0.45) / 0.28) ** 2 < 1
        whole_lung |= ((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.33) ** 2 < 1
    grey = 200 - 120 * lungs + rng.normal(0, 8, shape)
    image = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return image, whole_lung.astype(np.uint8)


def test_visible_output_is_the_default_bit_for_bit_and_after_saving(default, tmp_path):
    """Built images of several sizes: the two-output model's visible output equals the default's
    exactly, also once saved and loaded; the whole-lung output has the input's size too."""
    base, card = default
    model = whole.build(base)
    bundle.save(model, card, tmp_path / "two")
    loaded, _ = bundle.load(tmp_path / "two")
    for i, shape in enumerate([(256, 256), (300, 211)]):
        image = chest(shape, i)[0][None].astype(np.float32)
        expected = np.asarray(base(image))
        for two in (model, loaded):
            visible, whole_lung = (np.asarray(o) for o in two(image))
            assert np.array_equal(visible, expected)
            assert whole_lung.shape == expected.shape
    shared = [layer for layer in loaded.layers if layer not in whole.branch_layers(loaded)]
    assert sorted(layer.name for layer in shared) == sorted(layer.name for layer in base.layers)
    for layer in shared:
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()))


@requires_data
def test_visible_masks_equal_the_default_segmenters_on_real_xrays(default):
    """Real Val X-rays (and a v7 one, not square, when there): a freshly built two-output model's
    visible masks are the one-output default's pixel for pixel, through every Segmenter call."""
    base, card = default
    two = Segmenter(whole.build(base), whole.describe(card))
    paths = val_images(3) + (sorted((V7 / "images").glob("*.jpg"))[:1] if V7.is_dir() else [])
    images = [read_image(p) for p in paths]
    expected = Segmenter(base, card).predict_batch(images)
    both = two.analyze_batch(images, definition="both")
    for mask, result, visible, whole_lung in zip(expected, both, two.predict_batch(images),
                                                 two.predict_batch(images, definition="whole")):
        assert np.array_equal(visible, mask) and np.array_equal(result.mask, mask)
        assert np.array_equal(result.whole.mask, whole_lung) and whole_lung.shape == mask.shape


def _dataset(root, count: int, paired: dict[int, str]):
    """A v7-like folder of built chests: images/, masks/ and pairs.csv naming some COVID-QU-Ex copies."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    rows = []
    for i in range(count):
        image, mask = chest((160, 144), i)
        Image.fromarray(image).save(root / "images" / f"x{i:02d}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"x{i:02d}.png")
        rows.append({"image": f"x{i:02d}.png", "same_xray_in_covidqu_ex": paired.get(i, "")})
    with open(root / whole.PAIRS, "w", newline="") as table:
        writer = csv.DictWriter(table, ["image", "same_xray_in_covidqu_ex"])
        writer.writeheader()
        writer.writerows(rows[::-1])   # the table's order must not matter
    return root


def test_branch_trains_alone_and_loss_goes_down(default, tmp_path):
    """A few steps on built chests: the loss falls, the branch changes, and not one weight or
    batch-norm statistic of the shared network moves."""
    base, _ = default
    model = whole.build(base)
    shared = [w.copy() for layer in model.layers if layer not in whole.branch_layers(model)
              for w in layer.get_weights()]
    branch = [w.copy() for layer in whole.branch_layers(model) for w in layer.get_weights()]
    samples = find_samples(_dataset(tmp_path / "data", 4, {}))
    summary = whole.train(model, samples, epochs=6, batch_size=2, learning_rate=1e-2, augment=False)
    assert summary["loss_last"] < 0.8 * summary["loss_first"], summary
    after = [w for layer in model.layers if layer not in whole.branch_layers(model) for w in layer.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(shared, after))
    assert not all(np.array_equal(a, b) for a, b in zip(
        branch, [w for layer in whole.branch_layers(model) for w in layer.get_weights()]))


def test_split_rule_on_a_built_table(tmp_path):
    """Val copies always held out, Train copies never; the rest of the held-out part drawn from the
    unpaired; the same split whatever the table's order; disjoint and complete."""
    paired = {0: "covidqu-ex/Val/Normal/images/a.png", 1: "covidqu-ex/Train/Normal/images/b.png",
              2: "covidqu-ex/Train/COVID-19/images/c.png", 3: "covidqu-ex/Val/COVID-19/images/d.png"}
    root = _dataset(tmp_path / "data", 20, paired)
    train, held = whole.split(root)
    names = lambda samples: {s.image.name for s in samples}   # noqa: E731
    assert len(held) == round(whole.HELD_OUT * 20) and len(train) + len(held) == 20
    assert not names(train) & names(held)
    assert {"x00.png", "x03.png"} <= names(held) and not {"x01.png", "x02.png"} & names(held)
    assert whole.split(root) == (train, held)
    assert names(whole.split(root, seed=7)[1]) != names(held)


@requires_v7
def test_v7_split_is_fixed_disjoint_and_out_of_sample():
    """The real split: 20% held out, every X-ray whose COVID-QU-Ex copy is in Val among them, none
    whose copy is in Train (the default trained on those), the same on every call."""
    train, held = whole.split(V7)
    with open(V7 / whole.PAIRS, newline="") as table:
        copy = {r["image"]: r["same_xray_in_covidqu_ex"] for r in csv.DictReader(table)}
    train_names, held_names = {s.image.name for s in train}, {s.image.name for s in held}
    assert not train_names & held_names and train_names | held_names == set(copy)
    assert len(held) == round(whole.HELD_OUT * len(copy))
    assert {n for n, c in copy.items() if "/Val/" in c} <= held_names
    assert not any("/Train/" in copy[n] for n in held_names)
    assert whole.split(V7) == (train, held)
