"""Small synthetic chest-X-ray-like DICOM instances made with pydicom (no real patient data)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def synthetic_cxr(size: int = 256, seed: int = 0) -> np.ndarray:
    """A 12-bit frontal-chest-like image: bright mediastinum and ribs cage, two dark lung fields, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = 2600 - 1400 * np.exp(-(((x - 0.5) / 0.45) ** 2 + ((y - 0.55) / 0.5) ** 2) * 2)
    for cx in (0.3, 0.7):
        img -= 900 * np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.28) ** 2))
    img += 250 * (np.sin(y * 40) > 0.8) * (np.abs(x - 0.5) > 0.08)
    img += rng.normal(0, 30, img.shape)
    return np.clip(img, 0, 4095).astype(np.uint16)


def make_cr(
    patient_name: str = "DOE^JANE",
    patient_id: str = "PID-0001",
    study_date: str = "20240315",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    size: int = 256,
    seed: int = 0,
    burned_in: str | None = "NO",
) -> Dataset:
    """One CR instance (Explicit VR Little Endian, MONOCHROME2, 12 bits stored) with identifying fields set."""
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "054Y"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = "ACC" + patient_id[-4:]
    ds.StudyID = "1"
    ds.StudyDescription = "CHEST PA"
    ds.SeriesDescription = "PA"
    ds.InstitutionName = "General Hospital"
    ds.InstitutionAddress = "1 Hospital Road"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.PerformingPhysicianName = "WATSON^JOHN"
    ds.OperatorsName = "TECH^ANNA"
    ds.StationName = "XR-ROOM-2"
    ds.DeviceSerialNumber = "SN-99"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "Synthetic"
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.add_new(0x00091010, "LO", "private secret")  # a private tag the de-identifier must drop
    px = synthetic_cxr(size, seed)
    ds.Rows, ds.Columns = px.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2000
    ds.WindowWidth = 3000
    ds.PixelData = px.tobytes()
    return ds


def to_file_dataset(ds: Dataset, path) -> pydicom.FileDataset:
    """Write ``ds`` as a DICOM file and read it back (what a loader or the PACS would hand over)."""
    ds.save_as(path, enforce_file_format=True)
    return pydicom.dcmread(path)
