"""Importing the runtime is cheap; the ONNX Runtime path never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HEAVY = ("torch", "onnxruntime", "PySide6")


def _modules_after(code: str) -> set[str]:
    full = f"import sys, json\n{code}\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", full], capture_output=True, text=True, check=True, timeout=120, cwd=REPO_ROOT
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_runtime_modules_loads_no_heavy_library():
    mods = _modules_after(
        "import cxrviewer.ml.predictor, cxrviewer.ml.onnx_export, cxrviewer.ml.backends.selection\n"
        "import cxrviewer.services.analysis, cxrviewer.cli_analyze, cxrviewer.__main__"
    )
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_onnxruntime_predictor_on_cpu_never_imports_torch(pristine_model_dir, device):
    from cxrviewer.ml.backends.selection import nvidia_driver_present

    if device == "auto" and nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: auto asks torch about CUDA")
    d = pristine_model_dir
    mods = _modules_after(
        "import numpy as np\n"
        "from cxrviewer.ml.predictor import Predictor\n"
        f"p = Predictor.load({str(d)!r}, device={device!r})\n"
        "assert p.backend == 'onnxruntime-cpu-fp32', p.backend\n"
        "p.predict([np.full((80, 70), 120, np.uint8)])"
    )
    assert "onnxruntime" in mods
    assert "torch" not in mods


def test_torch_backend_sets_passive_openmp_before_importing_torch(pristine_model_dir):
    code = (
        "import os, sys, json\n"
        "os.environ.pop('OMP_WAIT_POLICY', None)\n"
        "from cxrviewer.ml.predictor import Predictor\n"
        f"p = Predictor.load({str(pristine_model_dir)!r}, backend='torch-cpu-fp32')\n"
        "print(json.dumps([p.backend, os.environ.get('OMP_WAIT_POLICY')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["torch-cpu-fp32", "PASSIVE"]
