"""Reading X-rays of every kind, and clear errors for files that are not X-rays."""
import io

import numpy as np
import pytest
from PIL import Image

from lungseg.rules import MAX_PIXELS
from lungseg.imageio import ImageError, encode_png, read_image, read_mask


def png_bytes(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def gradient():
    """A 40x60 grey ramp, 0..235 left to right."""
    return np.tile(np.arange(60, dtype=np.uint8) * 4, (40, 1))


def test_grey_rgb_rgba_palette_all_become_the_same_rgb(gradient):
    grey = Image.fromarray(gradient)
    expected = np.repeat(gradient[:, :, None], 3, axis=2)
    for image in (grey, grey.convert("RGB"), grey.convert("RGBA"), grey.convert("P")):
        array = read_image(png_bytes(image))
        assert array.dtype == np.uint8 and array.shape == (40, 60, 3)
        assert np.array_equal(array, expected), image.mode


def test_inputs_of_every_type(gradient, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(gradient).save(path)
    expected = read_image(path)
    for source in (str(path), path.read_bytes(), Image.open(path), gradient, gradient[:, :, None],
                   np.repeat(gradient[:, :, None], 4, axis=2)):
        assert np.array_equal(read_image(source), expected)


def test_16_bit_png_is_stretched_to_8_bit():
    # A 12-bit detector image stored in 16 bits: values 1000..3000.
    raw = np.linspace(1000, 3000, 50 * 50).reshape(50, 50).astype(np.uint16)
    array = read_image(png_bytes(Image.fromarray(raw)))
    assert array[..., 0].min() == 0 and array[..., 0].max() == 255
    assert np.all(np.diff(array[..., 0].ravel().astype(int)) >= 0)  # order kept


def test_exif_rotation_is_applied(gradient):
    image = Image.fromarray(gradient)               # 60 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6                                # "rotate 90 CW to display"
    array = read_image(png_bytes(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert array.shape == (60, 40, 3)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not an image", "not an image"),
])
def test_bad_bytes_give_clear_errors(content, message):
    with pytest.raises(ImageError, match=message):
        read_image(content)


def test_truncated_png_is_reported(gradient):
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        read_image(data[: len(data) // 2])


def test_huge_image_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 100
    data = png_bytes(Image.new("1", (side, side)))   # a few kB on disk, too many pixels
    with pytest.raises(ImageError, match="pixels"):
        read_image(data)


def test_missing_file_and_tiny_image(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="only"):
        read_image(np.zeros((4, 4), np.uint8))


def test_masks_round_trip_through_png():
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:25] = 1
    data = encode_png(mask)
    assert Image.open(io.BytesIO(data)).getextrema() == (0, 255)
    assert np.array_equal(read_mask(data), mask)
