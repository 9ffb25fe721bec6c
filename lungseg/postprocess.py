"""Mask clean-up: keep the largest lung regions and fill holes (scipy.ndimage)."""
import numpy as np
from scipy import ndimage


def clean_mask(mask: np.ndarray, keep: int = 2, fill_holes: bool = True) -> np.ndarray:
    """Keep the ``keep`` largest 8-connected regions of a 0/1 mask and fill their holes.

    Regions are ranked by area; ties keep the region met first in raster order. ``keep=0``
    keeps every region.
    """
    mask = mask.astype(bool)
    if keep:
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        if count > keep:
            areas = np.bincount(labels.ravel())[1:]
            largest = np.argsort(-areas, kind="stable")[:keep] + 1
            mask = np.isin(labels, largest)
    if fill_holes:
        mask = ndimage.binary_fill_holes(mask)
    return mask.astype(np.uint8)
