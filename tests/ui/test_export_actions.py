"""File ▸ Export report / Export DICOM from the viewer: run in a background job, real files checked."""

from __future__ import annotations

import threading

import pydicom
import pytest

from tests.ui.tiny_analyzer import ScriptedAnalyzer

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def test_export_pdf_report_and_dicom_sr(qtbot, make_window, dicom_file, tmp_path, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(
        "cxrviewer.ui.main_window.QMessageBox.warning", lambda p, t, text: errors.append(text)
    )
    w = make_window(ScriptedAnalyzer().factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=15000) as shown:
        w.open_paths([dicom_file])
    result = shown.args[0]
    source_bytes = dicom_file.read_bytes()

    import cxrviewer.ui.export_jobs as jobs

    threads: list = []
    real = jobs.write_report
    monkeypatch.setattr(
        jobs, "write_report", lambda *a: (threads.append(threading.current_thread()), real(*a))[1]
    )
    pdf = tmp_path / "out" / "report.pdf"
    pdf.parent.mkdir()
    with qtbot.waitSignal(w.export_finished, timeout=60000) as done:
        w.export_report(pdf)
    assert done.args == [True, pdf]
    assert threads and threads[0] is not threading.main_thread()
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 10_000
    assert b"Test^Patient" not in data and b"TEST-1" not in data

    with qtbot.waitSignal(w.export_finished, timeout=60000) as done:
        w.export_dicom(tmp_path / "dicom")  # de-identified by default
    assert done.args[0], done.args
    sr_path, sc_path = done.args[1]
    from cxrviewer.services.export.dicom_export import read_findings

    sr, sc = pydicom.dcmread(sr_path), pydicom.dcmread(sc_path)
    assert sr.SOPClassUID == SR_CLASS and sc.SOPClassUID == SC_CLASS
    findings = read_findings(sr)
    assert findings["probabilities"] == pytest.approx(result.probabilities, abs=1e-4)
    assert findings["model_id"] == result.model_id
    assert sc.SOPInstanceUID in findings["references"]
    original = pydicom.dcmread(dicom_file)
    assert str(sr.PatientName) != "Test^Patient" and sr.PatientID != "TEST-1"
    assert sr.StudyInstanceUID != original.StudyInstanceUID
    assert dicom_file.read_bytes() == source_bytes  # the user's file is untouched

    with qtbot.waitSignal(w.export_finished, timeout=60000) as done:
        w.export_dicom(tmp_path / "kept", deidentify=False)  # the checkbox "keep identifiers"
    kept = pydicom.dcmread(done.args[1][0])
    assert kept.PatientID == "TEST-1" and kept.StudyInstanceUID == original.StudyInstanceUID
    assert w.export_job is None and not errors


def test_dicom_export_of_a_png_says_why(qtbot, make_window, png_files, tmp_path, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(
        "cxrviewer.ui.main_window.QMessageBox.warning", lambda p, t, text: errors.append(text)
    )
    w = make_window(ScriptedAnalyzer().factory)
    with qtbot.waitSignal(w.analysis_shown, timeout=15000):
        w.open_paths([png_files[0]])
    with qtbot.waitSignal(w.export_finished, timeout=30000) as done:
        w.export_dicom(tmp_path / "dicom")
    assert done.args[0] is False and errors == [done.args[1]]
    assert "needs a DICOM image" in errors[0] and not (tmp_path / "dicom").exists()
