"""Inputs that are not usable chest X-rays, for the warning tests: scikit-image's bundled sample
images, synthetic ones, and inverted / washed-out copies of real X-rays."""
import numpy as np
import skimage.data

from conftest import val_images

SAMPLES = ["astronaut", "binary_blobs", "brick", "camera", "cat", "checkerboard", "chelsea", "clock",
           "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
           "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
           "text", "shepp_logan_phantom", "cell"]


def _uint8(image: np.ndarray) -> np.ndarray:
    return image.astype(np.uint8) * 255 if image.dtype == bool else image


def synthetic() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:300, 0:400]
    return {
        "noise_grey": rng.integers(0, 256, (300, 400), np.uint8),
        "noise_rgb": rng.integers(0, 256, (300, 400, 3), np.uint8),
        "gradient_h": (x * 255 // 399).astype(np.uint8),
        "gradient_v": (y * 255 // 299).astype(np.uint8),
        "gradient_rgb": np.stack([x * 255 // 399, y * 255 // 299, 255 - x * 255 // 399], 2).astype(np.uint8),
        "radial": (255 * np.hypot(x - 200, y - 150) / 250).clip(0, 255).astype(np.uint8),
        "flat_grey": np.full((300, 400), 128, np.uint8),
        "black": np.zeros((300, 400), np.uint8),
        "tiny": rng.integers(0, 256, (8, 8), np.uint8),
    }


def degraded_xrays(count: int = 6) -> dict[str, np.ndarray]:
    """Inverted and washed-out copies of real Val X-rays (none where ../shared is absent)."""
    from PIL import Image

    out = {}
    for path in val_images(count * 40)[::40]:
        grey = np.asarray(Image.open(path).convert("L"))
        out[f"inverted {path.name}"] = 255 - grey
        out[f"washed-out {path.name}"] = (204 + grey.astype(int) * 51 // 255).astype(np.uint8)
    return out


def probes() -> dict[str, np.ndarray]:
    return {**{n: _uint8(getattr(skimage.data, n)()) for n in SAMPLES}, **synthetic(), **degraded_xrays()}
