"""Model shapes, in-model preprocessing, VGG19 weight loading, and real training steps."""
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import DATA, WEIGHTS, requires_data, val_images
from lungseg import bundle, losses
from lungseg.backbone import load_vgg19_weights
from lungseg.imageio import read_image
from lungseg.augment import make_augmenter
from lungseg.datasets import find_samples
from lungseg.models import ARCHITECTURES, TRAIN_INTENSITY, build_context, build_seed
from lungseg.perturb import PERTURBATIONS
from lungseg.training import dataset, load_arrays, train

requires_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"no VGG19 weights at {WEIGHTS}")


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(256, 256), (300, 180), (97, 131)])
def test_any_input_size_gives_probabilities_at_that_size(name, shape):
    model = ARCHITECTURES[name]()
    image = np.random.default_rng(0).uniform(0, 255, (2, *shape, 3)).astype(np.float32)
    out = np.asarray(model(image))
    assert out.shape == (2, *shape, 1)
    assert out.min() >= 0 and out.max() <= 1


def test_preprocessing_inside_the_model_matches_keras_vgg19():
    model = build_seed(input_size=64)
    preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
    image = np.random.default_rng(1).uniform(0, 255, (1, 128, 96, 3)).astype(np.float32)
    expected = keras.applications.vgg19.preprocess_input(tf.image.resize(image, (64, 64)).numpy())
    np.testing.assert_allclose(np.asarray(preprocess(image)), expected, atol=1e-4)


@requires_data
def test_intensity_standardisation_ignores_linear_exposure_changes():
    """A washed-out or under-exposed copy of a real X-ray (grey levels squeezed into a band, then
    rounded to 8 bits) reaches VGG almost as the original does; without it, far from it."""
    image = read_image(val_images(1)[0])
    for intensity, most in ((TRAIN_INTENSITY, 3.0), (None, None)):
        model = build_seed(input_size=64, intensity=intensity)
        preprocess = keras.Model(model.input, model.get_layer("preprocess").output)
        original = np.asarray(preprocess(image[None].astype(np.float32)))
        for name in ("washed_out", "under_exposed"):
            changed, _ = PERTURBATIONS[name](image, image[..., 0], None)
            gap = np.abs(np.asarray(preprocess(changed[None].astype(np.float32))) - original)
            if intensity:   # the band's 8-bit rounding is all that is left (a few grey levels)
                assert gap.mean() < 1.0 and np.percentile(gap, 99) < most, (name, gap.mean())
            else:
                assert gap.mean() > 20, (name, gap.mean())


def test_the_default_model_standardises_and_its_card_says_what_it_withstands():
    model, card = bundle.load(bundle.DEFAULT_MODEL)
    assert model.get_layer("preprocess").intensity == TRAIN_INTENSITY
    assert "standardised" in card["input"]
    withstand = bundle.trained_to_withstand(card)      # every stage of its lineage
    assert {"rotation", "gamma", "noise", "JPEG", "one-sided crop"} <= set(withstand.split(", "))
    assert card["robustness"]["trained_to_withstand"] == withstand
    stages = {"training": {"augmentation": "zoom, gamma", "started_from": {"training": {
        "augmentation": "noise; gamma, JPEG", "started_from": {"model": "a folder"}}}}}
    assert bundle.trained_to_withstand(stages) == "zoom, gamma, noise, JPEG"


@requires_data
def test_robust_augmentation_degrades_images_and_keeps_masks_binary():
    images, masks = load_arrays(find_samples(DATA / "Train")[:4])
    batches = {robust: [b for b in dataset(np.repeat(images, 8, 0), np.repeat(masks, 8, 0), 32,
                                           make_augmenter(7, robust), shuffle_seed=None)][0]
               for robust in (False, True)}
    for robust, (x, y) in batches.items():
        x, y = x.numpy(), y.numpy()
        assert x.shape == (32, 256, 256, 3) and x.min() >= 0 and x.max() <= 255
        assert set(np.unique(y)) <= {0.0, 1.0} and 0.05 < y.mean() < 0.6
    robust_x, basic_x = batches[True][0].numpy(), batches[False][0].numpy()
    assert np.array_equal(robust_x, np.round(robust_x))           # 8-bit, as real inputs are
    # Some copies lose most of their grey range (a band) or gain noise: wider spreads of contrast.
    spreads = lambda x: np.percentile(x, 99, axis=(1, 2, 3)) - np.percentile(x, 1, axis=(1, 2, 3))
    assert spreads(robust_x).min() < 0.6 * spreads(basic_x).min()


def test_seed_model_is_the_original_method():
    model = build_seed()
    assert model.get_layer("preprocess").size == 48
    assert model.get_layer("dense_512").kernel.shape == (1, 1, 64, 512)
    assert model.get_layer("dense_512").activation.__name__ == "tanh"
    assert model.get_layer("dropout").rate == 0.3
    assert model.get_layer("dense_2").kernel.shape == (1, 1, 512, 2)
    vgg = [layer.name for layer in model.layers if layer.name.startswith("block")]
    assert vgg == ["block1_conv1", "block1_conv2"]


@requires_weights
def test_vgg19_weights_load_from_the_npz_file():
    model = build_context()
    assert load_vgg19_weights(model, WEIGHTS) == 5
    kernel, bias = model.get_layer("block1_conv1").get_weights()
    check = [0.341195, 0.339992, -0.0448442, 0.232159, 0.0897821, -0.303314, -0.0726092,
             -0.246675, -0.336833]
    np.testing.assert_allclose(kernel[:, :, 0, 0].ravel(), check, rtol=1e-5)
    np.testing.assert_allclose(bias[:3], [0.7301776, 0.06493629, 0.03428847], rtol=1e-6)
    assert not model.get_layer("block3_conv1").trainable


@requires_data
@requires_weights
def test_real_training_steps_lower_the_loss():
    keras.utils.set_random_seed(0)
    samples = find_samples(DATA / "Train")[::400][:8]
    images, masks = load_arrays(samples)
    model = build_context()
    load_vgg19_weights(model, WEIGHTS)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss=losses.bce_dice_loss)
    batch = dataset(images, masks, batch_size=8)
    before = model.evaluate(batch, verbose=0)
    model.fit(batch, epochs=6, verbose=0)
    after = model.evaluate(batch, verbose=0)
    assert after < 0.8 * before, (before, after)


@requires_data
@requires_weights
def test_train_pipeline_writes_a_run_and_resumes(tmp_path):
    common = dict(data=DATA / "Train", out=tmp_path, val=DATA / "Val", architecture="seed",
                  backbone_weights=str(WEIGHTS), limit=16, val_limit=4, batch_size=8)
    first = train(epochs=1, **common)
    assert first["epochs"] == 1
    second = train(epochs=2, **common)          # resumes after epoch 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and second["epochs"] == 2
    assert {"loss", "val_dice", "val_iou", "seconds"} <= set(history[0])
    assert (tmp_path / "curves.png").stat().st_size > 1000
    model, card = bundle.load(tmp_path / "best")
    assert card["architecture"] == "seed" and card["input_size"] == 48
    image = read_image(val_images(1)[0])
    assert model(image[None].astype(np.float32)).shape == (1, 256, 256, 1)


@requires_data
def test_fine_tuning_starts_from_a_saved_model_and_trains_vgg(tmp_path):
    start, _ = bundle.load(bundle.SEED_MODEL)
    before = start.get_layer("block1_conv2").get_weights()[0]
    summary = train(DATA / "Train", tmp_path, fine_tune=bundle.SEED_MODEL, epochs=1, limit=16,
                    batch_size=8, learning_rate=1e-3)
    tuned, card = bundle.load(tmp_path / "best")
    assert summary["epochs"] == 1 and card["architecture"] == "seed"
    assert "fine-tuned" in card["backbone"]
    started = card["training"]["started_from"]  # provenance: the base model and its training
    base = bundle.read_card(bundle.SEED_MODEL)["training"]
    assert started["training"] == base and card["training"]["epochs_in_all"] == base["epochs"] + 1
    readme = (tmp_path / "best" / bundle.README_FILE).read_text()
    assert "- started_from:\n  - model: " in readme and "    - epochs: " in readme
    assert not np.allclose(tuned.get_layer("block1_conv2").get_weights()[0], before)
