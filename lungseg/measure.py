"""What a mask measures: lung area as fractions of the image, per side (used by every surface)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Pixels handled at a time by band-by-band work over full-size images (4 MB of float32).
BAND_PIXELS = 2**20
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
    width = mask.shape[1]
    rows, cols = bounding_box(mask)
    labels, count = ndimage.label(mask[rows, cols], structure=np.ones((3, 3)))
    out = np.zeros(mask.shape, np.uint8)
    if count >= 2:
        pixels, column_sums = _region_columns(labels, count)
        # centre x = column_sums / pixels + cols.start < (width - 1) / 2, in exact integers
        left = 2 * (column_sums + cols.start * pixels) < (width - 1) * pixels
        out[rows, cols] = np.r_[0, np.where(left, 1, 2)].astype(np.uint8)[labels]
    else:
        half = width // 2
        out[:, :half][mask[:, :half].astype(bool)] = 1
        out[:, half:][mask[:, half:].astype(bool)] = 2
    return out


def _region_columns(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and sum of column indices of each region 1..count of a label image (exact
    integers, without a float copy of the image)."""
    columns = np.arange(labels.shape[1], dtype=np.float64)
    sums = np.zeros(count + 1, np.float64)
    for rows in _bands(labels):
        sums += np.bincount(labels[rows].ravel(), np.broadcast_to(columns, labels[rows].shape).ravel(),
                            minlength=count + 1)
    return region_sizes(labels, count), sums[1:].astype(np.int64)


def region_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixel count of each region 1..count of a label image, counted a band of rows at a time
    (``np.bincount`` of the whole would copy it to int64: 8 bytes per pixel)."""
    sizes = np.zeros(count + 1, np.int64)
    for rows in _bands(labels):
        sizes += np.bincount(labels[rows].ravel(), minlength=count + 1)
    return sizes[1:]


def _bands(image: np.ndarray) -> list[slice]:
    """Bands of rows of about BAND_PIXELS pixels."""
    step = max(1, BAND_PIXELS // max(image.shape[1], 1))
    return [slice(top, top + step) for top in range(0, image.shape[0], step)]


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and the columns that a 0/1 mask's pixels lie in (empty for an empty mask): the
    crop where its regions are labelled and its holes filled, at a fraction of a full-size cost."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
