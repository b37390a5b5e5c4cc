"""Recognise a file's format from its first bytes (never from its extension) and read raster image sizes
from their headers, so that an oversized image is refused before it is decoded."""

from __future__ import annotations

import struct

#: How many leading bytes :func:`sniff_format` needs.
SNIFF_BYTES = 1024

_PNG = b"\x89PNG\r\n\x1a\n"
_DICOM_GROUPS = {0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028}
_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
    b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
    b"UR", b"US", b"UT", b"UV",
}  # fmt: skip


def sniff_format(head: bytes) -> str | None:
    """``"DICOM"`` (with preamble), ``"DICOM-RAW"`` (no preamble, but the first element looks like DICOM),
    ``"PNG"``, ``"JPEG"``, ``"TIFF"``, or None for anything else."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(_PNG):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if looks_like_raw_dicom(head):
        return "DICOM-RAW"
    return None


def looks_like_raw_dicom(head: bytes) -> bool:
    """Whether data without the 128-byte preamble starts like a DICOM data set.

    The first element must be in a group a DICOM file starts with (0002, 0008, 0010, 0018, 0020, 0028), with
    either a valid explicit VR or an implicit-VR length that fits the data.
    """
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, element = struct.unpack(order + "HH", head[:4])
        if group not in _DICOM_GROUPS or element > 0x1FFF:
            continue
        if head[4:6] in _VRS:
            return True
        (length,) = struct.unpack(order + "I", head[4:8])
        if order == "<" and (length == 0xFFFFFFFF or length <= 1 << 16) and (element == 0 or length > 0):
            return True
    return False


def raster_size(head: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or TIFF header, or None when it cannot be read from ``head``."""
    try:
        if fmt == "PNG":
            if head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            return None
        if fmt == "JPEG":
            return _jpeg_size(head)
        if fmt == "TIFF":
            return _tiff_size(head)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    width = height = None
    for i in range(count):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, typ = struct.unpack(order + "HH", entry[:4])
        value = struct.unpack(order + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
        if tag == 256:
            width = value
        elif tag == 257:
            height = value
    return (width, height) if width is not None and height is not None else None
