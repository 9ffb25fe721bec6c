"""DICOM in, real units out: every test DICOM reads to the same 8-bit image and mask as the PNG
of a real X-ray; odd objects are refused with a message; areas in cm²; DICOM-SEG re-reads. Files
as archives hold them (tests/dicoms.py corpus, of a built image): read by content, junk bits
masked, damaged ones refused in rules.json's words, a valid DICOM Segmentation for every one."""
import copy
import io
import os
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import requires_data
from pydicom.uid import RLELossless, SecondaryCaptureImageStorage

from dicoms import built_xray, corpus, dataset, encode, jpeg_baseline, type1_only, variants
from lungseg import ImageError, rules
from lungseg.dicom import (HEADER_UNREADABLE, LACKS, PIXELS_UNREADABLE, is_dicom, pixel_spacing, spacing_warnings,
                           write_seg)
from lungseg.imageio import read_input
from lungseg.measure import lung_areas, side_labels
from lungseg.metrics import score


@pytest.fixture
def grey(dicom_grey):
    return dicom_grey


@requires_data
def test_every_variant_shows_the_same_pixels_and_gives_the_pngs_mask(grey, segmenter):
    png_mask = segmenter.predict(grey)
    files = variants(grey)
    results = segmenter.analyze_batch(list(files.values()), names=list(files))
    for (name, data), result in zip(files.items(), results):
        pixels, _ = read_input(data, name)
        assert np.abs(pixels[..., 0].astype(int) - grey).max() <= 1, name
        assert score(png_mask, result.mask)["iou"] >= 0.999, name
        assert result.dicom is not None and result.warnings == [], (name, result.warnings)


@requires_data
def test_jpeg_baseline_dicom_decodes_like_the_jpeg(grey, segmenter):
    data, decoded = jpeg_baseline(grey)
    pixels, xray = read_input(data, "jpeg.dcm")
    assert xray.dataset.file_meta.TransferSyntaxUID.name.startswith("JPEG Baseline")
    assert np.abs(pixels[..., 0].astype(int) - decoded).max() <= 1
    assert score(segmenter.predict(decoded), segmenter.predict(data))["iou"] >= 0.999


def test_display_pipeline_on_built_values():
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    linear = dataset(ramp, WindowCenter=1024, WindowWidth=512)       # 768..1280 -> 0..255
    pixels, _ = read_input(encode(linear), "w.dcm")
    row = pixels[..., 0].ravel()
    assert row[:767].max() == 0 and row[1281:].min() == 255 and 0 < row[1024] < 255
    inverted, _ = read_input(encode(dataset(ramp, PhotometricInterpretation="MONOCHROME1")), "m1.dcm")
    plain, _ = read_input(encode(dataset(ramp)), "m2.dcm")
    assert np.array_equal(inverted, 255 - plain)
    lut = dataset(ramp)
    item = pydicom.Dataset()
    item.LUTDescriptor, item.LUTData = [4096, 0, 8], (np.arange(4096) // 16).astype("<u2").tobytes()
    lut.VOILUTSequence = [item]
    looked_up, _ = read_input(encode(lut), "lut.dcm")
    assert np.array_equal(looked_up[..., 0].ravel(), (np.arange(4096) // 16).astype(np.uint8))


def test_objects_that_are_not_one_xray_are_refused_with_a_message():
    cases = {
        "rtplan.dcm": (open(get_testdata_file("rtplan.dcm"), "rb").read(), "without an image"),
        "DICOMDIR": (open(get_testdata_file("DICOMDIR"), "rb").read(), "without an image"),
    }
    frames = dataset(np.zeros((2 * 64, 64), np.uint16), NumberOfFrames=2, Rows=64)
    cases["multi.dcm"] = (encode(frames), "multi-frame")
    good = encode(dataset(np.zeros((64, 64), np.uint16) + 5))
    cases["truncated.dcm"] = (good[: len(good) // 2], "corrupt or truncated")
    for name, (data, words) in cases.items():
        with pytest.raises(ImageError, match=words) as error:
            read_input(data, name)
        assert str(error.value).startswith(f"{name}: ")


def test_metadata_warnings_for_lateral_and_non_chest(segmenter):
    ramp = (np.add.outer(np.arange(256), np.arange(256)) * 8).astype(np.uint16)
    lateral = encode(dataset(ramp, ViewPosition="LL"))
    knee = encode(dataset(ramp, BodyPartExamined="KNEE", Modality="CT"))
    codes = [[w["code"] for w in r.warnings] for r in segmenter.analyze_batch([lateral, knee])]
    assert "dicom_lateral" in codes[0]
    assert {"dicom_modality", "dicom_body_part"} <= set(codes[1])


def test_areas_in_cm2_follow_the_pixel_spacing():
    calibrated = dataset(np.zeros((8, 8), np.uint16), PixelSpacing=[0.25, 0.2], ImagerPixelSpacing=[0.3, 0.3])
    assert pixel_spacing(calibrated) == ((0.25, 0.2), "Pixel Spacing")
    magnified = dataset(np.zeros((8, 8), np.uint16), ImagerPixelSpacing=[0.3, 0.3],
                        EstimatedRadiographicMagnificationFactor=1.2)
    assert np.allclose(pixel_spacing(magnified)[0], (0.25, 0.25))
    mask = np.zeros((100, 120), np.uint8)
    mask[10:90, 10:50] = 1                           # 3200 px on the image's left
    mask[10:70, 70:110] = 1                          # 2400 px on the right
    areas = lung_areas(mask, (0.25, 0.2))            # 0.05 mm² = 0.0005 cm² per pixel
    assert areas["lung_cm2"] == pytest.approx(5600 * 0.0005)
    assert areas["image_left_cm2"] == pytest.approx(1.6) and areas["image_right_cm2"] == pytest.approx(1.2)
    assert set(np.unique(side_labels(mask))) == {0, 1, 2} and (side_labels(mask) == 1).sum() == 3200


@requires_data
@pytest.mark.parametrize("labelled", [False, True])
def test_dicom_seg_references_the_xray_and_holds_the_mask(grey, segmenter, labelled):
    import highdicom as hd

    data = encode(dataset(grey.astype(np.uint16) * 16, PixelSpacing=[0.5, 0.5]))
    result = segmenter.analyze(data, name="chest.dcm")
    assert result.areas["lung_cm2"] == pytest.approx(result.mask.sum() * 0.0025)
    seg = hd.seg.segread(io.BytesIO(write_seg(result.dicom, result.mask, "lungseg-context", "1", labelled)))
    source = result.dicom.dataset
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], combine_segments=True)[0]
    expected = side_labels(result.mask) if labelled else result.mask
    assert seg.number_of_segments == (2 if labelled else 1) and np.array_equal(pixels, expected)


@requires_data
def test_cli_writes_masks_seg_and_cm2_for_dicoms_beside_bad_ones(tmp_path, grey):
    import csv

    from lungseg.cli import main
    inputs = tmp_path / "pacs"
    inputs.mkdir()
    (inputs / "chest.dcm").write_bytes(encode(dataset(grey.astype(np.uint16) * 16, ImagerPixelSpacing=[0.4, 0.4])))
    (inputs / "plan.dcm").write_bytes(open(get_testdata_file("rtplan.dcm"), "rb").read())
    assert main(["predict", str(inputs), "--out", str(tmp_path / "out"), "--labels"]) == 1
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}
    assert rows["plan.dcm"]["status"] == "error" and "without an image" in rows["plan.dcm"]["message"]
    chest = rows["chest.dcm"]
    assert chest["status"] == "ok" and chest["dicom_seg"] == "chest.dcm.seg.dcm"
    assert chest["spacing_source"].startswith("Imager Pixel Spacing")
    mask = np.asarray(Image.open(tmp_path / "out" / "chest.dcm.mask.png")) > 0
    assert float(chest["lung_cm2"]) == pytest.approx(mask.sum() * 0.16 / 100, rel=1e-5)
    assert (tmp_path / "out" / "chest.dcm.labels.png").is_file()


# --- DICOMs as archives hold them (no real X-ray needed: tests/dicoms.py's built one) --------

def _corrupt(name: str, detail: str) -> str:
    return rules.message("corrupt", name, detail=detail)


def _refusal(data: bytes, name: str) -> str:
    with pytest.raises(ImageError) as error:
        read_input(data, name)
    return str(error.value)


@pytest.fixture(scope="module")
def built():
    """The archive corpus made from a built chest-like image: name -> (bytes, 0)."""
    return corpus([built_xray()])


def test_every_profile_is_recognised_by_content_and_shows_its_pixels(built):
    """No preamble or file meta, implicit VR, junk above Bits Stored, High Bit 15, signed,
    MONOCHROME1 with a VOI LUT, codecs, character sets, private tags: one display image."""
    grey = built_xray()
    for name, (data, _) in built.items():
        assert is_dicom(data[:512]), name
        pixels, xray = read_input(data, name)
        assert np.array_equal(pixels[..., 0], grey), name
        assert xray is not None and xray.dataset is not None, name
    assert not built["no-preamble.dcm"][0][128:132] == b"DICM"
    assert read_input(built["utf8-private.dcm"][0])[1].dataset.PatientName == "Đặng^Thị Hồng=山田^太郎"
    assert read_input(built["latin1.dcm"][0])[1].dataset.PatientName == "Ørsted^Zoë"
    assert read_input(built["iso2022-japanese.dcm"][0])[1].dataset.PatientName == "Yamada^Tarou=山田^太郎"


def test_other_formats_and_text_are_not_taken_for_dicom(tmp_path):
    grey = built_xray(64)
    for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF"):
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format=fmt)
        assert not is_dicom(buffer.getvalue()[:512]), fmt
    for text in (b"DICM is a word\n" * 40, b"\x08\x00" + b"text", b"0008,0016 UI 1.2.3\n"):
        assert not is_dicom(text[:512]), text[:16]


def test_damaged_headers_and_missing_pixel_attributes_get_one_plain_message(built):
    """Garbage after "DICM", a file of file meta only, a file cut in its meta or its data set's
    header (inside a value or a tag; pydicom would keep what it got): the header is unreadable;
    a header without Rows, Columns, Bits Allocated or Bits Stored names them; never a
    library's AttributeError or KeyError."""
    noise = np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes()
    full = built["full.dcm"][0]
    meta_end = 144 + int.from_bytes(full[140:144], "little")    # after the File Meta Group Length
    for name, data in {"garbage.dcm": b"\0" * 128 + b"DICM" + noise,
                       "meta-only.dcm": full[:meta_end],
                       "cut-meta.dcm": full[:150],
                       "cut-in-a-value.dcm": full[:meta_end + 10],
                       "cut-in-a-tag.dcm": full[:meta_end + 40]}.items():
        assert _refusal(data, name) == _corrupt(name, HEADER_UNREADABLE)
    grey = built_xray(64).astype(np.uint16)
    for keywords, names in ((["Rows"], "Rows"), (["Columns", "BitsStored"], "Columns, Bits Stored"),
                            (["BitsAllocated"], "Bits Allocated")):
        ds = dataset(grey)
        ds["PixelData"].VR = "OW"                              # pydicom would ask Bits Allocated
        for keyword in keywords:
            delattr(ds, keyword)
        assert _refusal(encode(ds), "sparse.dcm") == _corrupt("sparse.dcm", LACKS.format(names=names))
    empty = dataset(grey)
    empty.Rows = None                                          # present, no value
    assert _refusal(encode(empty), "empty.dcm") == _corrupt("empty.dcm", LACKS.format(names="Rows"))
    assumed = type1_only(dataset(grey))                        # what may be absent is assumed
    for keyword in ("HighBit", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(assumed, keyword)
    assert np.array_equal(read_input(encode(assumed), "assumed.dcm")[0][..., 0], built_xray(64))
    cut = built["full.dcm"][0][:-1000]
    assert _refusal(cut, "cut.dcm") == _corrupt("cut.dcm", PIXELS_UNREADABLE)


def test_bits_outside_bits_stored_are_masked_off():
    """Bits above Bits Stored, and below it when High Bit is 15, do not reach the display."""
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    plain = read_input(encode(dataset(ramp)), "plain.dcm")[0]
    junk = np.random.default_rng(2).integers(0, 16, ramp.shape, np.uint16)
    signed = (ramp.astype(np.int32) - 2048).astype(np.int16).view(np.uint16) & 0x0FFF
    cases = {"junk": dataset(ramp | junk << 12),
             "high-bit": dataset(ramp << 4 | junk, HighBit=15),
             "signed": dataset(signed | junk << 12, PixelRepresentation=1),
             "rle": dataset(ramp | junk << 12)}
    for name, ds in cases.items():
        data = encode(ds, RLELossless if name == "rle" else None)
        assert np.array_equal(read_input(data, name)[0], plain), name


def test_spacing_that_is_no_chest_gets_a_warning():
    """Under 15 cm or over 60 cm on a side: the dicom_spacing warning, numbers written as the
    page writes them; a zero spacing (as some devices write) is no spacing."""
    grey = built_xray(256).astype(np.uint16)
    def read(**attributes):
        return read_input(encode(dataset(grey, **attributes)), "s.dcm")[1]
    assert read(PixelSpacing=[1.4, 1.4]).warnings == []
    tiny = read(ImagerPixelSpacing=[0.1, 0.1])
    assert tiny.warnings == [{"code": "dicom_spacing", "message": (
        "the pixel spacing (0.1 mm) makes the image 2.6 x 2.6 cm, outside the 15-60 cm of a chest "
        "X-ray: the areas in cm² are doubtful.")}]
    wide = read(PixelSpacing=[2.5, 3])
    assert wide.warnings[0]["message"].startswith("the pixel spacing (3 x 2.5 mm) makes the image 76.8 x 64.0 cm")
    assert read(PixelSpacing=[0, 0], ImagerPixelSpacing=[1.4, 1.4]).spacing == (1.4, 1.4)
    unknown = read(PixelSpacing=[0, 0])
    assert unknown.spacing is None and unknown.warnings == []
    assert spacing_warnings((0.5, 0.5), 300, 1200) == []          # 15 x 60 cm: the limits are in
    assert spacing_warnings((0.5, 0.5), 300, 1201) != [] and spacing_warnings((0.5, 0.5), 299, 1200) != []


def _tool(name: str) -> str:
    """A dicom3tools/dcmtk program, or a skip (a failure on CI, which installs them)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not installed (apt-get install -y dicom3tools dcmtk)")
        pytest.skip(f"{name} not installed (apt-get install -y dicom3tools dcmtk)")
    return path


def test_a_segmentation_of_every_profile_is_valid_dicom(built, tmp_path):
    """write_seg never fails on a sparse source and never changes it; dciodvfy finds no error,
    dcmdump and dcm2pnm read it, highdicom gives the mask back; UIDs the source lacks are the
    same on every run."""
    import highdicom as hd

    dciodvfy, dcmdump, dcm2pnm = _tool("dciodvfy"), _tool("dcmdump"), _tool("dcm2pnm")
    for name, (data, _) in built.items():
        xray = read_input(data, name)[1]
        mask = (xray.pixels[..., 0] < 90).astype(np.uint8)
        before = copy.deepcopy(xray.dataset)
        seg = write_seg(xray, mask)
        assert xray.dataset == before and xray.dataset.file_meta == before.file_meta, name
        path = tmp_path / f"{name}.seg.dcm"
        path.write_bytes(seg)
        report = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (name, errors)
        assert subprocess.run([dcmdump, str(path)], capture_output=True).returncode == 0, name
        png = tmp_path / f"{name}.png"
        assert subprocess.run([dcm2pnm, "+on", str(path), str(png)], capture_output=True).returncode == 0, name
        assert np.array_equal(np.asarray(Image.open(png)) > 0, mask.astype(bool)), name
        back = hd.seg.segread(io.BytesIO(seg))
        uid = back.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        assert np.array_equal(back.get_pixels_by_source_instance([uid], combine_segments=True)[0], mask), name
    sparse = read_input(built["no-preamble-no-uids.dcm"][0])[1]
    first, second = (hd.seg.segread(io.BytesIO(write_seg(sparse, np.ones((256, 256), np.uint8)))) for _ in range(2))
    assert first.StudyInstanceUID == second.StudyInstanceUID and first.PatientName == ""
    assert first.SourceImageSequence[0].ReferencedSOPClassUID == SecondaryCaptureImageStorage


@pytest.mark.parametrize("labelled", [False, True])
def test_a_segmentation_of_both_definitions_is_valid_dicom_for_every_profile(built, tmp_path, labelled):
    """Both lung definitions in one SEG, overlapping (the whole lung holds the lung field): a
    segment each named by rules.json (right and left each with labels); dciodvfy finds no error,
    dcm2pnm renders every segment's frame, highdicom gives each mask back."""
    import highdicom as hd

    dciodvfy, dcm2pnm = _tool("dciodvfy"), _tool("dcm2pnm")
    names = list(built) if labelled else list(built)[:3]
    for name in names:
        xray = read_input(built[name][0], name)[1]
        masks = {"visible": (xray.pixels[..., 0] < 90).astype(np.uint8),
                 "whole": (xray.pixels[..., 0] < 140).astype(np.uint8)}
        assert (masks["whole"] >= masks["visible"]).all() and (masks["whole"] > masks["visible"]).any()
        planes = [plane for mask in masks.values()
                  for plane in ([side_labels(mask) == 1, side_labels(mask) == 2] if labelled else [mask > 0])]
        path = tmp_path / f"{name}.seg.dcm"
        path.write_bytes(write_seg(xray, masks, labelled=labelled))
        report = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True)
        errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], (name, errors)
        frames = tmp_path / name
        assert subprocess.run([dcm2pnm, "+on", "+Fa", str(path), str(frames)], capture_output=True).returncode == 0
        for k, plane in enumerate(planes):
            assert np.array_equal(np.asarray(Image.open(f"{frames}.{k}.png")) > 0, plane), (name, k)
        seg = hd.seg.segread(path)
        segments = [rules.DEFINITIONS[d]["segment"] for d in masks]
        expected = [f"{s}, {side}" for s in segments for side in ("right", "left")] if labelled else segments
        assert [item.SegmentLabel for item in seg.SegmentSequence] == expected and seg.SegmentsOverlap == "YES"
        uid = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        back = seg.get_pixels_by_source_instance([uid])[0]
        assert all(np.array_equal(back[..., k] > 0, plane) for k, plane in enumerate(planes)), name


def test_classes_and_character_sets_highdicom_does_not_know(tmp_path):
    """A vendor's SOP class is referenced as it is; an unknown character set becomes UTF-8 with
    the name as pydicom read it; dciodvfy finds no error."""
    import highdicom as hd

    dciodvfy = _tool("dciodvfy")
    for name, attributes in {"vendor.dcm": {"SOPClassUID": "1.2.3.4.5.6"},
                             "charset.dcm": {"SpecificCharacterSet": "ISO_IR 999", "PatientName": "Zoë"}}.items():
        xray = read_input(encode(dataset(built_xray(64).astype(np.uint16), **attributes)), name)[1]
        path = tmp_path / name
        path.write_bytes(write_seg(xray, np.ones((64, 64), np.uint8)))
        seg = hd.seg.segread(path)
        assert seg.SourceImageSequence[0].ReferencedSOPClassUID == xray.dataset.SOPClassUID, name
        assert seg.PatientName == xray.dataset.PatientName, name
        report = subprocess.run([dciodvfy, "-new", str(path)], capture_output=True, text=True)
        assert [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")] == []
    assert seg.SpecificCharacterSet == "ISO_IR 192"


def test_values_the_standard_forbids_are_written_empty():
    """A Patient's Sex of "Male" and a malformed birth date: the SEG is still written, with
    those left empty; the other patient and study attributes are copied."""
    import highdicom as hd

    ds = dataset(built_xray(64).astype(np.uint16), PatientSex="Male", PatientBirthDate="1970-01-01")
    xray = read_input(encode(ds), "odd.dcm")[1]
    seg = hd.seg.segread(io.BytesIO(write_seg(xray, np.ones((64, 64), np.uint8))))
    assert seg.PatientSex == "" and seg.PatientBirthDate == ""
    assert seg.PatientID == "T001" and seg.StudyInstanceUID == ds.StudyInstanceUID
