"""What a mask measures: lung area as fractions of the image, per side (used by every surface)."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

PATIENT_SIDE_NOTE = ("Image left is the patient's right (standard PA/AP chest X-ray, the patient "
                     "facing the viewer).")


def lung_areas(mask: np.ndarray) -> dict[str, float]:
    """Lung area as fractions of the image: all lung, image-left lung and image-right lung.

    Each connected lung region counts for the side its centre lies on; when the lungs form a
    single region (or none), its pixels are split at the image's vertical midline.
    """
    mask = mask.astype(bool)
    height, width = mask.shape
    total = float(mask.sum())
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count >= 2:
        centres = ndimage.center_of_mass(mask, labels, range(1, count + 1))
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        left = float(sum(a for a, (_, x) in zip(areas, centres) if x < (width - 1) / 2))
    else:
        left = float(mask[:, : width // 2].sum())
    pixels = float(height * width)
    return {"lung_fraction": total / pixels, "image_left_fraction": left / pixels,
            "image_right_fraction": (total - left) / pixels}
