"""The one inference API: ``Segmenter`` serves the CLI, the Streamlit app and the tests.

    from lungseg import Segmenter
    seg = Segmenter.load()            # the committed default model
    mask = seg.predict("xray.png")    # (H, W) uint8, 1 = lung, at the image's own size
    result = seg.analyze("xray.dcm")  # mask + estimated quality + warnings (+ DICOM facts)

The model runs at its working size: each X-ray is resized to the model's input size in numpy
(lungseg.layers.resize_input, equal to the graph's first resize) and the graph is cut before its
last resize to the input's size, so what it returns is small whatever the X-ray's size. Full-size
masks, features and (only when asked) probabilities are made from that band by band
(lungseg.postprocess), equal to what the whole graph gives.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import bundle, checks, quality
from .dicom import DicomImage
from .imageio import ImageInput, read_image, read_input
from .layers import ResizeLike, resize_input
from .measure import lung_areas
from .postprocess import ProbabilityMap, clean_mask, full_size_mask


@dataclass
class Analysis:
    """A mask with what it takes to trust it (``Segmenter.analyze``)."""

    mask: np.ndarray                 # (H, W) uint8, 1 = lung
    probability_map: ProbabilityMap  # the model's output at its working size
    quality: float | None            # estimated Dice vs a careful manual mask (None: no estimator)
    warnings: list[dict] = field(default_factory=list)   # {"code", "message"}; [] when all is well
    inverted: bool = False           # the input looked like a negative and was segmented inverted
    features: dict = field(default_factory=dict)
    dicom: DicomImage | None = None  # for a DICOM input: its header, pixel spacing and source
    image: np.ndarray | None = None  # the (H, W, 3) uint8 pixels the model saw (before inversion)

    @property
    def probability(self) -> np.ndarray:
        """The (H, W) float32 lung probability, made on each call (4 bytes per pixel)."""
        return self.probability_map.full()

    @property
    def areas(self) -> dict[str, float]:
        """Lung areas as fractions of the image, and in cm² when a DICOM gave the pixel spacing."""
        return lung_areas(self.mask, self.dicom.spacing if self.dicom else None)


def split_at_working_size(model) -> tuple:
    """A model cut before its last resize to the input's size (``layers.ResizeLike``): the
    sub-model up to it, and the layers after it as a function of a full-size numpy band (None when
    there are none)."""
    resize = next(layer for layer in model.layers if isinstance(layer, ResizeLike))
    tail = model.layers[model.layers.index(resize) + 1:]
    working = keras.Model(model.input, resize.input[0], name=f"{model.name}_working_size")

    def head(band: np.ndarray) -> np.ndarray:
        for layer in tail:
            band = layer(band)
        return np.asarray(band)
    return working, head if tail else None


class Segmenter:
    """A loaded model with its card's threshold and clean-up settings."""

    def __init__(self, model, card: dict):
        self.model = model
        self.card = card
        self.threshold = float(card.get("threshold", 0.5))
        post = card.get("postprocess", {})
        self.keep_regions = int(post.get("keep_largest", 0))
        self.fill_holes = bool(post.get("fill_holes", False))
        self.input_size = int(model.get_layer("preprocess").size)
        self.working_model, self.head = split_at_working_size(model)

    @classmethod
    def load(cls, path: str | Path = bundle.DEFAULT_MODEL) -> "Segmenter":
        """Load a saved model folder (default: the committed default model)."""
        return cls(*bundle.load(path))

    @property
    def name(self) -> str:
        return self.card.get("name", self.model.name)

    def probabilities(self, images: Iterable[ImageInput], batch_size: int = 8,
                      invert: bool = False) -> list[ProbabilityMap]:
        """The lung probability of each image, kept at the model's working size (images of any
        sizes run together in batches); ``invert``: of each image's negative."""
        shapes, inputs = [], []
        for image in images:
            array = read_image(image)
            shapes.append(array.shape[:2])
            inputs.append(resize_input(array, self.input_size, invert))
        out = []
        for start in range(0, len(inputs), batch_size):
            values = np.asarray(self.working_model(np.stack(inputs[start:start + batch_size]), training=False))
            out += [ProbabilityMap(v[..., 0], shape, self.head) for v, shape in zip(values, shapes[start:])]
        return out

    def predict_proba(self, image: ImageInput) -> np.ndarray:
        """Lung probability per pixel, float32 (H, W) at the image's own size."""
        return self.predict_proba_batch([image])[0]

    def predict_proba_batch(self, images: Iterable[ImageInput], batch_size: int = 8) -> list[np.ndarray]:
        """Full-size probabilities for many images (float32, 4 bytes per pixel each)."""
        return [p.full() for p in self.probabilities(images, batch_size)]

    def to_mask(self, proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Threshold a probability map and apply the card's clean-up: (H, W) uint8 0/1."""
        mask = (proba >= (self.threshold if threshold is None else threshold)).astype(np.uint8)
        return clean_mask(mask, self.keep_regions, self.fill_holes)

    def predict(self, image: ImageInput, threshold: float | None = None) -> np.ndarray:
        """The lung mask of one image: (H, W) uint8, 1 = lung, at the image's own size."""
        return self.predict_batch([image], threshold)[0]

    def predict_batch(self, images: Iterable[ImageInput], threshold: float | None = None,
                      batch_size: int = 8) -> list[np.ndarray]:
        """Lung masks for many images (each at its own size)."""
        t = self.threshold if threshold is None else threshold
        return [full_size_mask(p, t, self.keep_regions, self.fill_holes, features=False)[0]
                for p in self.probabilities(images, batch_size)]

    @property
    def quality_params(self) -> dict | None:
        """The card's quality estimator (coefficients and warning threshold), if it has one."""
        return self.card.get("quality")

    def _assess(self, probability: ProbabilityMap, threshold: float | None) -> Analysis:
        """Mask, estimated quality and mask warnings of one probability map."""
        t = self.threshold if threshold is None else threshold
        mask, feats = full_size_mask(probability, t, self.keep_regions, self.fill_holes)
        params = self.quality_params
        estimate = quality.estimate(feats, params) if params else None
        warns = checks.mask_warnings(feats, estimate if params else 1.0,
                                     params["warn_below"] if params else 0.0)
        return Analysis(mask, probability, estimate, warns, features=feats)

    def analyze(self, image: ImageInput, threshold: float | None = None,
                name: str | None = None) -> Analysis:
        """The mask of one image with its estimated quality and warnings (see ``Analysis``);
        ``name`` is how error messages call the input (default: its file name)."""
        return self.analyze_batch([image], threshold, names=[name])[0]

    def analyze_batch(self, images: Iterable[ImageInput], threshold: float | None = None,
                      batch_size: int = 8, names: list[str | None] | None = None) -> list[Analysis]:
        """``analyze`` for many images, the model run in batches.

        An input without image warnings whose mask is not two plausible lungs, or has a low
        estimated quality, is tried inverted too: if it is a negative, that gives plausible lungs
        of a clearly higher quality (``checks.inverse_is_better``), used with an "inverted" warning.
        """
        images = list(images)
        return self.analyze_read([read_input(i, n) for i, n in zip(images, names or [None] * len(images))],
                                 threshold, batch_size)

    def analyze_read(self, inputs: list[tuple[np.ndarray, DicomImage | None]],
                     threshold: float | None = None, batch_size: int = 8) -> list[Analysis]:
        """``analyze_batch`` for inputs already read by ``imageio.read_input`` (e.g. in other
        processes, as ``lungseg.ray_engine`` does)."""
        arrays = [array for array, _ in inputs]
        results = []
        for (array, dicom), proba in zip(inputs, self.probabilities(arrays, batch_size)):
            found = (dicom.warnings if dicom else []) + checks.image_warnings(checks.image_stats(array))
            result = self._assess(proba, threshold)
            doubtful = not checks.plausible(result.features) or any(
                w["code"] == "low_quality" for w in result.warnings)
            if not found and doubtful:
                inverse = self._assess(self.probabilities([array], invert=True)[0], threshold)
                if checks.inverse_is_better(result.features, result.quality, inverse.features, inverse.quality):
                    result = inverse
                    result.inverted = True
                    found = [checks.warning("inverted")]
            result.warnings = found + result.warnings
            result.dicom, result.image = dicom, array
            results.append(result)
        return results
