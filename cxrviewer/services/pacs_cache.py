"""The local cache of studies retrieved from a PACS: one folder per study, filled atomically.

Layout: ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` — plain DICOM files that
:func:`cxrviewer.core.load_studies` opens like any local folder. A study is downloaded into a hidden
``.partial-*`` folder beside it and renamed into place only when every instance has arrived, so an interrupted
transfer never leaves a half study where the viewer would find it. The user can clear the cache at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import platformdirs

PARTIAL_PREFIX = ".partial-"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def default_cache_root() -> Path:
    """``user_cache_dir("cxrviewer")/pacs`` (e.g. ``~/.cache/cxrviewer/pacs`` on Linux)."""
    return Path(platformdirs.user_cache_dir("cxrviewer", appauthor=False)) / "pacs"


def safe_uid_name(uid: str) -> str:
    """A file-system name for a UID sent by a server: the UID itself when it is a well-formed DICOM UID,
    otherwise a hash of it (a hostile server cannot make ``../`` paths)."""
    uid = str(uid).strip()
    if _UID_RE.match(uid) and len(uid) <= 64:
        return uid
    return "x" + hashlib.sha256(uid.encode("utf-8", "replace")).hexdigest()[:32]


@dataclass(frozen=True)
class CachedStudy:
    """A complete study in the cache."""

    study_uid: str
    path: Path
    n_files: int
    size_bytes: int


class PacsCache:
    """The folder of retrieved studies (see module docstring). Safe to share between clients of one process."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def study_dir(self, study_uid: str) -> Path:
        """Where the complete study lives (it may not exist yet)."""
        return self.root / safe_uid_name(study_uid)

    def has_study(self, study_uid: str) -> bool:
        """Whether the study was retrieved completely before."""
        return self.study_dir(study_uid).is_dir()

    def instance_path(self, staging: Path, series_uid: str, sop_uid: str) -> Path:
        """The file for one instance inside a staging (or final) study folder."""
        return staging / safe_uid_name(series_uid) / f"{safe_uid_name(sop_uid)}.dcm"

    @contextlib.contextmanager
    def staging(self, study_uid: str) -> Iterator[Path]:
        """A fresh hidden folder to download one study into.

        On normal exit it replaces the study's folder in one rename; on any exception it is deleted, the
        previous copy of the study (if any) stays untouched and the exception propagates.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{safe_uid_name(study_uid)}-", dir=self.root))
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = self.study_dir(study_uid)
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}old-", dir=self.root))
            os.replace(final, old / "study")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def studies(self) -> list[CachedStudy]:
        """The complete studies in the cache, by folder name."""
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or d.name.startswith(PARTIAL_PREFIX):
                continue
            files = [f for f in d.rglob("*.dcm") if f.is_file()]
            out.append(CachedStudy(d.name, d, len(files), sum(f.stat().st_size for f in files)))
        return out

    def size_bytes(self) -> int:
        """Bytes used by the cache, unfinished downloads included."""
        if not self.root.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def remove_partials(self) -> int:
        """Delete unfinished downloads left by a crash; returns how many were removed."""
        if not self.root.is_dir():
            return 0
        partials = [d for d in self.root.iterdir() if d.name.startswith(PARTIAL_PREFIX)]
        for d in partials:
            shutil.rmtree(d, ignore_errors=True)
        return len(partials)

    def clear(self) -> None:
        """Delete every cached study (the user's "Clear PACS cache")."""
        if self.root.is_dir():
            shutil.rmtree(self.root)
