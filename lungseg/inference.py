"""The one inference API: ``Segmenter`` serves the CLI, the Streamlit app and the tests.

    from lungseg import Segmenter
    seg = Segmenter.load()            # the committed default model
    mask = seg.predict("xray.png")    # (H, W) uint8, 1 = lung, at the image's own size
    result = seg.analyze("xray.dcm")  # mask + estimated quality + warnings (+ DICOM facts)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import bundle, checks, quality
from .dicom import DicomImage
from .imageio import ImageInput, read_image, read_input
from .measure import lung_areas
from .postprocess import clean_mask


@dataclass
class Analysis:
    """A mask with what it takes to trust it (``Segmenter.analyze``)."""

    mask: np.ndarray                 # (H, W) uint8, 1 = lung
    probability: np.ndarray          # (H, W) float32
    quality: float | None            # estimated Dice vs a careful manual mask (None: no estimator)
    warnings: list[dict] = field(default_factory=list)   # {"code", "message"}; [] when all is well
    inverted: bool = False           # the input looked like a negative and was segmented inverted
    features: dict = field(default_factory=dict)
    dicom: DicomImage | None = None  # for a DICOM input: its header, pixel spacing and source
    image: np.ndarray | None = None  # the (H, W, 3) uint8 pixels the model saw (before inversion)

    @property
    def areas(self) -> dict[str, float]:
        """Lung areas as fractions of the image, and in cm² when a DICOM gave the pixel spacing."""
        return lung_areas(self.mask, self.dicom.spacing if self.dicom else None)


class Segmenter:
    """A loaded model with its card's threshold and clean-up settings."""

    def __init__(self, model, card: dict):
        self.model = model
        self.card = card
        self.threshold = float(card.get("threshold", 0.5))
        post = card.get("postprocess", {})
        self.keep_regions = int(post.get("keep_largest", 0))
        self.fill_holes = bool(post.get("fill_holes", False))

    @classmethod
    def load(cls, path: str | Path = bundle.DEFAULT_MODEL) -> "Segmenter":
        """Load a saved model folder (default: the committed default model)."""
        return cls(*bundle.load(path))

    @property
    def name(self) -> str:
        return self.card.get("name", self.model.name)

    def predict_proba(self, image: ImageInput) -> np.ndarray:
        """Lung probability per pixel, float32 (H, W) at the image's own size."""
        return self.predict_proba_batch([image])[0]

    def predict_proba_batch(self, images: Iterable[ImageInput], batch_size: int = 8) -> list[np.ndarray]:
        """Probabilities for many images; same-size images run together in batches."""
        arrays = [read_image(i) for i in images]
        out: list[np.ndarray | None] = [None] * len(arrays)
        by_size: dict[tuple, list[int]] = {}
        for index, array in enumerate(arrays):
            by_size.setdefault(array.shape, []).append(index)
        for indices in by_size.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                batch = np.stack([arrays[i] for i in chunk]).astype(np.float32)
                probs = np.asarray(self.model(batch, training=False))[..., 0]
                for i, prob in zip(chunk, probs):
                    out[i] = prob
        return out

    def to_mask(self, proba: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Threshold a probability map and apply the card's clean-up: (H, W) uint8 0/1."""
        mask = (proba >= (self.threshold if threshold is None else threshold)).astype(np.uint8)
        return clean_mask(mask, self.keep_regions, self.fill_holes)

    def predict(self, image: ImageInput, threshold: float | None = None) -> np.ndarray:
        """The lung mask of one image: (H, W) uint8, 1 = lung, at the image's own size."""
        return self.to_mask(self.predict_proba(image), threshold)

    def predict_batch(self, images: Iterable[ImageInput], threshold: float | None = None,
                      batch_size: int = 8) -> list[np.ndarray]:
        """Lung masks for many images (each at its own size)."""
        return [self.to_mask(p, threshold) for p in self.predict_proba_batch(images, batch_size)]

    @property
    def quality_params(self) -> dict | None:
        """The card's quality estimator (coefficients and warning threshold), if it has one."""
        return self.card.get("quality")

    def _assess(self, proba: np.ndarray, threshold: float | None) -> Analysis:
        """Mask, estimated quality and mask warnings of one probability map."""
        t = self.threshold if threshold is None else threshold
        raw = (proba >= t).astype(np.uint8)
        mask = clean_mask(raw, self.keep_regions, self.fill_holes)
        feats = quality.features(proba, raw, mask)
        params = self.quality_params
        estimate = quality.estimate(feats, params) if params else None
        warns = checks.mask_warnings(feats, estimate if params else 1.0,
                                     params["warn_below"] if params else 0.0)
        return Analysis(mask, proba, estimate, warns, features=feats)

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
        for (array, dicom), proba in zip(inputs, self.predict_proba_batch(arrays, batch_size)):
            found = (dicom.warnings if dicom else []) + checks.image_warnings(checks.image_stats(array))
            result = self._assess(proba, threshold)
            doubtful = not checks.plausible(result.features) or any(
                w["code"] == "low_quality" for w in result.warnings)
            if not found and doubtful:
                inverse = self._assess(self.predict_proba(255 - array), threshold)
                if checks.inverse_is_better(result.features, result.quality, inverse.features, inverse.quality):
                    result = inverse
                    result.inverted = True
                    found = [checks.warning("inverted")]
            result.warnings = found + result.warnings
            result.dicom, result.image = dicom, array
            results.append(result)
        return results
