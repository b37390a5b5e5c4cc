"""ONNX Runtime's telemetry stays off: no device id, no event queue, nothing for its uploader to send.

The official onnxruntime wheels for Linux and macOS (1.2x and later) carry Microsoft's 1DS telemetry, on by
default: the first session writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid`` and an event
database that an uploader sends to ``mobile.events.data.microsoft.com``. The viewer must never send data
anywhere, so ``cxrviewer`` switches it off before onnxruntime can be imported. Each check runs a fresh
process with a throw-away HOME and a minimal environment (no ``CI`` variables, which would hide telemetry
by themselves).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ONNX = REPO / "models" / "lung-unet" / "model.onnx"
SAMPLE = REPO / "resources" / "samples" / "sample_pa.dcm"

pytest.importorskip("onnxruntime")


def _run(code_or_args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def _telemetry_files(home: Path) -> list[str]:
    root = home / ".cache" / "Microsoft"
    return sorted(str(p.relative_to(home)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_plain_onnxruntime_writes_telemetry_files(tmp_path):
    """Control: without our switch, this onnxruntime build writes its device id (so the next test can fail)."""
    if not ONNX.exists():
        pytest.skip("models/lung-unet/model.onnx is not there")
    code = (
        "import onnxruntime as ort\n"
        f"ort.InferenceSession({str(ONNX)!r}, providers=['CPUExecutionProvider'])\n"
    )
    done = _run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    if not _telemetry_files(tmp_path):
        pytest.skip("this onnxruntime build writes no telemetry files (nothing to switch off)")
    assert any(f.endswith("deviceid") for f in _telemetry_files(tmp_path))


def test_cxrviewer_analyze_leaves_no_telemetry_trace(tmp_path):
    """The headless analysis with the shipped ONNX models writes nothing under ~/.cache/Microsoft."""
    if not SAMPLE.exists() or not ONNX.exists():
        pytest.skip("bundled sample or shipped ONNX models missing")
    done = _run(["-m", "cxrviewer", "analyze", str(SAMPLE), "--json", "--device", "cpu"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status"' in done.stdout
    assert _telemetry_files(tmp_path) == []


def test_switch_holds_when_onnxruntime_is_imported_first_by_other_code(tmp_path):
    """Importing cxrviewer first (as the trainer and benchmarks do) is enough, and the runtime switch agrees."""
    if not ONNX.exists():
        pytest.skip("models/lung-unet/model.onnx is not there")
    code = (
        "import cxrviewer, os\n"
        "assert os.environ['ORT_DISABLE_TELEMETRY'] == '1'\n"
        "import onnxruntime as ort\n"
        f"ort.InferenceSession({str(ONNX)!r}, providers=['CPUExecutionProvider'])\n"
        "from cxrviewer.ml.backends.ort_backend import cpu_session\n"
        f"cpu_session({str(ONNX)!r}, threads=1)\n"
    )
    done = _run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _telemetry_files(tmp_path) == []
