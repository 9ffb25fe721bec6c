"""DICOM test files built from real X-rays with pydicom: the transfer syntaxes, photometric
interpretations, LUTs and odd objects LungSeg must read (or refuse with a message), and
``corpus``: the X-rays as archives hold them (22 files: header profiles, encodings, no preamble
or no file meta, junk bits, High Bit 15, character sets, private tags, numbers that are not
numbers, a de-identified copy made by dicognito)."""
import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (ComputedRadiographyImageStorage, DeflatedExplicitVRLittleEndian,
                         DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless,
                         RLELossless, SecondaryCaptureImageStorage, generate_uid)

#: A side of the large 16-bit corpus file (about 9 MP), upscaled from a 256 px X-ray.
LARGE_SIDE = 3000
#: Type 2 attributes of the Patient, General Study, General Series and General Image modules.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "InstanceNumber",
         "PatientOrientation")
PRIVATE_CREATOR = "LUNGSEG TEST 1.0"


def dataset(stored: np.ndarray, bits: int = 12, signed: bool = False, **attributes) -> Dataset:
    """A DX image with the patient and study attributes a PACS (and DICOM-SEG) expects."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Lung", "T001", "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
    ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 1, 1
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype(np.uint8 if ds.BitsAllocated == 8 else np.int16 if signed else np.uint16).tobytes()
    return ds


def jpeg_baseline(grey: np.ndarray) -> tuple[bytes, np.ndarray]:
    """An 8-bit DICOM whose pixel data is a baseline JPEG (Pillow's encoder, quality 95), and the
    pixels that JPEG decodes to."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=95)
    ds = dataset(grey, bits=8, BitsAllocated=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    return encode(ds), np.asarray(Image.open(io.BytesIO(buffer.getvalue())))


def encode(ds: Dataset, syntax=None) -> bytes:
    if syntax is not None:
        ds.compress(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def variants(grey: np.ndarray) -> dict[str, bytes]:
    """name -> DICOM bytes whose display image is ``grey`` (up to rounding); see the test module."""
    twelve = grey.astype(np.uint16) * 16 + 8                 # 12 bits in 16, full range = grey
    return {
        "mono2": encode(dataset(twelve)),
        "mono1": encode(dataset(4095 - twelve, PhotometricInterpretation="MONOCHROME1")),
        "signed_rescale": encode(dataset(twelve.astype(np.int32) - 2048, signed=True,
                                         RescaleSlope=1, RescaleIntercept=2048)),
        "window": encode(dataset(twelve, WindowCenter=2047.5 + 8, WindowWidth=4096)),
        "rle": encode(dataset(twelve), RLELossless),
        "jpegls": encode(dataset(twelve), JPEGLSLossless),
        "jpeg2000": encode(dataset(twelve), JPEG2000Lossless),
        "deflated": deflated(dataset(twelve)),
    }


def deflated(ds: Dataset) -> bytes:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return encode(ds)


# --- the archive corpus --------------------------------------------------------------------

def full_range(grey: np.ndarray) -> np.ndarray:
    """Grey levels stretched to 0..255, so a DICOM shown over its own full range gives them back."""
    g = grey.astype(np.float64)
    return np.round((g - g.min()) * 255 / (g.max() - g.min())).astype(np.uint8)


def built_xray(size: int = 256) -> np.ndarray:
    """A chest-like image (two dark lung fields in a bright body on a dark background), for the
    read and write tests where no real X-ray is at hand."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = np.exp(-((x - 0.5) / 0.42) ** 8 - ((y - 0.55) / 0.5) ** 8)
    lungs = sum(np.exp(-((x - cx) / 0.13) ** 2 - ((y - 0.5) / 0.26) ** 2) for cx in (0.32, 0.68))
    texture = 0.04 * np.sin(40 * y) * np.cos(23 * x)
    return full_range(0.15 + 0.8 * body - 0.55 * lungs * body + texture)


def type1_only(ds: Dataset) -> Dataset:
    """Only what the Patient, Study, Series, SOP Common and Image Pixel modules must hold."""
    keep = {"SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "Rows",
            "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
            "PixelRepresentation", "PixelData"}
    for element in list(ds):
        if element.keyword not in keep:
            del ds[element.tag]
    return ds


def type2_empty(ds: Dataset) -> Dataset:
    """Every Type 2 attribute present with no value, as many exporters write them."""
    for keyword in TYPE2:
        setattr(ds, keyword, None)
    return ds


def deidentified(ds: Dataset) -> Dataset:
    """De-identified by dicognito (names, IDs, UIDs and dates replaced), private tags removed."""
    from dicognito.anonymizer import Anonymizer

    ds.remove_private_tags()
    Anonymizer(seed="lungseg").anonymize(ds)
    return ds


def with_private_tags(ds: Dataset, charset, name: str) -> Dataset:
    """A patient name in ``charset`` and a private block (a string, bytes and a sequence)."""
    ds.SpecificCharacterSet, ds.PatientName, ds.InstitutionName = charset, name, name.replace("^", " ")
    block = ds.private_block(0x0019, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", "a vendor's note")
    block.add_new(0x11, "OB", bytes(range(16)))
    item = Dataset()
    item.add_new(0x00190010, "LO", PRIVATE_CREATOR)
    item.add_new(0x00191001, "DS", "1.5")
    block.add_new(0x12, "SQ", [item])
    return ds


def raw(ds: Dataset, implicit: bool) -> bytes:
    """The data set alone: no preamble, no "DICM", no file meta (how older files are stored)."""
    del ds.file_meta
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def corpus(xrays: list[np.ndarray]) -> dict[str, tuple[bytes, int]]:
    """name -> (DICOM bytes, index of the X-ray of ``xrays`` it shows). Each X-ray (uint8 grey,
    full range 0..255) is stored as 12 bits in 16 (value 16 g + 8), so every file displays its
    grey levels exactly; the files differ in header, encoding and pixel layout."""
    def twelve(index):
        return xrays[index % len(xrays)].astype(np.uint16) * 16 + 8

    def junk(index):   # random values in the 4 bits above Bits Stored
        return np.random.default_rng(index).integers(0, 16, xrays[index % len(xrays)].shape, np.uint16) << 12

    lut = Dataset()
    lut.LUTDescriptor, lut.LUTData = [4096, 0, 8], (np.arange(4096) // 16).astype("<u2").tobytes()
    lut["LUTData"].VR = "OW"
    signed = (twelve(6).astype(np.int32) - 2048).astype(np.int16).view(np.uint16) & 0x0FFF
    files = {
        "full.dcm": encode(dataset(twelve(0), PixelSpacing=[1.4, 1.4])),
        "type1-only.dcm": encode(type1_only(dataset(twelve(1)))),
        "type2-empty.dcm": encode(type2_empty(dataset(twelve(2)))),
        "deidentified.dcm": encode(deidentified(with_private_tags(dataset(twelve(3)), "ISO_IR 100", "Müller^Jürgen"))),
        "implicit-cr.dcm": implicit(type2_empty(dataset(twelve(4), SOPClassUID=ComputedRadiographyImageStorage,
                                                        Modality="CR"))),
        "junk-bits.dcm": encode(dataset(twelve(5) | junk(5))),
        "junk-bits-signed.dcm": encode(dataset(signed | junk(6),
                                               PixelRepresentation=1, RescaleIntercept=2048, RescaleSlope=1)),
        "high-bit-15.dcm": encode(dataset(twelve(7) << 4, HighBit=15)),
        "utf8-private.dcm": encode(with_private_tags(dataset(twelve(8)), "ISO_IR 192", "Đặng^Thị Hồng=山田^太郎")),
        "latin1.dcm": encode(with_private_tags(type2_empty(dataset(twelve(9))), "ISO_IR 100", "Ørsted^Zoë")),
        "mono1-voilut.dcm": encode(dataset(4096 - twelve(10), PhotometricInterpretation="MONOCHROME1",
                                           VOILUTSequence=[lut])),
        "rle.dcm": encode(type2_empty(dataset(twelve(11))), RLELossless),
        "jpegls.dcm": encode(type1_only(dataset(twelve(12))), JPEGLSLossless),
        "jpeg2000.dcm": encode(dataset(twelve(13), SOPClassUID=ComputedRadiographyImageStorage, Modality="CR"),
                               JPEG2000Lossless),
        "deflated.dcm": deflated(type2_empty(dataset(twelve(14)))),
        "no-preamble.dcm": raw(type1_only(dataset(twelve(15))), implicit=True),
        "no-preamble-no-uids.dcm": raw(no_uids(dataset(twelve(16))), implicit=False),
        "secondary-capture.dcm": encode(dataset(twelve(17), SOPClassUID=SecondaryCaptureImageStorage, Modality="OT",
                                                ConversionType="DV")),
        "detector-spacing.dcm": encode(dataset(twelve(18), ImagerPixelSpacing=[0.1, 0.1])),
        "odd-values.dcm": odd_values(dataset(twelve(19))),
        "iso2022-japanese.dcm": encode(with_private_tags(dataset(twelve(20)), ["", "ISO 2022 IR 87"],
                                                         "Yamada^Tarou=山田^太郎")),
        "meta-no-preamble.dcm": encode(type2_empty(dataset(twelve(21))))[132:],
    }
    return {name: (data, index % len(xrays)) for index, (name, data) in enumerate(files.items())}


def odd_values(ds: Dataset) -> bytes:
    """Numbers that are not numbers (Rescale Slope, Window Center, one Pixel Spacing value) and a
    VOI LUT item without its table: each is skipped, so the image shows over its full range."""
    broken = Dataset()
    broken.LUTDescriptor = [4096, 0, 8]
    ds.VOILUTSequence = [broken]
    ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = "+1.5", "0", "+2048.0", "4096"
    ds.PixelSpacing = "+0.25\\+0.25"
    return (encode(ds).replace(b"+1.5", b"abc ").replace(b"+2048.0", b"x2048.0")
            .replace(b"+0.25\\+0.25", b"+0.25\\zzzzz"))


def no_uids(ds: Dataset) -> Dataset:
    """A converter's file: an Image Type and the Image Pixel module (no SOP class, UIDs, patient
    or study)."""
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality"):
        delattr(type1_only(ds), keyword)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    return ds


def implicit(ds: Dataset) -> bytes:
    """A Part 10 file in Implicit VR Little Endian."""
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return encode(ds)


def large(grey: np.ndarray, side: int = LARGE_SIDE) -> tuple[bytes, np.ndarray]:
    """A 16-bit DICOM of about ``side``² pixels, upscaled (bicubic) from ``grey``, and its grey
    levels at full size (what it displays, up to rounding)."""
    upscaled = np.asarray(Image.fromarray(grey.astype(np.float32) * 257).resize((side, side), Image.BICUBIC))
    stored = np.clip(np.round(upscaled), 0, 65535).astype(np.uint16)
    ds = dataset(stored, bits=16, Modality="DX", ImagerPixelSpacing=[0.139, 0.139])
    shown = (stored.astype(np.float64) - stored.min()) * 255 / (stored.max() - stored.min())
    return encode(ds), np.round(shown).astype(np.uint8)
