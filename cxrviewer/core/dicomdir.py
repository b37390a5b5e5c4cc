"""Check a DICOMDIR's directory-record links before pydicom's :class:`~pydicom.fileset.FileSet` follows them.

A DICOMDIR links its records by byte offsets (first record of the root, next record, first record of the
lower level). pydicom follows them without a cycle guard, so a damaged or crafted index whose next-record
offset points back at an earlier record makes ``FileSet(ds)`` loop forever. :func:`check_record_links`
walks the same links with a visited set and refuses loops and dangling offsets.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from cxrviewer.core.errors import LoadError

_FIRST = "OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity"
_NEXT = "OffsetOfTheNextDirectoryRecord"
_LOWER = "OffsetOfReferencedLowerLevelDirectoryEntity"


def _offset(record: Dataset, keyword: str) -> int:
    try:
        return int(record.get(keyword, 0) or 0)
    except (TypeError, ValueError):
        return -1  # an unreadable offset is reported as dangling


def check_record_links(ds: Dataset) -> None:
    """Raise :class:`LoadError` when the directory records' offsets form a loop or point at no record.

    Every record is visited at most once (iteratively, so deep hierarchies cannot exhaust the stack).
    """
    records = {}
    for record in ds.get("DirectoryRecordSequence", None) or []:
        offset = getattr(record, "seq_item_tell", None)
        if offset is not None:
            records[int(offset)] = record
    if not records:
        return
    visited: set[int] = set()
    # Each entry starts a chain of siblings linked by next-record offsets.
    chains = [_offset(ds, _FIRST)]
    while chains:
        offset = chains.pop()
        while offset:
            if offset in visited:
                raise LoadError("the DICOMDIR's directory records link in a loop (damaged index)")
            record = records.get(offset)
            if record is None:
                raise LoadError(
                    f"the DICOMDIR links to a directory record that does not exist (offset {offset})"
                )
            visited.add(offset)
            lower = _offset(record, _LOWER)
            if lower:
                chains.append(lower)
            offset = _offset(record, _NEXT)
