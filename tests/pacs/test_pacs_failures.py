"""Failures give one exception type with a human message and lose nothing: unreachable server, wrong
credentials, Orthanc killed mid-retrieve, a server that cuts its answer, a cancelled retrieve."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import signal
import threading
import time
import uuid

import pytest
import requests

from cxrviewer.services.pacs import PacsClient, PacsError, PacsSettings, RetrieveCancelled, StudyQuery
from cxrviewer.services.pacs_cache import PacsCache
from cxrviewer.services.pacs_multipart import TruncatedMultipart
from tests.pacs.orthanc import PASSWORD, USER, free_port
from tests.pacs.synthetic import make_cr


def _assert_cache_empty(cache: PacsCache) -> None:
    assert cache.studies() == []
    leftovers = list(cache.root.iterdir()) if cache.root.exists() else []
    assert leftovers == [], leftovers


def test_unreachable_server(tmp_path):
    cache = PacsCache(tmp_path / "cache")
    client = PacsClient(
        PacsSettings(url=f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=5), cache=cache
    )
    start = time.monotonic()
    with pytest.raises(PacsError, match="Cannot reach the PACS at 127.0.0.1") as err:
        client.search_studies(StudyQuery(patient_name="X"))
    assert time.monotonic() - start < 5
    assert "server is not running" in str(err.value)
    with pytest.raises(PacsError, match="Cannot reach"):
        client.retrieve_study("1.2.3")
    _assert_cache_empty(cache)


def test_wrong_credentials_never_leak_the_password(orthanc, tmp_path, caplog):
    cache = PacsCache(tmp_path / "cache")
    bad = "wrong-pass-5d41402abc"
    settings = PacsSettings(url=orthanc.dicomweb_url, auth="basic", username=USER)
    client = PacsClient(settings, secret=bad, cache=cache)
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(PacsError, match=r"refused the sign-in \(HTTP 401\)") as err,
    ):
        client.search_studies(StudyQuery(patient_name="SECRETNAME"))
    assert bad not in str(err.value) and bad not in repr(client) and bad not in json.dumps(settings.to_dict())
    assert "GET /dicom-web/studies?<query redacted>" in caplog.text  # requests are logged...
    assert bad not in caplog.text  # ...without the secret
    assert "SECRETNAME" not in caplog.text  # ...and without patient data
    with pytest.raises(PacsError, match="sign-in"):
        client.check_connection()
    with pytest.raises(PacsError, match="sign-in"):
        client.retrieve_study("1.2.3.4")
    _assert_cache_empty(cache)
    PacsClient(settings, secret=PASSWORD, cache=cache).check_connection()  # the right one works


def _upload_big_study(server, n: int, size: int):
    first = make_cr("KILL^TEST", "KILL-1", size=size, seed=0)
    instances = [first] + [
        make_cr(
            "KILL^TEST",
            "KILL-1",
            study_uid=first.StudyInstanceUID,
            series_uid=first.SeriesInstanceUID,
            size=size,
            seed=i,
        )
        for i in range(1, n)
    ]
    settings = PacsSettings(url=server.dicomweb_url, auth="basic", username=USER)
    with PacsClient(settings, secret=PASSWORD, cache=PacsCache(server.workdir / "unused")) as c:
        c.store(instances)
    return first.StudyInstanceUID


def test_orthanc_killed_mid_retrieve_keeps_the_previous_copy(private_orthanc, tmp_path):
    study = _upload_big_study(private_orthanc, n=12, size=1024)  # 12 x 2 MiB
    cache = PacsCache(tmp_path / "cache")
    settings = PacsSettings(url=private_orthanc.dicomweb_url, auth="basic", username=USER, timeout_s=10)
    client = PacsClient(settings, secret=PASSWORD, cache=cache)
    folder = client.retrieve_study(study)  # a complete first copy
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.dcm")}
    assert len(before) == 12

    def kill_after_first(n, total):
        if n == 1:
            os.kill(private_orthanc.process.pid, signal.SIGKILL)
            private_orthanc.process.wait(10)

    with pytest.raises(PacsError) as err:
        client.retrieve_study(study, progress=kill_after_first)
    message = str(err.value)
    assert "interrupted" in message or "stopped early" in message, message
    assert "Nothing was saved" in message
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*.dcm")}
    assert after == before  # the earlier copy is intact
    assert [p.name for p in cache.root.iterdir()] == [folder.name]  # no partial folder left
    with pytest.raises(PacsError, match="Cannot reach"):
        client.retrieve_study(study)
    assert client.retrieve_study(study, use_cached=True) == folder  # the cached copy opens offline


class _CuttingServer(http.server.BaseHTTPRequestHandler):
    """Answers a study lookup with 2 instances, then sends a WADO-RS answer that stops part-way."""

    mode = "short-body"
    instances: list = []
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's name
        if "/studies?" in self.path:
            body = json.dumps(
                [
                    {
                        "0020000D": {"vr": "UI", "Value": [self.instances[0].StudyInstanceUID]},
                        "00201208": {"vr": "IS", "Value": [2]},
                    }
                ]
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        boundary = uuid.uuid4().hex
        parts = b""
        for ds in self.instances:
            import io

            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            parts += (
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue() + b"\r\n"
            )
        whole = parts + f"--{boundary}--\r\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        if self.mode == "short-body":  # announces everything, sends 60 %, closes
            self.send_header("Content-Length", str(len(whole)))
            self.end_headers()
            self.wfile.write(whole[: int(len(whole) * 0.6)])
        else:  # "no-closing-boundary": close-delimited body that stops inside the second part
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(whole[: len(whole) - 5000])
        self.wfile.flush()
        self.close_connection = True


@contextlib.contextmanager
def _cutting_server(mode: str):
    first = make_cr("CUT^TEST", "CUT-1", seed=0)
    second = make_cr(
        "CUT^TEST", "CUT-1", study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID, seed=1
    )
    handler = type("Handler", (_CuttingServer,), {"mode": mode, "instances": [first, second]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web", first.StudyInstanceUID
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["short-body", "no-closing-boundary"])
def test_server_that_cuts_its_answer(mode, tmp_path):
    cache = PacsCache(tmp_path / "cache")
    with _cutting_server(mode) as (url, study):
        client = PacsClient(PacsSettings(url=url, timeout_s=5), cache=cache)
        with pytest.raises(PacsError, match="interrupted") as err:
            client.retrieve_study(study)
    expected_cause = requests.exceptions.ChunkedEncodingError if mode == "short-body" else TruncatedMultipart
    assert isinstance(err.value.__cause__, expected_cause)
    assert "Nothing was saved" in str(err.value)
    _assert_cache_empty(cache)


def test_cancelled_retrieve_saves_nothing(orthanc, tmp_path):
    settings = PacsSettings(url=orthanc.dicomweb_url, auth="basic", username=USER)
    first = make_cr("CANCEL^TEST", "CANCEL-1")
    second = make_cr(
        "CANCEL^TEST",
        "CANCEL-1",
        study_uid=first.StudyInstanceUID,
        series_uid=first.SeriesInstanceUID,
        seed=1,
    )
    cache = PacsCache(tmp_path / "cache")
    client = PacsClient(settings, secret=PASSWORD, cache=cache)
    client.store([first, second])
    with pytest.raises(RetrieveCancelled, match="cancelled"):
        client.retrieve_study(first.StudyInstanceUID, progress=lambda n, total: False)
    _assert_cache_empty(cache)
    with pytest.raises(PacsError, match="does not have this study"):
        client.retrieve_study("1.2.3.999")
    with pytest.raises(PacsError, match="not a DICOM UID"):
        client.retrieve_study("../../etc")
