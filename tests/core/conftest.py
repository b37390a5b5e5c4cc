"""Fixtures for the core tests: the DICOM corpora (pydicom, pydicom-data, deid-data, shared data) and a
summary of what the corpus test loaded and refused."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pydicom.data

from tests.conftest import SHARED_DATA


def _package_dir(name: str, sub: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    return folder if folder.is_dir() else None


def corpus_dirs() -> dict[str, Path]:
    """Name → folder of every available test-file corpus."""
    dirs = {
        "pydicom": Path(pydicom.data.__file__).parent / "test_files",
        "pydicom-data": _package_dir("data_store", "data"),
        "deid-data": _package_dir("deid_data", "data"),
        "shared": SHARED_DATA / "dicom",
    }
    return {name: path for name, path in dirs.items() if path is not None and path.is_dir()}


def corpus_files() -> list[tuple[str, Path]]:
    """(corpus, file) for every file of every corpus, caches excluded."""
    files = []
    for name, folder in corpus_dirs().items():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py":
                files.append((name, path))
    return files


CORPUS_RESULTS: Counter[tuple[str, str]] = Counter()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not CORPUS_RESULTS:
        return
    terminalreporter.section("cxrviewer.core corpus: loaded / refused (LoadError)")
    for corpus in sorted({c for c, _ in CORPUS_RESULTS}):
        terminalreporter.write_line(
            f"{corpus:>13}: {CORPUS_RESULTS[(corpus, 'loaded')]:4d} loaded, "
            f"{CORPUS_RESULTS[(corpus, 'refused')]:4d} refused"
        )
