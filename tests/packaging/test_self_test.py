"""``cxrviewer --self-test``: passes on a working installation, fails on a missing or tampered classifier,
and proves that the ONNX Runtime path never imports torch (run in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cxrviewer.self_test import SelfTestSettings, run_self_test

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> tuple[int, dict, str]:
    """Run ``python -m cxrviewer --self-test ARGS`` in a fresh interpreter: (exit status, JSON, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "cxrviewer", "--self-test", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_onnx_classifier_passes_without_importing_torch(tiny_models_root):
    rc, report, err = _cli("--models", str(tiny_models_root), "--require-no-torch", "--device", "cpu")
    assert rc == 0, err
    assert report["ok"] and report["mode"] == "analysis" and report["failures"] == []
    assert report["torch_imported"] is False
    checks = {c["name"]: c for c in report["checks"]}
    loaded = checks["classifier:tiny-test-classifier"]
    assert loaded["data"]["backend"] == "onnxruntime-cpu-fp32"
    analysed = [c for c in report["checks"] if c["name"].startswith("analyse:")]
    assert {c["name"] for c in analysed} == {
        "analyse:sample_ap.dcm",
        "analyse:sample_pa.dcm",
        "analyse:sample_ap_followup.png",
    }
    for check in analysed:
        probs = check["data"]["probabilities"]
        assert set(probs) == {"normal", "pneumonia", "covid"}
        assert abs(sum(probs.values()) - 1.0) < 1e-3
    exports = checks["exports"]  # report (PDF, PNG), DICOM SR and SC of a DICOM sample, written and sized
    assert exports["status"] == "ok"
    assert set(exports["data"]["bytes"]) == {"report.pdf", "report.png", "sr.dcm", "sc.dcm"}
    assert min(exports["data"]["bytes"].values()) > 1000
    assert "self-test passed" in err


def test_no_classifier_fails_unless_allowed(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    report = run_self_test(SelfTestSettings(models_root=empty))
    assert not report.ok and report.mode == "viewing only"
    assert any("cannot analyse" in f for f in report.failures)
    # the sample still opens: the viewing part of the installation is checked either way
    assert [c.name for c in report.checks if c.name.startswith("open:") and c.ok]

    allowed = run_self_test(SelfTestSettings(models_root=empty, allow_no_model=True))
    assert allowed.ok and allowed.mode == "viewing only"
    assert [c.status for c in allowed.checks if c.name == "classifier"] == ["absent-allowed"]


def test_tampered_classifier_fails_with_the_file_named(models_copy):
    onnx = models_copy / "tiny-test-classifier" / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    report = run_self_test(SelfTestSettings(models_root=models_copy, device="cpu"))
    assert not report.ok
    (failure,) = report.failures
    assert (
        failure.startswith("model:tiny-test-classifier") and "model.onnx" in failure and "SHA-256" in failure
    )
    assert not [c for c in report.checks if c.name.startswith("analyse:")]  # never analysed with it


def test_failed_analysis_is_a_failure(tiny_models_root, tmp_path):
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "broken.dcm").write_bytes(b"DICM but not really a DICOM file")
    report = run_self_test(SelfTestSettings(models_root=tiny_models_root, samples_dir=samples, device="cpu"))
    assert not report.ok
    assert sorted(f.split(": ")[0] for f in report.failures) == ["analyse:broken.dcm", "open:broken.dcm"]
    assert [c.status for c in report.checks if c.name == "exports"] == ["skipped"]


def test_report_json_round_trips(tmp_path):
    report = run_self_test(SelfTestSettings(models_root=tmp_path, allow_no_model=True))
    data = json.loads(json.dumps(report.to_json()))
    assert data["ok"] is True and data["intended_use"].startswith("Research use only")
