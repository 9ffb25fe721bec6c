"""From the model's output to the final mask, at the image's own size and never as a full-size
float map unless asked: the probability is kept at the model's working size (``ProbabilityMap``)
and made at full size a band of rows at a time, as the graph's own bilinear resize would make it
(lungseg.layers.resize_taps), to threshold it, clean the mask up (``clean_mask``: the largest lung
regions, holes filled) and sum what the quality features read (``full_size_mask``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import quality
from .layers import resize_taps
from .measure import BAND_PIXELS, bounding_box, region_sizes


def clean_mask(mask: np.ndarray, keep: int = 2, fill_holes: bool = True) -> np.ndarray:
    """Keep the ``keep`` largest 8-connected regions of a 0/1 mask and fill their holes.

    Regions are ranked by area; ties keep the region met first in raster order. ``keep=0``
    keeps every region. Done on the crop around the mask's pixels (the same result: whatever
    lies outside it is background connected to the image's border).
    """
    crop = bounding_box(mask)
    part = mask[crop].astype(bool)
    if keep:
        labels, count = ndimage.label(part, structure=np.ones((3, 3)))
        if count > keep:
            areas = region_sizes(labels, count)
            kept = np.zeros(count + 1, bool)
            kept[np.argsort(-areas, kind="stable")[:keep] + 1] = True
            part = kept[labels]
        del labels
    if fill_holes:
        part = ndimage.binary_fill_holes(part)
    out = np.zeros(mask.shape, np.uint8)
    out[crop] = part
    return out


@dataclass(frozen=True)
class ProbabilityMap:
    """One image's lung probability, held as the model's output at its working size.

    ``values`` (h, w) float32 is what the model's graph resizes to the image's ``shape`` (H, W)
    before its last layers, ``head`` (e.g. a sigmoid; None: the values are probabilities).
    Full-size values equal the graph's: its bilinear resize, then ``head``, band by band.
    """

    values: np.ndarray
    shape: tuple[int, int]
    head: Callable[[np.ndarray], np.ndarray] | None = None

    def bands(self, rows: slice = slice(None), cols: slice = slice(None)) -> Iterator[tuple[slice, np.ndarray]]:
        """The full-size probabilities of the window ``rows`` x ``cols`` (slices without a step),
        as (rows of the band, float32 band) with at most about BAND_PIXELS values each."""
        height, width = self.shape
        rows_lo, rows_hi, row_weight = resize_taps(self.values.shape[0], height)
        cols_lo, cols_hi, col_weight = (part[cols] for part in resize_taps(self.values.shape[1], width))
        # Every working row resized along the columns once, as the graph's resize does first.
        lower = self.values[:, cols_lo]
        across = lower + (self.values[:, cols_hi] - lower) * col_weight
        first, last, _ = rows.indices(height)
        step = max(1, BAND_PIXELS // max(across.shape[1], 1))
        for top in range(first, last, step):
            band = slice(top, min(top + step, last))
            upper = across[rows_lo[band]]
            values = upper + (across[rows_hi[band]] - upper) * row_weight[band, None]
            yield band, self.head(values) if self.head else values

    def full(self) -> np.ndarray:
        """The (H, W) float32 probability map (only when asked for: 4 bytes per pixel)."""
        out = np.empty(self.shape, np.float32)
        for rows, band in self.bands():
            out[rows] = band
        return out


def full_size_mask(probability: ProbabilityMap, threshold: float, keep: int = 2, fill_holes: bool = True,
                   features: bool = True) -> tuple[np.ndarray, dict | None]:
    """The (H, W) uint8 lung mask (``probability >= threshold``, cleaned up) and, with
    ``features``, its quality features (lungseg.quality), equal to those of the full-size map.

    The map is made band by band: once over the image for the mask and the sums over all pixels,
    and again on the crop around the cleaned mask for the probability inside it.
    """
    raw = np.empty(probability.shape, np.uint8)
    total = undecided = 0.0
    for rows, band in probability.bands():
        raw[rows] = band >= threshold
        if features:
            sums = quality.probability_sums(band, raw[rows])
            total, undecided = total + sums["total"], undecided + sums["undecided"]
    mask = clean_mask(raw, keep, fill_holes)
    if not features:
        return mask, None
    rows, cols = bounding_box(mask)
    inside = sum(quality.probability_sums(band, mask[band_rows, cols])["inside"]
                 for band_rows, band in probability.bands(rows, cols))
    sums = {"total": total, "inside": inside, "undecided": undecided}
    return mask, quality.features_of_sums(sums, raw, mask)
