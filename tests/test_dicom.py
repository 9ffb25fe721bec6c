"""DICOM in, real units out: every test DICOM reads to the same 8-bit image and mask as the PNG
of a real X-ray; odd objects are refused with a message; areas in cm²; DICOM-SEG re-reads."""
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import requires_data, val_images
from dicoms import dataset, encode, jpeg_baseline, variants
from lungseg import ImageError
from lungseg.dicom import pixel_spacing, write_seg
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
