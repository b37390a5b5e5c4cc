"""Round trip against a real Orthanc: upload, search, retrieve, analyse, store SR + SC, read them back."""

from __future__ import annotations

from datetime import date

import numpy as np
import pydicom
import pytest

from cxrviewer.services.export.deidentify import Deidentifier
from cxrviewer.services.export.dicom_export import DISCLAIMER_ASCII, export_dicom, read_findings
from cxrviewer.services.export.overlay import dicom_display_image
from cxrviewer.services.pacs import PacsClient, PacsSettings, StudyQuery
from cxrviewer.services.pacs_cache import PacsCache
from tests.pacs.orthanc import PASSWORD, USER
from tests.pacs.synthetic import make_cr

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def client(orthanc, tmp_path_factory):
    settings = PacsSettings(url=orthanc.dicomweb_url, name="test", auth="basic", username=USER, timeout_s=10)
    with PacsClient(settings, secret=PASSWORD, cache=PacsCache(tmp_path_factory.mktemp("cache"))) as c:
        yield c


@pytest.fixture(scope="module")
def uploaded(client):
    """Two patients: Jane (one CR study of two images, March 2024), John (one DX study, 2021)."""
    jane = make_cr("ROUNDTRIP^JANE", "RT-1001", "20240315", seed=1)
    jane2 = make_cr(
        "ROUNDTRIP^JANE",
        "RT-1001",
        "20240315",
        study_uid=jane.StudyInstanceUID,
        series_uid=jane.SeriesInstanceUID,
        seed=2,
    )
    john = make_cr("ROUNDTRIP^JOHN", "RT-2002", "20210610", seed=3)
    john.Modality = "DX"
    client.store([jane, jane2, john])
    return {"jane": [jane, jane2], "john": john}


def _analyse(image: np.ndarray, tmp_path):
    """The real analysis pipeline on the tiny test classifier (random weights, real code path)."""
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from tests.helpers.tiny_model import make_tiny_classifier_dir

    model_dir = make_tiny_classifier_dir(tmp_path / "model")
    pipeline = AnalysisPipeline(AnalysisSettings(model_dir=model_dir, device="cpu", threads=1, warmup=False))
    result = pipeline.analyze(image, name="retrieved.dcm")
    assert result.status == "ok", result.reason
    return result


def test_search_by_patient_date_and_modality(client, uploaded):
    jane_uid = uploaded["jane"][0].StudyInstanceUID
    john_uid = uploaded["john"].StudyInstanceUID
    by_name = client.search_studies(StudyQuery(patient_name="ROUNDTRIP"))
    assert [s.study_uid for s in by_name] == [jane_uid, john_uid]  # newest first
    jane = by_name[0]
    assert (jane.patient_id, jane.study_date, jane.modalities, jane.n_instances) == (
        "RT-1001",
        "20240315",
        ["CR"],
        2,
    )
    assert [s.study_uid for s in client.search_studies(StudyQuery(patient_id="RT-2002"))] == [john_uid]
    in_2024 = client.search_studies(StudyQuery(patient_name="ROUNDTRIP", date_from=date(2024, 1, 1)))
    assert [s.study_uid for s in in_2024] == [jane_uid]
    until_2022 = client.search_studies(StudyQuery(patient_name="ROUNDTRIP", date_to=date(2022, 1, 1)))
    assert [s.study_uid for s in until_2022] == [john_uid]
    dx = client.search_studies(StudyQuery(patient_name="ROUNDTRIP", modality="DX"))
    assert [s.study_uid for s in dx] == [john_uid]
    assert client.search_studies(StudyQuery(patient_name="NOBODY")) == []


def test_retrieve_analyse_store_and_read_back(client, uploaded, orthanc, tmp_path):
    originals = {ds.SOPInstanceUID: ds for ds in uploaded["jane"]}
    study_uid = uploaded["jane"][0].StudyInstanceUID
    progress = []
    folder = client.retrieve_study(study_uid, progress=lambda n, total: progress.append((n, total)))
    assert progress == [(1, 2), (2, 2)]
    assert folder == client.cache.study_dir(study_uid) and folder.is_dir()
    files = sorted(folder.rglob("*.dcm"))
    assert len(files) == 2
    for f in files:
        ds = pydicom.dcmread(f)
        assert f.read_bytes()[128:132] == b"DICM"  # a complete Part 10 file
        assert np.array_equal(ds.pixel_array, originals[ds.SOPInstanceUID].pixel_array)
    assert [s.n_files for s in client.cache.studies()] == [2]
    try:  # the loader engineer's reader, where it has landed: the cached files open like local ones
        from cxrviewer.core import load_image
    except ImportError:
        load_image = None
    if load_image is not None:
        assert load_image(files[0]).pixels.shape == (256, 256)

    source = pydicom.dcmread(files[0])
    result = _analyse(dicom_display_image(source), tmp_path)
    d = Deidentifier()
    exported = export_dicom(source, result, deidentifier=d)
    client.store([exported.structured_report, exported.secondary_capture])

    # The de-identified copy is a study of its own, under the pseudonym, holding exactly the SR and the SC.
    anon_study = d.uid(study_uid)
    found = client.search_studies(StudyQuery(patient_id=d.pseudonym("RT-1001")))
    assert [s.study_uid for s in found] == [anon_study]
    assert found[0].patient_name.startswith("ANONYMOUS^")
    instances = client.search_instances(anon_study)
    assert sorted(i.sop_class_uid for i in instances) == [SC_CLASS, SR_CLASS]
    srs = client.search_instances(anon_study, modality="SR")
    assert len(srs) == 1

    sr = client.retrieve_instance(anon_study, srs[0].series_uid, srs[0].sop_uid)
    findings = read_findings(sr)
    assert findings["probabilities"] == pytest.approx(result.probabilities, abs=1e-6)
    assert findings["model_id"] == result.model_id
    if result.operating_point is not None:
        assert findings["operating_point"]["threshold"] == pytest.approx(result.operating_point.threshold)
    assert DISCLAIMER_ASCII in findings["comments"]
    sc_item = next(i for i in instances if i.sop_class_uid == SC_CLASS)
    assert sc_item.sop_uid in findings["references"]
    assert d.uid(source.SOPInstanceUID) in findings["references"]

    sc = client.retrieve_instance(anon_study, sc_item.series_uid, sc_item.sop_uid)
    assert np.array_equal(sc.pixel_array, exported.secondary_capture.pixel_array)
    assert sc.BurnedInAnnotation == "YES" and sc.PatientIdentityRemoved == "YES"
    for ds in (sr, sc):
        assert "ROUNDTRIP" not in str(ds.PatientName) and ds.PatientID != "RT-1001"
        assert ds.StudyInstanceUID == anon_study

    # Orthanc's own REST API agrees: the three studies, and the original study is untouched (2 images).
    assert len(orthanc.rest("/studies").json()) >= 3
    assert client.search_studies(StudyQuery(patient_id="RT-1001"))[0].n_instances == 2
