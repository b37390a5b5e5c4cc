"""Where an image lives: a file on disk or a member of a ZIP archive, always opened read-only.

:class:`ImageSource` is the reference that :func:`cxrviewer.core.load_studies` hands out and that
:func:`cxrviewer.core.load_image` accepts, so a study tree can be browsed from headers only and the pixels of one
image read on demand. ZIP members are read into memory (never extracted to the user's folders) and every read
is bounded by the limits below (zip-bomb guard).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cxrviewer.core.dicom_guards import ClampedFile
from cxrviewer.core.errors import LoadError

#: Largest single ZIP member that is read (uncompressed bytes).
MAX_MEMBER_BYTES = 1 << 30
#: Largest total of uncompressed bytes listed in one archive.
MAX_ARCHIVE_BYTES = 8 << 30
#: Most members read from one archive.
MAX_ARCHIVE_MEMBERS = 20_000
#: A member whose uncompressed size exceeds its compressed size by more than this factor (and that is
#: larger than :data:`RATIO_CHECK_MIN_BYTES`) is treated as a zip bomb.
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_MIN_BYTES = 16 << 20


@dataclass(frozen=True)
class ImageSource:
    """A file (``member is None``) or a member of the ZIP archive at ``path``.

    Attributes:
        path: the file, or the ZIP archive that holds the member.
        member: the member's name inside the archive (``/``-separated), or None for a plain file.
    """

    path: Path
    member: str | None = None

    @classmethod
    def of(cls, location: str | Path | ImageSource) -> ImageSource:
        """Coerce a path or an existing source into a source."""
        if isinstance(location, ImageSource):
            return location
        return cls(Path(location))

    @property
    def name(self) -> str:
        """A short display name: the file name, or ``archive.zip:member``."""
        if self.member is None:
            return self.path.name
        return f"{self.path.name}:{self.member}"

    @property
    def error_path(self) -> Path:
        """The path used in error messages (the member's name inside the archive, if any)."""
        return Path(self.name)

    def stable_key(self) -> str:
        """A string that identifies this source across runs (absolute path plus member)."""
        absolute = str(self.path.expanduser().absolute())
        return absolute if self.member is None else f"{absolute}::{self.member}"

    def stable_hash(self) -> str:
        """Hex SHA-1 of :meth:`stable_key`, used to derive ids for images without DICOM identifiers."""
        return hashlib.sha1(self.stable_key().encode("utf-8", "surrogatepass")).hexdigest()

    def read_bytes(self, limit: int | None = None) -> bytes:
        """Read the whole file or member (``limit`` bytes at most, from the start when given).

        Raises:
            LoadError: the file or member cannot be read, or the member fails the zip-bomb checks.
        """
        with self._errors_as_load_errors():
            if self.member is None:
                with open(self.path, "rb") as fh:
                    return fh.read() if limit is None else fh.read(limit)
            with zipfile.ZipFile(self.path) as zf:
                info = zf.getinfo(self.member)
                check_member(info)
                with zf.open(info) as fh:
                    return fh.read() if limit is None else fh.read(limit)

    def open_binary(self) -> io.BufferedIOBase:
        """An open, read-only binary stream: the file itself, or the member's bytes in memory.

        A file's reads are clamped to its size (:class:`~cxrviewer.core.dicom_guards.ClampedFile`), so a
        value declaring gigabytes in a small file never makes the reader allocate them.
        """
        if self.member is not None:
            return io.BytesIO(self.read_bytes())
        with self._errors_as_load_errors():
            return ClampedFile(self.path)  # reads never ask for more than the file holds

    @contextmanager
    def _errors_as_load_errors(self) -> Iterator[None]:
        """Translate OS and ZIP errors into :class:`LoadError` with a plain-words reason."""
        try:
            yield
        except LoadError:
            raise
        except FileNotFoundError as exc:
            raise LoadError("the file does not exist (moved or deleted?)", self.error_path) from exc
        except IsADirectoryError as exc:
            raise LoadError("this is a folder, not an image file", self.error_path) from exc
        except PermissionError as exc:
            raise LoadError("permission denied: the file cannot be read", self.error_path) from exc
        except KeyError as exc:
            raise LoadError("the archive no longer contains this file", self.error_path) from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
            raise LoadError(f"the ZIP archive is damaged or unsupported ({exc})", self.error_path) from exc
        except (OSError, RuntimeError, ValueError) as exc:
            raise LoadError(f"the file could not be read ({exc})", self.error_path) from exc


def check_member(info: zipfile.ZipInfo) -> None:
    """Refuse a ZIP member that is too large or compressed suspiciously well (zip bomb).

    Raises:
        LoadError: with the member's name and the limit it exceeds.
    """
    name = Path(info.filename)
    if info.file_size > MAX_MEMBER_BYTES:
        raise LoadError(
            f"the archived file is too large ({info.file_size / 1e6:.0f} MB, limit {MAX_MEMBER_BYTES / 1e6:.0f} MB)",
            name,
        )
    if info.file_size > RATIO_CHECK_MIN_BYTES and info.file_size > MAX_COMPRESSION_RATIO * max(
        info.compress_size, 1
    ):
        raise LoadError(
            f"the archived file expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
            "(a zip bomb?); it was not opened",
            name,
        )


def is_safe_member_name(name: str) -> bool:
    """False for absolute names, drive letters and ``..`` components (path traversal)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return False
    parts = name.replace("\\", "/").split("/")
    return ".." not in parts
