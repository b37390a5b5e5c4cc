"""A DICOMweb client for one PACS: QIDO-RS search, WADO-RS retrieve into the local cache, STOW-RS store.

Built on ``dicomweb-client`` (HTTP + multipart) and ``requests``. Every failure — server unreachable, wrong
credentials, a transfer cut off half-way, a malformed answer — surfaces as one exception type,
:class:`PacsError`, whose message says in plain words what happened and what to do; it never contains the
password or token. Secrets live in the operating system's keyring (``keyring``), never in
:class:`PacsSettings`, the settings files or the logs.

Typical use (what the "Open from PACS" dialog does)::

    settings = PacsSettings(url="https://pacs.example.org/dicom-web", auth="basic", username="reader")
    save_secret(settings, password)              # once, from the settings dialog
    client = PacsClient(settings)                # reads the secret from the keyring
    studies = client.search_studies(StudyQuery(patient_id="12345", modality="CR"))
    folder = client.retrieve_study(studies[0].study_uid)   # -> open with cxrviewer.core.load_studies(folder)
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import pydicom
import requests
from pydicom.dataset import Dataset

from cxrviewer.services.pacs_cache import PacsCache
from cxrviewer.services.pacs_multipart import TruncatedMultipart, boundary_of, iter_parts

WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CHUNK_BYTES = 1 << 20
#: Characters left unescaped in QIDO-RS values: wildcards, date ranges, lists (RFC 3986 allows them).
QUERY_SAFE = "*?-.,_"
AuthKind = Literal["none", "basic", "token"]
KEYRING_SERVICE = "cxrviewer-pacs"

#: Study-level attributes asked for in every QIDO-RS search.
STUDY_FIELDS = (
    "StudyInstanceUID",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)


class _RedactQueries(logging.Filter):
    """Removes URL query strings (a QIDO search holds the patient's name and ID) from log records."""

    _query = re.compile(r"\?[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            record.msg, record.args = self._query.sub("?<query redacted>", message), ()
        return True


# The app never logs patient data: urllib3 logs every request URL at DEBUG, dicomweb-client too.
logging.getLogger("urllib3.connectionpool").addFilter(_RedactQueries())
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)


class PacsError(Exception):
    """Talking to the PACS failed; the message is meant for the user (no secrets, no patient data)."""


class RetrieveCancelled(PacsError):
    """The user cancelled a retrieve; nothing was added to the cache."""


@dataclass
class PacsSettings:
    """One PACS server, as the settings dialog edits it. Holds no secret: see :func:`save_secret`.

    Attributes:
        url: the DICOMweb root, e.g. ``https://pacs.example.org/dicom-web`` (Orthanc: ``http://host:8042/dicom-web``).
        name: a label for the user.
        auth: ``none``, ``basic`` (user name + password) or ``token`` (a bearer token).
        username: the user name for basic auth.
        timeout_s: seconds to wait for the server to connect or send the next bytes.
        verify_tls: check the server's HTTPS certificate (turn off only for a self-signed test server).
    """

    url: str
    name: str = "PACS"
    auth: AuthKind = "none"
    username: str = ""
    timeout_s: float = 30.0
    verify_tls: bool = True

    def validate(self) -> None:
        """Raise :class:`PacsError` when the settings cannot work (bad URL, missing user name)."""
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsError(
                f"The PACS address must start with http:// or https:// and name a server (got {self.url!r})."
            )
        if parts.username or parts.password:
            raise PacsError(
                "Do not put the user name or password in the PACS address; use the sign-in fields."
            )
        if self.auth not in ("none", "basic", "token"):
            raise PacsError(f"Unknown sign-in method {self.auth!r}: choose none, basic or token.")
        if self.auth == "basic" and not self.username:
            raise PacsError("Basic sign-in needs a user name.")
        if not self.timeout_s > 0:
            raise PacsError("The PACS timeout must be a positive number of seconds.")

    @property
    def host(self) -> str:
        """``host:port`` of the server, for messages."""
        return urlsplit(self.url).netloc.rpartition("@")[2] or self.url

    @property
    def keyring_account(self) -> str:
        """The keyring entry for this server's secret: the sign-in method, user name and address."""
        return f"{self.auth}:{self.username}@{self.url.strip().rstrip('/')}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict for the application's settings file (no secret in it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PacsSettings:
        """The inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_secret(settings: PacsSettings, secret: str) -> None:
    """Store the password or token for ``settings`` in the OS keyring."""
    import keyring
    import keyring.errors

    try:
        keyring.set_password(KEYRING_SERVICE, settings.keyring_account, secret)
    except keyring.errors.KeyringError as exc:
        raise PacsError(
            "The password could not be saved because no system keyring is available "
            f"({type(exc).__name__}); it will be asked for each session."
        ) from None


def load_secret(settings: PacsSettings) -> str | None:
    """The stored password or token for ``settings``, or None (none stored, or no keyring on this system)."""
    import keyring
    import keyring.errors

    try:
        return keyring.get_password(KEYRING_SERVICE, settings.keyring_account)
    except keyring.errors.KeyringError:
        return None


def delete_secret(settings: PacsSettings) -> None:
    """Forget the stored password or token for ``settings`` (no error when there is none)."""
    import keyring
    import keyring.errors

    with contextlib.suppress(keyring.errors.KeyringError):
        keyring.delete_password(KEYRING_SERVICE, settings.keyring_account)


@dataclass
class StudyQuery:
    """A QIDO-RS study search, as the dialog's fields give it. Empty fields do not filter.

    ``patient_name`` matches from the start (``"DOE"`` finds ``DOE^JANE``) unless it already holds ``*``/``?``.
    """

    patient_name: str = ""
    patient_id: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    accession_number: str = ""
    limit: int = 200

    def filters(self) -> dict[str, str]:
        """The QIDO-RS query parameters."""
        out: dict[str, str] = {}
        name = self.patient_name.strip()
        if name:
            out["PatientName"] = name if any(c in name for c in "*?") else f"{name}*"
        if self.patient_id.strip():
            out["PatientID"] = self.patient_id.strip()
        if self.date_from or self.date_to:
            lo = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            hi = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            out["StudyDate"] = lo if lo == hi else f"{lo}-{hi}"
        if self.modality.strip():
            out["ModalitiesInStudy"] = self.modality.strip().upper()
        if self.accession_number.strip():
            out["AccessionNumber"] = self.accession_number.strip()
        return out


@dataclass
class StudySummary:
    """One study found by a search (the dialog's table row)."""

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession_number: str = ""
    modalities: list[str] = field(default_factory=list)
    n_series: int | None = None
    n_instances: int | None = None

    @classmethod
    def from_qido(cls, item: dict[str, Any]) -> StudySummary:
        """Parse one QIDO-RS JSON result."""
        ds = Dataset.from_json(item)

        def text(keyword: str) -> str:
            value = ds.get(keyword, "")
            return "" if value is None else str(value)

        def count(keyword: str) -> int | None:
            value = ds.get(keyword)
            return None if value in (None, "") else int(value)

        mods = ds.get("ModalitiesInStudy", [])
        if isinstance(mods, str):
            mods = [mods]
        return cls(
            study_uid=text("StudyInstanceUID"),
            patient_name=text("PatientName"),
            patient_id=text("PatientID"),
            patient_birth_date=text("PatientBirthDate"),
            study_date=text("StudyDate"),
            study_time=text("StudyTime"),
            description=text("StudyDescription"),
            accession_number=text("AccessionNumber"),
            modalities=[str(m) for m in mods if m],
            n_series=count("NumberOfStudyRelatedSeries"),
            n_instances=count("NumberOfStudyRelatedInstances"),
        )


@dataclass
class InstanceSummary:
    """One instance found by :meth:`PacsClient.search_instances`."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str


#: ``progress(received, expected)`` after each instance; ``expected`` is None when the server does not say.
#: Return False to cancel.
ProgressCallback = Callable[[int, int | None], bool | None]


class PacsClient:
    """A connection to one PACS (see module docstring). Not thread-safe: use one per worker thread.

    QIDO-RS and WADO-RS requests are made with ``requests`` directly (wildcards stay unescaped, as RFC 3986
    allows and Orthanc needs; multipart answers are read strictly, see :mod:`.pacs_multipart`); STOW-RS uses
    ``dicomweb-client``.
    """

    def __init__(
        self, settings: PacsSettings, secret: str | None = None, cache: PacsCache | None = None
    ) -> None:
        """``secret`` is the password/token for this session; when None it is read from the keyring."""
        settings.validate()
        self.settings = settings
        self.cache = cache if cache is not None else PacsCache()
        if settings.auth != "none" and secret is None:
            secret = load_secret(settings)
            if secret is None:
                raise PacsError(
                    f"No password or token is stored for {settings.host}; enter it in the PACS settings."
                )
        self._base = settings.url.strip().rstrip("/")
        self._session = _make_session(settings, secret)
        self._stow = _make_stow_client(self._base, self._session, settings.timeout_s)

    def __repr__(self) -> str:
        return f"PacsClient({self.settings.host!r}, auth={self.settings.auth!r})"

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def __enter__(self) -> PacsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- QIDO-RS -------------------------------------------------------------------------------------

    def check_connection(self) -> None:
        """Raise :class:`PacsError` unless the server answers a search with these credentials."""
        with self._errors("testing the connection"):
            self._qido("/studies", {}, ["StudyInstanceUID"], limit=1)

    def search_studies(self, query: StudyQuery | None = None) -> list[StudySummary]:
        """QIDO-RS study search; results sorted newest first."""
        query = query or StudyQuery()
        with self._errors("searching for studies"):
            items = self._qido("/studies", query.filters(), list(STUDY_FIELDS), limit=query.limit)
            studies = [StudySummary.from_qido(item) for item in items]
        studies.sort(key=lambda s: (s.study_date, s.study_time), reverse=True)
        return studies

    def search_instances(self, study_uid: str, modality: str = "") -> list[InstanceSummary]:
        """QIDO-RS instances of one study, optionally of one modality (e.g. ``SR``)."""
        filters = {"Modality": modality} if modality else {}
        fields_ = ["SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality"]
        with self._errors("listing the study's images"):
            out = []
            for item in self._qido(f"/studies/{_uid(study_uid)}/instances", filters, fields_):
                ds = Dataset.from_json(item)
                out.append(
                    InstanceSummary(
                        study_uid=str(ds.get("StudyInstanceUID", study_uid)),
                        series_uid=str(ds.get("SeriesInstanceUID", "")),
                        sop_uid=str(ds.get("SOPInstanceUID", "")),
                        sop_class_uid=str(ds.get("SOPClassUID", "")),
                        modality=str(ds.get("Modality", "")),
                    )
                )
        return out

    # --- WADO-RS -------------------------------------------------------------------------------------

    def retrieve_study(
        self, study_uid: str, progress: ProgressCallback | None = None, use_cached: bool = False
    ) -> Path:
        """WADO-RS retrieve of a whole study into the cache; returns the study's folder.

        Instances arrive in the transfer syntax the server stores them in and are written as DICOM files. The
        folder appears only once every instance arrived complete; on any failure (or when ``progress``
        returns False) nothing is added to the cache and the previous copy, if any, is kept.
        ``use_cached=True`` returns a study retrieved before without asking the server again.
        """
        study_path = f"/studies/{_uid(study_uid)}"
        if use_cached and self.cache.has_study(study_uid):
            return self.cache.study_dir(study_uid)
        expected = self._expected_instances(study_uid)
        received = 0
        with (
            self._errors("retrieving the study", lambda: received),
            self.cache.staging(study_uid) as staging,
        ):
            for ds in self._wado(study_path):
                path = self.cache.instance_path(staging, ds.SeriesInstanceUID, ds.SOPInstanceUID)
                path.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                received += 1
                if progress is not None and progress(received, expected) is False:
                    raise RetrieveCancelled("The retrieve was cancelled; nothing was saved.")
            if received == 0:
                raise PacsError(f"The PACS at {self.settings.host} has no images for this study.")
            if expected is not None and received < expected:
                raise PacsError(
                    f"The transfer from the PACS at {self.settings.host} stopped early: {received} of "
                    f"{expected} images arrived. Nothing was saved; try again."
                )
        return self.cache.study_dir(study_uid)

    def retrieve_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """WADO-RS retrieve of one instance, in memory (not cached)."""
        path = f"/studies/{_uid(study_uid)}/series/{_uid(series_uid)}/instances/{_uid(sop_uid)}"
        with self._errors("retrieving an image"):
            found = list(self._wado(path))
        if len(found) != 1:
            raise PacsError(f"The PACS at {self.settings.host} sent {len(found)} objects for one image.")
        return found[0]

    # --- STOW-RS -------------------------------------------------------------------------------------

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS: send the instances (e.g. an exported SR and Secondary Capture) to the server."""
        if not datasets:
            return
        with self._errors("storing the results"):
            answer = self._stow.store_instances([_as_part10(ds) for ds in datasets])
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsError(
                f"The PACS at {self.settings.host} refused {len(failed)} of {len(datasets)} objects "
                f"(failure reason {', '.join(reasons)})."
            )

    # --- helpers -------------------------------------------------------------------------------------

    def _get(self, path: str, accept: str, stream: bool = False) -> requests.Response:
        response = self._session.get(
            self._base + path,
            headers={"Accept": accept},
            stream=stream,
            timeout=self.settings.timeout_s,
        )
        if response.status_code >= 400:
            response.close()
        response.raise_for_status()
        return response

    def _qido(
        self, path: str, filters: dict[str, str], includefields: list[str], limit: int | None = None
    ) -> list[dict[str, Any]]:
        params = [(k, v) for k, v in filters.items()] + [("includefield", f) for f in includefields]
        if limit:
            params.append(("limit", str(limit)))
        query = "&".join(f"{quote(k)}={quote(str(v), safe=QUERY_SAFE)}" for k, v in params)
        response = self._get(f"{path}?{query}", "application/dicom+json")
        if response.status_code == 204 or not response.content.strip():
            return []
        return response.json()

    def _wado(self, path: str) -> Iterator[Dataset]:
        response = self._get(path, WADO_ACCEPT, stream=True)
        with response:
            boundary = boundary_of(response.headers.get("Content-Type", ""))
            for body in iter_parts(response.iter_content(CHUNK_BYTES), boundary):
                yield _parse_instance(body)

    def _expected_instances(self, study_uid: str) -> int | None:
        with self._errors("looking up the study"):
            items = self._qido("/studies", {"StudyInstanceUID": study_uid}, ["NumberOfStudyRelatedInstances"])
        if not items:
            raise PacsError(f"The PACS at {self.settings.host} does not have this study (any more).")
        return StudySummary.from_qido(items[0]).n_instances

    def _errors(self, action: str, received: Callable[[], int] | None = None) -> _ErrorTranslator:
        return _ErrorTranslator(self.settings.host, action, received)


class _ErrorTranslator:
    """Turns requests/dicomweb-client/pydicom exceptions raised inside ``with`` into :class:`PacsError`."""

    def __init__(self, host: str, action: str, received: Callable[[], int] | None) -> None:
        self.host, self.action, self.received = host, action, received

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, PacsError) or not isinstance(exc, Exception):
            return False
        raise PacsError(self.message(exc)) from exc

    def message(self, exc: BaseException) -> str:
        host, action = self.host, self.action
        interrupted = (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            requests.exceptions.ReadTimeout,
            TruncatedMultipart,
        )
        if isinstance(exc, interrupted) or (self.received is not None and self.received() > 0):
            got = f" after {self.received()} image(s)" if self.received is not None else ""
            return (
                f"The transfer from the PACS at {host} was interrupted{got} while {action}. "
                "Nothing was saved; check the connection and try again."
            )
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            code = exc.response.status_code
            if code in (401, 403):
                return (
                    f"The PACS at {host} refused the sign-in (HTTP {code}) while {action}. "
                    "Check the user name and password or token in the PACS settings."
                )
            if code == 404:
                return f"The PACS at {host} answered 'not found' (HTTP 404) while {action}. Check the DICOMweb address."
            return f"The PACS at {host} answered HTTP {code} ({exc.response.reason}) while {action}."
        if isinstance(exc, requests.exceptions.SSLError):
            return f"The secure connection to the PACS at {host} failed (certificate or TLS problem)."
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return f"The PACS at {host} did not answer in time while {action}. Check the address and the network."
        if isinstance(exc, requests.exceptions.ConnectionError):
            return (
                f"Cannot reach the PACS at {host} while {action}: the server is not running, or the address "
                "or port is wrong."
            )
        if isinstance(exc, requests.exceptions.RequestException):
            return f"The request to the PACS at {host} failed while {action} ({type(exc).__name__})."
        return (
            f"The PACS at {host} sent an answer that could not be read while {action} ({type(exc).__name__})."
        )


def _make_session(settings: PacsSettings, secret: str | None) -> requests.Session:
    session = requests.Session()
    session.verify = settings.verify_tls
    if settings.auth == "basic":
        session.auth = (settings.username, secret or "")
    elif settings.auth == "token":
        session.headers["Authorization"] = f"Bearer {secret or ''}"
    return session


def _make_stow_client(base: str, session: requests.Session, timeout_s: float) -> Any:
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=base, session=session, timeout=timeout_s)
    # One retry after 0.5 s for 429/503/504 answers, so a dead server does not stall the dialog for 15 s.
    client.set_http_retry_params(retry=True, max_attempts=2, wait_exponential_multiplier=500)
    return client


def _uid(uid: str) -> str:
    """A UID for a URL path; anything else is refused (no path tricks through a UID)."""
    uid = str(uid).strip()
    if not uid or any(c not in "0123456789." for c in uid):
        raise PacsError(f"{uid!r} is not a DICOM UID.")
    return uid


def _as_part10(ds: Dataset) -> Dataset:
    """``ds`` as read back from a complete DICOM file (preamble, file meta), which STOW-RS servers expect."""
    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    buf.seek(0)
    return pydicom.dcmread(buf)


def _parse_instance(body: bytes) -> Dataset:
    """One WADO-RS part as a dataset, checked complete. Parts without the 128-byte preamble are accepted."""
    ds = pydicom.dcmread(BytesIO(body), force=True)
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID"):
        if keyword not in ds:
            raise ValueError(f"an instance without {keyword}")
    _check_complete(ds)
    return ds


def _check_complete(ds: Dataset) -> None:
    """Raise ValueError when a native (uncompressed) image's pixel data is shorter than its header says.

    A cut-off multipart answer can hand over a truncated last part that pydicom still parses.
    """
    if "PixelData" not in ds or ds.file_meta.get("TransferSyntaxUID") is None:
        return
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    bits = int(ds.get("BitsAllocated", 8))
    n = int(ds.get("Rows", 0)) * int(ds.get("Columns", 0)) * int(ds.get("SamplesPerPixel", 1))
    n *= int(ds.get("NumberOfFrames", 1) or 1)
    expected = math.ceil(n * bits / 8)
    if len(ds.PixelData) < expected:
        raise ValueError(f"pixel data truncated ({len(ds.PixelData)} of {expected} bytes)")
