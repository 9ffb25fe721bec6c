"""The one inference API: ``Segmenter`` serves the CLI, the Streamlit app and the tests.

    from lungseg import Segmenter
    seg = Segmenter.load()            # the committed default model
    mask = seg.predict("xray.png")    # (H, W) uint8, 1 = lung, at the image's own size
    whole = seg.predict("xray.png", definition="whole")   # the whole lung, behind the heart too
    result = seg.analyze("xray.dcm")  # mask + estimated quality + warnings (+ DICOM facts)

Two definitions of the lung (``DEFINITIONS``, rules.json ``definitions``): the visible lung field,
the default (the air, stopping at the heart's border and the diaphragm's dome, as COVID-QU-Ex,
JSRT and Montgomery outline it), and the whole lung (behind the heart and below the dome too,
as V7's masks do). The default model gives both from one pass; ``definition="both"`` asks for
both at once.

The model runs at its working size: each X-ray is resized to the model's input size in numpy
(lungseg.layers.resize_input, equal to the graph's first resize) and the graph is cut before its
last resize to the input's size, so what it returns is small whatever the X-ray's size. Full-size
masks, features and (only when asked) probabilities are made from that band by band
(lungseg.postprocess), equal to what the whole graph gives.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
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
from .rules import DEFINITIONS

BOTH = "both"   # ``definition`` asking for every definition the model gives, the visible first


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
    definition: str = "visible"      # what the mask outlines: "visible" (lung field) or "whole" lung
    whole: Analysis | None = None    # with definition="both": the whole lung's analysis of this X-ray

    @property
    def probability(self) -> np.ndarray:
        """The (H, W) float32 lung probability, made on each call (4 bytes per pixel)."""
        return self.probability_map.full()

    @property
    def areas(self) -> dict[str, float]:
        """Lung areas as fractions of the image, and in cm² when a DICOM gave the pixel spacing."""
        return lung_areas(self.mask, self.dicom.spacing if self.dicom else None)

    @property
    def outlines(self) -> dict[str, Analysis]:
        """Every definition analysed, by name: {"visible": ...} or {"whole": ...} or both."""
        return {self.definition: self, **({"whole": self.whole} if self.whole else {})}


def split_at_working_size(model) -> tuple[keras.Model, list]:
    """A model cut before each output's last resize to the input's size (``layers.ResizeLike``):
    the sub-model giving every output at its working size, in the model's output order, and per
    output the layers after that resize as a function of a full-size numpy band (None when there
    are none)."""
    made_by = {id(layer.output): layer for layer in model.layers}
    cuts, heads = [], []
    for output in model.outputs:
        tail, layer = [], made_by[id(output)]
        while not isinstance(layer, ResizeLike):
            tail.insert(0, layer)
            layer = made_by[id(layer.input)]
        cuts.append(layer.input[0])
        heads.append(functools.partial(_run_layers, tail) if tail else None)
    return keras.Model(model.input, cuts, name=f"{model.name}_working_size"), heads


def _run_layers(layers: list, band: np.ndarray) -> np.ndarray:
    for layer in layers:
        band = layer(band)
    return np.asarray(band)


@dataclass(frozen=True)
class Output:
    """One of the model's outputs: the lung definition it outlines, with its card's settings."""

    definition: str                   # a key of DEFINITIONS
    index: int                        # its place among the model's outputs
    threshold: float
    quality: dict | None              # its quality estimator (coefficients, warning threshold)
    head: Callable[[np.ndarray], np.ndarray] | None   # ProbabilityMap's head


def read_outputs(model, card: dict, heads: list) -> dict[str, Output]:
    """The definitions ``model`` outlines (``bundle.outputs``: the card's ``outputs``, else one,
    the visible lung field), each found by its layer among the model's outputs."""
    found = {}
    for definition, facts in bundle.outputs(card).items():
        index = model.outputs.index(model.get_layer(facts["layer"]).output) if "layer" in facts else 0
        found[definition] = Output(definition, index, facts["threshold"], facts["quality"], heads[index])
    return found


class Segmenter:
    """A loaded model with its card's thresholds and clean-up settings, per definition it outlines."""

    def __init__(self, model, card: dict):
        self.model = model
        self.card = card
        post = card.get("postprocess", {})
        self.keep_regions = int(post.get("keep_largest", 0))
        self.fill_holes = bool(post.get("fill_holes", False))
        self.input_size = int(model.get_layer("preprocess").size)
        self._working, heads = split_at_working_size(model)
        self._working_parts: dict[tuple[str, ...], keras.Model] = {}
        self.outputs = read_outputs(model, card, heads)

    @classmethod
    def load(cls, path: str | Path = bundle.DEFAULT_MODEL) -> Segmenter:
        """Load a saved model folder (default: the committed default model)."""
        return cls(*bundle.load(path))

    @property
    def name(self) -> str:
        return self.card.get("name", self.model.name)

    @property
    def definitions(self) -> list[str]:
        """The lung definitions this model outlines, the visible field first."""
        return [d for d in DEFINITIONS if d in self.outputs]

    def output(self, definition: str = "visible") -> Output:
        """The output that outlines ``definition``; a clear error if this model has none."""
        if definition not in DEFINITIONS:
            raise ValueError(f"definition must be one of {', '.join(DEFINITIONS)} (got {definition!r})")
        if definition not in self.outputs:
            raise ValueError(f"the model {self.name} outlines only the "
                             f"{' and '.join(DEFINITIONS[d]['name'] for d in self.definitions)}, "
                             f"not the {DEFINITIONS[definition]['name']}")
        return self.outputs[definition]

    def chosen(self, definition: str) -> list[str]:
        """The definitions ``definition`` asks for: one, or with ``"both"`` every one the model gives."""
        return self.definitions if definition == BOTH else [self.output(definition).definition]

    # The visible field's settings, as before the model had two outputs.
    threshold = property(lambda self: self.outputs["visible"].threshold)
    head = property(lambda self: self.outputs["visible"].head)
    quality_params = property(lambda self: self.outputs["visible"].quality)

    def working_model(self, definitions: Iterable[str] | None = None) -> keras.Model:
        """The model cut at its working size, giving the outputs of ``definitions`` (default: all)
        in that order and running only the layers they need: the visible field alone skips the
        whole lung's branch."""
        key = tuple(definitions or self.definitions)
        if key not in self._working_parts:
            cuts = [self._working.outputs[self.output(d).index] for d in key]
            self._working_parts[key] = keras.Model(self._working.input, cuts, name=f"{self._working.name}_{'_'.join(key)}")
        return self._working_parts[key]

    def probability_maps(self, images: Iterable[ImageInput], batch_size: int = 8, invert: bool = False,
                         definitions: Iterable[str] | None = None) -> list[dict[str, ProbabilityMap]]:
        """The probability of each image per definition, {definition: map} (default: every one the
        model gives), kept at the model's working size (one pass of the model; images of any
        sizes run together in batches); ``invert``: of each image's negative."""
        definitions = list(definitions or self.definitions)
        model = self.working_model(definitions)
        shapes, inputs = [], []
        for image in images:
            array = read_image(image)
            shapes.append(array.shape[:2])
            inputs.append(resize_input(array, self.input_size, invert))
        out = []
        for start in range(0, len(inputs), batch_size):
            values = model(np.stack(inputs[start:start + batch_size]), training=False)
            values = [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
            for i, shape in enumerate(shapes[start:start + batch_size]):
                out.append({d: ProbabilityMap(v[i, ..., 0], shape, self.outputs[d].head)
                            for d, v in zip(definitions, values)})
        return out

    def _computed(self, wanted: list[str]) -> list[str]:
        """The outputs to compute for ``wanted``: the whole lung's quality reads the visible field's too."""
        return self.definitions if "whole" in wanted else wanted

    def probabilities(self, images: Iterable[ImageInput], batch_size: int = 8, invert: bool = False,
                      definition: str = "visible") -> list[ProbabilityMap]:
        """The ``definition``'s probability of each image at the model's working size."""
        self.output(definition)
        return [maps[definition] for maps in self.probability_maps(images, batch_size, invert, [definition])]

    def predict_proba(self, image: ImageInput, definition: str = "visible") -> np.ndarray:
        """Lung probability per pixel, float32 (H, W) at the image's own size."""
        return self.predict_proba_batch([image], definition=definition)[0]

    def predict_proba_batch(self, images: Iterable[ImageInput], batch_size: int = 8,
                            definition: str = "visible") -> list[np.ndarray]:
        """Full-size probabilities for many images (float32, 4 bytes per pixel each)."""
        return [p.full() for p in self.probabilities(images, batch_size, definition=definition)]

    def to_mask(self, proba: np.ndarray, threshold: float | None = None, definition: str = "visible") -> np.ndarray:
        """Threshold a probability map and apply the card's clean-up: (H, W) uint8 0/1."""
        mask = (proba >= (self.output(definition).threshold if threshold is None else threshold)).astype(np.uint8)
        return clean_mask(mask, self.keep_regions, self.fill_holes)

    def predict(self, image: ImageInput, threshold: float | None = None, definition: str = "visible") -> np.ndarray:
        """The lung mask of one image: (H, W) uint8, 1 = lung, at the image's own size;
        ``definition``: "visible" (the visible lung field, the default) or "whole" (the whole lung)."""
        return self.predict_batch([image], threshold, definition=definition)[0]

    def predict_batch(self, images: Iterable[ImageInput], threshold: float | None = None,
                      batch_size: int = 8, definition: str = "visible") -> list[np.ndarray]:
        """Lung masks for many images (each at its own size)."""
        t = self.output(definition).threshold if threshold is None else threshold
        return [full_size_mask(p, t, self.keep_regions, self.fill_holes, features=False)[0]
                for p in self.probabilities(images, batch_size, definition=definition)]

    def _assess(self, maps: dict[str, ProbabilityMap], definition: str, threshold: float | None) -> Analysis:
        """Mask, estimated quality and mask warnings of one definition's probability map."""
        output = self.outputs[definition]
        t = output.threshold if threshold is None else threshold
        mask, feats = full_size_mask(maps[definition], t, self.keep_regions, self.fill_holes)
        if len(maps) > 1:
            feats.update(quality.pair_features(*(_working_mask(maps[d], self.outputs[d].threshold)
                                                 for d in ("visible", "whole"))))
        params = output.quality
        estimate = quality.estimate(feats, params) if params else None
        warns = checks.mask_warnings(feats, estimate if params else 1.0, params["warn_below"] if params else 0.0)
        return Analysis(mask, maps[definition], estimate, warns, features=feats, definition=definition)

    def _assess_all(self, maps: dict[str, ProbabilityMap], wanted: list[str], threshold: float | None) -> Analysis:
        """The first of ``wanted`` analysed, the whole lung's as its ``whole`` when both are."""
        first = self._assess(maps, wanted[0], threshold)
        if len(wanted) > 1:
            first.whole = self._assess(maps, wanted[1], threshold)
        return first

    def analyze(self, image: ImageInput, threshold: float | None = None, name: str | None = None,
                definition: str = "visible") -> Analysis:
        """The mask of one image with its estimated quality and warnings (see ``Analysis``);
        ``name`` is how error messages call the input (default: its file name); ``definition``:
        "visible", "whole" or "both" (the visible field's analysis, the whole lung's as ``.whole``)."""
        return self.analyze_batch([image], threshold, names=[name], definition=definition)[0]

    def analyze_batch(self, images: Iterable[ImageInput], threshold: float | None = None,
                      batch_size: int = 8, names: list[str | None] | None = None,
                      definition: str = "visible") -> list[Analysis]:
        """``analyze`` for many images, the model run in batches.

        An input without image warnings whose mask is not two plausible lungs, or has a low
        estimated quality, is tried inverted too: if it is a negative, that gives plausible lungs
        of a clearly higher quality (``checks.inverse_is_better``), used with an "inverted" warning.
        With two definitions, the first decides, and both are taken from the inverse.
        """
        images = list(images)
        return self.analyze_read([read_input(i, n) for i, n in zip(images, names or [None] * len(images))],
                                 threshold, batch_size, definition)

    def analyze_read(self, inputs: list[tuple[np.ndarray, DicomImage | None]], threshold: float | None = None,
                     batch_size: int = 8, definition: str = "visible") -> list[Analysis]:
        """``analyze_batch`` for inputs already read by ``imageio.read_input`` (e.g. in other
        processes, as ``lungseg.ray_engine`` does)."""
        wanted = self.chosen(definition)
        arrays = [array for array, _ in inputs]
        results = []
        computed = self._computed(wanted)
        for (array, dicom), maps in zip(inputs, self.probability_maps(arrays, batch_size, definitions=computed)):
            found = (dicom.warnings if dicom else []) + checks.image_warnings(checks.image_stats(array))
            result = self._assess_all(maps, wanted, threshold)
            doubtful = not checks.plausible(result.features) or any(
                w["code"] == "low_quality" for w in result.warnings)
            if not found and doubtful:
                inverse = self._assess_all(self.probability_maps([array], invert=True, definitions=computed)[0],
                                           wanted, threshold)
                if checks.inverse_is_better(result.features, result.quality, inverse.features, inverse.quality):
                    result = inverse
                    for outline in result.outlines.values():
                        outline.inverted = True
                    found = [checks.warning("inverted")]
            for outline in result.outlines.values():
                outline.warnings = found + outline.warnings
                outline.dicom, outline.image = dicom, array
            results.append(result)
        return results


def _working_mask(probability: ProbabilityMap, threshold: float) -> np.ndarray:
    """The thresholded output at the model's working size (what ``quality.pair_features`` reads)."""
    values = probability.head(probability.values) if probability.head else probability.values
    return values >= threshold
