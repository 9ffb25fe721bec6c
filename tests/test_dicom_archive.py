"""DICOMs as archives hold them, through every surface: tests/dicoms.py's corpus (22 header
profiles and encodings of real Val X-rays, or of a built image without ../shared) and real CR
files of pydicom-data, read by the Python API, ``lungseg predict``, the Streamlit app's DICOM
Segmentation downloads and the web page.

Every corpus file displays its X-ray's grey levels exactly, so its mask must be the PNG's (Dice
>= 0.99) and as good against the manual mask; the CLI writes one DICOM Segmentation per file that
re-reads as the mask; the app's per-file and zip downloads hold the same; the page shows the same
pixels, gives the same mask and warnings, and refuses damaged files in the same words.
"""
import base64
import csv
import io

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, mask_of, requires_data, val_images
from dicoms import built_xray, corpus, dataset, encode, large
from test_app import downloads, new_app, upload  # noqa: F401  (fixtures and helpers of the app's tests)
from test_web import _upload_all, app, eb, python_seg, site  # noqa: F401  (the page, loaded once here)
from lungseg import ImageError, rules
from lungseg.dicom import write_seg
from lungseg.imageio import read_input
from lungseg.measure import side_labels
from lungseg.metrics import score

#: The Val classes a corpus X-ray is taken from (the first of each spanning grey levels 0..255).
GROUPS = ("COVID-19", "Non-COVID", "Normal")
#: Corpus files whose header adds a warning of its own to the PNG's.
HEADER_WARNINGS = {"secondary-capture.dcm": ["dicom_modality"], "detector-spacing.dcm": ["dicom_spacing"]}
#: Real computed radiographs of pydicom-data (Philips, chest PA; uncompressed and JPEG 2000).
WORLD = ("RG1_UNCI.dcm", "RG1_J2KR.dcm")


def _full_range(path) -> bool:
    grey = np.asarray(Image.open(path).convert("L"))
    return grey.min() == 0 and grey.max() == 255


@pytest.fixture(scope="module")
def sources() -> list:
    """The Val X-ray paths the corpus is made of ([] without ../shared)."""
    if not DATA.is_dir():
        return []
    return [next(p for p in val_images(300, group) if _full_range(p)) for group in GROUPS]


@pytest.fixture(scope="module")
def xrays(sources) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("L")) for p in sources] or [built_xray()]


@pytest.fixture(scope="module")
def files(xrays) -> dict[str, tuple[bytes, int]]:
    return corpus(xrays)


def _world(names=WORLD) -> dict[str, bytes]:
    """pydicom-data's real chest CRs, name -> bytes ({} where pydicom-data is not installed)."""
    try:
        import data_store  # noqa: F401  (pydicom-data's package)
    except ImportError:
        return {}
    from pydicom.data import get_testdata_file

    return {name: open(get_testdata_file(name), "rb").read() for name in names}


def _dice(a, b) -> float:
    return score(a.astype(np.uint8), b.astype(np.uint8))["dice"]


def _seg_mask(data: bytes) -> np.ndarray:
    """A DICOM Segmentation's mask of its one source X-ray (segments combined: 1, or 1 = right
    and 2 = left lung)."""
    import highdicom as hd

    seg = hd.seg.segread(io.BytesIO(data))
    uid = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    return seg.get_pixels_by_source_instance([uid], combine_segments=True)[0]


# --- (a) the Python API ---------------------------------------------------------------------

@requires_data
def test_masks_are_the_pngs_and_as_good_against_the_manual_ones(segmenter, sources, xrays, files):
    pngs = [segmenter.analyze(p) for p in sources]
    manual = [np.asarray(Image.open(mask_of(p)).convert("L")) > 0 for p in sources]
    names = list(files)
    results = segmenter.analyze_batch([files[n][0] for n in names], names=names)
    for name, result in zip(names, results):
        index = files[name][1]
        assert np.array_equal(result.image[..., 0], xrays[index]), name
        assert _dice(result.mask, pngs[index].mask) >= 0.99, name
        assert _dice(result.mask, manual[index]) >= _dice(pngs[index].mask, manual[index]) - 0.01, name
        codes = [w["code"] for w in result.warnings]
        assert codes == HEADER_WARNINGS.get(name, []) + [w["code"] for w in pngs[index].warnings], name
        assert np.array_equal(_seg_mask(write_seg(result.dicom, result.mask)), result.mask), name


@requires_data
def test_a_9_megapixel_16_bit_dicom(segmenter, sources, xrays):
    """Upscaled to 3000 x 3000, 16 bits stored: the mask, brought back to 256 px, is the PNG's."""
    data, shown = large(xrays[0])
    result = segmenter.analyze(data, name="large.dcm")
    assert result.mask.shape == (3000, 3000) and np.abs(result.image[..., 0].astype(int) - shown).max() <= 1
    small = np.asarray(Image.fromarray(result.mask * 255).resize((256, 256), Image.NEAREST)) > 0
    assert _dice(small, segmenter.analyze(sources[0]).mask) >= 0.98
    assert result.warnings == [] and result.dicom.spacing == (0.139, 0.139)
    assert np.array_equal(_seg_mask(write_seg(result.dicom, result.mask)), result.mask)


def test_real_computed_radiographs(segmenter):
    """Real Philips CRs (MONOCHROME1, 15 bits, windowed; Pixel Spacing written as 0): two lungs,
    no cm² (a zero spacing is no spacing), the same mask from the uncompressed and the JPEG 2000
    copy, and a DICOM Segmentation that holds it."""
    world = _world()
    if not world:
        pytest.skip("pydicom-data not installed (its real CR files)")
    results = [segmenter.analyze(data, name=name) for name, data in world.items()]
    for result in results:
        assert result.warnings == [] and result.dicom.spacing is None and "lung_cm2" not in result.areas
        assert 0.2 < result.areas["lung_fraction"] < 0.5
        assert np.array_equal(_seg_mask(write_seg(result.dicom, result.mask)), result.mask)
    assert _dice(results[0].mask, results[1].mask) >= 0.99


# --- (b) the CLI ----------------------------------------------------------------------------

def test_cli_segments_every_file_and_writes_a_segmentation_each(tmp_path, files):
    from lungseg.cli import main

    inputs, out = tmp_path / "archive", tmp_path / "out"
    inputs.mkdir()
    for name, (data, _) in files.items():
        (inputs / name).write_bytes(data)
    assert main(["predict", str(inputs), "--out", str(out)]) == 0
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in csv.DictReader((out / rules.OUTPUTS["manifest"]).open())}
    assert sorted(rows) == sorted(files)
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["message"])
        assert row["dicom_seg"] == name + rules.OUTPUTS["seg"], name
        mask = np.asarray(Image.open(out / (name + rules.OUTPUTS["mask"]))) > 0
        assert np.array_equal(_seg_mask((out / row["dicom_seg"]).read_bytes()), mask), name
    assert len(list(out.glob("*" + rules.OUTPUTS["seg"]))) == len(files)


# --- (c) the Streamlit app ------------------------------------------------------------------

def test_app_downloads_hold_the_segmentations(files, segmenter, downloads):
    """Each DICOM's "Download DICOM Segmentation" and its copy in the zip hold Python's mask,
    labelled by side."""
    import zipfile

    at = upload(new_app(), [(n, data, "application/dicom") for n, (data, _) in files.items()])
    assert not at.error, [e.value for e in at.error]
    with zipfile.ZipFile(io.BytesIO(downloads["lungseg-results.zip"])) as bundle:
        zipped = {n: bundle.read(n) for n in bundle.namelist()}
    names = list(files)
    for name, result in zip(names, segmenter.analyze_batch([files[n][0] for n in names], names=names)):
        expected = side_labels(result.mask)
        seg = name + rules.OUTPUTS["seg"]
        assert np.array_equal(_seg_mask(downloads[seg]), expected), name
        assert np.array_equal(_seg_mask(zipped[seg]), expected), name


# --- (d) the web page -----------------------------------------------------------------------

DECODE_ALL_JS = """async (files) => {
  const { decodeImage } = await import('/js/decode.js');
  const b64 = (u8) => { let s = ''; for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
  const out = {};
  for (const [name, data] of Object.entries(files)) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    try {
      const { imageData, width, height, warnings, spacing } = await decodeImage(new File([bytes], name));
      const grey = new Uint8Array(width * height);
      for (let i = 0; i < grey.length; i++) grey[i] = imageData.data[4 * i];
      out[name] = { width, height, grey: b64(grey), warnings, spacing };
    } catch (err) { out[name] = { error: err.message }; }
  }
  return out;
}"""


def _meta_end(data: bytes) -> int:
    """Where a Part 10 file's data set starts: after (0002,0000) File Meta Information Group Length."""
    return 144 + int.from_bytes(data[140:144], "little")


def _damaged(files) -> dict[str, bytes]:
    """Files both surfaces must refuse: garbage after "DICM", file meta alone, files cut in the
    header (inside a value, inside a tag) and in the pixel data, a header without Rows and Bits
    Stored; and a DICOMDIR, an object without an image."""
    from pydicom.data import get_testdata_file

    full = files["full.dcm"][0]
    noise = np.random.default_rng(3).integers(0, 256, 3000, np.uint8).tobytes()
    sparse = dataset(built_xray(64).astype(np.uint16))
    sparse["PixelData"].VR = "OW"
    del sparse.Rows, sparse.BitsStored
    start = _meta_end(full)
    return {"garbage.dcm": b"\0" * 128 + b"DICM" + noise, "meta-only.dcm": full[:start],
            "cut-in-a-value.dcm": full[:start + 10], "cut-in-a-tag.dcm": full[:start + 40],
            "cut.dcm": full[: len(full) - 5000], "no-rows.dcm": encode(sparse),
            "DICOMDIR": open(get_testdata_file("DICOMDIR"), "rb").read()}


def test_page_shows_the_same_pixels_and_masks_and_refuses_alike(app, python_seg, files):
    """One page: every corpus file (and pydicom-data's real JPEG 2000 CR) decodes to Python's
    pixels, warnings and spacing, and is segmented to Python's mask; damaged files get Python's
    message."""
    good = {name: data for name, (data, _) in files.items()} | _world(WORLD[1:])
    damaged = _damaged(files)
    decoded = app.evaluate(DECODE_ALL_JS, {n: base64.b64encode(d).decode() for n, d in (good | damaged).items()})
    for name, data in good.items():
        got, (pixels, xray) = decoded[name], read_input(data, name)
        assert "error" not in got, (name, got)
        grey = np.frombuffer(base64.b64decode(got["grey"]), np.uint8).reshape(got["height"], got["width"])
        assert np.array_equal(grey, pixels[..., 0]), name
        assert got["warnings"] == xray.warnings and got["spacing"] == (list(xray.spacing) if xray.spacing else None), name
    for name, data in damaged.items():
        with pytest.raises(ImageError) as refused:
            read_input(data, name)
        assert decoded[name] == {"error": str(refused.value)}, name
    page = _upload_all(app, good, "application/dicom")
    for name, expected in zip(good, python_seg.analyze_batch(list(good.values()), names=list(good))):
        assert page[name]["status"] == "done", name
        assert eb.iou(page[name]["mask"], expected.mask) >= 0.999, name
        assert page[name]["warnings"] == expected.warnings, name
