"""Streaming reader of ``multipart/related`` answers (DICOMweb WADO-RS), strict about completeness.

Unlike a lenient decoder, it raises :class:`TruncatedMultipart` when the answer ends before its closing
boundary, so a server that dies mid-transfer can never hand over a cut-off last instance as if it were whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class TruncatedMultipart(ValueError):
    """The multipart body ended before its closing boundary (the transfer was cut off)."""


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a ``multipart/related`` Content-Type; ValueError for other media types."""
    media, *params = (p.strip() for p in content_type.split(";"))
    if media.lower() != "multipart/related":
        raise ValueError(f"expected a multipart/related answer, got {media or 'no content type'!r}")
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary" and value.strip().strip('"'):
            return value.strip().strip('"').encode("ascii")
    raise ValueError("the multipart answer names no boundary")


def iter_parts(chunks: Iterable[bytes], boundary: bytes) -> Iterator[bytes]:
    """Yield the body (headers stripped) of each part as soon as it is complete.

    ``chunks`` is the raw HTTP body in pieces (``response.iter_content``). Memory stays at about one part plus
    one chunk.
    """
    delimiter = b"\r\n--" + boundary
    buf = bytearray(b"\r\n")  # lets the first boundary (which has no leading CRLF) match ``delimiter``
    search_from = 0
    in_part = False
    for chunk in chunks:
        buf += chunk
        while True:
            i = buf.find(delimiter, search_from)
            if i < 0 or len(buf) < i + len(delimiter) + 2:
                # No complete delimiter yet: resume the search where a delimiter could still begin.
                search_from = max(0, len(buf) - len(delimiter) - 2) if i < 0 else i
                break
            if in_part:
                yield _part_body(bytes(buf[:i]))
            tail = bytes(buf[i + len(delimiter) : i + len(delimiter) + 2])
            if tail == b"--":
                return
            del buf[: i + len(delimiter)]
            search_from = 0
            in_part = True
    raise TruncatedMultipart("the answer ended before its closing boundary")


def _part_body(part: bytes) -> bytes:
    """Strip a part's leading CRLF and MIME headers."""
    head_end = part.find(b"\r\n\r\n")
    if head_end < 0:
        raise ValueError("a multipart part has no header/body separator")
    return part[head_end + 4 :]
