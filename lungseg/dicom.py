"""DICOM X-rays in: the 8-bit image a viewer shows, the pixel spacing, and metadata warnings;
and out: a DICOM Segmentation of the mask.

    xray = read_dicom("image.dcm")        # DicomImage: pixels (H, W, 3) uint8, spacing, warnings
    write_seg(xray, mask)                 # bytes of a DICOM Segmentation that references the X-ray
    write_seg(xray, {"visible": mask, "whole": whole})   # a segment per lung definition

Files are recognised by content (``is_dicom``): a Part 10 file (the "DICM" marker after its
128-byte preamble), or an older data set with no preamble and no file meta that starts with a
group 0002 or 0008 element, in explicit or implicit VR little endian. The data set after the
file meta must start with a group 0008 element too (0004 for a DICOMDIR), else the header is
unreadable.

pydicom decodes the pixel data (with pylibjpeg's libjpeg and openjpeg plugins and pyjpegls:
JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000, RLE Lossless, deflated and
uncompressed transfer syntaxes). The display pipeline is written out here, not left to a
library, because the web page (web/js/dicom.js) applies the very same arithmetic:

1. stored values: the Bits Stored bits ending at High Bit (bits around them masked off; signed
   per Pixel Representation) -> Modality LUT: Rescale Slope/Intercept, or the Modality LUT
   Sequence's table;
2. VOI: the first VOI LUT Sequence table, else the first Window Center/Width (VOI LUT Function
   LINEAR, LINEAR_EXACT or SIGMOID; a width above 0), else the image's own full range, to 0..255;
3. MONOCHROME1 (white = low) inverted to MONOCHROME2; RGB and YBR as colour.
Multi-frame images and objects without pixel data are refused with a message; so is a header
without Rows, Columns, Bits Allocated or Bits Stored (Samples per Pixel 1, Photometric
Interpretation MONOCHROME2/RGB, Pixel Representation 0 and High Bit = Bits Stored - 1 are
assumed where absent).
"""
from __future__ import annotations

import copy
import hashlib
import io
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import rules

#: Modalities and body parts of a chest radiograph; others get a warning.
RADIOGRAPHY = {"CR", "DX", "DR", "RG", "PX"}
CHEST = {"CHEST", "THORAX", "LUNG", "LUNGS", "TORSO"}
LATERAL = {"LL", "RL", "LATERAL", "LAT"}
#: Where a Part 10 file has its "DICM" marker; the groups a data set may start with.
DICM_OFFSET = 128
RAW_FIRST_GROUPS = (0x0002, 0x0008)
DATASET_FIRST_GROUPS = (0x0004, 0x0008, 0x0800)  # after the file meta (a DICOMDIR; big endian)
VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD",
       b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI",
       b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
DEFLATED = "1.2.840.10008.1.2.1.99"
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
#: The plain details of the "corrupt" message (web/js/dicom.js words them the same).
HEADER_UNREADABLE = "not a readable DICOM header"
PIXELS_UNREADABLE = "the DICOM pixel data is incomplete or cannot be decoded"
LACKS = "the DICOM header lacks {names}"
#: Attributes the pixel data cannot be read without (keyword, as the message names it).
REQUIRED = (("Rows", "Rows"), ("Columns", "Columns"), ("BitsAllocated", "Bits Allocated"),
            ("BitsStored", "Bits Stored"))
#: Transfer syntaxes whose stored values pydicom hands over bit for bit (we mask them ourselves).
BITWISE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
           "1.2.840.10008.1.2.5"}
#: A chest is this many cm across (rules.json checks.chest_cm_range), else areas are doubtful.
CHEST_CM = tuple(rules.RULES["checks"]["chest_cm_range"])
#: The SEG of a source that lacks them: its SOP class (by Modality) and Modality (by SOP class).
SOP_CLASS_OF_MODALITY = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Type 2 attributes of the Patient and General Study modules: written empty when absent.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")
UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@dataclass
class DicomImage:
    """A DICOM X-ray as LungSeg uses it. ``spacing`` is (row, column) in mm or None."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None = None
    spacing_source: str = ""
    warnings: list[dict] = field(default_factory=list)
    dataset: object = None            # the pydicom Dataset (header; for the DICOM-SEG reference)


# --- recognising a DICOM by content --------------------------------------------------------

def _starts_element(data: bytes, offset: int, groups: tuple[int, ...]) -> bool:
    """Whether ``data`` holds a data element of one of ``groups`` at ``offset``: explicit VR (a
    known VR after the tag) or implicit VR little endian (an even or undefined length)."""
    if len(data) < offset + 8 or int.from_bytes(data[offset:offset + 2], "little") not in groups:
        return False
    if data[offset + 4:offset + 6] in VRS:
        return True
    length = int.from_bytes(data[offset + 4:offset + 8], "little")
    return length % 2 == 0 or length == 0xFFFFFFFF


def _meta(data: bytes) -> tuple[int | None, str]:
    """Where the data set of a Part 10 file starts, after its group 0002 elements (always explicit
    VR little endian), and its Transfer Syntax UID; (None, "") if they run past ``data``."""
    offset, syntax = DICM_OFFSET + 4, ""
    while len(data) >= offset + 8 and data[offset:offset + 2] == b"\x02\x00":
        long = data[offset + 4:offset + 6] in LONG_VRS
        start = offset + (12 if long else 8)
        end = start + int.from_bytes(data[offset + 8:offset + 12] if long else data[offset + 6:offset + 8], "little")
        if data[offset + 2:offset + 4] == b"\x10\x00":
            syntax = data[start:end].decode("ascii", "replace").strip("\0 ")
        offset = end
    return (offset, syntax) if offset <= len(data) else (None, "")


def _part10(head: bytes) -> bool:
    return head[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM"


def is_dicom(head: bytes) -> bool:
    """Whether file bytes start like a DICOM file: the "DICM" marker at byte 128, or (an older
    file without preamble and file meta) a group 0002 or 0008 data element at byte 0."""
    return _part10(head) or _starts_element(head, 0, RAW_FIRST_GROUPS)


def _header_readable(data: bytes) -> bool:
    """Whether the data set (after a Part 10 file's meta; inflated if deflated) starts like one."""
    if not _part10(data):
        return _starts_element(data, 0, RAW_FIRST_GROUPS)
    start, syntax = _meta(data)
    if start is None:
        return False
    if syntax == DEFLATED:
        try:
            return _starts_element(zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:], 16), 0,
                                   DATASET_FIRST_GROUPS)
        except zlib.error:
            return False
    return _starts_element(data, start, DATASET_FIRST_GROUPS)


# --- the display pipeline ------------------------------------------------------------------

def _lut_item(ds, keyword: str):
    """The first item of a LUT sequence if it holds a LUT Descriptor (3 values, 1-16 bits) and
    LUT Data, else None: a broken table is skipped, as on the page."""
    items = ds.get(keyword)
    item = items[0] if items else None
    descriptor = item.get("LUTDescriptor") if item is not None else None
    if descriptor is None or len(descriptor) != 3 or not 1 <= int(descriptor[2]) <= 16 or not item.get("LUTData"):
        return None
    return item


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


def _values(ds, keyword: str) -> list[float]:
    """A numeric string attribute's values as floats (nan for one that is not a number, as an
    archive may hold); [] when absent or empty. web/js/dicom.js reads them alike."""
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    out = []
    for item in [value] if isinstance(value, (str, bytes, int, float)) else list(value):
        try:
            out.append(float(str(item)))
        except ValueError:
            out.append(math.nan)
    return out


def _number(ds, keyword: str, default: float | None = None) -> float | None:
    """The first value of a numeric attribute if it is a finite number, else ``default``."""
    values = _values(ds, keyword)
    return values[0] if values and math.isfinite(values[0]) else default


def display_pixels(ds, stored: np.ndarray) -> np.ndarray:
    """The display pipeline (module docstring) for stored grey values: (H, W) uint8."""
    values = stored.astype(np.float64)
    modality_lut, voi_lut = _lut_item(ds, "ModalityLUTSequence"), _lut_item(ds, "VOILUTSequence")
    if modality_lut is not None:
        values, _ = _lut(values, modality_lut)
    else:
        values = values * (_number(ds, "RescaleSlope") or 1.0) + _number(ds, "RescaleIntercept", 0.0)
    if voi_lut is not None:
        values, bits = _lut(values, voi_lut)
        grey = values * (255.0 / (2 ** bits - 1))
    elif _number(ds, "WindowCenter") is not None and (_number(ds, "WindowWidth") or 0) > 0:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        grey = _window(values, _number(ds, "WindowCenter"), _number(ds, "WindowWidth"), function)
    else:
        low, high = float(values.min()), float(values.max())
        grey = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    grey = np.round(np.clip(grey, 0, 255)).astype(np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        grey = 255 - grey
    return grey


# --- pixel spacing and header warnings -----------------------------------------------------

def _numbers(ds, keyword: str, count: int) -> list[float] | None:
    """The first ``count`` values of a DS attribute if they are finite numbers > 0, else None."""
    numbers = _values(ds, keyword)[:count]
    return numbers if len(numbers) == count and all(math.isfinite(n) and n > 0 for n in numbers) else None


def pixel_spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """(row, column) spacing in mm and where it came from, by PS3.3 C.8.11.7/10.7.1.

    Pixel Spacing, where present, is already calibrated; else Imager Pixel Spacing (at the
    detector) divided by the Estimated Radiographic Magnification Factor when given. Either way a
    projection radiograph magnifies the patient, so areas are approximate. An attribute without
    two numbers above 0 (a zero spacing, as some devices write) counts as absent.
    """
    calibrated = _numbers(ds, "PixelSpacing", 2)
    if calibrated:
        return (calibrated[0], calibrated[1]), "Pixel Spacing"
    detector = _numbers(ds, "ImagerPixelSpacing", 2)
    if detector:
        factor = (_numbers(ds, "EstimatedRadiographicMagnificationFactor", 1) or [1.0])[0]
        return ((detector[0] / factor, detector[1] / factor),
                "Imager Pixel Spacing / magnification factor" if factor != 1 else
                "Imager Pixel Spacing (at the detector)")
    return None, ""


def spacing_warnings(spacing: tuple[float, float] | None, rows: int, columns: int) -> list[dict]:
    """The dicom_spacing warning when the spacing makes the image under or over rules.json's
    chest_cm_range on a side. Numbers as web/js/dicom.js writes them: spacing ``:g``, cm ``.1f``."""
    from .checks import warning

    if spacing is None:
        return []
    width_cm, height_cm = columns * spacing[1] / 10.0, rows * spacing[0] / 10.0
    low, high = CHEST_CM
    if low <= min(width_cm, height_cm) and max(width_cm, height_cm) <= high:
        return []
    shown = f"{spacing[1]:g}" if spacing[0] == spacing[1] else f"{spacing[1]:g} x {spacing[0]:g}"
    return [warning("dicom_spacing", spacing=shown, width_cm=f"{width_cm:.1f}", height_cm=f"{height_cm:.1f}",
                    low=f"{low:g}", high=f"{high:g}")]


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


# --- reading -------------------------------------------------------------------------------

def _pixel_module(ds, name: str) -> dict:
    """The Image Pixel attributes that say how to read the pixel data, defaults filled in;
    ImageError naming what is missing (see the module docstring)."""
    from .imageio import ImageError

    missing = [label for keyword, label in REQUIRED if ds.get(keyword) in (None, "")]
    if missing:
        raise ImageError(rules.message("corrupt", name, detail=LACKS.format(names=", ".join(missing))))
    samples = int(ds.get("SamplesPerPixel") or 1)
    stored = int(ds.BitsStored)
    return {"rows": int(ds.Rows), "columns": int(ds.Columns), "samples_per_pixel": samples,
            "bits_allocated": int(ds.BitsAllocated), "bits_stored": stored,
            "high_bit": int(ds.HighBit) if ds.get("HighBit") not in (None, "") else stored - 1,
            "pixel_representation": int(ds.get("PixelRepresentation") or 0),
            "photometric_interpretation": str(ds.get("PhotometricInterpretation") or "").strip().upper()
            or ("MONOCHROME2" if samples == 1 else "RGB")}


def _transfer_syntax(ds) -> str:
    """The file meta's Transfer Syntax UID, else (a file without one) the encoding pydicom found."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    syntax = str(ds.file_meta.get("TransferSyntaxUID") or "").strip()
    if syntax:
        return syntax
    implicit, little = ds.original_encoding
    return ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _stored_values(ds, module: dict) -> np.ndarray:
    """The stored values: for native and RLE data the Bits Stored bits ending at High Bit (signed
    per Pixel Representation), as web/js/dicom.js reads them; codecs' values as they decode."""
    from pydicom.pixels import get_decoder

    syntax = _transfer_syntax(ds)
    bitwise = syntax in BITWISE
    options = {k: module[k] for k in ("rows", "columns", "samples_per_pixel", "bits_allocated",
                                      "photometric_interpretation")}
    options.update(number_of_frames=1, planar_configuration=int(ds.get("PlanarConfiguration") or 0),
                   bits_stored=module["bits_allocated"] if bitwise else module["bits_stored"],
                   pixel_representation=0 if bitwise else module["pixel_representation"])
    array, _ = get_decoder(syntax).as_array(ds, index=0, **options)
    if not bitwise:
        return array
    bits, shift = module["bits_stored"], module["high_bit"] + 1 - module["bits_stored"]
    values = (array.astype(np.int64) >> max(shift, 0)) & ((1 << bits) - 1)
    if module["pixel_representation"]:
        values -= ((values >> (bits - 1)) & 1) << bits
    return values


def _complete(ds, size: int) -> bool:
    """Whether the data set's last element ends where the file ends: pydicom keeps a file cut
    inside its header without a word (dicom-parser on the page refuses it)."""
    if _transfer_syntax(ds) == DEFLATED or not len(ds):   # positions in the inflated stream
        return True
    last = ds.get_item(max(ds.keys()))
    if not hasattr(last, "value_tell"):
        return True
    undefined = last.length == 0xFFFFFFFF
    return last.value_tell + (len(last.value or b"") + 8 if undefined else last.length) == size


def read_dicom(source: str | Path | bytes, name: str = "upload") -> DicomImage:
    """Read a DICOM file (path or bytes) into a DicomImage; ImageError with a message if unusable."""
    import pydicom

    from .imageio import ImageError, _check_size

    def corrupt(detail: str) -> ImageError:
        return ImageError(rules.message("corrupt", name, detail=detail))

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not _header_readable(data):
        raise corrupt(HEADER_UNREADABLE)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001  (a damaged file fails in many ways inside pydicom)
        try:
            pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        except Exception:  # noqa: BLE001
            raise corrupt(HEADER_UNREADABLE) from None
        raise corrupt(PIXELS_UNREADABLE) from None
    if "PixelData" not in ds:
        if not _complete(ds, len(data)):
            raise corrupt(HEADER_UNREADABLE)
        raise ImageError(rules.message("dicom_no_image", name))
    frames = int(_number(ds, "NumberOfFrames") or 1)
    if frames > 1:
        raise ImageError(rules.message("dicom_multiframe", name, frames=frames))
    module = _pixel_module(ds, name)
    _check_size(name, module["columns"], module["rows"])
    try:
        stored = _stored_values(ds, module)
    except Exception:  # noqa: BLE001  (codec errors come in many types)
        raise corrupt(PIXELS_UNREADABLE) from None
    if stored.ndim == 3:                      # colour (RGB; YBR converted to RGB by pydicom)
        pixels = stored if stored.dtype == np.uint8 else np.round(
            stored * (255.0 / max(int(stored.max()), 1))).astype(np.uint8)
    else:
        pixels = np.repeat(display_pixels(ds, stored)[:, :, None], 3, axis=2)
    spacing, source_of_spacing = pixel_spacing(ds)
    warnings = metadata_warnings(ds) + spacing_warnings(spacing, module["rows"], module["columns"])
    return DicomImage(np.ascontiguousarray(pixels), spacing, source_of_spacing, warnings, ds)


# --- writing the DICOM Segmentation --------------------------------------------------------

def _generated_uid(ds, keyword: str) -> str:
    """A UID the source lacks, derived from its pixel data: the same X-ray always gets the same."""
    from pydicom.uid import generate_uid

    digest = hashlib.sha256(bytes(ds.get("PixelData") or b"")).hexdigest()
    return generate_uid(entropy_srcs=[digest, keyword])


def _valid(vr_class, value) -> bool:
    try:
        vr_class(value)
    except (ValueError, TypeError):
        return False
    return True


def reference(dataset):
    """The source as the DICOM Segmentation references it: a copy of its header (never the
    caller's dataset), with what the SEG needs and the source lacks filled in by one rule:

    - Study, Series and SOP Instance UIDs: generated from the pixel data (``_generated_uid``);
    - SOP Class UID: CR or DX Image Storage by Modality, else Secondary Capture (also standing in,
      while highdicom builds the SEG, for a class it does not know; ``write_seg`` puts the
      source's own back in the references); Modality: CR or DX by SOP class, else OT;
    - the Type 2 patient and study attributes: empty when absent, or when the value is one the
      standard forbids (a Patient's Sex other than M, F or O; a malformed date or time);
    - Specific Character Set: an empty first term (the default repertoire) as ISO 2022 IR 6, and
      ISO_IR 192 (UTF-8, which holds any text pydicom decoded) in place of unknown terms;
    - Pixel Spacing dropped when there is no Slice Thickness (highdicom would build a 3D
      pixel-measures item and refuse).
    """
    import highdicom as hd
    from highdicom._standard_utils import get_sop_class_iod_map   # the IODs highdicom can copy from
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DA, TM

    source = Dataset()
    for element in dataset:
        if element.tag != 0x7FE00010:
            source.add(copy.deepcopy(element))
    source.file_meta = copy.deepcopy(dataset.file_meta)
    for keyword in UIDS:
        if not str(source.get(keyword) or "").strip():
            setattr(source, keyword, _generated_uid(dataset, keyword))
    modality = str(source.get("Modality") or "").strip().upper()
    if str(source.get("SOPClassUID") or "").strip() not in get_sop_class_iod_map():
        source.SOPClassUID = SOP_CLASS_OF_MODALITY.get(modality, SECONDARY_CAPTURE)
    if not modality:
        source.Modality = {v: k for k, v in SOP_CLASS_OF_MODALITY.items()}.get(str(source.SOPClassUID), "OT")
    for keyword in TYPE2:
        if keyword not in source:
            setattr(source, keyword, None)
    if str(source.PatientSex or "").strip().upper() not in ("", "M", "F", "O"):
        source.PatientSex = None
    for keyword, vr_class in (("PatientBirthDate", DA), ("StudyDate", DA), ("StudyTime", TM)):
        if source[keyword].value not in (None, "") and not _valid(vr_class, str(source[keyword].value)):
            setattr(source, keyword, None)
    terms = source.get("SpecificCharacterSet") or []
    terms = [terms] if isinstance(terms, str) else [term or "ISO 2022 IR 6" for term in terms]   # "": default
    if terms:
        known = {v.value for v in hd.SpecificCharacterSetValues}
        source.SpecificCharacterSet = terms if all(term in known for term in terms) else "ISO_IR 192"
    if "PixelSpacing" in source and "SliceThickness" not in source:
        del source.PixelSpacing
    return source


def _own_class_referenced(seg, source, sop_class: str) -> None:
    """Where the SEG references ``source`` under a stand-in SOP class, put ``sop_class`` back."""
    def restore(dataset, element):
        if (element.keyword == "ReferencedSOPClassUID" and element.value == source.SOPClassUID
                and dataset.get("ReferencedSOPInstanceUID") == source.SOPInstanceUID):
            element.value = sop_class
    if sop_class and sop_class != source.SOPClassUID:
        seg.walk(restore)


def _segments(masks: dict[str, np.ndarray], labelled: bool) -> tuple[list[tuple], np.ndarray]:
    """The segments of ``masks`` ({definition: mask}), numbered from 1, each (label, property
    code), and their pixels: a mask or a right/left label map for one definition, else one
    0/1 plane per segment stacked as (1, rows, cols, segments) (segments may overlap)."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from .measure import side_labels

    sides = [("right", Code("3341006", "SCT", "Right lung")), ("left", Code("44029006", "SCT", "Left lung"))]
    labels = [rules.DEFINITIONS[d]["segment"] for d in masks]
    parts = ([(f"{label}, {side}", code) for label in labels for side, code in sides] if labelled
             else [(label, codes.SCT.Lung) for label in labels])
    if len(masks) == 1:
        (mask,) = masks.values()
        return parts, side_labels(mask) if labelled else mask.astype(np.uint8)
    pixels = np.zeros((1, *next(iter(masks.values())).shape, len(parts)), np.uint8)
    for k, mask in enumerate(masks.values()):
        if labelled:
            side = side_labels(mask)
            pixels[0, ..., 2 * k], pixels[0, ..., 2 * k + 1] = side == 1, side == 2
        else:
            pixels[0, ..., k] = mask
    return parts, pixels


def write_seg(xray: DicomImage, masks: dict[str, np.ndarray] | np.ndarray, model: str = "lungseg",
              version: str = "", labelled: bool = False) -> bytes:
    """A DICOM Segmentation (highdicom, binary) of ``masks`` that references the source X-ray.

    ``masks``: {definition: mask} (rules.json ``definitions``), or one mask of the visible lung
    field. A segment per definition, labelled with its ``segment`` ("Lung field", "Whole lung"),
    or with ``labelled`` two per definition, its right then its left lung (the patient's, as
    ``measure.side_labels`` assigns them): "Lung field, right", "Lung field, left", ...; the
    definitions' segments overlap (the whole lung holds the lung field). Patient and study
    attributes are copied from the source, as the standard requires, so a PACS files and
    overlays it with the X-ray; what the source lacks is filled in as ``reference`` says.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    masks = masks if isinstance(masks, dict) else {"visible": masks}
    algorithm = hd.AlgorithmIdentificationSequence(name="LungSeg", version=version or model,
                                                   family=codes.cid7162.ArtificialIntelligence)
    parts, pixels = _segments(masks, labelled)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for number, (label, kind) in enumerate(parts, 1)]
    source = reference(xray.dataset)
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="LungSeg", manufacturer_model_name=model, software_versions=version or model,
        device_serial_number="none", series_description="LungSeg lung mask")
    # Type 2C for an image without Image Orientation/Position (Patient): the source's, or empty.
    seg.PatientOrientation = xray.dataset.get("PatientOrientation") or None
    _own_class_referenced(seg, source, str(xray.dataset.get("SOPClassUID") or "").strip())
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()
