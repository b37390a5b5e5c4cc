"""Stable identifiers for images that carry none (PNG/JPEG/TIFF, or DICOM files missing their UIDs)."""

from __future__ import annotations

import hashlib

from cxrviewer.core.source import ImageSource


def derived_uid(source: ImageSource, level: str) -> str:
    """A DICOM-style UID (``2.25.<decimal>``, at most 44 characters) derived from the source's location.

    The same file at the same absolute path always gets the same UID; ``level`` (e.g. ``"study"``,
    ``"series"``, ``"instance"``) makes the UIDs of one file differ from each other.
    """
    digest = hashlib.sha1(f"{source.stable_key()}|{level}".encode("utf-8", "surrogatepass")).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def derived_patient_id(source: ImageSource) -> str:
    """A stable made-up patient id (``FILE-`` plus 12 hex digits) for a file without one."""
    return "FILE-" + source.stable_hash()[:12].upper()
