"""Degradations that real devices and exports make, applied to an X-ray and its mask.

    image, mask = PERTURBATIONS["washed_out"](image, mask, rng)

Each takes a (H, W, 3) uint8 image, its (H, W) 0/1 mask and a numpy Generator, and returns both
(the mask changes only where the geometry does). Used to fit the quality estimate on degraded
inputs as well as clean ones.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def _levels(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.round(low + image.astype(np.float64) * (high - low) / 255.0).astype(np.uint8)


def washed_out(image, mask, rng):
    """Contrast squeezed into the top fifth of the grey range (a washed-out export)."""
    return _levels(image, 204, 255), mask


def under_exposed(image, mask, rng):
    """Contrast squeezed into the bottom half."""
    return _levels(image, 0, 128), mask


def gamma(image, mask, rng):
    g = rng.choice([0.5, 2.0])
    return np.round(255.0 * (image / 255.0) ** g).astype(np.uint8), mask


def noise(image, mask, rng):
    """Gaussian noise, sigma 8 grey levels."""
    noisy = image.astype(np.float64) + rng.normal(0, 8, image.shape[:2])[..., None]
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8), mask


def blur(image, mask, rng):
    """Gaussian blur, sigma 2 px."""
    return np.round(ndimage.gaussian_filter(image.astype(np.float64), (2, 2, 0))).astype(np.uint8), mask


def jpeg(image, mask, rng):
    """JPEG at quality 10."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=10)
    return np.asarray(Image.open(buffer).convert("RGB")), mask


def downscale(image, mask, rng):
    """Down to 128 px on the long side and back up (a thumbnail used as the X-ray)."""
    height, width = image.shape[:2]
    scale = 128 / max(height, width)
    small = Image.fromarray(image).resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                          Image.BILINEAR)
    return np.asarray(small.resize((width, height), Image.BILINEAR)), mask


def rotate(image, mask, rng):
    """A rotation of 5-10 degrees either way (a tilted patient or cassette)."""
    angle = float(rng.uniform(5, 10) * rng.choice([-1, 1]))
    turned = ndimage.rotate(image, angle, axes=(1, 0), reshape=False, order=1, mode="constant")
    return turned, (ndimage.rotate(mask, angle, axes=(1, 0), reshape=False, order=0) > 0).astype(np.uint8)


def crop(image, mask, rng):
    """A crop that cuts off 10-25% of the X-ray at one side (a collimated or cropped image)."""
    height, width = image.shape[:2]
    cut = int(rng.uniform(0.10, 0.25) * (height if rng.random() < 0.5 else width))
    side = rng.integers(4)
    rows, cols = slice(None), slice(None)
    if side == 0:
        rows = slice(cut, None)
    elif side == 1:
        rows = slice(None, height - cut)
    elif side == 2:
        cols = slice(cut, None)
    else:
        cols = slice(None, width - cut)
    return np.ascontiguousarray(image[rows, cols]), np.ascontiguousarray(mask[rows, cols])


PERTURBATIONS = {f.__name__: f for f in (washed_out, under_exposed, gamma, noise, blur, jpeg,
                                          downscale, rotate, crop)}
