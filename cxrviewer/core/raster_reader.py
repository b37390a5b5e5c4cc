"""PNG, JPEG and TIFF (8- or 16-bit, grey or colour) into a :class:`CxrImage`.

Colour images are converted to grey (ITU-R BT.601 luma, alpha ignored). 8-bit images are shown as stored
(the automatic window spans 0–255 exactly); 16-bit images get a window spanning their minimum–maximum.
Each image is its own patient/study/series with ids derived from its location.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cxrviewer.core.errors import LoadError
from cxrviewer.core.identifiers import derived_patient_id, derived_uid
from cxrviewer.core.image import CxrImage, DisplayPipeline, uses_lookup_table
from cxrviewer.core.limits import check_pixel_count
from cxrviewer.core.sniff import raster_size
from cxrviewer.core.source import ImageSource
from cxrviewer.core.windowing import Window


def read_raster(source: ImageSource, data: bytes, fmt: str) -> CxrImage:
    """Decode raster ``data`` (the whole file) of format ``fmt`` (``"PNG"``, ``"JPEG"``, ``"TIFF"``).

    Raises:
        LoadError: too large, damaged, or an unsupported sample type.
    """
    where = source.error_path
    size = raster_size(data, fmt)
    if size is not None:
        check_pixel_count(size[0] * size[1], where)
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise LoadError(f"the {fmt} image is damaged or truncated and could not be decoded", where)
    check_pixel_count(arr.shape[0] * arr.shape[1], where)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if arr.ndim == 3:
        arr = _to_grey(arr, where)
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise LoadError(f"{fmt} images with {arr.dtype} samples are not supported (use 8 or 16 bits)", where)
    arr = np.ascontiguousarray(arr)
    pixels = arr.astype(np.float32)
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arr.dtype, 32)
    if arr.dtype == np.uint8:
        auto = Window(127.5, 255.0, "full 8-bit range")
    elif arr.dtype == np.uint16:  # integers are finite: no 5-Mpixel finite-mask copy of a detector image
        low, high = cv2.minMaxLoc(arr)[:2]
        auto = Window.from_range(float(low), float(high), "image minimum to maximum")
    else:
        finite = pixels[np.isfinite(pixels)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        auto = Window.from_range(low, high, "image minimum to maximum")
    stored = arr if uses_lookup_table(arr.dtype) else None
    pipeline = DisplayPipeline(pixels=pixels, stored=stored, rescale=(1.0, 0.0), fixed_auto_window=auto)
    return CxrImage(
        pixels=pixels,
        source=source,
        format=fmt,
        photometric_interpretation="MONOCHROME2",
        invert=False,
        windows=(),
        voi_lut_function="LINEAR_EXACT",
        has_voi_lut_sequence=False,
        pixel_padding=None,
        pixel_spacing=None,
        pixel_spacing_source=None,
        view_position=None,
        patient_id=derived_patient_id(source),
        study_instance_uid=derived_uid(source, "study"),
        series_instance_uid=derived_uid(source, "series"),
        sop_instance_uid=derived_uid(source, "instance"),
        frame=0,
        number_of_frames=1,
        metadata={
            "format": fmt,
            "rows": int(arr.shape[0]),
            "columns": int(arr.shape[1]),
            "bits_stored": bits,
            "channels_in_file": int(channels),
            "converted_from_color": channels >= 3,
            "file_name": source.name,
        },
        pipeline=pipeline,
    )


def _to_grey(arr: np.ndarray, where: Path) -> np.ndarray:
    channels = arr.shape[2]
    if channels in (1, 2):  # grey (+ alpha)
        return arr[:, :, 0]
    if channels == 3:
        code = cv2.COLOR_BGR2GRAY
    elif channels == 4:
        code = cv2.COLOR_BGRA2GRAY
    else:
        raise LoadError(f"images with {channels} channels are not supported", where)
    if arr.dtype in (np.uint8, np.uint16, np.float32):
        return cv2.cvtColor(arr, code)
    return arr[:, :, :3].astype(np.float32) @ np.array([0.114, 0.587, 0.299], dtype=np.float32)
