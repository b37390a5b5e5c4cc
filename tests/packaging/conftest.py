"""Fixtures for the packaging tests: a models folder holding the tiny ONNX test classifier."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models_root(tmp_path_factory) -> Path:
    """``models/`` with one classifier (tiny, untrained, ONNX graph recorded) — read-only by convention."""
    from tests.runtime.models import make_runtime_model_dir

    root = tmp_path_factory.mktemp("pkg-models")
    make_runtime_model_dir(root / "tiny-test-classifier")
    return root


@pytest.fixture()
def models_copy(tiny_models_root, tmp_path) -> Path:
    """A private copy of :func:`tiny_models_root` that a test may tamper with."""
    return Path(shutil.copytree(tiny_models_root, tmp_path / "models"))
