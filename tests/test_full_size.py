"""The model run at its working size gives what the whole graph gives at the input's full size.

Segmenter resizes each X-ray to the model's input size in numpy and cuts the graph before its
last resize; full-size masks and quality features are made band by band (lungseg.postprocess).
"The graph" below is the saved model called on the full-size image, as Segmenter did before.
"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import requires_data, val_images
from lungseg import Segmenter, bundle, checks, quality, read_image
from lungseg.layers import resize_input
from lungseg.postprocess import ProbabilityMap

#: A detector-sized copy of a Val X-ray (width, height): 7.5 megapixels, one only (memory, time).
FULL_SIZE = (2500, 3000)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def graph_probability(seg: Segmenter, image: np.ndarray, definition: str = "visible") -> np.ndarray:
    """The whole saved graph on the full-size image: ``definition``'s output, (H, W) float32."""
    out = seg.model(image[None].astype(np.float32), training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    return np.asarray(out[seg.output(definition).index])[0, ..., 0]


def graph_analysis(seg: Segmenter, image: np.ndarray) -> tuple[np.ndarray, dict, float, list[str]]:
    """Mask, features, estimated quality and warning codes made from the graph's full-size map."""
    proba = graph_probability(seg, image)
    raw = (proba >= seg.threshold).astype(np.uint8)
    mask = seg.to_mask(proba)
    feats = quality.features(proba, raw, mask)
    estimate = quality.estimate(feats, seg.quality_params)
    found = checks.image_warnings(checks.image_stats(image))
    found += checks.mask_warnings(feats, estimate, seg.quality_params["warn_below"])
    return mask, feats, estimate, [w["code"] for w in found]


def assert_same_analysis(seg: Segmenter, image: np.ndarray, result, name: str) -> None:
    mask, feats, estimate, codes = graph_analysis(seg, image)
    assert iou(mask, result.mask) >= 0.999, name
    assert result.quality == pytest.approx(estimate, abs=1e-9), name
    assert [w["code"] for w in result.warnings] == codes, name
    for key, value in feats.items():
        assert result.features[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)


def test_numpy_resizes_equal_the_graphs():
    """The input resize and the band-by-band output resize equal tf.image.resize value for value,
    on sizes smaller, larger, odd and non-square; a window of bands equals that part of the map;
    a head (the sigmoid) after the resize gives the same to float32 rounding."""
    rng = np.random.default_rng(0)
    for height, width in [(256, 256), (311, 203), (97, 1400), (192, 192), (1031, 777)]:
        image = rng.integers(0, 256, (height, width, 3), np.uint8)
        graph = tf.image.resize(image[None].astype(np.float32), (192, 192), method="bilinear")[0]
        assert np.array_equal(resize_input(image, 192), graph.numpy()), (height, width)
        assert np.array_equal(resize_input(image, 192, invert=True), resize_input(255 - image, 192))

        values = rng.normal(0, 4, (192, 192)).astype(np.float32)
        graph = tf.image.resize(values[None, ..., None], (height, width), method="bilinear")[0, ..., 0]
        probability = ProbabilityMap(values, (height, width))
        assert np.array_equal(probability.full(), graph.numpy()), (height, width)
        rows, cols = slice(height // 3, height - 5), slice(width // 4, width // 2 + 1)
        window = np.concatenate([band for _, band in probability.bands(rows, cols)])
        assert np.array_equal(window, graph.numpy()[rows, cols]), (height, width)
        # A head (the sigmoid) on bands: TensorFlow's vectorised sigmoid may round the last
        # values of a band differently from the same values inside a larger tensor (1 ulp).
        probability = ProbabilityMap(values, (height, width), lambda band: tf.math.sigmoid(band).numpy())
        np.testing.assert_allclose(probability.full(), tf.math.sigmoid(graph).numpy(), rtol=2e-7, atol=0)


def test_both_committed_models_give_the_graphs_probability_at_any_size():
    """The seed (no layer after its resize) and the default (a sigmoid after it; both its lung
    definitions), on built inputs of several sizes batched together."""
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape + (3,), np.uint8) for shape in [(256, 256), (301, 227), (640, 480)]]
    for folder in (bundle.DEFAULT_MODEL, bundle.SEED_MODEL):
        seg = Segmenter.load(folder)
        for definition in seg.definitions:
            for image, proba in zip(images, seg.predict_proba_batch(images, batch_size=3, definition=definition)):
                np.testing.assert_allclose(proba, graph_probability(seg, image, definition), atol=1e-6)


@requires_data
def test_val_xrays_give_the_graphs_masks_quality_and_warnings(segmenter):
    """24 Val X-rays (8 per group; bench/bench_full_size.py --val checks all of Val)."""
    paths = val_images(8, "COVID-19") + val_images(8, "Non-COVID") + val_images(8, "Normal")
    images = [read_image(p) for p in paths]
    results = segmenter.analyze_batch(images)
    for path, image, result in zip(paths, images, results):
        assert not result.inverted, path.name
        assert_same_analysis(segmenter, image, result, path.name)
    for result, mask in zip(results, segmenter.predict_batch(images)):
        assert np.array_equal(mask, result.mask)


@requires_data
def test_full_size_copy_of_a_val_xray_gives_the_graphs_results(segmenter):
    """A Val X-ray upscaled to 2500x3000: mask, quality, warnings, areas and probabilities."""
    path = val_images(1, "Non-COVID")[0]
    grey = Image.open(path).convert("L").resize(FULL_SIZE, Image.Resampling.BICUBIC)
    image = read_image(np.asarray(grey))
    result = segmenter.analyze(image)
    assert result.mask.shape == (FULL_SIZE[1], FULL_SIZE[0])
    assert_same_analysis(segmenter, image, result, path.name)
    proba = graph_probability(segmenter, image)
    np.testing.assert_allclose(result.probability, proba, atol=1e-6)
    assert result.areas["lung_fraction"] == pytest.approx(float(segmenter.to_mask(proba).mean()), abs=1e-3)


@requires_data
def test_a_negative_is_segmented_from_its_inverse(segmenter):
    """A Val X-ray's negative: taken for one, and segmented as the graph segments its inverse."""
    path = val_images(1, "Normal")[0]
    image = read_image(path)
    result = segmenter.analyze(255 - image)
    assert result.inverted and result.warnings[0]["code"] == "inverted"
    mask, _, estimate, _ = graph_analysis(segmenter, image)
    assert iou(mask, result.mask) >= 0.999
    assert result.quality == pytest.approx(estimate, abs=1e-9)
