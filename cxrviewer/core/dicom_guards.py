"""Guards applied to a DICOM stream before pydicom parses it.

- :class:`ClampedFile`: a read-only file whose ``read(n)`` never asks for more than what is left in the file.
  pydicom reads each value with ``fp.read(length)`` and CPython's buffered reader allocates ``length`` bytes
  before finding the file short, so an element declaring 2–4 GB in a 3 kB file would commit gigabytes.
- :func:`check_inflated_size`: for the Deflated Explicit VR Little Endian transfer syntax, pydicom inflates
  the whole data set in one ``zlib.decompress`` before any size check (a 0.6 MB file can inflate to
  gigabytes). The inflated size is measured first, in bounded chunks, and the file refused when it
  exceeds :data:`MAX_INFLATED_BYTES`.
"""

from __future__ import annotations

import io
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian

from cxrviewer.core.errors import LoadError

#: Largest data set a Deflated Explicit VR Little Endian file may inflate to: 256 MiB, i.e. ten 16-bit frames
#: of a large (18 MP) radiograph. pydicom then holds the inflated bytes and the values read from them.
MAX_INFLATED_BYTES = 256 << 20
_CHUNK = 1 << 20


class ClampedFile(io.BufferedReader):
    """A buffered, read-only file whose reads are clamped to the bytes left in the file."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(io.FileIO(os.fspath(path), "rb"))
        self._size = os.fstat(self.fileno()).st_size
        #: The first read that asked for more than the file still held: (bytes asked, bytes left, position
        #: of the read), or None.
        self.overrun: tuple[int, int, int] | None = None

    def read(self, size: int | None = -1) -> bytes:  # noqa: D102 - io.BufferedReader.read, clamped
        if size is not None and size > 0:
            left = max(0, self._size - self.tell())
            if size > left:
                if left and self.overrun is None:
                    self.overrun = (size, left, self.tell())
                if not left:
                    return b""
                size = left
        return super().read(size)


def check_inflated_size(fh: BinaryIO, where: Path | None, *, force: bool, limit: int | None = None) -> None:
    """Raise :class:`LoadError` when ``fh`` holds a deflated data set that inflates to more than ``limit``.

    Reads the file meta information (a file without it is not deflated), then inflates the rest in chunks of
    at most 1 MiB, keeping none of it. The stream is left at its start. ``limit`` defaults to
    :data:`MAX_INFLATED_BYTES`.
    """
    limit = MAX_INFLATED_BYTES if limit is None else limit
    start, overrun = fh.tell(), getattr(fh, "overrun", None)
    try:
        try:
            read_preamble(fh, force)
            meta = _read_file_meta_info(fh)
        except Exception:  # noqa: BLE001 - unreadable meta: pydicom's own read reports it
            return
        if str(meta.get("TransferSyntaxUID", "") or "") != DeflatedExplicitVRLittleEndian:
            return
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        total = 0
        while True:
            data = inflater.unconsumed_tail or fh.read(_CHUNK)
            if not data:
                break
            total += len(inflater.decompress(data, _CHUNK))
            if total > limit:
                raise LoadError(
                    f"the deflated data set expands to more than {limit >> 20} MiB "
                    "(a decompression bomb?); it was not read",
                    where,
                )
            if inflater.eof:
                break
    except zlib.error:
        return  # damaged deflate stream: pydicom's own read reports it
    finally:
        fh.seek(start)
        if isinstance(fh, ClampedFile):
            fh.overrun = overrun  # the chunked reads here are no overrun of a declared length
