"""DICOM into a :class:`CxrImage`: Modality LUT → VOI (windows, VOI LUT sequence) → MONOCHROME1 inversion,
with pixel padding masked. Every transfer syntax pydicom can decode with the installed plugins (pylibjpeg,
python-gdcm) is supported; the frame is decoded alone (``pydicom.pixels.pixel_array(ds, index=frame)``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from cxrviewer.core.dicom_guards import check_inflated_size
from cxrviewer.core.errors import LoadError
from cxrviewer.core.identifiers import derived_patient_id, derived_uid
from cxrviewer.core.image import (
    CxrImage,
    DisplayPipeline,
    PixelPadding,
    stored_value_domain,
    uses_lookup_table,
)
from cxrviewer.core.limits import check_pixel_count
from cxrviewer.core.source import ImageSource
from cxrviewer.core.windowing import VOI_FUNCTIONS, Window, is_valid_window

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
#: Exceptions never turned into LoadError (everything else is, including decoder panics).
NOT_CAUGHT = (KeyboardInterrupt, SystemExit, GeneratorExit)
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR")
#: Decoder plugins in the order they are tried; python-gdcm is left out unless it is the only one
#: (see :func:`decoding_plugins`).
PLUGIN_PREFERENCE = ("pylibjpeg", "pydicom", "pyjpegls", "pillow")
_DECODER_HINTS = {
    "JPEG 2000": "pylibjpeg-openjpeg or python-gdcm",
    "JPEG-LS": "pylibjpeg-libjpeg or python-gdcm",
    "JPEG": "pylibjpeg-libjpeg or python-gdcm",
    "RLE": "pylibjpeg-rle",
}


def read_dataset(
    source: ImageSource,
    *,
    force: bool,
    stop_before_pixels: bool = False,
    defer_size: int | None = None,
    stream: BinaryIO | None = None,
) -> Dataset:
    """Read a data set (read-only); ``force`` for files without the 128-byte preamble.

    ``stream`` is the already-read content (e.g. a ZIP member); ``defer_size`` leaves larger values
    (pixel data) unread. A missing Transfer Syntax UID is filled in from the encoding pydicom detected, so
    that pixel data of files without file meta information can be decoded.
    """
    with stream if stream is not None else source.open_binary() as fh:
        check_inflated_size(fh, source.error_path, force=force)
        ds = pydicom.dcmread(fh, force=force, stop_before_pixels=stop_before_pixels, defer_size=defer_size)
        overrun = getattr(fh, "overrun", None)
    ensure_transfer_syntax(ds)
    if overrun is not None and not _after_pixel_data(ds, overrun[2]):
        _refuse_overrun(ds, source, *overrun[:2])
    return ds


def _after_pixel_data(ds: Dataset, position: int) -> bool:
    """Whether ``position`` lies after the start of the pixel data's value (trailing bytes appended to a
    complete image, e.g. a ZIP archive, do not make the image unreadable)."""
    for keyword in PIXEL_DATA_KEYWORDS:
        if keyword in ds:
            start = getattr(ds.get_item(keyword), "value_tell", None)
            return start is not None and position > start
    return False


def _refuse_overrun(ds: Dataset, source: ImageSource, asked: int, left: int) -> None:
    """Raise :class:`LoadError` for a value declared longer than the rest of the file (the pixel data's
    own message when it is the pixel data that is short)."""
    try:
        check_not_truncated(ds, source)
    except LoadError:
        raise
    except Exception:  # noqa: BLE001 - a header too damaged to compute the expected size: general message
        pass
    raise LoadError(
        f"the file is truncated or damaged: a value declares {_size(asked)} but only {_size(left)} follow",
        source.error_path,
    )


def read_header(source: ImageSource, *, force: bool, stream: BinaryIO | None = None) -> tuple[Dataset, bool]:
    """Read the header only (``stop_before_pixels``); returns it and whether pixel data follows.

    The pixel data element is recognised from the tag where pydicom stopped, so compressed pixel data is
    neither read nor decoded. Deflated files (whose stream position is not the file's) are read with large
    values deferred instead.
    """
    with stream if stream is not None else source.open_binary() as fh:
        check_inflated_size(fh, source.error_path, force=force)
        ds = pydicom.dcmread(fh, force=force, stop_before_pixels=True)
        ensure_transfer_syntax(ds)
        if UID(str(ds.file_meta.TransferSyntaxUID)).is_deflated:
            fh.seek(0)
            ds = pydicom.dcmread(fh, force=force, defer_size=4096)
            ensure_transfer_syntax(ds)
            return ds, any(k in ds for k in PIXEL_DATA_KEYWORDS)
        tag = fh.read(4)
    little = bool(getattr(ds, "original_encoding", (None, True))[1] is not False)
    if len(tag) < 4:
        return ds, False
    group, element = struct.unpack("<HH" if little else ">HH", tag)
    return ds, group == 0x7FE0 and element in (0x0008, 0x0009, 0x0010)


def ensure_transfer_syntax(ds: Dataset) -> None:
    """Set ``file_meta.TransferSyntaxUID`` from the detected encoding when the file has none."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def is_dicomdir(ds: Dataset) -> bool:
    """Whether the data set is a DICOMDIR (a media index, not an image)."""
    sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    return sop == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds


def describe_non_image(ds: Dataset) -> str:
    """Why a data set without pixel data is not an image, in words (names its SOP class when known)."""
    sop = ds.get("SOPClassUID")
    kind = UID(str(sop)).name if sop else ""
    kind = f"{kind}; " if kind and kind != str(sop) else ""
    return f"DICOM without pixel data ({kind}a structured report or other non-image object)"


def check_image_header(
    ds: Dataset, source: ImageSource, has_pixels: bool | None = None
) -> tuple[int, int, int]:
    """Validate what is needed before decoding; returns (rows, columns, number of frames).

    ``has_pixels`` says whether pixel data follows a header read with ``stop_before_pixels`` (see
    :func:`read_header`); None looks for it in ``ds``.

    Raises:
        LoadError: DICOMDIR, no pixel data, missing/implausible dimensions, too many pixels, or a
            transfer syntax without an installed decoder.
    """
    where = source.error_path
    if is_dicomdir(ds):
        raise LoadError("this is a DICOMDIR (the index of a DICOM disc): open it as a study", where)
    if has_pixels is None:
        has_pixels = any(k in ds for k in PIXEL_DATA_KEYWORDS)
    if not has_pixels:
        if (
            "Rows" in ds
            and "Columns" in ds
            and "SOPClassUID" in ds
            and "Image" in UID(str(ds.SOPClassUID)).name
        ):
            raise LoadError("the image's pixel data is missing: the file is truncated or damaged", where)
        raise LoadError(describe_non_image(ds), where)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise LoadError("the DICOM header lacks the image size (Rows/Columns)", where) from exc
    if rows <= 0 or cols <= 0:
        raise LoadError(f"the DICOM header gives an empty image ({rows} × {cols})", where)
    check_pixel_count(rows * cols * max(samples, 1), where)
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    check_decoder(ds, source)
    return rows, cols, max(frames, 1)


def check_decoder(ds: Dataset, source: ImageSource) -> None:
    """Raise :class:`LoadError` when the pixel data's compression cannot be decoded here."""
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    if not ts.is_transfer_syntax:
        raise LoadError(
            f"uses an unknown transfer syntax ({ts}); the pixels cannot be decoded", source.error_path
        )
    if not ts.is_compressed or any(k in ds for k in PIXEL_DATA_KEYWORDS[1:]):
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError as exc:
        raise LoadError(
            f"compressed with {ts.name}, which this program cannot decode", source.error_path
        ) from exc
    if not decoder.is_available:
        hint = next((v for k, v in _DECODER_HINTS.items() if k in ts.name), "pylibjpeg or python-gdcm")
        raise LoadError(
            f"compressed with {ts.name} but no decoder is installed (install {hint})", source.error_path
        )


def check_not_truncated(ds: Dataset, source: ImageSource) -> None:
    """Raise :class:`LoadError` when uncompressed pixel data is shorter than the header says."""
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    if ts.is_compressed or "PixelData" not in ds:
        return
    expected = get_expected_length(ds, "bytes")
    found = len(ds.PixelData or b"")
    if found < expected:
        raise LoadError(
            f"the pixel data is truncated (expected {_size(expected)}, found {_size(found)})",
            source.error_path,
        )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def read_dicom(source: ImageSource, *, force: bool, frame: int = 0) -> CxrImage:
    """Read one frame of a DICOM image (``force`` for files without preamble).

    Raises:
        LoadError: for every problem (pydicom's own exceptions are translated by :func:`load_image`).
    """
    ds = read_dataset(source, force=force)
    rows, cols, frames = check_image_header(ds, source)
    if not 0 <= frame < frames:
        raise LoadError(
            f"frame {frame + 1} was requested but the file has {frames} frame(s)", source.error_path
        )
    check_not_truncated(ds, source)
    arr = decode_frame(ds, frame, source)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip().upper()
    if arr.ndim == 3 or photometric in _COLOUR:
        return _colour_image(ds, arr, source, frame, frames, photometric)
    if arr.ndim != 2 or arr.shape != (rows, cols):
        raise LoadError(
            f"the decoded pixel data has shape {arr.shape}, not {rows} × {cols}", source.error_path
        )
    return _grey_image(ds, arr, source, frame, frames, photometric)


def decoding_plugins(ts: UID) -> list[str]:
    """The decoder plugins to try for ``ts``, in order: python-gdcm only when nothing else decodes it.

    pydicom tries python-gdcm first for the JPEG, JPEG-LS and JPEG 2000 syntaxes, and GDCM aborts the whole
    process (an uncaught C++ exception) on some corrupt JPEG Baseline images. pylibjpeg, pydicom's own RLE
    decoder, pyjpegls and pillow raise ordinary exceptions instead. ``[""]`` means pydicom's default
    (uncompressed data, or a syntax without a decoder, which :func:`check_decoder` has refused already).
    """
    if not ts.is_compressed:
        return [""]
    try:
        available = list(get_decoder(ts).available_plugins)
    except NotImplementedError:
        return [""]
    safe = sorted((p for p in available if p != "gdcm"), key=_plugin_rank)
    return safe or available or [""]


def _plugin_rank(plugin: str) -> int:
    return PLUGIN_PREFERENCE.index(plugin) if plugin in PLUGIN_PREFERENCE else len(PLUGIN_PREFERENCE)


def decode_frame(ds: Dataset, frame: int, source: ImageSource) -> np.ndarray:
    """Decode one frame with the plugins of :func:`decoding_plugins`, the next one tried when one fails.

    Raises:
        LoadError: no plugin decoded the frame (the first plugin's error is quoted).
    """
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    first: BaseException | None = None
    for plugin in decoding_plugins(ts):
        try:
            return pixel_array(ds, index=frame, decoding_plugin=plugin)
        except BaseException as exc:  # noqa: BLE001 - Rust decoders panic with a BaseException subclass
            if isinstance(exc, NOT_CAUGHT):
                raise
            if isinstance(exc, MemoryError):
                raise
            first = first or exc
    what = f"the {ts.name} compressed pixel data" if ts.is_compressed else "the pixel data"
    raise LoadError(f"{what} could not be decoded (damaged file?): {first}", source.error_path) from first


def _grey_image(
    ds: Dataset, arr: np.ndarray, source: ImageSource, frame: int, frames: int, photometric: str
) -> CxrImage:
    padding = _padding(ds)
    voi_lut = _voi_lut(ds)
    has_modality_lut = bool(ds.get("ModalityLUTSequence"))
    has_rescale = "RescaleSlope" in ds and "RescaleIntercept" in ds
    if uses_lookup_table(arr.dtype):
        modality_table = np.asarray(apply_modality_lut(stored_value_domain(arr.dtype), ds), dtype=np.float64)
        rescale = None if has_modality_lut else (1.0, 0.0)
        if has_modality_lut:
            pixels = modality_table.astype(np.float32)[arr.view(np.uint16 if arr.itemsize == 2 else np.uint8)]
        elif has_rescale:
            pixels = arr.astype(np.float32)
            rescale = (float(ds.RescaleSlope), float(ds.RescaleIntercept))
            pixels *= np.float32(rescale[0])
            pixels += np.float32(rescale[1])
        else:
            pixels = arr.astype(np.float32)
        pipeline = DisplayPipeline(
            pixels=pixels, invert=photometric == "MONOCHROME1", stored=arr, modality_table=modality_table,
            padding=padding, voi_lut=voi_lut, rescale=rescale,
        )  # fmt: skip
    else:
        pixels = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        pipeline = DisplayPipeline(
            pixels=pixels, invert=photometric == "MONOCHROME1", padding=padding, voi_lut=voi_lut
        )
        if padding is not None:  # padding is defined on stored values
            low, high = padding.bounds
            pipeline._pad_mask = (arr >= low) & (arr <= high)
    function = _voi_function(ds)
    return _make_image(
        ds, pixels, pipeline, source, frame, frames, photometric,
        windows=_windows(ds, function), function=function, has_voi_lut=voi_lut is not None, padding=padding,
    )  # fmt: skip


def _colour_image(
    ds: Dataset, arr: np.ndarray, source: ImageSource, frame: int, frames: int, photometric: str
) -> CxrImage:
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        try:
            arr = apply_color_lut(arr, ds)
        except (ValueError, AttributeError, KeyError, IndexError) as exc:
            raise LoadError(
                f"the palette colour table is missing or damaged ({exc})", source.error_path
            ) from exc
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise LoadError(f"unsupported colour layout (shape {arr.shape})", source.error_path)
    rgb = arr[:, :, :3].astype(np.float32)
    pixels = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    bits = int(ds.get("BitsStored", 8) or 8)
    if photometric == "PALETTE COLOR":
        bits = 16 if arr.dtype.itemsize == 2 else 8
    top = float(2 ** min(bits, 32) - 1)
    pipeline = DisplayPipeline(pixels=pixels, fixed_auto_window=Window(top / 2.0, top, "full colour range"))
    image = _make_image(
        ds, pixels, pipeline, source, frame, frames, photometric,
        windows=(), function="LINEAR_EXACT", has_voi_lut=False, padding=None,
    )  # fmt: skip
    image.metadata["converted_from_color"] = True
    return image


def _make_image(
    ds: Dataset,
    pixels: np.ndarray,
    pipeline: DisplayPipeline,
    source: ImageSource,
    frame: int,
    frames: int,
    photometric: str,
    *,
    windows: tuple[Window, ...],
    function: str,
    has_voi_lut: bool,
    padding: PixelPadding | None,
) -> CxrImage:
    spacing, spacing_source = _spacing(ds)
    view = str(ds.get("ViewPosition", "") or "").strip() or None
    return CxrImage(
        pixels=pixels,
        source=source,
        format="DICOM",
        photometric_interpretation=photometric,
        invert=pipeline.invert,
        windows=windows,
        voi_lut_function=function,
        has_voi_lut_sequence=has_voi_lut,
        pixel_padding=padding,
        pixel_spacing=spacing,
        pixel_spacing_source=spacing_source,
        view_position=view,
        patient_id=_text(ds, "PatientID") or derived_patient_id(source),
        study_instance_uid=_text(ds, "StudyInstanceUID") or derived_uid(source, "study"),
        series_instance_uid=_text(ds, "SeriesInstanceUID") or derived_uid(source, "series"),
        sop_instance_uid=_text(ds, "SOPInstanceUID") or derived_uid(source, "instance"),
        frame=frame,
        number_of_frames=frames,
        metadata=dicom_metadata(ds, source),
        pipeline=pipeline,
    )


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword, "")
    except Exception:  # noqa: BLE001 - a malformed element is treated as absent
        return ""
    return str(value or "").strip()


def dicom_metadata(ds: Dataset, source: ImageSource) -> dict[str, Any]:
    """A small dict of descriptive header values (plain str/int; absent values left out)."""
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    meta: dict[str, Any] = {
        "format": "DICOM",
        "file_name": source.name,
        "transfer_syntax": ts.name,
        "transfer_syntax_uid": str(ts),
    }
    texts = {
        "modality": "Modality", "body_part": "BodyPartExamined", "manufacturer": "Manufacturer",
        "manufacturer_model": "ManufacturerModelName", "study_date": "StudyDate", "study_time": "StudyTime",
        "study_description": "StudyDescription", "series_description": "SeriesDescription",
        "patient_name": "PatientName", "patient_sex": "PatientSex", "patient_age": "PatientAge",
        "accession_number": "AccessionNumber", "laterality": "ImageLaterality", "sop_class_uid": "SOPClassUID",
    }  # fmt: skip
    for key, keyword in texts.items():
        value = _text(ds, keyword)
        if value:
            meta[key] = value
    numbers = {
        "rows": "Rows", "columns": "Columns", "bits_stored": "BitsStored", "bits_allocated": "BitsAllocated",
        "pixel_representation": "PixelRepresentation", "samples_per_pixel": "SamplesPerPixel",
        "series_number": "SeriesNumber", "instance_number": "InstanceNumber",
    }  # fmt: skip
    for key, keyword in numbers.items():
        try:
            value = ds.get(keyword)
            if value is not None and value != "":
                meta[key] = int(value)
        except (TypeError, ValueError):
            continue
    return meta


def _spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            if value is None or len(value) < 2:
                continue
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0:
            return (row, col), keyword
    return None, None


def _multi(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _voi_function(ds: Dataset) -> str:
    function = _text(ds, "VOILUTFunction").upper()
    return function if function in VOI_FUNCTIONS else "LINEAR"


def _windows(ds: Dataset, function: str) -> tuple[Window, ...]:
    try:
        centers = _multi(ds.get("WindowCenter"))
        widths = _multi(ds.get("WindowWidth"))
        explanations = _multi(ds.get("WindowCenterWidthExplanation"))
    except (TypeError, ValueError):
        return ()
    windows = []
    for i, (center, width) in enumerate(zip(centers, widths, strict=False)):
        try:
            c, w = float(center), float(width)
        except (TypeError, ValueError):
            continue
        if is_valid_window(c, w, function):
            text = str(explanations[i]) if i < len(explanations) else ""
            windows.append(Window(c, w, text))
    return tuple(windows)


def _padding(ds: Dataset) -> PixelPadding | None:
    try:
        value = ds.get("PixelPaddingValue")
        if value is None or value == "":
            return None
        limit = ds.get("PixelPaddingRangeLimit")
        return PixelPadding(
            float(_multi(value)[0]), float(_multi(limit)[0]) if limit not in (None, "") else None
        )
    except (TypeError, ValueError, IndexError):
        return None


def voi_lut_output_max(lut: np.ndarray, nominal_bits: int) -> float:
    """The value that maps to white for a VOI LUT: ``2**bits - 1``, where ``bits`` is the LUT Descriptor's
    nominal depth, or the bit length of the largest entry when that is smaller (a common descriptor error)."""
    actual_bits = max(int(lut.max()).bit_length(), 1) if lut.size else nominal_bits
    return float(2 ** min(nominal_bits, actual_bits) - 1)


def _voi_lut(ds: Dataset) -> Callable[[np.ndarray], np.ndarray] | None:
    """The first VOI LUT as a function of modality values → [0, 1] (pydicom's table semantics), or None."""
    sequence = ds.get("VOILUTSequence")
    if not sequence:
        return None
    try:
        descriptor = [int(v) for v in sequence[0].LUTDescriptor]
        entries, first = descriptor[0] or 65536, descriptor[1]
        # pydicom parses the LUT data (US/OW, endianness); feeding it every index reads the table out.
        lut = np.asarray(apply_voi(np.arange(first, first + entries, dtype=np.int64), ds), dtype=np.float64)
        if lut.size != entries:
            return None
        top = voi_lut_output_max(lut, descriptor[2])
    except Exception:  # noqa: BLE001 - an unreadable VOI LUT is ignored; windows or auto-window apply
        return None
    if top <= 0:
        return None

    def apply(values: np.ndarray) -> np.ndarray:
        index = np.floor(values.astype(np.float64) - first)
        np.nan_to_num(index, copy=False, nan=0.0)
        np.clip(index, 0, entries - 1, out=index)
        return lut[index.astype(np.intp)] / top

    return apply
