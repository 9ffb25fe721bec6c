"""Reading X-rays and masks from any source into uint8 arrays, with clear errors.

Every path into the model (training, Python inference, the CLI, the Streamlit app) reads
images here, so an X-ray is always decoded the same way: EXIF orientation applied, 16-bit
images stretched from their own min..max to 0..255, alpha dropped, grey copied to RGB; DICOM
files (recognised by content) through lungseg.dicom's display pipeline. The accepted formats,
limits and messages are rules.json's (lungseg.rules), the same for paths, bytes and PIL images:
sizes are checked from the header before any pixel is decoded, and every unreadable input raises
ImageError. Pillow's own limit (PIL.Image.MAX_IMAGE_PIXELS) is left as the caller set it.
``sniff`` tells from a file's first bytes whether it holds an image, a DICOM or text.
"""
from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import rules
from .dicom import DicomImage, is_dicom, read_dicom

ImageInput = Union[str, Path, bytes, np.ndarray, Image.Image]

#: The formats of rules.json that Pillow decodes (DICOM is read by lungseg.dicom); any other
#: format Pillow knows (GIF, ICO, PPM, ...) is refused like an unknown one, for files and PIL
#: images alike. Pillow opens a JPEG holding several pictures (cameras) as "MPO".
PIL_FORMATS = tuple(f["name"].upper() for f in rules.RULES["formats"] if f["name"] != "DICOM")
PIL_IMAGE_FORMATS = frozenset(PIL_FORMATS) | {"MPO"}
#: Why a PIL image opened lazily cannot be read when its file was closed first.
CLOSED = "its file was closed before its pixels were read"
#: How PNGs are compressed: run-length deflate (zlib's Z_RLE) at level 1, after PNG's row filters:
#: as fast as level 1 and smaller. CPU per 2500x3000 file (bench/bench_batch.py --png): mask
#: 30 ms, 18 kB; RGB overlay 188 ms, 977 kB (Pillow's default, level 6: 40 ms, 20 kB; 353 ms,
#: 773 kB; level 1: 29 ms, 52 kB; 192 ms, 1179 kB).
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}
HEAD_BYTES = 512               # what is read to tell a file's kind (sniff, the DICOM and text tests)
#: Pillow's own decompression-bomb guard (PIL.Image.MAX_IMAGE_PIXELS, the user's to set) refused an
#: image that LungSeg's limit would accept.
PILLOW_LIMIT = ("{file}: the image is {width}x{height} pixels ({megapixels} MP), more than Pillow "
                "allows in this program (PIL.Image.MAX_IMAGE_PIXELS = {limit}).")


class ImageError(ValueError):
    """An input that is not a readable image, with a message meant for the user."""


def _check_size(name: str, width: int, height: int) -> None:
    """Refuse an image outside rules.json's pixel limits (called on the header, before decoding)."""
    if width * height > rules.MAX_PIXELS:
        raise ImageError(rules.message("too_many_pixels", name, width=width, height=height,
                                       megapixels=f"{width * height / 1e6:.1f}"))
    if min(width, height) < rules.MIN_SIDE:
        raise ImageError(rules.message("too_small", name, width=width, height=height))


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _head(source: str | Path | bytes, name: str) -> bytes:
    """The first bytes of a file or upload, after the checks every file gets (exists, not empty,
    not over the size limit)."""
    if isinstance(source, bytes):
        size, head = len(source), source[:HEAD_BYTES]
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(rules.message("no_such_file", name))
        size = path.stat().st_size
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
    if size == 0:
        raise ImageError(rules.message("empty", name))
    if size > rules.MAX_FILE_BYTES:
        raise ImageError(rules.message("file_too_large", name, megabytes=f"{size / 2**20:.0f}"))
    return head


def _announced_size(opened, name: str) -> tuple[int, int]:
    """An image's width and height from its header, read by its Pillow plugin directly: how the
    size of an image that Pillow's bomb guard refused is still known."""
    opened.seek(0)
    prefix = opened.read(16)
    for fmt in PIL_FORMATS:
        factory, accept = Image.OPEN[fmt]
        if accept is None or accept(prefix) is True:
            opened.seek(0)
            return factory(opened, name).size
    raise ImageError(rules.message("unknown_format", name))


def _too_large_for_pillow(opened, name: str) -> ImageError:
    """The message for an image Pillow's own limit refused: ours when it is over our limit too."""
    width, height = _announced_size(opened, name)
    _check_size(name, width, height)
    return ImageError(PILLOW_LIMIT.format(file=name, width=width, height=height,
                                          megapixels=f"{width * height / 1e6:.1f}",
                                          limit=Image.MAX_IMAGE_PIXELS))


def _decoded(image: Image.Image, name: str) -> Image.Image:
    """``image`` with its pixels loaded, every decoding failure an ImageError."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(rules.message("corrupt", name, detail=str(err) or type(err).__name__)) from None
    return image


def _open(source: str | Path | bytes, name: str, head: bytes) -> Image.Image:
    """Open an image file or bytes, check its size from the header, then decode it; every failure
    an ImageError. Pillow's bomb guard is left as the user set it: when it fires first, the
    message still says how large the image is."""
    try:
        with (io.BytesIO(source) if isinstance(source, bytes) else Path(source).open("rb")) as opened:
            try:
                image = Image.open(opened, formats=PIL_FORMATS)
            except Image.DecompressionBombError:
                raise _too_large_for_pillow(opened, name) from None
            _check_size(name, *image.size)
            return _decoded(image, name)
    except UnidentifiedImageError:
        code = "text_file" if _looks_like_text(head) else "unknown_format"
        raise ImageError(rules.message(code, name)) from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(rules.message("corrupt", name, detail=str(err) or type(err).__name__)) from None


def _from_pil(image: Image.Image, name: str) -> np.ndarray:
    """A PIL image given by the caller, under the rules a file gets: its format (when it was read
    from a file) one of ours, its size checked before its pixels are decoded (a lazily opened
    image is not loaded yet)."""
    if image.format is not None and image.format.upper() not in PIL_IMAGE_FORMATS:
        raise ImageError(rules.message("unknown_format", name))
    _check_size(name, *image.size)
    if isinstance(image, ImageFile.ImageFile) and image.tile and image.fp is None:
        raise ImageError(rules.message("corrupt", name, detail=CLOSED))
    return _pil_to_array(_decoded(image, name))


def sniff(path: str | Path, name: str | None = None) -> str:
    """What a file holds, judged from its first bytes and header only (nothing is decoded):
    "image" (a format of rules.json that Pillow reads, also one too large, truncated or corrupt,
    which reading then refuses with its message), "dicom", "text" or "other" (empty, another
    format, binary). For finding X-rays in a folder by content, whatever their names. Raises
    ImageError (rules.json's "unreadable" message, for ``name``: default the file name) when the
    file cannot be opened or read."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            head = file.read(HEAD_BYTES)
            if not head or is_dicom(head):
                return "dicom" if head else "other"
            try:
                Image.open(file, formats=PIL_FORMATS)
            except UnidentifiedImageError:
                return "text" if _looks_like_text(head) else "other"
            except (Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError):
                pass                # a header of our formats, refused later with its message
            return "image"
    except OSError as err:
        raise ImageError(rules.message("unreadable", _name(path, name),
                                       detail=err.strerror or type(err).__name__)) from None


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


def _name(source, name: str | None) -> str:
    """How messages call the input: the given name, a path's file name, or "upload"/"image"."""
    if name:
        return name
    if isinstance(source, (str, Path)):
        return Path(source).name
    return "upload" if isinstance(source, bytes) else "image"


def read_input(source: ImageInput, name: str | None = None) -> tuple[np.ndarray, DicomImage | None]:
    """``read_image``, and for a DICOM file also what its header says (spacing, warnings)."""
    if isinstance(source, (str, Path, bytes)):
        name = _name(source, name)
        head = _head(source, name)
        if is_dicom(head):
            xray = read_dicom(source, name)
            return xray.pixels, xray
        return _checked(_pil_to_array(_open(source, name, head)), name), None
    return read_image(source, name), None


def read_image(source: ImageInput, name: str | None = None) -> np.ndarray:
    """Return an X-ray as a uint8 array of shape (H, W, 3), the model's input format.

    ``source`` may be a path, encoded file bytes, a PIL image or an array of shape
    (H, W), (H, W, 1), (H, W, 3) or (H, W, 4). Raises ImageError for anything unreadable,
    with a message (from rules.json) that starts with ``name`` (default: the file name).
    """
    name = _name(source, name)
    if isinstance(source, Image.Image):
        array = _from_pil(source, name)
    elif isinstance(source, np.ndarray):
        array = _to_uint8(source)
    elif isinstance(source, (str, Path, bytes)):
        return read_input(source, name)[0]
    else:
        raise ImageError(f"{name}: unsupported input type {type(source).__name__}.")
    return _checked(array, name)


def _checked(array: np.ndarray, name: str) -> np.ndarray:
    """Any decoded array as (H, W, 3) uint8 within the size limits."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ImageError(f"{name}: an image must be (H, W), (H, W, 3) or (H, W, 4); got {array.shape}.")
    _check_size(name, array.shape[1], array.shape[0])
    return np.ascontiguousarray(array[:, :, :3])


def read_mask(source: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Return a mask file as a (H, W) uint8 array, 1 = lung (any non-zero pixel)."""
    name = _name(source, name)
    array = _pil_to_array(_open(source, name, _head(source, name)))
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2)
    return (array > 0).astype(np.uint8)


def encode_png(array: np.ndarray, scale: bool = True) -> bytes:
    """Encode a uint8 array as PNG bytes (PNG_OPTIONS); a 0/1 mask is scaled to 0/255 unless
    ``scale`` is False."""
    if scale and array.ndim == 2 and array.max(initial=0) <= 1:
        array = array * 255
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8, copy=False)).save(buffer, format="PNG", **PNG_OPTIONS)
    return buffer.getvalue()
