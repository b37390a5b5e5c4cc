"""Fixtures for the PACS tests: a real Orthanc (one per session, plus a private one for the kill test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pacs.orthanc import OrthancServer, orthanc_missing_reason, start_orthanc


def _running_orthanc(workdir: Path) -> Iterator[OrthancServer]:
    reason = orthanc_missing_reason()
    if reason:
        pytest.skip(reason)
    server = start_orthanc(workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A running Orthanc with DICOMweb and basic auth, shared by the session's PACS tests."""
    yield from _running_orthanc(tmp_path_factory.mktemp("orthanc"))


@pytest.fixture
def private_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An Orthanc of the test's own (it may be killed)."""
    yield from _running_orthanc(tmp_path_factory.mktemp("orthanc-private"))
