"""Reading X-rays of every kind, and clear errors for files that are not X-rays."""
import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from lungseg import rules
from lungseg.rules import MAX_PIXELS
from lungseg.imageio import ImageError, encode_png, read_image, read_mask, sniff


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


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header announces ``width`` x ``height`` grey pixels (a decompression bomb:
    one row of data, so decoding it all would also fail as truncated)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


def too_many_pixels(width: int, height: int, name: str = "upload") -> str:
    return rules.message("too_many_pixels", name, width=width, height=height,
                         megapixels=f"{width * height / 1e6:.1f}")


def test_huge_image_is_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 100
    data = png_bytes(Image.new("1", (side, side)))   # a few kB on disk, too many pixels
    with pytest.raises(ImageError, match="pixels"):
        read_image(data)


@pytest.mark.parametrize("pillow_limit", [Image.MAX_IMAGE_PIXELS, None, 10_000])
def test_pillows_limit_is_left_as_the_user_set_it(pillow_limit, monkeypatch, tmp_path):
    """Importing lungseg leaves PIL.Image.MAX_IMAGE_PIXELS alone; whatever it is, a 30000x30000
    bomb gets LungSeg's message with its size, from the header (no time spent decoding)."""
    import subprocess
    import sys

    code = "import PIL.Image as I; v = I.MAX_IMAGE_PIXELS; import lungseg; print(I.MAX_IMAGE_PIXELS == v)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "True\n"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(30_000, 30_000))
    for source in (path, path.read_bytes()):
        start = time.perf_counter()
        with pytest.raises(ImageError) as refused:
            read_image(source, name="bomb.png")
        assert str(refused.value) == too_many_pixels(30_000, 30_000, "bomb.png")
        assert time.perf_counter() - start < 1.0
    assert Image.MAX_IMAGE_PIXELS == pillow_limit


def test_pillows_lower_limit_is_obeyed_with_a_clear_message(monkeypatch, gradient):
    """A user who set Pillow's limit below ours gets it kept, and a message with the size."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError) as refused:
        read_image(png_bytes(Image.fromarray(np.tile(gradient, (2, 2)))), name="x.png")
    assert str(refused.value).startswith("x.png: the image is 120x80 pixels (0.0 MP), more than Pillow")
    assert "MAX_IMAGE_PIXELS = 1000" in str(refused.value)


def test_a_lazily_opened_pil_bomb_is_refused_from_its_size(monkeypatch, tmp_path):
    """A PIL image opened (not loaded) by the caller is refused from .size, never decoded."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)     # the caller switched Pillow's guard off
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png(30_000, 30_000))
    image = Image.open(path)
    image.load = lambda: pytest.fail("the image was decoded")
    with pytest.raises(ImageError) as refused:
        read_image(image, name="bomb.png")
    assert str(refused.value) == too_many_pixels(30_000, 30_000, "bomb.png")


def test_a_truncated_pil_image_raises_image_error(tmp_path):
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        read_image(Image.open(path))
    with Image.open(path) as closed:
        pass
    with pytest.raises(ImageError, match="cut.png: the image is corrupt"):
        read_image(closed, name="cut.png")                  # its file closed before it was read


def test_one_format_rule_for_paths_and_pil_images(gradient, tmp_path):
    """A GIF is refused as a path, as bytes and as a PIL image, with one message; PIL images of
    our formats (a camera's multi-picture JPEG too) and built in memory are read."""
    gif = tmp_path / "drawing.gif"
    Image.fromarray(gradient).save(gif)
    expected = rules.message("unknown_format", "drawing.gif")
    for source in (gif, gif.read_bytes(), Image.open(gif)):
        with pytest.raises(ImageError) as refused:
            read_image(source, name="drawing.gif")
        assert str(refused.value) == expected
    grey = Image.fromarray(gradient)
    mpo = io.BytesIO()
    grey.save(mpo, "MPO", save_all=True, append_images=[grey], quality=95)
    camera = Image.open(io.BytesIO(mpo.getvalue()))
    assert camera.format == "MPO"
    assert np.array_equal(read_image(camera), read_image(mpo.getvalue()))
    for built in (grey, Image.open(gif).convert("L")):       # format None: made in memory
        assert built.format is None and read_image(built).shape == (40, 60, 3)


def test_sniff_tells_images_dicoms_text_and_the_rest_by_content(gradient, tmp_path):
    """Judged from the first bytes and header, whatever the file is called; nothing decoded."""
    from dicoms import dataset, encode

    png = png_bytes(Image.fromarray(gradient))
    files = {
        "scan": (png, "image"),                                        # no extension
        "photo.dat": (png_bytes(Image.fromarray(gradient), "JPEG"), "image"),
        "cut.png": (png[: len(png) // 2], "image"),                    # read later: truncated
        "bomb.png": (bomb_png(30_000, 30_000), "image"),               # read later: too large
        "chest.bin": (encode(dataset(np.tile(gradient.astype(np.uint16), (4, 4)))), "dicom"),
        "notes.png": ("patient notes, not an X-ray\n".encode(), "text"),
        "readme": ("Überblick: ein Text\r\n".encode(), "text"),
        "drawing.png": (png_bytes(Image.fromarray(gradient), "GIF"), "other"),
        "empty.png": (b"", "other"),
        "random.png": (np.random.default_rng(0).integers(0, 256, 600, np.uint8).tobytes(), "other"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    assert {name: sniff(tmp_path / name) for name in files} == {n: k for n, (_, k) in files.items()}


def test_sniff_says_plainly_when_a_file_cannot_be_read(tmp_path):
    """A symlink loop, a folder, a missing file (and, for a non-root user, a file without read
    permission): rules.json's "unreadable" message, never an OSError."""
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    locked = tmp_path / "locked.png"
    locked.write_bytes(b"\x89PNG")
    locked.chmod(0)
    cases = {loop: "Too many levels of symbolic links", tmp_path: "Is a directory",
             tmp_path / "absent.png": "No such file or directory"}
    if os.geteuid() != 0:
        cases[locked] = "Permission denied"
    for path, detail in cases.items():
        with pytest.raises(ImageError) as refused:
            sniff(path)
        assert str(refused.value) == rules.message("unreadable", path.name, detail=detail)
