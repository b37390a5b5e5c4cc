"""The shipped lung U-Net and input gate run on ONNX Runtime without torch: through
``services.shipped_helpers`` and the analysis pipeline, and in ``cxrviewer --self-test --require-no-torch``
(fresh interpreters, so an import anywhere on the path would show up in ``sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cxrviewer.ml.manifest import load_manifest
from tests.conftest import REPO_ROOT

MODELS = REPO_ROOT / "models"
HELPERS = ("lung-unet", "input-gate")


def _need_shipped_models():
    for name in (*HELPERS, "cxr-classifier"):
        if not (MODELS / name / "manifest.json").is_file():
            pytest.skip(f"models/{name} is not present")


def _run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", HELPERS)
def test_shipped_helpers_list_a_verified_onnx_graph(name):
    """Every shipped helper lists its graph with a recorded torch/ONNX difference within 1e-4 (a retrained
    helper whose folder lost the graph fails here: run ``cxr-trainer export --model models/<name>``)."""
    if not (MODELS / name / "manifest.json").is_file():
        pytest.skip(f"models/{name} is not present")
    manifest = load_manifest(MODELS / name, verify=True)
    assert "onnx" in manifest.files, (
        f"models/{name} ships no ONNX graph: cxr-trainer export --model models/{name}"
    )
    record = manifest.extra["onnx"]
    assert record["max_abs_diff_vs_torch"] <= 1e-4 and "real images" in record["checked_on"]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_shipped_helpers_analyse_the_samples_without_importing_torch(device):
    from cxrviewer.ml.backends.selection import nvidia_driver_present

    _need_shipped_models()
    if device == "auto" and nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA driver: auto asks torch about CUDA")
    code = f"""
import json, sys
from pathlib import Path
from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings, read_display_image
from cxrviewer.services.shipped_helpers import load_shipped_helpers
gate, seg, notes = load_shipped_helpers(threads=1, device={device!r})
pipeline = AnalysisPipeline(
    AnalysisSettings(model_dir=Path("models/cxr-classifier"), device={device!r}, threads=1),
    gate=gate, segmenter=seg,
)
samples = sorted(p for p in Path("resources/samples").iterdir() if p.suffix in (".dcm", ".png"))
results = [r.to_json() for r in pipeline.iter_analyze(samples)]
print(json.dumps({{
    "notes": notes,
    "gate": gate.backend, "segmenter": seg.segmenter.backend,
    "mask_pixels": int(seg.segment(read_display_image(samples[0])).sum()),
    "results": [[r["status"], r["warnings"], r["saliency_outside_lungs"]] for r in results],
    "torch": "torch" in sys.modules, "onnxruntime": "onnxruntime" in sys.modules,
}}))
"""
    out = _run(code)
    assert out["notes"] == []
    assert out["gate"] == out["segmenter"] == "onnxruntime-cpu-fp32"
    assert out["mask_pixels"] > 0
    assert len(out["results"]) == 3
    for status, warnings, outside in out["results"]:
        assert status == "ok"
        assert not [w for w in warnings if "no input gate" in w or "no lung" in w], warnings
        assert outside is not None  # the lung mask was computed and used for the heatmap check
    assert out["onnxruntime"] and not out["torch"]


def test_self_test_loads_and_runs_the_helpers_without_torch():
    _need_shipped_models()
    proc = subprocess.run(
        [sys.executable, "-m", "cxrviewer", "--self-test", "--require-no-torch", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report["failures"]
    assert report["torch_imported"] is False
    checks = {c["name"]: c for c in report["checks"]}
    for name in HELPERS:
        assert checks[f"model:{name}"]["status"] == "ok"  # loaded, not "verified-only"
        assert checks[f"model:{name}"]["data"]["backend"] == "onnxruntime-cpu-fp32"
        run = checks[f"run:{name}"]
        assert run["ok"] and run["data"]["backend"] == "onnxruntime-cpu-fp32"
    for sample in ("sample_ap.dcm", "sample_pa.dcm", "sample_ap_followup.png"):
        assert checks["run:input-gate"]["data"][sample]["verdict"] == "ok"
        assert checks["run:lung-unet"]["data"][sample]["lungs"] == 2
    assert checks["no-torch"]["ok"]
