"""Write synthetic or JPEG-derived DICOM files for tests, the benchmark and the sample study.

Only pydicom (and its installed encoders) is used; every file is a Digital X-Ray-like image with made-up
identifiers. Nothing here is imported by the application.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


def synthetic_cxr(rows: int = 256, cols: int = 200, bits: int = 12, seed: int = 0) -> np.ndarray:
    """A smooth chest-like uint16 image (two dark 'lungs' in a brighter body) using ``bits`` bits."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    top = float(2**bits - 1)
    body = 0.75 - 0.25 * ((x - cols / 2) / (cols / 2)) ** 2
    lungs = sum(
        0.45 * np.exp(-(((x - cx) / (cols * 0.16)) ** 2 + ((y - rows * 0.48) / (rows * 0.28)) ** 2))
        for cx in (cols * 0.32, cols * 0.68)
    )
    img = (body - lungs) * top + rng.normal(0, top * 0.01, (rows, cols))
    return np.clip(img, 0, top).astype(np.uint16)


def base_dataset(
    rows: int,
    cols: int,
    *,
    bits_allocated: int = 16,
    bits_stored: int = 12,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    samples: int = 1,
    frames: int = 1,
    patient_id: str = "TEST^0001",
    patient_name: str = "ANONYMOUS^TEST",
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "DX",
    view: str | None = "PA",
    sop_class: UID = DigitalXRayImageStorageForPresentation,
) -> Dataset:
    """The header of a grey (or RGB) image with made-up identifiers."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate = "20240101"
    ds.StudyTime = "093000"
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.Manufacturer = "cxrviewer tests"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if view:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    return ds


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    window: tuple[Sequence[float], Sequence[float]] | None = None,
    window_explanations: Sequence[str] | None = None,
    voi_function: str | None = None,
    voi_lut: tuple[int, int, np.ndarray] | None = None,
    rescale: tuple[float, float] | None = None,
    padding: tuple[int, int | None] | None = None,
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = None,
    preamble: bool = True,
    **header: object,
) -> Path:
    """Write ``pixels`` ((rows, cols), (frames, rows, cols) or (rows, cols, 3) uint8/uint16/int16) as DICOM.

    ``voi_lut`` is (first mapped value, bits per entry, LUT data); ``padding`` is (value, range limit or
    None); ``transfer_syntax`` may be any uncompressed syntax, deflated, RLE or JPEG 2000 (encoded by
    pydicom's encoders). ``preamble=False`` writes the bare data set (no preamble, no file meta).
    ``header`` holds :func:`base_dataset` arguments (lower case) and DICOM keywords (e.g. ``InstanceNumber``).
    """
    arr = np.ascontiguousarray(pixels)
    colour = arr.ndim == 3 and arr.shape[-1] == 3
    frames = 1 if arr.ndim == 2 or colour else arr.shape[0]
    rows, cols = arr.shape[-3:-1] if colour else arr.shape[-2:]
    bits_allocated = arr.dtype.itemsize * 8
    keywords = {k: v for k, v in header.items() if k[:1].isupper()}  # DICOM keywords set as given
    header = {k: v for k, v in header.items() if k not in keywords}
    ds = base_dataset(
        rows, cols, bits_allocated=bits_allocated, bits_stored=bits_stored or bits_allocated,
        signed=arr.dtype.kind == "i", photometric="RGB" if colour else photometric,
        samples=3 if colour else 1, frames=frames, **header,  # type: ignore[arg-type]
    )  # fmt: skip
    for keyword, value in keywords.items():
        setattr(ds, keyword, value)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = list(window[0]), list(window[1])
        if window_explanations:
            ds.WindowCenterWidthExplanation = list(window_explanations)
    if voi_function:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        first, lut_bits, data = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(data) if len(data) < 65536 else 0, first, lut_bits]
        item.LUTData = [int(v) for v in data]
        item["LUTData"].VR = "US"
        item["LUTDescriptor"].VR = "SS" if first < 0 else "US"
        ds.VOILUTSequence = [item]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if padding is not None:
        ds.PixelPaddingValue = padding[0]
        ds["PixelPaddingValue"].VR = "SS" if arr.dtype.kind == "i" else "US"
        if padding[1] is not None:
            ds.PixelPaddingRangeLimit = padding[1]
            ds["PixelPaddingRangeLimit"].VR = ds["PixelPaddingValue"].VR
    if pixel_spacing:
        ds.PixelSpacing = list(pixel_spacing)
    if imager_pixel_spacing:
        ds.ImagerPixelSpacing = list(imager_pixel_spacing)
    ts = UID(transfer_syntax)
    if ts.is_compressed and ts != JPEGBaseline8Bit:
        ds.PixelData = arr.tobytes()
        options: dict[str, object] = {"j2k_cr": [10]} if ts == JPEG2000 else {}
        ds.compress(ts, arr, encoding_plugin="pylibjpeg" if "2000" in ts.name else "", **options)
    else:
        ds.file_meta.TransferSyntaxUID = ts
        data = arr.astype(arr.dtype.newbyteorder(">")) if ts == ExplicitVRBigEndian else arr
        ds.PixelData = data.tobytes()
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    if not preamble:
        strip_preamble(path)
    return path


def write_jpeg_dicom(path: Path, jpeg_bytes: bytes, rows: int, cols: int, **header: object) -> Path:
    """Encapsulate an 8-bit grey JPEG file's bytes as a JPEG Baseline DICOM (no re-encoding)."""
    ds = base_dataset(rows, cols, bits_allocated=8, bits_stored=8, sop_class=SecondaryCaptureImageStorage,
                      **header)  # type: ignore[arg-type]  # fmt: skip
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg_bytes])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    path = Path(path)
    ds.save_as(path, enforce_file_format=True)
    return path


def strip_preamble(path: Path) -> None:
    """Rewrite a DICOM file without its 128-byte preamble, 'DICM' prefix and file meta group."""
    data = Path(path).read_bytes()
    assert data[128:132] == b"DICM"
    body = data[132:]
    (group_length,) = struct.unpack("<I", body[8:12])
    Path(path).write_bytes(body[12 + group_length :])
