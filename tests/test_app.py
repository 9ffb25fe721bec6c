"""The Streamlit app (streamlit_app.py) driven by streamlit.testing.v1.AppTest with real X-rays.

Every figure is checked against ``lungseg`` itself (the same code runs in the app, so masks must
be equal, not close); nothing here assumes how good the committed model is.
"""
from __future__ import annotations

import csv
import io
import os
import struct
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, mask_of, requires_data, val_images

sys.path.insert(0, str(ROOT))

st_testing = pytest.importorskip("streamlit.testing.v1")
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage  # noqa: E402

from app import analysis  # noqa: E402
from lungseg import Segmenter, read_image, read_mask  # noqa: E402
from lungseg.bundle import DEFAULT_MODEL, SEED_MODEL  # noqa: E402
from lungseg.imageio import encode_png  # noqa: E402
from lungseg.metrics import score  # noqa: E402

APP = str(ROOT / "streamlit_app.py")


# ---------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def seg():
    return Segmenter.load(DEFAULT_MODEL)


@pytest.fixture
def downloads(monkeypatch):
    """file name -> bytes of every st.download_button payload the app registers."""
    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename and isinstance(path_or_data, bytes):
            seen[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


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


def table(at) -> list[dict]:
    return at.dataframe[0].value.to_dict("records")


def unzip(data: bytes) -> tuple[dict[str, np.ndarray], list[dict], list[str]]:
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        names = bundle.namelist()
        masks = {n: np.asarray(Image.open(io.BytesIO(bundle.read(n))))
                 for n in names if n.startswith("masks/")}
        rows = list(csv.DictReader(io.StringIO(bundle.read("results.csv").decode())))
    return masks, rows, names


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
    areas = analysis.lung_areas(mask)
    assert areas["image_left_fraction"] == pytest.approx(3600 / 20000)
    assert areas["image_right_fraction"] == pytest.approx(2400 / 20000)
    assert areas["lung_fraction"] == pytest.approx(6000 / 20000)


def test_truth_matching():
    got = analysis.match_truths(["a.png", "b.png", "c.jpg"], ["a.png", "b_mask.png", "x.png"])
    assert got == {"a.png": "a.png", "b.png": "b_mask.png"}


# ---------------------------------------------------------------- the app
def test_page_explains_limits_and_privacy():
    at = new_app()
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "50 MB" in text and "maxUploadSize" in text
    assert "uploads nothing" in text and "sends your X-rays to this server" in text
    assert [o for o in at.sidebar.selectbox[0].options][:2] == ["default (committed)", "seed baseline"]


@requires_data
def test_one_xray(seg, downloads):
    path = val_images(1, "Normal")[0]
    at = upload(new_app(), [png_file(path)])
    expected = seg.predict(path)
    areas = analysis.lung_areas(expected)

    [row] = table(at)
    assert row["status"] == "ok" and (row["width"], row["height"]) == (256, 256)
    assert row["lung_fraction"] == pytest.approx(areas["lung_fraction"])
    assert row["image_left_fraction"] == pytest.approx(areas["image_left_fraction"])
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Lung area"] == f"{areas['lung_fraction']:.1%}"
    assert metrics["Patient's right lung"] == f"{areas['image_left_fraction']:.1%}"
    assert metrics["Inference"].endswith(" ms")
    assert any("patient's right" in c.value for c in at.caption)

    assert downloads[f"{path.stem}_mask.png"] == encode_png(expected)
    masks, rows, names = unzip(downloads["lungseg-results.zip"])
    assert sorted(names) == sorted([f"masks/{path.stem}.png", f"overlays/{path.stem}.png",
                                    "results.csv"])
    assert np.array_equal(masks[f"masks/{path.stem}.png"], expected * 255)
    assert rows[0]["file"] == path.name and float(rows[0]["lung_fraction"]) == pytest.approx(
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
    assert len(errors) == 5
    for (name, _, _), message in zip(bad, errors):
        assert message.startswith(f"{name}:"), message
    assert "empty" in errors[2] and "too large" in errors[3]
    assert "9000x9000" in errors[4] and "at most" in errors[4]      # the app's own pixel limit
    assert not any("Traceback" in e for e in errors)

    rows = table(at)
    assert [r["status"] for r in rows] == ["ok", "error", "ok", "error", "error", "ok", "error",
                                           "error"]
    masks, csv_rows, _ = unzip(downloads["lungseg-results.zip"])
    assert len(masks) == 3 and len(csv_rows) == 8
    for path in good:
        assert np.array_equal(masks[f"masks/{path.stem}.png"], seg.predict(path) * 255)
        assert downloads[f"{path.stem}_mask.png"] == encode_png(seg.predict(path))


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
    assert dice == [f"{e['dice']:.4f}" for e in expected]
    assert iou == [f"{e['iou']:.4f}" for e in expected]
    _, rows, _ = unzip(downloads["lungseg-results.zip"])
    assert [float(r["dice"]) for r in rows[:2]] == pytest.approx([e["dice"] for e in expected],
                                                                 abs=1e-6)
    assert rows[2]["dice"] == "" and rows[2]["status"] == "ok"


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
        got = masks[f"masks/{name.rsplit('.', 1)[0]}.png"]
        assert got.shape == read_image(data).shape[:2]
        assert np.array_equal(got, expected * 255), name
    assert (rows[0]["width"], rows[0]["height"]) == ("331", "287")


@requires_data
def test_rerun_and_controls_do_not_rerun_the_model(monkeypatch):
    import streamlit as st
    from lungseg.inference import Segmenter as Seg

    st.cache_data.clear()
    calls = []
    original = Seg.predict_proba_batch
    monkeypatch.setattr(Seg, "predict_proba_batch",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    path = val_images(2, "Normal")[1]
    at = upload(new_app(), [png_file(path)])
    assert len(calls) == 1
    at.run()                                           # unchanged inputs
    at.sidebar.slider[1].set_value(0.7).run()          # opacity
    at.sidebar.slider[0].set_value(0.3).run()          # threshold: new mask, same probabilities
    assert not at.exception and len(calls) == 1


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
    path = val_images(1, "Normal")[0]
    upload(at, [png_file(path)])
    assert downloads[f"{path.stem}_mask.png"] == encode_png(Segmenter.load(SEED_MODEL).predict(path))


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
        upload(at, [png_file(path), ("bad.png", b"junk", "image/png")],
               [(path.name, mask_of(path).read_bytes(), "image/png")])
        at.sidebar.toggle[0].set_value(True).run()
    finally:
        writes, _WRITES = _WRITES, None
    assert not at.exception
    assert writes == []
