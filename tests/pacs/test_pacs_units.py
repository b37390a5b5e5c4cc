"""PACS pieces without a server: multipart reader, atomic cache, settings, keyring secrets, query building."""

from __future__ import annotations

from datetime import date

import keyring
import keyring.backend
import pytest

from cxrviewer.services import pacs
from cxrviewer.services.pacs import PacsClient, PacsError, PacsSettings, StudyQuery
from cxrviewer.services.pacs_cache import PacsCache, default_cache_root, safe_uid_name
from cxrviewer.services.pacs_multipart import TruncatedMultipart, boundary_of, iter_parts

BOUNDARY = b"b0und4ry"
BODIES = [b"first\r\n--not-the-boundary", b"", b"x" * 5000 + b"\r\n--b0und4r"]


def _message(bodies, close=True) -> bytes:
    out = b""
    for body in bodies:
        out += b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n" + body + b"\r\n"
    return out + (b"--" + BOUNDARY + b"--\r\n" if close else b"")


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 10_000])
def test_multipart_parts_survive_any_chunking(chunk):
    data = _message(BODIES)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert list(iter_parts(chunks, BOUNDARY)) == BODIES


def test_multipart_without_closing_boundary_is_truncated():
    parts = iter_parts([_message(BODIES, close=False)], BOUNDARY)
    assert next(parts) == BODIES[0] and next(parts) == BODIES[1]
    with pytest.raises(TruncatedMultipart):
        next(parts)
    with pytest.raises(TruncatedMultipart):
        list(iter_parts([_message(BODIES)[:-40]], BOUNDARY))


def test_boundary_of_content_type():
    assert boundary_of('multipart/related; type="application/dicom"; boundary="abc"') == b"abc"
    with pytest.raises(ValueError, match="multipart/related"):
        boundary_of("application/json")
    with pytest.raises(ValueError, match="no boundary"):
        boundary_of("multipart/related; type=application/dicom")


def test_cache_staging_is_atomic(tmp_path):
    cache = PacsCache(tmp_path / "c")
    with cache.staging("1.2.3") as st:
        (st / "a.dcm").write_bytes(b"old")
    assert cache.has_study("1.2.3") and (cache.study_dir("1.2.3") / "a.dcm").read_bytes() == b"old"
    with pytest.raises(RuntimeError), cache.staging("1.2.3") as st:
        (st / "a.dcm").write_bytes(b"half")
        raise RuntimeError("connection lost")
    assert (cache.study_dir("1.2.3") / "a.dcm").read_bytes() == b"old"
    assert [p.name for p in cache.root.iterdir()] == ["1.2.3"]
    with cache.staging("1.2.3") as st:
        (st / "b.dcm").write_bytes(b"new")
    assert sorted(p.name for p in cache.study_dir("1.2.3").iterdir()) == ["b.dcm"]
    assert cache.size_bytes() == 3
    assert [(s.study_uid, s.n_files, s.size_bytes) for s in cache.studies()] == [("1.2.3", 1, 3)]
    (cache.root / ".partial-crashed").mkdir()
    assert cache.remove_partials() == 1
    cache.clear()
    assert not cache.root.exists() and cache.studies() == [] and cache.size_bytes() == 0


def test_hostile_uids_cannot_escape_the_cache(tmp_path):
    cache = PacsCache(tmp_path / "c")
    for uid in ("../../etc", "/abs", "1.2.3/../../x", "a" * 200):
        name = safe_uid_name(uid)
        assert "/" not in name and ".." not in name and len(name) <= 64
        assert cache.study_dir(uid).parent == cache.root
    assert safe_uid_name("1.2.840.10008") == "1.2.840.10008"


def test_default_cache_is_in_the_user_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "cxrviewer" / "pacs"


def test_query_filters():
    q = StudyQuery(patient_name="doe", patient_id=" 42 ", date_from=date(2024, 1, 2), modality="cr")
    assert q.filters() == {
        "PatientName": "doe*",
        "PatientID": "42",
        "StudyDate": "20240102-",
        "ModalitiesInStudy": "CR",
    }
    assert StudyQuery(patient_name="D?E*").filters() == {"PatientName": "D?E*"}
    day = date(2024, 5, 6)
    assert StudyQuery(date_from=day, date_to=day).filters() == {"StudyDate": "20240506"}
    assert StudyQuery(date_to=day).filters() == {"StudyDate": "-20240506"}
    assert StudyQuery().filters() == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (PacsSettings(url="ftp://host/dicom-web"), "http:// or https://"),
        (PacsSettings(url="http://user:pw@host/dicom-web"), "Do not put the user name or password"),
        (PacsSettings(url="http://host/dw", auth="basic"), "needs a user name"),
        (PacsSettings(url="http://host/dw", auth="kerberos"), "Unknown sign-in method"),
        (PacsSettings(url="http://host/dw", timeout_s=0), "positive"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(PacsError, match=message):
        settings.validate()


def test_settings_round_trip_without_secrets():
    s = PacsSettings(url="https://pacs.example.org/dicom-web", name="Main", auth="token", timeout_s=12.5)
    data = s.to_dict()
    assert PacsSettings.from_dict({**data, "future_option": 1}) == s
    assert set(data) == {"url", "name", "auth", "username", "timeout_s", "verify_tls"}
    assert s.host == "pacs.example.org"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keyring (the test machine has no OS keyring)."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


def test_secrets_live_in_the_keyring(memory_keyring, tmp_path):
    s = PacsSettings(url="http://127.0.0.1:1/dicom-web", auth="basic", username="reader")
    with pytest.raises(PacsError, match="No password or token is stored"):
        PacsClient(s, cache=PacsCache(tmp_path))
    pacs.save_secret(s, "hunter2")
    assert memory_keyring.store == {
        (pacs.KEYRING_SERVICE, "basic:reader@http://127.0.0.1:1/dicom-web"): "hunter2"
    }
    client = PacsClient(s, cache=PacsCache(tmp_path))
    assert client._session.auth == ("reader", "hunter2")
    assert "hunter2" not in repr(client) and "hunter2" not in repr(s)
    token = PacsSettings(url="http://127.0.0.1:1/dicom-web", auth="token")
    pacs.save_secret(token, "tok-123")
    assert PacsClient(token, cache=PacsCache(tmp_path))._session.headers["Authorization"] == "Bearer tok-123"
    pacs.delete_secret(s)
    assert pacs.load_secret(s) is None


def test_no_keyring_gives_a_clear_error(tmp_path):
    import keyring.backends.fail

    previous = keyring.get_keyring()
    keyring.set_keyring(keyring.backends.fail.Keyring())
    try:
        s = PacsSettings(url="http://127.0.0.1:1/dicom-web", auth="basic", username="reader")
        with pytest.raises(PacsError, match="no system keyring is available"):
            pacs.save_secret(s, "pw")
        assert pacs.load_secret(s) is None
        pacs.delete_secret(s)  # no error
        assert PacsClient(s, secret="session-only", cache=PacsCache(tmp_path))._session.auth == (
            "reader",
            "session-only",
        )
    finally:
        keyring.set_keyring(previous)
