"""Shared fixtures: one tiny model directory with its ONNX graph, built once per session and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.runtime.models import make_runtime_model_dir


@pytest.fixture(scope="session")
def pristine_model_dir(tmp_path_factory) -> Path:
    """The tiny classifier with ``model.onnx`` recorded (read-only by convention: copy before changing it)."""
    return make_runtime_model_dir(tmp_path_factory.mktemp("runtime-model") / "tiny")


@pytest.fixture()
def model_copy(pristine_model_dir, tmp_path) -> Path:
    """A private copy of :func:`pristine_model_dir` that a test may modify (tamper with, delete files)."""
    return Path(shutil.copytree(pristine_model_dir, tmp_path / "model"))
