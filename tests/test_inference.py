"""The Python API with the committed default model, on real X-rays and built inputs."""
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, mask_of, requires_data, val_images
from lungseg import Segmenter, bundle, read_image, read_mask, rules, whole
from lungseg.evaluation import at_truth_size
from lungseg.metrics import score


def test_committed_models_load_with_their_cards():
    for folder in (bundle.DEFAULT_MODEL, bundle.SEED_MODEL):
        seg = Segmenter.load(folder)
        assert seg.card["architecture"] in ("context", "seed")
        assert 0 < seg.threshold < 1
        assert seg.card["input_size"] == seg.model.get_layer("preprocess").size


def test_masks_come_back_at_each_inputs_own_size(segmenter):
    rng = np.random.default_rng(0)
    for shape in [(256, 256), (311, 203), (1024, 900)]:
        image = rng.integers(0, 255, shape, np.uint8)
        mask = segmenter.predict(image)
        assert mask.shape == shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        proba = segmenter.predict_proba(image)
        assert proba.shape == shape and proba.dtype == np.float32


def test_batch_prediction_matches_one_by_one(segmenter):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (256, 256, 3), np.uint8) for _ in range(3)]
    images.append(rng.integers(0, 255, (200, 300), np.uint8))      # a different size in the batch
    batch = segmenter.predict_proba_batch(images, batch_size=2)
    for image, proba in zip(images, batch):
        np.testing.assert_allclose(proba, segmenter.predict_proba(image), atol=1e-5)


def test_threshold_changes_the_mask(segmenter):
    image = np.random.default_rng(2).integers(0, 255, (256, 256), np.uint8)
    proba = segmenter.predict_proba(image)
    assert segmenter.to_mask(proba, 0.0).all()
    assert not segmenter.to_mask(proba, 1.01).any()


@requires_data
def test_default_model_reaches_dice_095_on_40_val_images(segmenter):
    images = val_images(14, "COVID-19") + val_images(13, "Non-COVID") + val_images(13, "Normal")
    assert len(images) == 40
    masks = segmenter.predict_batch(images)
    dice = [score(read_mask(mask_of(path)), mask)["dice"] for path, mask in zip(images, masks)]
    assert np.mean(dice) >= 0.95, np.mean(dice)


@requires_data
def test_same_xray_in_any_encoding_gives_the_same_mask(segmenter, tmp_path):
    grey = np.asarray(Image.open(val_images(1, "Normal")[0]))
    full_range = ((grey - grey.min()) * (255.0 / np.ptp(grey))).round().astype(np.uint8)
    Image.fromarray(full_range).save(tmp_path / "grey.png")
    Image.fromarray(full_range).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(full_range.astype(np.uint16) * 257).save(tmp_path / "16bit.png")
    Image.fromarray(full_range).convert("P").save(tmp_path / "palette.png")
    reference = segmenter.predict(tmp_path / "grey.png")
    for variant in ("rgba.png", "16bit.png", "palette.png"):
        assert np.array_equal(read_image(tmp_path / variant), read_image(tmp_path / "grey.png")), variant
        assert np.array_equal(segmenter.predict(tmp_path / variant), reference), variant


V7 = SHARED / "data" / "v7-whole-lung"


def test_the_default_outlines_both_definitions_and_a_one_output_model_says_what_it_lacks(segmenter):
    """The default's card describes both outputs (visible first, the default); the seed model has
    only the visible field, and asking it for the whole lung is a clear error, as is a typo."""
    assert segmenter.definitions == ["visible", "whole"] == list(rules.DEFINITIONS)
    assert segmenter.output("visible").threshold == segmenter.threshold == segmenter.card["threshold"]
    assert segmenter.output("whole").index != segmenter.output("visible").index
    seed = Segmenter.load(bundle.SEED_MODEL)
    assert seed.definitions == ["visible"] and seed.chosen("both") == ["visible"]
    image = np.full((64, 64), 128, np.uint8)
    with pytest.raises(ValueError, match="outlines only the visible lung field, not the whole lung"):
        seed.predict(image, definition="whole")
    with pytest.raises(ValueError, match="definition must be one of visible, whole"):
        segmenter.predict(image, definition="entire")


@pytest.mark.skipif(not V7.is_dir(), reason=f"v7-whole-lung not found at {V7}")
def test_whole_lung_on_real_xrays_with_whole_lung_masks(segmenter):
    """v7-whole-lung's held-out X-rays (never trained on): the whole-lung mask matches the manual
    whole-lung outline far better than the visible field does, contains the visible field, and
    analyze(definition="both") gives both masks equal to predict's, with quality estimates."""
    _, held = whole.split(V7)
    for sample in held[:3]:
        truth = sample.read_mask()
        result = segmenter.analyze(sample.image, definition="both")
        visible, whole_lung = result.mask, result.whole.mask
        assert np.array_equal(visible, segmenter.predict(sample.image))
        assert np.array_equal(whole_lung, segmenter.predict(sample.image, definition="whole"))
        assert result.definition == "visible" and result.whole.definition == "whole"
        assert list(result.outlines) == ["visible", "whole"]
        found = {d: score(truth, at_truth_size(m, truth))["dice"] for d, m in (("visible", visible), ("whole", whole_lung))}
        assert found["whole"] > 0.9 and found["whole"] > found["visible"] + 0.05, found
        assert (visible & ~whole_lung).sum() < 0.02 * visible.sum()
        assert result.whole.features["visible_outside"] < 0.02 < result.whole.features["whole_over_visible"]
        alone = segmenter.analyze(sample.image, definition="whole")
        assert alone.definition == "whole" and alone.whole is None and np.array_equal(alone.mask, whole_lung)
        assert alone.quality == result.whole.quality
