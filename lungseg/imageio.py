"""Reading X-rays and masks from any source into uint8 arrays, with clear errors.

Every path into the model (training, Python inference, the CLI, the Streamlit app) reads
images here, so an X-ray is always decoded the same way: EXIF orientation applied, 16-bit
images stretched from their own min..max to 0..255, alpha dropped, grey copied to RGB.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest image accepted, in pixels (a 12,000 x 12,000 scan); larger ones are refused
#: before decoding so that a decompression bomb cannot exhaust memory.
MAX_PIXELS = 144_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageInput = Union[str, Path, bytes, np.ndarray, Image.Image]


class ImageError(ValueError):
    """An input that is not a readable image, with a message meant for the user."""


def _open(source: str | Path | bytes) -> Image.Image:
    """Open and fully decode an image file or bytes, turning every failure into ImageError."""
    name = "upload" if isinstance(source, bytes) else Path(source).name
    if isinstance(source, bytes):
        if not source:
            raise ImageError(f"{name}: the file is empty (0 bytes).")
        stream = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such file.")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes).")
        stream = path.open("rb")
    try:
        with stream, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below
            image = Image.open(stream)
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(
                    f"{name}: the image is {image.width}x{image.height} pixels, more than the "
                    f"{MAX_PIXELS:,} this tool accepts.")
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file PIL can read (PNG, JPEG, ...).") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: the image is too large to decode safely.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name}: the image is corrupt or truncated ({err}).") from None
    return image


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Bring any numeric array to uint8: 8-bit as is, wider types stretched min..max."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    array = array.astype(np.float64)
    low, high = np.nanmin(array), np.nanmax(array)
    if high <= low:
        return np.zeros(array.shape, np.uint8)
    return np.round((array - low) * (255.0 / (high - low))).astype(np.uint8)


def _pil_to_array(image: Image.Image) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _to_uint8(np.asarray(image))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
    return np.asarray(image)


def read_image(source: ImageInput) -> np.ndarray:
    """Return an X-ray as a uint8 array of shape (H, W, 3), the model's input format.

    ``source`` may be a path, encoded file bytes, a PIL image or an array of shape
    (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Raises ImageError for anything unreadable.
    """
    if isinstance(source, Image.Image):
        array = _pil_to_array(source)
    elif isinstance(source, np.ndarray):
        array = _to_uint8(source)
    elif isinstance(source, (str, Path, bytes)):
        array = _pil_to_array(_open(source))
    else:
        raise ImageError(f"unsupported input type {type(source).__name__}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"an image must be (H, W), (H, W, 3) or (H, W, 4); got {array.shape}.")
    if min(array.shape[:2]) < 8:
        raise ImageError(f"the image is only {array.shape[1]}x{array.shape[0]} pixels.")
    return np.ascontiguousarray(array[:, :, :3])


def read_mask(source: str | Path | bytes) -> np.ndarray:
    """Return a mask file as a (H, W) uint8 array, 1 = lung (any non-zero pixel)."""
    array = _pil_to_array(_open(source))
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2)
    return (array > 0).astype(np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 array (a 0/1 mask is scaled to 0/255) as PNG bytes."""
    if array.ndim == 2 and array.max(initial=0) <= 1:
        array = array * 255
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
