"""Case libraries for "similar past cases": one SQLite file per library, searched by embedding.

A library holds cases — a small PNG thumbnail, a label, where the image came from (source, licence,
provenance) and the embedding that the named model computed for it — plus a metadata table: schema version,
name, kind (``reference`` shipped with the app, or ``user``), the embedding model id and dimension, and a
statement on whether its thumbnails may be redistributed (with the licence rule that decided it).

Storage choices:

- **One row per case.** Thumbnail and embedding are columns of the same row and every write is one
  transaction, so a case is either wholly there or absent, whatever kills the process mid-write (the test
  suite SIGKILLs writers repeatedly to check this).
- **WAL journal.** Readers (the viewer querying) never block on a writer (the user adding a case).
- **synchronous=FULL by default** (``durable=True``): each commit is fsynced, so a case the user saw
  added survives a power cut too; commits are rare and user-driven, so the fsync costs nothing noticeable.
  Bulk builders (``cxr-trainer build-index``) pass ``durable=False`` → ``synchronous=NORMAL``: in WAL mode
  that is still atomic and never corrupts the file (a crash or power cut can only drop the last commits),
  and a lost build is simply re-run — in exchange for no fsync per batch.
- **Never mix models.** Every embedding is stored with the id of the model that made it and the library
  records one model id; querying with another model raises :class:`LibraryModelMismatch` until the library
  is re-embedded (:meth:`CaseLibrary.reembed`, one all-or-nothing transaction) or rebuilt.
- **In-memory matrix.** Queries search an (N, d) matrix cached in memory (:class:`~cxrviewer.ml.retrieval.KnnIndex`),
  dropped after any write by this object and reloaded when ``PRAGMA data_version`` shows that another
  connection committed.

Libraries live by default in ``platformdirs.user_data_dir("cxrviewer")/libraries``. Nothing here sends data
anywhere or logs case contents.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from cxrviewer.core.preprocess import to_uint8
from cxrviewer.ml.retrieval import KnnIndex, Vote, l2_normalise, neighbour_vote
from cxrviewer.services.result import Neighbour as ResultNeighbour

SCHEMA_VERSION = 1
THUMBNAIL_SIZE = 128
LIBRARY_SUFFIX = ".cxrlib"
KINDS = ("reference", "user")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUSY_TIMEOUT_S = 10.0


class CaseLibraryError(Exception):
    """A case library cannot be opened, read or written (the message says why, for a person)."""


class LibraryModelMismatch(CaseLibraryError):
    """The library's embeddings come from another model than the one asking."""

    def __init__(self, library: str, library_model: str, query_model: str):
        self.library = library
        self.library_model = library_model
        self.query_model = query_model
        super().__init__(
            f"case library {library!r}: this library was built with model {library_model}; "
            f"rebuild it for model {query_model} (cxr-trainer build-index, or re-embed it) before "
            "searching it with that model"
        )


# ----------------------------------------------------------------------------------------------- licences

_CC = r"(?:cc|creative commons)"
_VERSION = r"(?: \d+(?:\.\d+)*)?"
_REDISTRIBUTABLE = [
    re.compile(
        rf"^{_CC} (?:by|attribution)(?: (?:sa|share ?alike))?{_VERSION}"
        r"(?: (?:international|unported|generic))?(?: licen[cs]e)?$"
    ),
    re.compile(rf"^(?:cc0|cc zero|{_CC} 0|{_CC} zero){_VERSION}(?: universal)?$"),
    re.compile(r"^(?:public domain|cc pdm|pdm)(?: mark)?" + _VERSION + "$"),
    re.compile(r"^apache(?: licen[cs]e)?(?: version)? 2(?:\.0)?$"),
    re.compile(r"^mit(?: licen[cs]e)?$"),
]
_NEVER = re.compile(
    r"\b(?:nc|nd|non ?commercial|no ?derivatives?|noderivs|unstated|unspecified|unknown|not stated|"
    r"none|proprietary|all rights reserved|research only)\b"
)

LICENCE_RULE = (
    "thumbnails are redistributable only for images licensed CC BY or CC BY-SA (any version), CC0, "
    "public domain, Apache-2.0 or MIT; never NonCommercial (NC), NoDerivatives (ND), unstated, "
    "unspecified or unknown licences"
)


def _normalise_licence(licence: str) -> str:
    return re.sub(r"[^a-z0-9.]+", " ", str(licence).lower()).strip(" .")


def licence_allows_redistribution(licence: str, extra_allowed: Iterable[str] = ()) -> bool:
    """Whether an image under ``licence`` may have its thumbnail shipped to others (see :data:`LICENCE_RULE`).

    ``extra_allowed`` lists further licence statements (compared case- and punctuation-insensitively) that
    the caller has checked by hand, e.g. ``"listed as authorized for everyone"``. NC and ND licences are
    refused even then: a thumbnail is a derivative and shipping it with the app may be commercial use.
    """
    norm = _normalise_licence(licence)
    if not norm or re.search(r"\b(?:nc|nd|non ?commercial|no ?derivatives?|noderivs)\b", norm):
        return False
    if norm in {_normalise_licence(x) for x in extra_allowed}:
        return True
    if _NEVER.search(norm):
        return False
    return any(p.match(norm) for p in _REDISTRIBUTABLE)


def licence_rule(extra_allowed: Iterable[str] = ()) -> str:
    """The rule as recorded in a library's metadata, including any hand-checked extra licences."""
    extra = sorted({str(x).strip() for x in extra_allowed if str(x).strip()})
    return LICENCE_RULE + (f"; also allowed by hand: {'; '.join(extra)}" if extra else "")


# -------------------------------------------------------------------------------------------------- paths


def default_library_dir() -> Path:
    """Where the user's libraries live: ``<user data dir>/cxrviewer/libraries`` (not created here)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("cxrviewer")) / "libraries"


def default_user_library_path() -> Path:
    """The user's own case library file."""
    return default_library_dir() / f"my-cases{LIBRARY_SUFFIX}"


# ------------------------------------------------------------------------------------------------- records


def make_thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """A grayscale PNG whose longest side is at most ``size`` pixels (uint8 or float-in-[0, 1] input)."""
    img = to_uint8(image)
    h, w = img.shape
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        img = cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise CaseLibraryError("could not encode the thumbnail as PNG")
    return buf.tobytes()


@dataclass(frozen=True)
class NewCase:
    """A case to add. ``thumbnail`` is PNG bytes or an image array (made into a thumbnail)."""

    thumbnail: bytes | np.ndarray
    embedding: np.ndarray
    label: str
    source: str = ""
    licence: str = ""
    provenance: str = ""
    redistributable: bool = False


@dataclass(frozen=True)
class Case:
    """A stored case. ``thumbnail`` and ``embedding`` are ``None`` in light listings (``cases(full=False)``)."""

    id: int
    label: str
    source: str
    licence: str
    provenance: str
    redistributable: bool
    created: str
    model_id: str
    thumbnail: bytes | None = None
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class Neighbour:
    """One retrieved case: its library, id, label and cosine distance to the query (0 = same direction)."""

    library: str
    case_id: int
    label: str
    distance: float
    source: str
    licence: str

    @property
    def similarity(self) -> float:
        """Cosine similarity, ``1 - distance``."""
        return 1.0 - self.distance


@dataclass(frozen=True)
class LibraryInfo:
    """A library's metadata table."""

    path: Path
    name: str
    kind: str
    model_id: str
    embedding_dim: int
    redistributable: str
    licence_rule: str
    created: str
    schema_version: int


def vote(neighbours: Sequence[Neighbour]) -> Vote:
    """Plain and distance-weighted label fractions of the neighbours (see :func:`~cxrviewer.ml.retrieval.neighbour_vote`)."""
    return neighbour_vote([n.label for n in neighbours], [n.distance for n in neighbours])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_SCHEMA = """
CREATE TABLE library (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    licence TEXT NOT NULL DEFAULT '',
    provenance TEXT NOT NULL DEFAULT '',
    redistributable INTEGER NOT NULL CHECK (redistributable IN (0, 1)),
    created TEXT NOT NULL,
    model_id TEXT NOT NULL,
    embedding BLOB NOT NULL CHECK (length(embedding) > 0 AND length(embedding) % 4 = 0),
    thumbnail BLOB NOT NULL CHECK (substr(thumbnail, 1, 8) = X'89504E470D0A1A0A')
);
"""
# The embedding column precedes the thumbnail so that loading embeddings never reads thumbnail pages.

_CASE_COLUMNS = "id, label, source, licence, provenance, redistributable, created, model_id"


@dataclass
class _Cache:
    version: int
    name: str
    model_id: str
    ids: np.ndarray
    labels: list[str]
    sources: list[str]
    licences: list[str]
    index: KnnIndex


class CaseLibrary:
    """One case library file. Open it with :meth:`open`; use as a context manager or call :meth:`close`.

    Safe to share between threads (one lock around the connection).
    """

    def __init__(self, path: Path, con: sqlite3.Connection, read_only: bool):
        self.path = path
        self.read_only = read_only
        self._con = con
        self._lock = threading.RLock()
        self._cache: _Cache | None = None

    # ---------------------------------------------------------------------------------------- open/close

    @classmethod
    def open(
        cls,
        path: str | Path,
        create: bool = False,
        read_only: bool = False,
        *,
        name: str | None = None,
        kind: str = "user",
        model_id: str | None = None,
        redistributable: str | None = None,
        licence_rule_text: str = "",
        durable: bool = True,
    ) -> CaseLibrary:
        """Open (or with ``create`` make) the library at ``path``.

        Args:
            path: the library file.
            create: create it if missing (with the metadata below; parent folders are made).
            read_only: open without write access (works on a read-only install folder when the file is
                not in WAL mode, see :meth:`finalise`).
            name, kind, model_id, redistributable, licence_rule_text: metadata for a new library. Without
                ``model_id`` the first case added sets it.
            durable: ``synchronous=FULL`` (True) or ``NORMAL`` for bulk builds; see the module docstring.
        """
        p = Path(path)
        if read_only and create:
            raise ValueError("a library cannot be created read-only")
        if kind not in KINDS:
            raise ValueError(f"library kind must be one of {KINDS}, got {kind!r}")
        exists = p.is_file()
        if not exists and not create:
            raise CaseLibraryError(f"no case library at {p}")
        if not exists:
            p.parent.mkdir(parents=True, exist_ok=True)
        con: sqlite3.Connection | None = None
        try:
            con = cls._connect(p, read_only)
            lib = cls(p, con, read_only)
            if not read_only:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            lib._init_or_check(
                name=name or p.stem,
                kind=kind,
                model_id=model_id or "",
                redistributable=redistributable
                or ("private: the user's own cases, not for redistribution" if kind == "user" else ""),
                licence_rule_text=licence_rule_text,
            )
        except BaseException as exc:
            if con is not None:
                con.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise CaseLibraryError(f"{p} is not a readable case library ({exc})") from exc
            raise
        return lib

    @staticmethod
    def _connect(path: Path, read_only: bool) -> sqlite3.Connection:
        kw = {"timeout": BUSY_TIMEOUT_S, "isolation_level": None, "check_same_thread": False}
        if not read_only:
            return sqlite3.connect(str(path), **kw)
        uri = path.resolve().as_uri()
        try:
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, **kw)
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError:
            # A WAL-mode file in a folder we cannot write has no -shm to map; without a pending -wal
            # the main file is complete, so open it as immutable.
            if Path(f"{path}-wal").exists():
                raise
            return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, **kw)

    def _init_or_check(self, **meta: str) -> None:
        tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            if self.read_only:
                raise CaseLibraryError(f"{self.path} is an empty file, not a case library")
            with self._transaction() as con:
                if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    values = dict(meta, schema_version=str(SCHEMA_VERSION), embedding_dim="0", created=_now())
                    con.executemany("INSERT INTO library(key, value) VALUES (?, ?)", sorted(values.items()))
            return
        if not {"library", "cases"} <= tables:
            raise CaseLibraryError(f"{self.path} is an SQLite file but not a case library")
        version = int(self._meta().get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise CaseLibraryError(
                f"{self.path} was written by a newer cxrviewer (library schema {version}); update the program"
            )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]
            self._cache = None

    def __enter__(self) -> CaseLibrary:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def finalise(self) -> None:
        """Fold the WAL into the main file and switch to a rollback journal, so the file is complete on
        its own and opens read-only from a read-only folder (do this before shipping a library)."""
        self._require_writable()
        with self._lock:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._con.execute("PRAGMA journal_mode=DELETE")

    # ------------------------------------------------------------------------------------------ metadata

    def _meta(self) -> dict[str, str]:
        with self._lock:
            return dict(self._con.execute("SELECT key, value FROM library").fetchall())

    @property
    def info(self) -> LibraryInfo:
        """The metadata table as a :class:`LibraryInfo`."""
        m = self._meta()
        return LibraryInfo(
            path=self.path,
            name=m.get("name", self.path.stem),
            kind=m.get("kind", "user"),
            model_id=m.get("model_id", ""),
            embedding_dim=int(m.get("embedding_dim", "0")),
            redistributable=m.get("redistributable", ""),
            licence_rule=m.get("licence_rule_text", ""),
            created=m.get("created", ""),
            schema_version=int(m.get("schema_version", "0")),
        )

    @property
    def name(self) -> str:
        """The library's display name."""
        return self.info.name

    def set_statement(self, redistributable: str, licence_rule_text: str | None = None) -> None:
        """Record the redistribution statement (and the licence rule that backs it)."""
        with self._transaction() as con:
            con.execute("UPDATE library SET value = ? WHERE key = 'redistributable'", (redistributable,))
            if licence_rule_text is not None:
                con.execute(
                    "UPDATE library SET value = ? WHERE key = 'licence_rule_text'", (licence_rule_text,)
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM cases").fetchone()[0])

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` when the file is sound)."""
        with self._lock:
            return "\n".join(r[0] for r in self._con.execute("PRAGMA integrity_check").fetchall())

    # ------------------------------------------------------------------------------------------- writing

    def _require_writable(self) -> None:
        if self.read_only:
            raise CaseLibraryError(f"case library {self.path.name} is open read-only")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._require_writable()
        with self._lock:
            con = self._con
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise CaseLibraryError(f"case library {self.path.name} is busy or locked ({exc})") from exc
            try:
                yield con
            except BaseException:
                if con.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
                    con.execute("ROLLBACK")
                raise
            else:
                con.execute("COMMIT")
            finally:
                self._cache = None

    def _prepare(self, case: NewCase, library_model: str, dim: int) -> tuple:
        thumb = case.thumbnail
        if isinstance(thumb, np.ndarray):
            thumb = make_thumbnail(thumb)
        thumb = bytes(thumb)
        if not thumb.startswith(PNG_SIGNATURE):
            raise ValueError("thumbnail must be PNG bytes or an image array")
        emb = l2_normalise(np.asarray(case.embedding).reshape(-1))
        if dim and emb.shape[0] != dim:
            raise ValueError(f"embedding has {emb.shape[0]} values; this library's model makes {dim}")
        if not str(case.label).strip():
            raise ValueError("a case needs a label")
        return (
            str(case.label),
            case.source,
            case.licence,
            case.provenance,
            int(bool(case.redistributable)),
            _now(),
            library_model,
            emb.tobytes(),
            thumb,
        )

    def add_cases(self, cases: Sequence[NewCase], model_id: str) -> list[int]:
        """Add several cases in one transaction (all or none); returns their ids."""
        with self._transaction() as con:
            meta = dict(con.execute("SELECT key, value FROM library").fetchall())
            lib_model, dim = meta.get("model_id", ""), int(meta.get("embedding_dim", "0"))
            if lib_model and lib_model != model_id:
                raise LibraryModelMismatch(meta.get("name", self.path.stem), lib_model, model_id)
            rows = []
            for case in cases:
                row = self._prepare(case, model_id, dim)
                dim = dim or len(row[7]) // 4
                rows.append(row)
            if not rows:
                return []
            if not lib_model or meta.get("embedding_dim") != str(dim):
                con.execute("UPDATE library SET value = ? WHERE key = 'model_id'", (model_id,))
                con.execute("UPDATE library SET value = ? WHERE key = 'embedding_dim'", (str(dim),))
            ids = []
            for row in rows:
                cur = con.execute(
                    f"INSERT INTO cases({_CASE_COLUMNS.removeprefix('id, ')}, embedding, thumbnail) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                ids.append(int(cur.lastrowid))
            return ids

    def add_case(
        self,
        thumbnail: bytes | np.ndarray,
        embedding: np.ndarray,
        label: str,
        *,
        model_id: str,
        source: str = "",
        licence: str = "",
        provenance: str = "",
        redistributable: bool = False,
    ) -> int:
        """Add one case (thumbnail and embedding in one transaction); returns its id.

        Raises:
            LibraryModelMismatch: ``model_id`` is not the model this library's embeddings come from.
            ValueError: the embedding's length differs from the library's, or the thumbnail is not PNG.
        """
        case = NewCase(thumbnail, embedding, label, source, licence, provenance, redistributable)
        return self.add_cases([case], model_id)[0]

    def remove_case(self, case_id: int) -> None:
        """Delete one case; ``KeyError`` if there is none with that id."""
        with self._transaction() as con:
            if con.execute("DELETE FROM cases WHERE id = ?", (int(case_id),)).rowcount == 0:
                raise KeyError(f"no case {case_id} in library {self.path.name}")

    def reembed(self, model_id: str, fn: Callable[[list[Case]], np.ndarray], batch_size: int = 64) -> int:
        """Recompute every embedding with a new model, in one transaction; returns the number of cases.

        ``fn`` receives full :class:`Case` records (thumbnail, provenance...) in batches and returns an
        (n, d) array of their new embeddings. Until this completes, queries with ``model_id`` raise
        :class:`LibraryModelMismatch`; if it fails or is killed, the library keeps its old embeddings
        (the write lock is held throughout, so no case is added meanwhile).
        """
        with self._transaction() as con:
            ids = [r[0] for r in con.execute("SELECT id FROM cases ORDER BY id")]
            dim = 0
            for start in range(0, len(ids), batch_size):
                batch = [self._get(con, i) for i in ids[start : start + batch_size]]
                new = np.asarray(fn(batch))
                if new.ndim != 2 or new.shape[0] != len(batch):
                    raise ValueError(f"re-embedding returned shape {new.shape} for {len(batch)} cases")
                new = l2_normalise(new)
                if dim and new.shape[1] != dim:
                    raise ValueError("re-embedding returned vectors of different lengths")
                dim = new.shape[1]
                con.executemany(
                    "UPDATE cases SET embedding = ?, model_id = ? WHERE id = ?",
                    [(v.tobytes(), model_id, c.id) for v, c in zip(new, batch, strict=True)],
                )
            con.execute("UPDATE library SET value = ? WHERE key = 'model_id'", (model_id,))
            if dim:
                con.execute("UPDATE library SET value = ? WHERE key = 'embedding_dim'", (str(dim),))
            return len(ids)

    # ------------------------------------------------------------------------------------------- reading

    @staticmethod
    def _row_to_case(row: tuple, full: bool) -> Case:
        base = dict(
            id=int(row[0]),
            label=row[1],
            source=row[2],
            licence=row[3],
            provenance=row[4],
            redistributable=bool(row[5]),
            created=row[6],
            model_id=row[7],
        )
        if full:
            base["embedding"] = np.frombuffer(row[8], dtype=np.float32).copy()
            base["thumbnail"] = bytes(row[9])
        return Case(**base)

    def _get(self, con: sqlite3.Connection, case_id: int) -> Case:
        row = con.execute(
            f"SELECT {_CASE_COLUMNS}, embedding, thumbnail FROM cases WHERE id = ?", (int(case_id),)
        ).fetchone()
        if row is None:
            raise KeyError(f"no case {case_id} in library {self.path.name}")
        return self._row_to_case(row, full=True)

    def thumbnail(self, case_id: int) -> bytes:
        """One case's PNG thumbnail; ``KeyError`` if absent."""
        with self._lock:
            row = self._con.execute("SELECT thumbnail FROM cases WHERE id = ?", (int(case_id),)).fetchone()
        if row is None:
            raise KeyError(f"no case {case_id} in library {self.path.name}")
        return bytes(row[0])

    def get(self, case_id: int) -> Case:
        """One case with its thumbnail and embedding; ``KeyError`` if absent."""
        with self._lock:
            return self._get(self._con, case_id)

    def cases(self, full: bool = False) -> list[Case]:
        """All cases by id; with ``full`` also their thumbnails and embeddings."""
        cols = _CASE_COLUMNS + (", embedding, thumbnail" if full else "")
        with self._lock:
            rows = self._con.execute(f"SELECT {cols} FROM cases ORDER BY id").fetchall()
        return [self._row_to_case(r, full) for r in rows]

    def needs_reembedding(self, model_id: str) -> bool:
        """True when any stored embedding (or the library's model) is not from ``model_id``.

        An empty library with no model yet needs nothing.
        """
        with self._lock:
            lib_model = self._meta().get("model_id", "")
            if lib_model and lib_model != model_id:
                return True
            other = self._con.execute(
                "SELECT 1 FROM cases WHERE model_id != ? LIMIT 1", (model_id,)
            ).fetchone()
            return other is not None

    def _data_version(self) -> int:
        return int(self._con.execute("PRAGMA data_version").fetchone()[0])

    def _loaded(self, model_id: str) -> _Cache:
        """The cached search matrix for ``model_id``, reloaded when this or another connection has written.

        Raises :class:`LibraryModelMismatch` (before loading anything) when the library is for another model.
        """
        version = self._data_version()
        cache = self._cache
        if cache is not None and cache.version == version:
            if cache.model_id and cache.model_id != model_id:
                raise LibraryModelMismatch(cache.name, cache.model_id, model_id)
            return cache
        meta = self._meta()
        name, lib_model = meta.get("name", self.path.stem), meta.get("model_id", "")
        if lib_model and lib_model != model_id:
            raise LibraryModelMismatch(name, lib_model, model_id)
        dim = int(meta.get("embedding_dim", "0"))
        rows = self._con.execute(
            "SELECT id, label, source, licence, model_id, embedding FROM cases ORDER BY id"
        ).fetchall()
        models = {r[4] for r in rows}
        if len(models) > 1 or (models and models != {lib_model}):
            raise CaseLibraryError(
                f"case library {name!r} holds embeddings from several models "
                f"({', '.join(sorted(models))}); re-embed it"
            )
        matrix = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32)
        matrix = matrix.reshape(len(rows), dim if rows else 0)
        self._cache = _Cache(
            version=version,
            name=name,
            model_id=lib_model,
            ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            labels=[r[1] for r in rows],
            sources=[r[2] for r in rows],
            licences=[r[3] for r in rows],
            index=KnnIndex(matrix, normalised=True),
        )
        return self._cache

    def preload(self, model_id: str) -> int:
        """Load the search matrix now (e.g. in a background thread at start-up); returns the case count.

        The first query otherwise pays for it (~1 s at 100,000 cases, see ``benchmarks/bench_retrieval.py``).
        """
        with self._lock:
            return self._loaded(model_id).index.size

    def query(self, embedding: np.ndarray, k: int = 4, *, model_id: str) -> list[Neighbour]:
        """The ``k`` cases nearest to ``embedding`` (cosine), nearest first.

        Raises:
            LibraryModelMismatch: the library was built with another model than ``model_id``.
        """
        with self._lock:
            cache = self._loaded(model_id)
        if cache.index.size == 0:
            return []
        idx, dist = cache.index.search(np.asarray(embedding, dtype=np.float32).reshape(-1), k)
        return [
            Neighbour(
                cache.name, int(cache.ids[i]), cache.labels[i], float(d), cache.sources[i], cache.licences[i]
            )
            for i, d in zip(idx, dist, strict=True)
        ]


class LibrarySet:
    """Several libraries searched together (the shipped reference library and the user's own).

    Results are merged by distance; each :class:`Neighbour` names its library.
    """

    def __init__(self, libraries: Iterable[CaseLibrary] = ()):
        self.libraries: list[CaseLibrary] = []
        for lib in libraries:
            self.add(lib)

    def add(self, library: CaseLibrary) -> None:
        """Search ``library`` too (library names must differ: results name their library)."""
        if any(lib.name == library.name for lib in self.libraries):
            raise ValueError(f"a library named {library.name!r} is already in the set")
        self.libraries.append(library)

    def library(self, name: str) -> CaseLibrary:
        """The library called ``name``; ``KeyError`` if none."""
        for lib in self.libraries:
            if lib.name == name:
                return lib
        raise KeyError(f"no case library named {name!r}")

    def thumbnail(self, neighbour: Neighbour) -> bytes:
        """The PNG thumbnail of a retrieved case."""
        return self.library(neighbour.library).thumbnail(neighbour.case_id)

    def result_neighbours(self, neighbours: Sequence[Neighbour]) -> list[ResultNeighbour]:
        """The neighbours as :class:`cxrviewer.services.result.Neighbour` records, thumbnails included."""
        return [
            ResultNeighbour(
                case_id=str(n.case_id),
                library=n.library,
                label=n.label,
                distance=n.distance,
                thumbnail_png=self.thumbnail(n),
                source=n.source,
                licence=n.licence,
            )
            for n in neighbours
        ]

    def stale(self, model_id: str) -> list[CaseLibrary]:
        """The libraries that must be re-embedded or rebuilt before ``model_id`` can search them."""
        return [lib for lib in self.libraries if lib.needs_reembedding(model_id)]

    def preload(self, model_id: str) -> int:
        """Load every up-to-date library's search matrix now; returns the number of cases searchable."""
        return sum(lib.preload(model_id) for lib in self.libraries if not lib.needs_reembedding(model_id))

    def query(
        self, embedding: np.ndarray, k: int = 4, *, model_id: str, skip_stale: bool = False
    ) -> list[Neighbour]:
        """The ``k`` nearest cases over all libraries, nearest first.

        A library built with another model raises :class:`LibraryModelMismatch`, or is left out with
        ``skip_stale`` (list those with :meth:`stale` to tell the user).
        """
        found: list[Neighbour] = []
        for lib in self.libraries:
            try:
                found.extend(lib.query(embedding, k, model_id=model_id))
            except LibraryModelMismatch:
                if not skip_stale:
                    raise
        found.sort(key=lambda n: (n.distance, n.library, n.case_id))
        return found[:k]

    def close(self) -> None:
        """Close every library."""
        for lib in self.libraries:
            lib.close()

    def __enter__(self) -> LibrarySet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
