"""The Streamlit app (streamlit_app.py) driven by streamlit.testing.v1.AppTest with real X-rays.

Every figure is checked against ``lungseg`` itself (the same code runs in the app, so masks must
be equal, not close); nothing here assumes how good the committed model is.
"""
from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import struct
import sys
import tomllib
import zipfile
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, mask_of, requires_data, val_images
from dicoms import dataset, encode

sys.path.insert(0, str(ROOT))

st_testing = pytest.importorskip("streamlit.testing.v1")
from streamlit.runtime import caching  # noqa: E402
from streamlit.runtime.media_file_manager import MediaFileManager  # noqa: E402
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from app import analysis, download, results, serve  # noqa: E402
from app.store import ByteLRU  # noqa: E402
from lungseg import ImageError, Segmenter, checks, read_image, read_mask, rules  # noqa: E402
from lungseg.bundle import DEFAULT_MODEL, SEED_MODEL  # noqa: E402
from lungseg.imageio import encode_png  # noqa: E402
from lungseg.measure import lung_areas, side_labels  # noqa: E402
from lungseg.metrics import score  # noqa: E402
from lungseg.plots import overlay  # noqa: E402

APP = str(ROOT / "streamlit_app.py")


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def seg():
    return Segmenter.load(DEFAULT_MODEL)


@pytest.fixture
def downloads(monkeypatch):
    """file name -> bytes of every st.download_button payload the app registers (deferred ones,
    which the browser would request on a click, are generated right away)."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id
    original_deferred = MediaFileManager.add_deferred

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            seen[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    def record_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        if file_name:
            seen[file_name] = data_callable()
        return original_deferred(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    monkeypatch.setattr(MediaFileManager, "add_deferred", record_deferred)
    return seen


@pytest.fixture
def small_store(monkeypatch):
    """The app's shared result store, emptied, with a budget the test sets (restored after)."""
    cache = results.store()
    cache.clear()
    monkeypatch.setattr(cache, "budget", cache.budget)
    yield cache
    cache.clear()


def new_app():
    at = st_testing.AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception
    return at


def upload(at, files, truths=None):
    at.file_uploader(key="xrays").set_value(files)
    if truths is not None:
        at.file_uploader(key="truths").set_value(truths)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def png_file(path):
    return (path.name, path.read_bytes(), "image/png")


def refusal(name: str, data: bytes) -> str:
    """lungseg's own message for a file it refuses."""
    with pytest.raises(ImageError) as refused:
        read_image(data, name=name)
    return str(refused.value)


def table(at) -> list[dict]:
    """The rows of the results tables: the segmented files, then those not segmented."""
    return [row for frame in at.dataframe for row in frame.value.to_dict("records")]


def unzip(data: bytes, table: str = "manifest.csv") -> tuple[dict[str, np.ndarray], list[dict], list[str]]:
    """The zip's masks (NAME.mask.png -> pixels), the rows of ``table`` and every file name."""
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        names = bundle.namelist()
        masks = {n: np.asarray(Image.open(io.BytesIO(bundle.read(n))))
                 for n in names if n.endswith(".mask.png")}
        rows = list(csv.DictReader(io.StringIO(bundle.read(table).decode())))
    return masks, rows, names


def real_grey() -> np.ndarray:
    """A real X-ray's grey levels (the first Normal one of Val)."""
    return np.asarray(Image.open(val_images(1, "Normal")[0]).convert("L"))


def chest_dicom(**attributes) -> bytes:
    """A 12-bit DX DICOM of a real X-ray (tests/dicoms.py), with ``attributes`` set."""
    return encode(dataset(real_grey().astype(np.uint16) * 16, **attributes))


def with_estimator(folder) -> str:
    """A deployed copy of the default model whose card has a (constant) quality estimator."""
    from lungseg.quality import FEATURES
    folder.mkdir(parents=True)
    (folder / "model.keras").symlink_to(DEFAULT_MODEL / "model.keras")
    card = json.loads((DEFAULT_MODEL / "card.json").read_text())
    zeros = [0.0] * len(FEATURES)
    card["quality"] = {"features": list(FEATURES), "mean": zeros, "scale": [1.0] * len(FEATURES),
                       "intercept": 3.0, "coef": zeros, "warn_below": 0.9}   # Dice 0.95 for all
    (folder / "card.json").write_text(json.dumps(card))
    return str(folder)


def huge_png(width=30_000, height=30_000) -> bytes:
    """A tiny file whose header announces a gigantic image (a decompression bomb)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- pure helpers
def test_rle_round_trip():
    rng = np.random.default_rng(0)
    for mask in (rng.integers(0, 2, (13, 17), dtype=np.uint8), np.ones((4, 5), np.uint8),
                 np.zeros((4, 5), np.uint8)):
        runs = analysis.rle_encode(mask)
        assert sum(runs) == mask.size
        assert np.array_equal(analysis.rle_decode(runs, mask.shape[1], mask.shape[0]), mask)
    with pytest.raises(ValueError):
        analysis.rle_decode([3, 4], 5, 5)


def test_lung_areas_sides():
    mask = np.zeros((100, 200), np.uint8)
    mask[20:80, 10:70] = 1        # image left: the patient's right lung
    mask[20:60, 130:190] = 1      # image right
    areas = lung_areas(mask)
    assert areas["image_left_fraction"] == pytest.approx(3600 / 20000)
    assert areas["image_right_fraction"] == pytest.approx(2400 / 20000)
    assert areas["lung_fraction"] == pytest.approx(6000 / 20000)


def test_truth_matching():
    got = analysis.match_truths(["a.png", "b.png", "c.jpg"], ["a.png", "b_mask.png", "x.png"])
    assert got == {"a.png": "a.png", "b.png": "b_mask.png"}


# ---------------------------------------------------------------- the app
def test_store_stays_within_its_budget():
    cache = ByteLRU(1000)
    for key in range(5):
        cache.put(key, {"array": np.zeros(300, np.uint8), "note": "x"})
    assert [k for k in range(5) if k in cache] == [2, 3, 4] and cache.nbytes == 903
    cache.get(2)                                        # now the most recently used
    cache.put(5, np.ones(300, np.uint8))
    assert [k for k in range(6) if k in cache] == [2, 4, 5] and cache.nbytes <= 1000
    assert not cache.get(5).flags.writeable             # shared by sessions: read-only
    big = cache.put("big", np.zeros(2000, np.uint8))    # larger than the budget: not kept
    assert big.size == 2000 and "big" not in cache and len(cache) == 3
    calls = []
    for _ in range(2):
        cache.get_or_compute("c", lambda: calls.append(1) or np.zeros(10, np.uint8))
    assert calls == [1]


@requires_data
def test_every_threshold_gives_segmenters_mask(seg, small_store, monkeypatch):
    """The model runs once per X-ray; each threshold's mask, made from its stored output, is
    Segmenter.predict's at that threshold, with the card threshold's quality and warnings."""
    path = val_images(1, "COVID-19")[0]
    data, folder = path.read_bytes(), str(DEFAULT_MODEL)
    expected = seg.analyze(data, name=path.name)
    calls = []
    original = Segmenter.analyze                       # how the app runs the model
    monkeypatch.setattr(Segmenter, "analyze",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    for threshold in (seg.threshold, *results.thresholds()[::15], 0.95):
        got = results.segment(data, path.name, folder, threshold)
        assert np.array_equal(results.full_mask(got), seg.predict(path, threshold)), threshold
        assert (got["quality"], got["warnings"]) == (expected.quality, expected.warnings)
    assert len(calls) == 1


@requires_data
def test_the_store_holds_small_objects_per_xray(small_store):
    """A 22-megapixel X-ray, both lung definitions at two thresholds, adds its display copies, the
    model's two outputs at their working size (one run) and a packed mask per definition and
    threshold to the store: an eighth of a byte per pixel per mask, under 20 MB in all (one
    full-size float map would be 89 MB)."""
    grey = Image.open(val_images(1, "Normal")[0]).convert("L").resize((4300, 5200), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG", compress_level=1)
    data, folder, pixels = buffer.getvalue(), str(DEFAULT_MODEL), 4300 * 5200
    for threshold in (0.5, 0.4):
        for definition in ("visible", "whole"):
            assert "error" not in results.segment(data, "large.png", folder, threshold, definition, "both")
    results.image_preview(data, "large.png")
    model = small_store.get(("model", results.digest(data), folder, "visible"))
    assert sorted(model["values"]) == ["visible", "whole"]
    assert all(v.size * v.itemsize <= 2**18 for v in model["values"].values())
    side = results.PREVIEW_SIDE
    bound = 4 * (pixels // 8 + side**2) + 3 * side**2 + 2**20
    assert small_store.nbytes <= bound < 20 * 2**20


def whole_image_stats(image: np.ndarray) -> dict:
    """lungseg.checks.image_stats as it was computed on the whole image at once (the reference)."""
    grey = ((image[..., 0].astype(np.uint16) + image[..., 1] + image[..., 2]) // 3).astype(np.uint8)
    counts = np.bincount(grey.ravel(), minlength=256)
    levels = np.arange(256.0)
    mean = float(counts @ levels) / grey.size
    std = float(np.sqrt(counts @ (levels - mean) ** 2 / grey.size))
    cumulative = np.cumsum(counts) / grey.size
    grey_only = np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    return {
        "width": image.shape[1], "height": image.shape[0],
        "p1": int(np.searchsorted(cumulative, 0.01)), "p99": int(np.searchsorted(cumulative, 0.99)),
        "std": std, "colour": 0.0 if grey_only else float((image.max(axis=2) - image.min(axis=2)).mean()),
        "noise": float(np.abs(np.diff(grey.astype(np.int16), axis=1)).mean() / (std + 1.0)),
    }


def test_image_stats_band_by_band_equal_the_whole_images():
    """checks.image_stats sums bands of rows (no full-size copy): bit for bit the figures of the
    whole image, on noise, colour, grey and partly coloured images over many uneven bands."""
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (1501, 777, 3), dtype=np.uint8)
    grey = np.repeat(rng.integers(0, 256, (2900, 1201, 1), dtype=np.uint8), 3, axis=2)
    part = grey.copy()
    part[700:1900, 100:900, 0] //= 3                    # colour in some bands only
    ramp = np.repeat(np.tile(np.arange(256, dtype=np.uint8), (40, 4))[..., None], 3, axis=2)
    for image in (noise, grey, part, ramp):
        assert checks.image_stats(image) == whole_image_stats(image), image.shape


@requires_data
def test_image_stats_of_real_xrays_equal_the_whole_images():
    upscaled = Image.open(val_images(1, "COVID-19")[0]).convert("RGB").resize((2501, 3100))
    images = [read_image(p) for p in val_images(40)[::8]] + [np.asarray(upscaled)]
    for image in images:
        assert checks.image_stats(image) == whole_image_stats(image), image.shape


def test_page_explains_limits_and_privacy():
    at = new_app()
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert rules.FORMATS in text and ".webp" in text
    assert f"{rules.MAX_PIXELS / 1e6:g} megapixels and {rules.MAX_FILE_BYTES / 2**20:g} MB" in text
    assert "uploads nothing" in text and "sends your X-rays to this server" in text
    assert [o for o in at.sidebar.selectbox[0].options][:2] == ["default (committed)", "seed baseline"]
    assert at.sidebar.slider[0].value == rules.OVERLAY_OPACITY
    assert at.info[0].value == "Upload one or more chest X-rays to start."


def test_upload_limit_is_the_rule():
    """The upload box states rules.json's limit (100 MB), which the server enforces too."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == rules.MAX_FILE_BYTES
    at = new_app()
    assert [u.proto.max_upload_size_mb for u in at.get("file_uploader")] == [100, 100]


def test_every_file_is_listed_and_counted(downloads):
    """Files lungseg refuses are listed with its message, in the table, the count and the CSV."""
    noise = np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8)
    bad = [("notes.txt", b"patient notes, not an X-ray\n", "text/plain"),
           ("scan.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "application/pdf"),
           ("empty.png", b"", "image/png"),
           ("bomb.png", huge_png(), "image/png")]
    at = upload(new_app(), [("xray.png", encode_png(noise), "image/png")] + bad)
    assert [e.value for e in at.error] == [refusal(n, data) for n, data, _ in bad]
    assert [s.value for s in at.subheader] == ["xray.png"] + [n for n, _, _ in bad]
    assert not at.info
    assert any(m.value.startswith("1 of 5 file(s) segmented") for m in at.markdown)
    rows = table(at)
    assert [r["status"] for r in rows] == ["ok", "error", "error", "error", "error"]
    assert [r["error"] for r in rows[1:]] == [e.value for e in at.error]
    _, csv_rows, _ = unzip(downloads["lungseg-results.zip"])
    assert [r["input"] for r in csv_rows] == ["xray.png"] + [n for n, _, _ in bad]
    assert [r["message"] for r in csv_rows[1:]] == [e.value for e in at.error]


def test_a_real_gif_is_refused():
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 90, np.uint8)).save(buffer, format="GIF")
    at = upload(new_app(), [("drawing.gif", buffer.getvalue(), "image/gif")])
    assert [e.value for e in at.error] == [
        rules.message("unknown_format", "drawing.gif")]


def test_tables_have_human_column_labels():
    xray = ("xray.png", encode_png(np.full((64, 64), 99, np.uint8)), "image/png")
    at = upload(new_app(), [xray, ("notes.txt", b"hello\n", "text/plain")])
    segmented, refused = (json.loads(frame.proto.columns) for frame in at.dataframe)
    labels = {k: v["label"] for k, v in segmented.items() if "label" in v}
    assert labels["lung_fraction"] == "Lungs" and labels["image_left_fraction"] == "Right lung"
    assert "patient's right lung" in segmented["image_left_fraction"]["help"]
    assert set(at.dataframe[0].proto.column_order) <= set(labels)
    assert not any("_" in label for label in labels.values())
    assert list(at.dataframe[1].proto.column_order) == ["file", "error"]
    assert refused["error"]["label"] == "Why it was not segmented"
    assert table(at)[0]["size"] == "64 × 64"


@requires_data
def test_one_xray(seg, downloads):
    path = val_images(1, "Normal")[0]
    at = upload(new_app(), [png_file(path)])
    expected = seg.predict(path)
    areas = lung_areas(expected)

    [row] = table(at)
    assert row["status"] == "ok" and (row["width"], row["height"]) == (256, 256)
    assert row["lung_fraction"] == pytest.approx(100 * areas["lung_fraction"])       # in %
    assert row["image_left_fraction"] == pytest.approx(100 * areas["image_left_fraction"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Lung area"] == f"{areas['lung_fraction']:.1%}"
    assert metrics["Patient's right lung"] == f"{areas['image_left_fraction']:.1%}"
    assert metrics["Inference"].endswith(" ms")
    assert any("patient's right" in c.value for c in at.caption)

    assert downloads[f"{path.name}.mask.png"] == encode_png(expected)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(downloads[f"{path.name}.overlay.png"]))),
                          overlay(read_image(path), expected))
    assert downloads[f"{path.name}.labels.png"] == encode_png(side_labels(expected), scale=False)
    masks, rows, names = unzip(downloads["lungseg-results.zip"])
    assert sorted(names) == sorted([f"{path.name}.mask.png", f"{path.name}.overlay.png",
                                    f"{path.name}.labels.png", "manifest.csv", "scores.csv"])
    assert np.array_equal(masks[f"{path.name}.mask.png"], expected * 255)
    assert rows[0]["input"] == path.name and float(rows[0]["lung_fraction"]) == pytest.approx(
        areas["lung_fraction"], abs=1e-6)


@requires_data
def test_several_xrays_with_bad_files(seg, downloads):
    good = val_images(3, "COVID-19")
    truncated = good[0].read_bytes()
    bad = [("notes.png", b"this is not an image\n", "image/png"),
           ("truncated.png", truncated[: len(truncated) // 2], "image/png"),
           ("empty.png", b"", "image/png"),
           ("bomb.png", huge_png(), "image/png"),
           ("big.png", huge_png(9000, 9000), "image/png")]
    files = [png_file(good[0]), bad[0], png_file(good[1]), bad[1], bad[2], png_file(good[2]), bad[3],
             bad[4]]
    at = upload(new_app(), files)

    errors = [e.value for e in at.error]
    assert errors == [refusal(name, data) for name, data, _ in bad]
    assert "empty" in errors[2] and "900.0 MP" in errors[3] and "9000x9000" in errors[4]
    assert not any("Traceback" in e for e in errors)
    assert any(m.value.startswith("3 of 8 file(s) segmented") for m in at.markdown)

    rows = table(at)
    assert [r["status"] for r in rows] == ["ok"] * 3 + ["error"] * 5
    assert [r["file"] for r in rows[3:]] == [name for name, _, _ in bad]
    masks, csv_rows, _ = unzip(downloads["lungseg-results.zip"])
    assert len(masks) == 3 and len(csv_rows) == 8
    for path in good:
        assert np.array_equal(masks[f"{path.name}.mask.png"], seg.predict(path) * 255)
        assert downloads[f"{path.name}.mask.png"] == encode_png(seg.predict(path))


@requires_data
def test_ground_truth_dice(seg, downloads):
    images = val_images(2, "Non-COVID")
    truths = [(p.name, mask_of(p).read_bytes(), "image/png") for p in images]
    truths[1] = (images[1].stem + "_mask.png", truths[1][1], "image/png")   # matched by stem
    stray = ("someone-else.png", truths[0][1], "image/png")
    wrong_size = ("odd.png", encode_png(np.ones((40, 50), np.uint8)), "image/png")
    odd = ("odd.png", encode_png(read_image(images[0])[:200, :220]), "image/png")
    at = upload(new_app(), [png_file(p) for p in images] + [odd], truths + [stray, wrong_size])
    assert any("someone-else.png" in w.value for w in at.warning)
    assert [e.value for e in at.error] == [
        "odd.png: the mask is 50x40 pixels but the X-ray is 220x200."]

    expected = [score(read_mask(mask_of(p)), seg.predict(p)) for p in images]
    dice = [m.value for m in at.metric if m.label == "Dice"]
    iou = [m.value for m in at.metric if m.label == "IoU"]
    assert sorted(dice) == sorted(f"{e['dice']:.4f}" for e in expected)   # flagged ones come first
    assert sorted(iou) == sorted(f"{e['iou']:.4f}" for e in expected)
    by_file = {r["file"]: r for r in table(at)}
    for path, e in zip(images, expected):
        assert by_file[path.name]["dice"] == f"{e['dice']:.4f}"
    _, rows, _ = unzip(downloads["lungseg-results.zip"], "scores.csv")
    assert [float(r["dice"]) for r in rows[:2]] == pytest.approx([e["dice"] for e in expected],
                                                                 abs=1e-6)
    assert rows[2]["dice"] == "" and rows[2]["input"] == "odd.png"


@requires_data
def test_odd_formats(seg, downloads):
    """A non-256 size, RGBA, 16-bit grey and JPEG, built from a real X-ray."""
    source = Image.open(val_images(1, "Normal")[0]).convert("L")
    grey = np.asarray(source)

    def encoded(image, fmt="PNG"):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        return buffer.getvalue()

    rgba = Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 200)]), "RGBA")
    wide16 = Image.fromarray((grey.astype(np.uint16) * 257 + 3).astype(np.uint16))
    uploads = {
        "odd_size.png": encoded(source.resize((331, 287))),
        "rgba.png": encoded(rgba),
        "sixteen_bit.png": encoded(wide16),
        "photo.jpg": encoded(source.convert("RGB"), "JPEG"),
    }
    assert Image.open(io.BytesIO(uploads["sixteen_bit.png"])).mode.startswith("I")
    at = upload(new_app(), [(n, b, "image/jpeg" if n.endswith("jpg") else "image/png")
                            for n, b in uploads.items()])
    assert not at.error
    masks, rows, _ = unzip(downloads["lungseg-results.zip"])
    for name, data in uploads.items():
        expected = seg.predict(data)
        got = masks[f"{name}.mask.png"]
        assert got.shape == read_image(data).shape[:2]
        assert np.array_equal(got, expected * 255), name
    assert (rows[0]["width"], rows[0]["height"]) == ("331", "287")


@requires_data
def test_quality_of_a_real_xray(seg, downloads, tmp_path, monkeypatch):
    """No warning; the estimated Dice as lungseg gives it ("—" when the model has no estimator),
    in the metric, the table and the CSV (with a warnings column)."""
    path = val_images(1, "Normal")[0]
    deployed = with_estimator(tmp_path / "models" / "estimated")
    monkeypatch.setenv("LUNGSEG_MODELS_DIR", str(tmp_path / "models"))
    at = new_app()
    for label, model in (("default (committed)", seg), ("estimated (deployed)", Segmenter.load(deployed))):
        at.sidebar.selectbox[0].set_value(label).run()
        upload(at, [png_file(path)])
        expected = model.analyze(path.read_bytes(), name=path.name)
        assert expected.warnings == [] and not at.warning
        shown = "—" if expected.quality is None else f"{expected.quality:.2f}"
        [metric] = [m for m in at.metric if m.label == "Estimated Dice"]
        assert metric.value == shown
        assert expected.quality is not None or "No estimate for this model" in metric.help
        [row] = table(at)
        assert row["warnings"] == "" and (row["quality"] == pytest.approx(expected.quality)
                                          if expected.quality is not None else row["quality"] is None)
        _, [csv_row], _ = unzip(downloads["lungseg-results.zip"])
        assert csv_row["warnings"] == "" and csv_row["quality"] == (
            "" if expected.quality is None else f"{expected.quality:.6f}")
        assert not any("with warnings" in m.value for m in at.markdown)
    assert shown == "0.95"                       # the deployed card's estimator was used


@requires_data
def test_washed_out_and_negative_xrays_are_flagged_first(segmenter, downloads):
    """Their warnings are lungseg's, word for word, shown once each; they lead the table and
    the sections; the negative's masks follow its inverse at every threshold."""
    grey = real_grey()
    normal = ("normal.png", encode_png(grey), "image/png")
    washed = ("washed.png", encode_png((204 + grey.astype(np.int32) * 51 // 255).astype(np.uint8)),
              "image/png")
    negative = ("negative.png", encode_png(255 - grey), "image/png")
    at = upload(new_app(), [normal, washed, negative])
    expected = {name: segmenter.analyze(data, name=name) for name, data, _ in (normal, washed, negative)}
    assert [w["code"] for w in expected["washed.png"].warnings] == ["washed_out"]
    assert expected["negative.png"].inverted and expected["normal.png"].warnings == []
    messages = [w["message"] for n in ("washed.png", "negative.png") for w in expected[n].warnings]
    assert [w.value for w in at.warning] == messages
    assert [s.value for s in at.subheader] == ["washed.png", "negative.png", "normal.png"]
    rows = table(at)
    assert [r["file"] for r in rows] == ["washed.png", "negative.png", "normal.png"]
    assert [r["warnings"] for r in rows] == ["washed out", "inverted", ""]
    assert any("2 with warnings" in m.value for m in at.markdown)
    _, csv_rows, _ = unzip(downloads["lungseg-results.zip"])
    assert [(r["input"], r["warnings"]) for r in csv_rows] == [
        ("normal.png", ""), ("washed.png", "washed_out"), ("negative.png", "inverted")]
    assert downloads["negative.png.mask.png"] == encode_png(expected["negative.png"].mask)

    at.sidebar.select_slider[0].set_value(0.7).run()
    assert not at.exception
    assert downloads["negative.png.mask.png"] == encode_png(
        segmenter.to_mask(expected["negative.png"].probability, 0.7))
    assert [w.value for w in at.warning] == messages            # still those of the card's threshold
    assert any("model card's threshold (0.50)" in c.value for c in at.caption)

    # Both: the whole lung follows the visible field's choice of the inverse, as analyze does;
    # an image's warnings are said once. The whole lung alone decides for itself.
    both = {name: segmenter.analyze(data, name=name, definition="both") for name, data, _ in (washed, negative)}
    choose(at, "both")
    assert downloads["negative.png.whole.mask.png"] == encode_png(both["negative.png"].whole.mask)
    said = [w.value for w in at.warning]
    assert all(said.count(m) == 1 for m in messages), said
    choose(at, "whole")
    alone = segmenter.analyze(negative[1], name="negative.png", definition="whole")
    assert downloads["negative.png.whole.mask.png"] == encode_png(alone.mask)
    assert table(at)[0]["file"] in ("washed.png", "negative.png")


@requires_data
def test_dicom_areas_in_cm2_and_dicom_seg(segmenter, downloads):
    """Areas in cm² as lungseg gives them, and a DICOM-SEG, a labelled mask and the zip's copy
    that hold the app's mask."""
    import highdicom as hd

    data = chest_dicom(PixelSpacing=[0.7, 0.7])
    at = upload(new_app(), [("chest.dcm", data, "application/dicom")])
    expected = segmenter.analyze(data, name="chest.dcm")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Lung area"] == f"{expected.areas['lung_cm2']:.1f} cm²"
    assert metrics["Patient's right lung"] == f"{expected.areas['image_left_cm2']:.1f} cm²"
    [row] = table(at)
    assert row["lung_cm2"] == f"{expected.areas['lung_cm2']:.1f}"
    assert row["image_right_cm2"] == f"{expected.areas['image_right_cm2']:.1f}"
    assert any("Pixel Spacing (0.7 x 0.7 mm per pixel)" in c.value and "approximate" in c.value
               for c in at.caption)

    mask = np.asarray(Image.open(io.BytesIO(downloads["chest.dcm.mask.png"]))) // 255
    assert np.array_equal(mask, expected.mask)
    labels = np.asarray(Image.open(io.BytesIO(downloads["chest.dcm.labels.png"])))
    assert np.array_equal(labels, side_labels(mask))
    masks, [csv_row], names = unzip(downloads["lungseg-results.zip"])
    assert float(csv_row["lung_cm2"]) == pytest.approx(expected.areas["lung_cm2"], abs=1e-6)
    assert csv_row["spacing_source"] == "Pixel Spacing" and csv_row["dicom_seg"] == "chest.dcm.seg.dcm"
    with zipfile.ZipFile(io.BytesIO(downloads["lungseg-results.zip"])) as bundle:
        zipped = bundle.read("chest.dcm.seg.dcm")
    for seg_bytes in (downloads["chest.dcm.seg.dcm"], zipped):     # two segments: right, left lung
        seg = hd.seg.segread(io.BytesIO(seg_bytes))
        uid = expected.dicom.dataset.SOPInstanceUID
        pixels = seg.get_pixels_by_source_instance([uid], combine_segments=True)[0]
        assert np.array_equal(pixels, labels) and seg.PatientID == expected.dicom.dataset.PatientID


def read_back(name: str, data: bytes):
    """An output file's content to compare: PNG pixels, or a DICOM Segmentation's pixels."""
    if name.endswith(".png"):
        return np.asarray(Image.open(io.BytesIO(data)))
    import pydicom
    return pydicom.dcmread(io.BytesIO(data)).pixel_array      # the segments' frames


def choose(at, definition: str, folder=DEFAULT_MODEL):
    """Choose a lung definition in the sidebar ("visible", "whole" or "both")."""
    at.radio(key=f"definition::{folder}").set_value(definition).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def definition_names(name: str, definitions) -> list[str]:
    return [name + rules.output_name(kind, d) for d in definitions for kind in ("mask", "overlay", "labels")]


@requires_data
@pytest.mark.parametrize("definition", ["visible", "whole", "both"])
def test_zip_is_laid_out_like_the_cli_output_folder(definition, downloads, tmp_path, monkeypatch):
    """The app's zip and ``lungseg predict --definition D --labels`` on the same files (two called
    xray.png, a DICOM): the same file names and contents, the same manifest.csv (columns and
    values, written alike), scores.csv beside it; cm² shown as "—" where a PNG has no pixel
    spacing."""
    from lungseg.cli import main

    first, second = val_images(2, "Normal")
    dicom = chest_dicom(PixelSpacing=[0.7, 0.7])
    for folder, name, data in (("one", "xray.png", first.read_bytes()),
                               ("two", "xray.png", second.read_bytes()), ("three", "chest.dcm", dicom)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "one/xray.png", "two/xray.png", "three/chest.dcm", "--out", "out",
                 "--labels", "--definition", definition]) == 0

    at = choose(new_app(), definition)
    upload(at, [("xray.png", first.read_bytes(), "image/png"), ("xray.png", second.read_bytes(), "image/png"),
                ("chest.dcm", dicom, "application/dicom")])
    chosen = ["visible", "whole"] if definition == "both" else [definition]
    tables = [frame.value.to_dict("records") for frame in at.dataframe]
    assert len(tables) == len(chosen)
    for rows in tables:
        cm2 = [[r[k] for k in ("lung_cm2", "image_left_cm2", "image_right_cm2")] for r in rows]
        assert [r["file"] for r in rows] == ["xray.png", "xray.png", "chest.dcm"]
        assert cm2[:2] == [["—"] * 3] * 2 and "—" not in cm2[2] and None not in cm2[2]
    assert downloads["chest.dcm.seg.dcm"]
    assert all(downloads[n] for n in definition_names("xray-2.png", chosen))
    with zipfile.ZipFile(io.BytesIO(downloads["lungseg-results.zip"])) as bundle:
        zipped = {n: bundle.read(n) for n in bundle.namelist()}
    cli = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(zipped) == sorted([*cli, "scores.csv"]) == sorted(
        [*definition_names("xray.png", chosen), *definition_names("xray-2.png", chosen),
         *definition_names("chest.dcm", chosen), "chest.dcm.seg.dcm", "manifest.csv", "scores.csv"])
    for name, data in cli.items():
        if name != "manifest.csv":
            assert np.array_equal(read_back(name, zipped[name]), read_back(name, data)), name
    manifest = [line.split(",", 1) for line in zipped["manifest.csv"].decode().splitlines()]
    expected = [line.split(",", 1) for line in cli["manifest.csv"].decode().splitlines()]
    assert [rest for _, rest in manifest] == [rest for _, rest in expected]   # all but the input
    assert [name for name, _ in manifest] == ["input", "xray.png", "xray.png", "chest.dcm"]
    assert [name for name, _ in expected] == ["input", "one/xray.png", "two/xray.png", "three/chest.dcm"]
    scores = list(csv.DictReader(io.StringIO(zipped["scores.csv"].decode())))
    assert [(r["input"], r["definition"], r["threshold"]) for r in scores] == [
        (name, d, "0.500000") for name in ("xray.png", "xray.png", "chest.dcm") for d in chosen]


@requires_data
def test_the_visible_field_is_the_default_and_each_definition_says_what_it_means(seg):
    """The sidebar offers the model's definitions, the visible field first and chosen, and both;
    each says what it means in rules.json's words."""
    at = new_app()
    choice = at.radio(key=f"definition::{DEFAULT_MODEL}")
    assert choice.value == "visible" and seg.definitions == ["visible", "whole"]
    assert choice.options == [rules.DEFINITIONS["visible"]["label"], rules.DEFINITIONS["whole"]["label"],
                              "Both, one after the other"]
    said = " ".join(c.value for c in at.sidebar.caption)
    assert rules.DEFINITIONS["visible"]["means"] in said and rules.DEFINITIONS["whole"]["means"] not in said
    said = " ".join(c.value for c in choose(at, "both").sidebar.caption)
    assert all(rules.DEFINITIONS[d]["means"] in said for d in ("visible", "whole"))


@requires_data
def test_whole_lung_masks_areas_and_downloads(seg, downloads):
    """Choosing the whole lung: the mask is Segmenter.predict(definition="whole")'s, areas and
    quality are the whole lung's, downloads are named NAME.whole.*.png and nothing of the visible
    field is offered."""
    path = val_images(1, "Normal")[0]
    at = upload(choose(new_app(), "whole"), [png_file(path)])
    expected = seg.predict(path, definition="whole")
    areas, visible = lung_areas(expected), lung_areas(seg.predict(path))
    assert areas["lung_fraction"] > visible["lung_fraction"]
    [row] = table(at)
    assert row["lung_fraction"] == pytest.approx(100 * areas["lung_fraction"])
    assert {m.label: m.value for m in at.metric}["Lung area"] == f"{areas['lung_fraction']:.1%}"
    assert downloads[f"{path.name}.whole.mask.png"] == encode_png(expected)
    assert downloads[f"{path.name}.whole.labels.png"] == encode_png(side_labels(expected), scale=False)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(downloads[f"{path.name}.whole.overlay.png"]))),
                          overlay(read_image(path), expected))
    assert not any(n in downloads for n in definition_names(path.name, ["visible"]))
    masks, rows, names = unzip(downloads["lungseg-results.zip"])
    assert sorted(names) == sorted([*definition_names(path.name, ["whole"]), "manifest.csv", "scores.csv"])
    assert np.array_equal(masks[f"{path.name}.whole.mask.png"], expected * 255)
    whole = seg.analyze(path, definition="whole")
    assert rows[0]["mask"] == rows[0]["lung_fraction"] == rows[0]["quality"] == ""
    assert float(rows[0]["whole_lung_fraction"]) == pytest.approx(areas["lung_fraction"], abs=1e-6)
    assert rows[0]["whole_quality"] == ("" if whole.quality is None else f"{whole.quality:.6f}")


@requires_data
def test_both_definitions_each_at_its_threshold(seg, downloads):
    """With both, each definition has its own threshold slider (the card's per output): moving the
    whole lung's changes only the whole-lung mask, equal to Segmenter.predict's at it; the model
    runs once; sections show each definition under its label."""
    path = val_images(2, "COVID-19")[1]
    at = upload(choose(new_app(), "both"), [png_file(path)])
    sliders = {s.key: s for s in at.sidebar.select_slider}
    whole_key = f"threshold::{DEFAULT_MODEL}::whole"
    assert sliders[whole_key].value == seg.output("whole").threshold
    sliders[whole_key].set_value(0.3).run()
    assert not at.exception
    expected = {"visible": seg.predict(path), "whole": seg.predict(path, 0.3, definition="whole")}
    tables = [frame.value.to_dict("records") for frame in at.dataframe]
    for d, [row] in zip(expected, tables):
        assert row["lung_fraction"] == pytest.approx(100 * lung_areas(expected[d])["lung_fraction"])
        assert downloads[path.name + rules.output_name("mask", d)] == encode_png(expected[d])
    assert [s.value for s in at.subheader][:2] == [rules.DEFINITIONS[d]["label"] for d in expected]
    assert sum(m.label == "Lung area" for m in at.metric) == 2
    masks, rows, _ = unzip(downloads["lungseg-results.zip"])
    assert all(np.array_equal(masks[path.name + rules.output_name("mask", d)], m * 255) for d, m in expected.items())
    assert rows[0]["mask"] and rows[0]["whole_mask"] and rows[0]["lung_fraction"] and rows[0]["whole_lung_fraction"]


def asgi_get(app, path: str) -> tuple[int, list[bytes]]:
    """A GET of ``path`` from an ASGI app, without a server: the status and the body's pieces."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [], "scheme": "http", "server": ("test", 80),
             "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1"}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], [bytes(m["body"]) for m in sent[1:] if m["body"]]


#: The largest piece of a streamed zip: PIECE_BYTES of a PNG in deflate's stored blocks (5 bytes
#: of header each 64 kB).
LARGEST_PIECE = analysis.PIECE_BYTES + analysis.PIECE_BYTES // 1000


def test_the_zip_goes_out_in_pieces():
    """analysis.zip_pieces hands the zip out as it is written, in pieces of about PIECE_BYTES at
    most (a PNG a slice at a time): together a zip every reader takes (members, contents, CRCs),
    PNGs copied as they are (deflate level 0), the rest deflated."""
    big = np.random.default_rng(0).integers(0, 256, 3 * analysis.PIECE_BYTES + 7, np.uint8).tobytes()
    items = [({"input": "a.png", "status": "ok"}, {"a.png.overlay.png": big, "a.png.seg.dcm": b"\0" * 5000}),
             ({"input": "b.png", "status": "error", "message": "unreadable"}, {})]
    pieces = list(analysis.zip_pieces(iter(items), [{"input": "a.png"}]))
    assert max(map(len, pieces)) <= LARGEST_PIECE and sum(map(len, pieces)) > len(big)
    with zipfile.ZipFile(io.BytesIO(b"".join(pieces))) as bundle:
        assert bundle.testzip() is None
        assert bundle.namelist() == ["a.png.overlay.png", "a.png.seg.dcm", "manifest.csv", "scores.csv"]
        assert bundle.read("a.png.overlay.png") == big
        overlay, seg = bundle.getinfo("a.png.overlay.png"), bundle.getinfo("a.png.seg.dcm")
        assert len(big) < overlay.compress_size < len(big) * 1.001 and seg.compress_size < 100
        assert [r["input"] for r in csv.DictReader(io.StringIO(bundle.read("manifest.csv").decode()))] \
            == ["a.png", "b.png"]


@requires_data
def test_zip_streams_from_the_apps_route(downloads, monkeypatch):
    """Served as ``make run`` serves it (app.asgi), the page links to the zip's route, which
    streams the zip st.download_button gives otherwise (the same files and bytes, but a DICOM-SEG's
    new UIDs); an address no open session holds (a wrong token, a session that ended) gets a 404
    that says why."""
    path = val_images(1, "Normal")[0]
    at = upload(new_app(), [png_file(path), ("notes.png", b"not an X-ray", "image/png"),
                            ("chest.dcm", chest_dicom(PixelSpacing=[0.7, 0.7]), "application/dicom")])
    kept = zipfile.ZipFile(io.BytesIO(downloads["lungseg-results.zip"]))    # plain streamlit run
    monkeypatch.setattr(download, "_served", False)
    server = Starlette(routes=[download.route()])                          # what app.asgi serves
    assert download.serving()
    at.run()
    [link] = [h.value for h in at.html if download.FILE_NAME in h.value]
    assert f'download="{download.FILE_NAME}"' in link and ">Download all: masks" in link
    address = "/" + re.search(r'href="([^"]+)"', link).group(1)
    status, pieces = asgi_get(server, address)
    assert status == 200 and max(map(len, pieces)) <= LARGEST_PIECE
    streamed = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert streamed.namelist() == kept.namelist() and "chest.dcm.seg.dcm" in kept.namelist()
    for name in kept.namelist():                 # a DICOM-SEG gets new UIDs each time it is written
        if name.endswith(".dcm"):
            assert np.array_equal(read_back(name, streamed.read(name)), read_back(name, kept.read(name)))
        else:
            assert streamed.read(name) == kept.read(name), name
    token = address.split("/")[2]
    status, body = asgi_get(server, address.replace(token, token[::-1]))
    assert status == 404 and b"".join(body).decode() == download.GONE
    caching.clear_session_resource_cache("test session id")    # as Streamlit ends AppTest's session
    assert asgi_get(server, address)[0] == 404                  # its uploads are let go


@requires_data
def test_a_dicom_segmentation_that_cannot_be_written_is_said(downloads, small_store, monkeypatch):
    """Its section and the zip button say why, with rules.json's message (no download that fails);
    the zip still comes, with every other file, and its manifest row says it too."""
    def fail(*args, **kwargs):
        raise AttributeError("'FileDataset' object has no attribute 'PatientBirthDate'")
    monkeypatch.setattr(results, "write_seg", fail)
    path = val_images(1, "Normal")[0]
    at = upload(new_app(), [png_file(path), ("chest.dcm", chest_dicom(), "application/dicom")])
    said = rules.message("seg_failed", "chest.dcm", detail="AttributeError: 'FileDataset' object "
                                                           "has no attribute 'PatientBirthDate'")
    assert [e.value for e in at.error] == [
        said + " The zip holds its mask, overlay and labels, without it.", said]
    assert "chest.dcm.seg.dcm" not in downloads and "chest.dcm.mask.png" in downloads
    _, rows, names = unzip(downloads["lungseg-results.zip"])
    assert sorted(names) == sorted(f"{n}.{kind}.png" for n in (path.name, "chest.dcm")
                                   for kind in ("mask", "overlay", "labels")) + ["manifest.csv", "scores.csv"]
    assert [(r["input"], r["status"], r["dicom_seg"]) for r in rows] == [
        (path.name, "ok", ""), ("chest.dcm", "error", "")]
    assert rows[1]["message"].endswith(said) and rows[1]["mask"] == "chest.dcm.mask.png"


@requires_data
def test_dicom_without_spacing_gives_fractions():
    at = upload(new_app(), [("plain.dcm", chest_dicom(), "application/dicom")])
    assert next(m.value for m in at.metric if m.label == "Lung area").endswith("%")
    assert any("the DICOM gives no pixel spacing" in c.value for c in at.caption)
    assert "lung_cm2" not in at.dataframe[0].proto.column_order


@requires_data
def test_rerun_and_controls_do_not_rerun_the_model(monkeypatch):
    from lungseg.inference import Segmenter as Seg

    results.store().clear()
    calls = []
    original = Seg.analyze                             # how the app runs the model
    monkeypatch.setattr(Seg, "analyze", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    path = val_images(2, "Normal")[1]
    at = upload(new_app(), [png_file(path)])
    assert len(calls) == 1
    at.run()                                           # unchanged inputs
    at.sidebar.slider[0].set_value(0.7).run()          # opacity
    at.sidebar.select_slider[0].set_value(0.3).run()   # threshold: new mask, same model output
    assert not at.exception and len(calls) == 1
    assert table(at)[0]["lung_fraction"] == pytest.approx(100 * lung_areas(
        Segmenter.load().predict(path, 0.3))["lung_fraction"])


@requires_data
def test_results_recomputed_after_eviction_are_equal(seg, small_store, monkeypatch):
    """With room for one X-ray's results only, each X-ray evicts the other and is recomputed
    (the model runs again) with the same mask and figures, within the store's budget."""
    first, second = val_images(2, "COVID-19")
    expected = seg.predict(first)
    calls = []
    original = Segmenter.analyze                       # how the app runs the model
    monkeypatch.setattr(Segmenter, "analyze",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    small_store.budget = 400_000          # one 256x256 X-ray: about 340 kB
    folder = str(DEFAULT_MODEL)
    runs = [results.segment(p.read_bytes(), p.name, folder, 0.5) for p in (first, second, first)]
    assert len(calls) == 3 and small_store.nbytes <= small_store.budget
    assert np.array_equal(runs[0]["bits"], runs[2]["bits"]) and runs[0] is not runs[2]
    for key in ("width", "height", "lung_fraction", "image_left_fraction", "image_right_fraction",
                "quality", "warnings"):
        assert runs[0][key] == runs[2][key]
    assert np.array_equal(results.full_mask(runs[2]), expected)
    assert np.array_equal(results.image_preview(first.read_bytes(), first.name),
                          read_image(first))
    small_store.budget = 10_000_000
    again = results.segment(first.read_bytes(), first.name, folder, 0.5)
    assert results.segment(first.read_bytes(), first.name, folder, 0.5) is again
    assert len(calls) == 3                # the model output was still there: no new run


def test_serve_loads_the_model_before_streamlit_starts(monkeypatch):
    """app.serve (which scripts/start.py runs) loads and runs the default model, then starts
    Streamlit in the same process, whose app finds the model already in its cache."""
    events = []
    load = Segmenter.load
    monkeypatch.setattr(results, "Segmenter", SimpleNamespace(
        load=lambda folder: events.append(("load", folder)) or load(folder)))
    monkeypatch.setattr(serve.cli, "main", lambda **_: events.append(("streamlit", sys.argv)))
    monkeypatch.setattr(sys, "argv", ["serve"])
    results.load_segmenter.clear()
    serve.main(["--server.port", "8599"])
    assert events == [("load", str(DEFAULT_MODEL)),
                      ("streamlit", ["streamlit", "run", str(serve.APP), "--server.port", "8599"])]
    results.load_segmenter(str(DEFAULT_MODEL))
    assert len(events) == 2


@requires_data
def test_model_choice_and_deployed_folder(tmp_path, monkeypatch, downloads):
    deployed = tmp_path / "models" / "my-hospital-v2"
    deployed.mkdir(parents=True)
    for name in ("model.keras", "card.json"):
        (deployed / name).symlink_to(SEED_MODEL / name)
    monkeypatch.setenv("LUNGSEG_MODELS_DIR", str(tmp_path / "models"))
    at = new_app()
    options = at.sidebar.selectbox[0].options
    assert options == ["default (committed)", "seed baseline", "my-hospital-v2 (deployed)"]
    at.sidebar.selectbox[0].set_value("seed baseline").run()
    card = at.sidebar.json[0].value
    assert "size on disk" in card and "training data" in card
    assert at.radio(key=f"definition::{SEED_MODEL}").options == [rules.DEFINITIONS["visible"]["label"]]
    path = val_images(1, "Normal")[0]
    upload(at, [png_file(path)])
    assert downloads[f"{path.name}.mask.png"] == encode_png(Segmenter.load(SEED_MODEL).predict(path))


@requires_data
def test_compare_toggle_without_browser():
    """AppTest has no browser: the comparison shows the server half and waits (or says why)."""
    at = upload(new_app(), [png_file(val_images(1, "Normal")[0])])
    at.sidebar.toggle[0].set_value(True).run()
    assert not at.exception
    assert any(h.value == "Server vs browser" for h in at.header)


@requires_data
def test_broken_deployed_model_is_reported(tmp_path, monkeypatch):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "model.keras").write_bytes(b"not a model")
    (broken / "card.json").write_text("{ not json")
    monkeypatch.setenv("LUNGSEG_MODELS_DIR", str(tmp_path / "models"))
    at = new_app()
    at.sidebar.selectbox[0].set_value("broken (deployed)").run()
    assert not at.exception
    assert "card error" in at.sidebar.json[0].value
    upload(at, [png_file(val_images(1, "Normal")[0])])
    assert [e.value for e in at.error] == [
        f"The model in {broken} could not be loaded; choose another model (the server log has "
        "details)."]


@requires_data
def test_failures_are_logged_without_patient_data(small_store, monkeypatch, caplog):
    """An unexpected failure is logged (with its traceback) but names no file: a DICOM's file
    name, like its header, may name the patient."""
    def fail(self, image, threshold=None, name=None, definition="visible"):
        raise RuntimeError("model failed")
    monkeypatch.setattr(Segmenter, "analyze", fail)
    name = "Test^Lung T001.dcm"
    with caplog.at_level("ERROR", logger="lungseg.app"):
        at = upload(new_app(), [(name, chest_dicom(), "application/dicom")])
    assert [e.value for e in at.error] == [
        f"{name}: this file could not be processed (unexpected error; the server log has details)."]
    assert "model failed" in caplog.text
    assert "Test^Lung" not in caplog.text and "T001" not in caplog.text


_WRITES: list | None = None


def _audit(event, args):
    if _WRITES is not None and event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and not str(path).startswith("/dev/"):
            _WRITES.append((path, mode))


@requires_data
def test_uploads_are_never_written_to_disk():
    """Python's audit hook sees every file opened for writing while the app handles uploads."""
    global _WRITES
    sys.addaudithook(_audit)
    at = new_app()
    path = val_images(3, "Normal")[2]
    _WRITES = []
    try:
        upload(at, [png_file(path), ("bad.png", b"junk", "image/png"),
                    ("chest.dcm", chest_dicom(PixelSpacing=[0.7, 0.7]), "application/dicom")],
               [(path.name, mask_of(path).read_bytes(), "image/png")])
        at.sidebar.toggle[0].set_value(True).run()
    finally:
        writes, _WRITES = _WRITES, None
    assert not at.exception
    assert writes == []
