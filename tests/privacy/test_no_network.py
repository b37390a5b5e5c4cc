"""No network use at run time: loading, the full analysis (CLI and pipeline) and similar-case search run
with every name lookup and outgoing connection made to raise."""

from __future__ import annotations

import json
import socket
import urllib.request

import cv2
import pytest

from tests.privacy.helpers import NetworkUsed, blocked_network, make_case_library, write_canary_dicom
from tests.runtime.models import make_runtime_model_dir, synthetic_cxr


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_runtime_model_dir(tmp_path_factory.mktemp("net") / "tiny")


@pytest.fixture()
def study(tmp_path):
    root = tmp_path / "study"
    root.mkdir()
    for i in range(2):
        cv2.imwrite(str(root / f"img{i}.png"), synthetic_cxr(120, 100, seed=i))
    write_canary_dicom(root / "img2.dcm")
    return root


def test_the_guard_blocks_lookups_and_connections():
    with blocked_network() as attempts:
        with pytest.raises(NetworkUsed):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
        with pytest.raises(NetworkUsed):
            socket.getaddrinfo("example.org", 443)
        with pytest.raises(NetworkUsed):
            urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)
        s = socket.socket()
        try:
            with pytest.raises(NetworkUsed):
                s.connect(("127.0.0.1", 9))
        finally:
            s.close()
    assert len(attempts) == 4


def test_full_analysis_with_case_library_uses_no_network(tmp_path, model_dir, study):
    from cxrviewer.cli_analyze import main
    from cxrviewer.core import load_image, load_studies
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.case_library import CaseLibrary, LibrarySet

    library = make_case_library(tmp_path / "mine.cxrlib", model_dir)
    out = tmp_path / "results.json"
    with blocked_network() as attempts:
        status = main(
            [str(study), "--model", str(model_dir), "--device", "cpu", "--threads", "1", "--out", str(out)]
        )
        settings = AnalysisSettings(model_dir=model_dir, device="cpu", threads=1)
        with LibrarySet([CaseLibrary.open(library, read_only=True)]) as libraries:
            pipeline = AnalysisPipeline(settings, libraries=libraries)
            results = [
                pipeline.analyze(load_image(ref.source).display(), name=ref.name)
                for ref in load_studies(study).images()
            ]
    assert attempts == []
    assert status in (0, 1)
    rows = json.loads(out.read_text())
    assert len(rows) == 3 and sum(r["status"] == "ok" for r in rows) >= 2
    assert len(results) == 3
    assert all(r.status == "ok" and r.neighbours for r in results), [r.reason for r in results]
