"""DICOM X-rays in: the 8-bit image a viewer shows, the pixel spacing, and metadata warnings.

    xray = read_dicom("image.dcm")      # DicomImage: pixels (H, W, 3) uint8, spacing, warnings
    write_seg(xray, mask, "mask.seg.dcm") # a DICOM Segmentation that references the X-ray

pydicom decodes the pixel data (with pylibjpeg's libjpeg and openjpeg plugins and pyjpegls:
JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000, RLE Lossless, deflated and
uncompressed transfer syntaxes). The display pipeline is written out here, not left to a
library, because the web page (web/js/dicom.js) applies the very same arithmetic:

1. stored values (Bits Stored, signed or not) -> Modality LUT: Rescale Slope/Intercept, or the
   Modality LUT Sequence's table;
2. VOI: the first VOI LUT Sequence table, else the first Window Center/Width (VOI LUT Function
   LINEAR, LINEAR_EXACT or SIGMOID), else the image's own full range, to 0..255;
3. MONOCHROME1 (white = low) inverted to MONOCHROME2; RGB and YBR as colour.
Multi-frame images and objects without pixel data are refused with a message.
"""
from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import rules

#: Modalities and body parts of a chest radiograph; others get a warning.
RADIOGRAPHY = {"CR", "DX", "DR", "RG", "PX"}
CHEST = {"CHEST", "THORAX", "LUNG", "LUNGS", "TORSO"}
LATERAL = {"LL", "RL", "LATERAL", "LAT"}
DICM_OFFSET = 128


@dataclass
class DicomImage:
    """A DICOM X-ray as LungSeg uses it. ``spacing`` is (row, column) in mm or None."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None = None
    spacing_source: str = ""
    warnings: list[dict] = field(default_factory=list)
    dataset: object = None            # the pydicom Dataset (header; for the DICOM-SEG reference)


def is_dicom(head: bytes) -> bool:
    """Whether file bytes start like a DICOM Part 10 file (the "DICM" marker at byte 128)."""
    return head[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM"


def _lut(values: np.ndarray, item) -> tuple[np.ndarray, int]:
    """Apply one LUT item (LUTDescriptor + LUTData): values below the first mapped value take the
    first entry, above the last the last entry. Returns (output, bits of the output)."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    raw = item.LUTData                        # US values, or OW bytes (little endian)
    data = (np.frombuffer(raw, "<u2") if isinstance(raw, bytes) else np.asarray(raw)).astype(np.float64).ravel()
    entries = entries or 65536
    index = np.clip(np.round(values).astype(np.int64) - first, 0, min(entries, data.size) - 1)
    return data[index], bits


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2: the window to 0..255 (floats)."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        out = ((values - center) / width + 0.5) * 255.0
    else:  # LINEAR
        width = max(width, 1.0)
        out = ((values - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5) * 255.0
    return np.clip(out, 0.0, 255.0)


def _first(value) -> float:
    """The first of a multi-valued DICOM number (Window Center/Width may hold several)."""
    from pydicom.multival import MultiValue

    return float(value[0]) if isinstance(value, MultiValue) else float(value)


def display_pixels(ds, stored: np.ndarray) -> np.ndarray:
    """The display pipeline (module docstring) for stored grey values: (H, W) uint8."""
    values = stored.astype(np.float64)
    if "ModalityLUTSequence" in ds:
        values, _ = _lut(values, ds.ModalityLUTSequence[0])
    else:
        values = values * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    if "VOILUTSequence" in ds:
        values, bits = _lut(values, ds.VOILUTSequence[0])
        grey = values * (255.0 / (2 ** bits - 1))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        grey = _window(values, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    else:
        low, high = float(values.min()), float(values.max())
        grey = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    grey = np.round(np.clip(grey, 0, 255)).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255 - grey
    return grey


def pixel_spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm and where it came from, by PS3.3 C.8.11.7/10.7.1.

    Pixel Spacing, where present, is already calibrated; else Imager Pixel Spacing (at the
    detector) divided by the Estimated Radiographic Magnification Factor when given. Either way a
    projection radiograph magnifies the patient, so areas are approximate.
    """
    if "PixelSpacing" in ds and ds.PixelSpacing:
        return (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1])), "Pixel Spacing"
    if "ImagerPixelSpacing" in ds and ds.ImagerPixelSpacing:
        factor = float(ds.get("EstimatedRadiographicMagnificationFactor", 1) or 1)
        spacing = (float(ds.ImagerPixelSpacing[0]) / factor, float(ds.ImagerPixelSpacing[1]) / factor)
        return spacing, ("Imager Pixel Spacing / magnification factor" if factor != 1 else
                         "Imager Pixel Spacing (at the detector)")
    return None, ""


def metadata_warnings(ds) -> list[dict]:
    """Warnings from the header: a lateral view, not a radiograph, not the chest."""
    from .checks import warning

    out = []
    view = str(ds.get("ViewPosition", "") or "").upper()
    if view in LATERAL:
        out.append(warning("dicom_lateral", view=view))
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality not in RADIOGRAPHY:
        out.append(warning("dicom_modality", modality=modality))
    body = str(ds.get("BodyPartExamined", "") or "").upper()
    if body and body not in CHEST:
        out.append(warning("dicom_body_part", body_part=body))
    return out


def read_dicom(source: str | Path | bytes, name: str = "upload") -> DicomImage:
    """Read a DICOM file (path or bytes) into a DicomImage; ImageError with a message if unusable."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from .imageio import ImageError, _check_size

    try:
        ds = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as err:
        raise ImageError(rules.message("corrupt", name, detail=f"DICOM: {err}")) from None
    if "PixelData" not in ds:
        raise ImageError(rules.message("dicom_no_image", name))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageError(rules.message("dicom_multiframe", name, frames=frames))
    _check_size(name, int(ds.Columns), int(ds.Rows))
    try:
        stored = ds.pixel_array
    except Exception as err:  # noqa: BLE001  (codec errors come in many types)
        raise ImageError(rules.message("corrupt", name, detail=f"DICOM pixel data: {err}")) from None
    if stored.ndim == 3:                      # colour (RGB; YBR converted to RGB by pydicom)
        pixels = stored if stored.dtype == np.uint8 else np.round(
            stored * (255.0 / max(int(stored.max()), 1))).astype(np.uint8)
    else:
        pixels = np.repeat(display_pixels(ds, stored)[:, :, None], 3, axis=2)
    spacing, source_of_spacing = pixel_spacing(ds)
    return DicomImage(np.ascontiguousarray(pixels), spacing, source_of_spacing, metadata_warnings(ds), ds)


def write_seg(xray: DicomImage, mask: np.ndarray, model: str = "lungseg", version: str = "",
              labelled: bool = False) -> bytes:
    """A DICOM Segmentation (highdicom, binary) of ``mask`` that references the source X-ray.

    One segment "Lung", or with ``labelled`` two: 1 = right lung, 2 = left lung (the patient's,
    as ``measure.side_labels`` assigns them). Patient and study attributes are copied from the
    source, as the standard requires, so a PACS files and overlays it with the X-ray.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from .measure import side_labels

    algorithm = hd.AlgorithmIdentificationSequence(name="LungSeg", version=version or model,
                                                   family=codes.cid7162.ArtificialIntelligence)
    parts = ([(1, "Right lung", Code("3341006", "SCT", "Right lung")),
              (2, "Left lung", Code("44029006", "SCT", "Left lung"))] if labelled
             else [(1, "Lung", codes.SCT.Lung)])
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for number, label, kind in parts]
    pixels = side_labels(mask) if labelled else mask.astype(np.uint8)
    source = copy.copy(xray.dataset)
    if "PixelSpacing" in source and "SliceThickness" not in source:
        del source.PixelSpacing       # highdicom would build a 3D pixel-measures item and refuse
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="LungSeg", manufacturer_model_name=model, software_versions=version or model,
        device_serial_number="none", series_description="LungSeg lung mask")
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()
