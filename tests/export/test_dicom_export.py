"""Secondary Capture and Structured Report: content, de-identification, burned-in refusal, file round trip."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cxrviewer.services.export.deidentify import Deidentifier
from cxrviewer.services.export.dicom_export import (
    DISCLAIMER_ASCII,
    ExportError,
    export_dicom,
    read_findings,
)
from cxrviewer.services.result import AnalysisResult
from tests.export.results import full_result
from tests.pacs.synthetic import make_cr


def test_sr_holds_scores_operating_point_model_and_references(tmp_path):
    source, result = make_cr(), full_result()
    out = export_dicom(source, result)
    sr, sc = out.structured_report, out.secondary_capture
    for ds, name in ((sr, "sr.dcm"), (sc, "sc.dcm")):  # both survive a write/read as DICOM files
        ds.save_as(tmp_path / name, enforce_file_format=True)
    sr = pydicom.dcmread(tmp_path / "sr.dcm")
    sc = pydicom.dcmread(tmp_path / "sc.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    found = read_findings(sr)
    assert found["probabilities"] == pytest.approx(result.probabilities, abs=1e-6)
    assert found["model_id"] == "cxr-test-model-v1"
    op = found["operating_point"]
    assert op["name"] == "high-sensitivity" and op["class"] == "covid"
    assert op["threshold"] == pytest.approx(0.31) and op["sensitivity"] == pytest.approx(0.93)
    assert op["result"].startswith("positive for covid")
    assert DISCLAIMER_ASCII in found["comments"]
    assert any("AP view" in c for c in found["comments"])
    assert len(found["similar_cases"]) == 2
    assert sc.SOPInstanceUID in found["references"]
    # raw check of one NUM item, independent of read_findings
    nums = [i for i in sr.ContentSequence if i.ValueType == "NUM"]
    covid = [i for i in nums if i.ConceptNameCodeSequence[0].CodeMeaning == "Probability of covid"][0]
    assert float(covid.MeasuredValueSequence[0].NumericValue) == pytest.approx(0.734512)
    assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"


def test_exports_are_deidentified_by_default_and_share_one_study():
    source = make_cr()
    d = Deidentifier()
    out = export_dicom(source, full_result(), deidentifier=d)
    sr, sc = out.structured_report, out.secondary_capture
    for ds in (sr, sc):
        assert str(ds.PatientName).startswith("ANONYMOUS^")
        assert ds.StudyInstanceUID == d.uid(source.StudyInstanceUID)
        assert ds.PatientIdentityRemoved == "YES"
        text = str(ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda e: ""))
        for secret in ("DOE", "PID-0001", "General Hospital", "HOUSE", source.StudyInstanceUID):
            assert secret not in text
    assert d.uid(source.SOPInstanceUID) in read_findings(sr)["references"]


def test_identified_export_keeps_the_original_study_when_chosen():
    source = make_cr()
    out = export_dicom(source, full_result(), deidentify=False)
    assert out.structured_report.StudyInstanceUID == source.StudyInstanceUID
    assert out.structured_report.PatientName == "DOE^JANE"
    assert source.SOPInstanceUID in read_findings(out.structured_report)["references"]


def test_secondary_capture_has_the_overlay_and_caption_burned_in():
    source, result = make_cr(), full_result()
    sc = export_dicom(source, result).secondary_capture
    px = sc.pixel_array
    assert sc.PhotometricInterpretation == "RGB" and px.ndim == 3 and px.shape[2] == 3
    assert max(px.shape[:2]) >= 1024  # small images are enlarged for legible text
    assert sc.BurnedInAnnotation == "YES"
    # Colour where the heatmap is (left lung centre); pure grey where nothing is drawn (bottom-right corner).
    h, w = px.shape[:2]
    spot = px[h // 2, int(0.3 * w)].astype(int)
    assert spot.max() - spot.min() > 40
    corner = px[-5, -5].astype(int)
    assert corner.max() == corner.min()
    # The caption band at the top is dark with white text.
    band = px[: h // 40]
    assert band.mean() < 80 and band.max() > 200


def test_burned_in_source_is_refused_unless_allowed():
    source = make_cr(burned_in="YES")
    with pytest.raises(ExportError, match="burned into its pixels"):
        export_dicom(source, full_result())
    assert export_dicom(source, full_result(), allow_burned_in=True).secondary_capture is not None
    only_sr = export_dicom(source, full_result(), include_secondary_capture=False)
    assert only_sr.secondary_capture is None and only_sr.structured_report is not None


def test_nothing_to_export_for_an_abstained_result():
    with pytest.raises(ExportError, match="no analysis"):
        export_dicom(make_cr(), AnalysisResult(path="x", status="abstained", reason="lateral view"))


def test_monochrome1_source_is_shown_inverted():
    source = make_cr()
    dark = export_dicom(source, full_result(), include_secondary_capture=True).secondary_capture.pixel_array
    source.PhotometricInterpretation = "MONOCHROME1"
    light = export_dicom(source, full_result()).secondary_capture.pixel_array
    h, w = dark.shape[:2]
    region = (slice(h // 2, h // 2 + 20), slice(w - 30, w - 10))
    assert np.mean(dark[region]) + np.mean(light[region]) == pytest.approx(255, abs=20)
