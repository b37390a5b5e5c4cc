"""``load_image``: one entry point for DICOM, PNG, JPEG and TIFF, raising only :class:`LoadError`."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.core.dicom_reader import NOT_CAUGHT, read_dicom
from cxrviewer.core.errors import LoadError
from cxrviewer.core.image import CxrImage
from cxrviewer.core.raster_reader import read_raster
from cxrviewer.core.sniff import SNIFF_BYTES, sniff_format
from cxrviewer.core.source import ImageSource

NOT_AN_IMAGE = "not a DICOM or image file (PNG, JPEG, TIFF)"


def load_image(path: str | Path | ImageSource, frame: int = 0) -> CxrImage:
    """Load one frame of a DICOM, PNG, JPEG or TIFF image, a file or a ZIP member (:class:`ImageSource`).

    The format is recognised from the content, not the extension. Files are opened read-only and never
    modified. Images over :data:`cxrviewer.core.limits.MAX_PIXELS` are refused from their header, before
    decoding.

    Args:
        path: a file path, or an :class:`ImageSource` from :func:`cxrviewer.core.load_studies`.
        frame: 0-based frame of a multi-frame DICOM (other formats have only frame 0).

    Raises:
        LoadError: for every failure, with the file name and a plain-words reason; no other exception
            escapes.
    """
    try:
        source = ImageSource.of(path)
    except TypeError as exc:
        raise LoadError(f"not a file path: {path!r}") from exc
    try:
        return _load(source, int(frame))
    except LoadError:
        raise
    except MemoryError as exc:
        raise LoadError("not enough memory to open this image", source.error_path) from exc
    except RecursionError as exc:
        raise LoadError(
            "the file's structure is too deeply nested (damaged file?)", source.error_path
        ) from exc
    except BaseException as exc:  # noqa: BLE001 - the contract: nothing but LoadError leaves the loader
        if isinstance(exc, NOT_CAUGHT):  # (a Rust decoder's panic is a BaseException: it is caught)
            raise
        raise LoadError(_describe(exc), source.error_path) from exc


def _load(source: ImageSource, frame: int) -> CxrImage:
    if source.member is None and source.path.is_dir():
        raise LoadError("this is a folder, not an image file: open it as a study", source.error_path)
    head = source.read_bytes(SNIFF_BYTES)
    if not head:
        raise LoadError("the file is empty", source.error_path)
    fmt = sniff_format(head)
    if fmt is None:
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            raise LoadError("this is a ZIP archive, not an image: open it as a study", source.error_path)
        raise LoadError(NOT_AN_IMAGE, source.error_path)
    if fmt in ("DICOM", "DICOM-RAW"):
        return read_dicom(source, force=fmt == "DICOM-RAW", frame=frame)
    if frame != 0:
        raise LoadError(f"frame {frame + 1} was requested but a {fmt} image has only one", source.error_path)
    return read_raster(source, source.read_bytes(), fmt)


def _describe(exc: BaseException) -> str:
    """A reason for a pydicom/numpy failure that escaped the specific checks."""
    name = type(exc).__name__
    if name == "InvalidDicomError":
        return f"{NOT_AN_IMAGE} (the DICOM header is invalid)"
    if isinstance(exc, (EOFError,)) or "truncat" in str(exc).lower() or "end of file" in str(exc).lower():
        return "the file is truncated (incomplete copy or download?)"
    return f"the file is damaged or uses an unsupported encoding ({name}: {exc})"
