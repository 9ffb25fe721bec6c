"""What a mask measures: lung area as fractions of the image, per side (used by every surface)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

PATIENT_SIDE_NOTE = ("Image left is the patient's right (standard PA/AP chest X-ray, the patient "
                     "facing the viewer).")


def lung_areas(mask: np.ndarray, spacing: tuple[float, float] | None = None) -> dict[str, float]:
    """Lung area as fractions of the image: all lung, image-left lung and image-right lung; with
    ``spacing`` (row, column mm per pixel, from DICOM) also in cm² (``lung_cm2``, ...). Sides are
    ``side_labels``'.
    """
    sides = side_labels(mask)
    height, width = mask.shape
    total, left = float((sides > 0).sum()), float((sides == 1).sum())
    pixels = float(height * width)
    areas = {"lung_fraction": total / pixels, "image_left_fraction": left / pixels,
             "image_right_fraction": (total - left) / pixels}
    if spacing:
        cm2 = spacing[0] * spacing[1] / 100.0
        areas.update(lung_cm2=total * cm2, image_left_cm2=left * cm2, image_right_cm2=(total - left) * cm2)
    return areas


def side_labels(mask: np.ndarray) -> np.ndarray:
    """The mask labelled by side: 1 = the patient's right lung (image left), 2 = the left lung.

    Each connected region goes to the side its centre lies on; when the lungs form a single
    region (or none), its pixels are split at the image's vertical midline."""
    mask = mask.astype(bool)
    width = mask.shape[1]
    rows, cols = bounding_box(mask)
    labels, count = ndimage.label(mask[rows, cols], structure=np.ones((3, 3)))
    out = np.zeros(mask.shape, np.uint8)
    if count >= 2:
        centres = ndimage.center_of_mass(mask[rows, cols], labels, range(1, count + 1))
        sides = [1 if x + cols.start < (width - 1) / 2 else 2 for _, x in centres]
        out[rows, cols] = np.array([0, *sides], np.uint8)[labels]
    else:
        out[:, : width // 2][mask[:, : width // 2]] = 1
        out[:, width // 2:][mask[:, width // 2:]] = 2
    return out


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and the columns that a 0/1 mask's pixels lie in (empty for an empty mask): the
    crop where its regions are labelled and its holes filled, at a fraction of a full-size cost."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
