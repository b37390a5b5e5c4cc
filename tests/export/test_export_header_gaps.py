"""Exports from images whose headers lack optional patient/study attributes, and the basic-profile removals."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword

from cxrviewer.services.export.deidentify import BASIC_PROFILE_REMOVED, Deidentifier
from cxrviewer.services.export.dicom_export import TYPE2_REFERENCE_KEYWORDS, ExportError, export_dicom
from tests.export.results import full_result
from tests.pacs.synthetic import make_cr


@pytest.mark.parametrize("deidentify", [True, False])
@pytest.mark.parametrize("keyword", ["PatientSex", "PatientBirthDate", "StudyTime", "AccessionNumber"])
def test_missing_type2_attribute_is_exported_empty(keyword: str, deidentify: bool) -> None:
    ds = make_cr()
    delattr(ds, keyword)
    before = ds.to_json_dict(bulk_data_threshold=64)
    out = export_dicom(ds, full_result(shape=(int(ds.Rows), int(ds.Columns))), deidentify=deidentify)
    for made in (out.secondary_capture, out.structured_report):
        assert keyword in made and not made[keyword].value
    assert ds.to_json_dict(bulk_data_threshold=64) == before, "the source data set was modified"
    assert keyword in TYPE2_REFERENCE_KEYWORDS


def test_missing_study_uid_is_an_export_error() -> None:
    ds = make_cr()
    del ds.StudyInstanceUID
    with pytest.raises(ExportError, match="Study Instance UID"):
        export_dicom(ds, full_result(shape=(int(ds.Rows), int(ds.Columns))))


def test_basic_profile_table_matches_the_dicom_dictionary() -> None:
    for tag, keyword in BASIC_PROFILE_REMOVED.items():
        number = tag_for_keyword(keyword)
        assert number is not None and f"({number >> 16:04X},{number & 0xFFFF:04X})" == tag, keyword


def test_basic_profile_attributes_removed_also_inside_sequences() -> None:
    ds = make_cr()
    ds.ReasonForStudy = "cough since March, smoker"
    ds.GantryID = "GANTRY-7"
    item = pydicom.Dataset()
    item.ReasonForTheRequestedProcedure = "rule out pneumonia"
    ds.ProcedureCodeSequence = [item]
    out = Deidentifier().apply(ds)
    assert "ReasonForStudy" not in out and "GantryID" not in out
    assert "ReasonForTheRequestedProcedure" not in out.ProcedureCodeSequence[0]
    assert ds.ReasonForStudy == "cough since March, smoker"  # the source is untouched
