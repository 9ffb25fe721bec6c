"""DICOM test files built from real X-rays with pydicom: the transfer syntaxes, photometric
interpretations, LUTs and odd objects LungSeg must read (or refuse with a message)."""
import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import (DeflatedExplicitVRLittleEndian, DigitalXRayImageStorageForPresentation,
                         ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless,
                         RLELossless, generate_uid)


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
