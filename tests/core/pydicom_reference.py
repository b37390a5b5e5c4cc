"""The display image built independently with pydicom: apply_modality_lut → apply_voi_lut → inversion,
scaled to [0, 1] with pydicom's own output range conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array

from cxrviewer.core.dicom_reader import decoding_plugins


def windowing_output_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """(y_min, y_max) of pydicom's apply_windowing output for this data set (see its source)."""
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.PixelRepresentation) == 0:
        y_min, y_max = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        y_min, y_max = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return y_min, y_max


def reference_pixels(ds: pydicom.Dataset, frame: int = 0) -> np.ndarray:
    """pydicom's decode of one frame with the plugin the loader uses first: lossy JPEG decoders may differ
    by one grey level (IDCT rounding), which is not what these references check."""
    ts = pydicom.uid.UID(str(ds.file_meta.TransferSyntaxUID))
    return pixel_array(ds, index=frame, decoding_plugin=decoding_plugins(ts)[0])


def reference_display(path: Path, frame: int = 0, voi_lut_max: float | None = None) -> np.ndarray:
    """pydicom's display chain for ``path`` as float64 in [0, 1]; padding (if any) set to 0.

    ``voi_lut_max`` is the white level of a VOI LUT sequence (the loader's documented convention).
    """
    ds = pydicom.dcmread(path, force=True)
    stored = reference_pixels(ds, frame)
    voi = apply_voi_lut(apply_modality_lut(stored, ds), ds, index=0).astype(np.float64)
    if ds.get("VOILUTSequence"):
        assert voi_lut_max is not None
        norm = voi / voi_lut_max
    else:
        y_min, y_max = windowing_output_range(ds)
        norm = (voi - y_min) / (y_max - y_min)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        norm = 1.0 - norm
    if "PixelPaddingValue" in ds:
        value = int(ds.PixelPaddingValue)
        limit = int(ds.get("PixelPaddingRangeLimit", value))
        norm[(stored >= min(value, limit)) & (stored <= max(value, limit))] = 0.0
    return norm
