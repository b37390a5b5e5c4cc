"""Run a code snippet in a fresh interpreter on a real CXR with the shipped models (for "never imports X" checks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def run_on_shipped_models(code: str, tmp_path: Path, shared_data: Path) -> subprocess.CompletedProcess:
    """``python -c code IMAGE`` (IMAGE: the first cohen JPEG of the shared data) offscreen, with no user case
    library (XDG_DATA_HOME is ``tmp_path``); skips when no shipped ONNX classifier is installed. Asserts exit 0."""
    from cxrviewer.resources import models_dir

    if not (models_dir() / "cxr-classifier" / "model.onnx").is_file():
        pytest.skip("no shipped classifier")
    image = sorted((shared_data / "cxr" / "images" / "cohen").glob("*.jpg"))[0]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code, str(image)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out
