"""De-identification of exported DICOM objects: a subset of the Basic Application Level Confidentiality Profile.

What :class:`Deidentifier` does to a copy of a dataset (the source is never modified):

- replaces PatientName with ``ANONYMOUS^<pseudonym>`` and PatientID with the pseudonym (a keyed hash of the
  original ID: the same patient gets the same pseudonym within one :class:`Deidentifier`);
- removes birth date/time, other patient IDs and names, addresses, phone numbers, institution, station and
  device identifiers, physicians and operators, accession number, study ID, request/admission identifiers,
  free-text comments, and every private tag;
- shifts every date (DA, DT) by a fixed number of days (``date_shift_days``), or removes dates and times when
  ``date_shift_days`` is None;
- remaps every UID (study, series, instance, frame of reference, referenced UIDs in sequences) to a new
  ``2.25.`` UID derived from a per-deidentifier secret, consistently: the same source UID always maps to the
  same new UID, so an SR still references the SC and the image it describes;
- sets PatientIdentityRemoved = YES and DeidentificationMethod.

It does not remove text burned into pixels: :func:`check_burned_in` refuses such images unless allowed.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydicom.dataset import Dataset

#: Attributes removed (keyword list; absent ones are ignored).
REMOVED_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientComments",
    "MilitaryRank",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "MedicalRecordLocator",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionCodeSequence",
    "StationName",
    "DeviceSerialNumber",
    "ReferringPhysicianName",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "AccessionNumber",
    "StudyID",
    "RequestAttributesSequence",
    "AdmissionID",
    "IssuerOfPatientID",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "RequestedProcedureID",
    "ImageComments",
    "StudyComments",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)
#: More attributes with action X (remove) in the Basic Application Level Confidentiality Profile (DICOM
#: PS3.15 Table E.1-1): free-text clinical history, equipment/location identifiers, person identification
#: sequences. Tag → keyword, as the profile lists them; ``tests/export/test_deidentify_profile.py`` checks
#: each keyword against pydicom's dictionary.
BASIC_PROFILE_REMOVED = {
    "(0008,0096)": "ReferringPhysicianIdentificationSequence",
    "(0008,1049)": "PhysiciansOfRecordIdentificationSequence",
    "(0008,1052)": "PerformingPhysicianIdentificationSequence",
    "(0008,1062)": "PhysiciansReadingStudyIdentificationSequence",
    "(0008,1072)": "OperatorIdentificationSequence",
    "(0008,1080)": "AdmittingDiagnosesDescription",
    "(0008,1084)": "AdmittingDiagnosesCodeSequence",
    "(0008,2111)": "DerivationDescription",
    "(0010,0050)": "PatientInsurancePlanCodeSequence",
    "(0010,2000)": "MedicalAlerts",
    "(0010,2110)": "Allergies",
    "(0010,2150)": "CountryOfResidence",
    "(0010,2152)": "RegionOfResidence",
    "(0010,21F0)": "PatientReligiousPreference",
    "(0010,2297)": "ResponsiblePerson",
    "(0010,2299)": "ResponsibleOrganization",
    "(0018,1008)": "GantryID",
    "(0018,4000)": "AcquisitionComments",
    "(0032,1030)": "ReasonForStudy",
    "(0032,1033)": "RequestingService",
    "(0038,0040)": "DischargeDiagnosisDescription",
    "(0038,0050)": "SpecialNeeds",
    "(0038,0300)": "CurrentPatientLocation",
    "(0038,0400)": "PatientInstitutionResidence",
    "(0038,0500)": "PatientState",
    "(0038,4000)": "VisitComments",
    "(0040,0001)": "ScheduledStationAETitle",
    "(0040,0006)": "ScheduledPerformingPhysicianName",
    "(0040,0010)": "ScheduledStationName",
    "(0040,0241)": "PerformedStationAETitle",
    "(0040,0242)": "PerformedStationName",
    "(0040,0243)": "PerformedLocation",
    "(0040,1002)": "ReasonForTheRequestedProcedure",
    "(0040,1102)": "PersonAddress",
    "(0040,1103)": "PersonTelephoneNumbers",
    "(0040,1400)": "RequestedProcedureComments",
    "(0040,2400)": "ImagingServiceRequestComments",
}
REMOVED_KEYWORDS = REMOVED_KEYWORDS + tuple(BASIC_PROFILE_REMOVED.values())
#: Attributes that must stay present (Type 2) and are emptied instead of removed.
EMPTIED_KEYWORDS = ("ReferringPhysicianName", "AccessionNumber", "StudyID", "PatientBirthDate")
#: UIDs that name standard things (classes, syntaxes) and are never remapped.
KEPT_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "TransferSyntaxUID",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
    }
)
METHOD = "cxrviewer: basic profile subset"


class BurnedInAnnotationError(Exception):
    """The image declares text burned into its pixels (BurnedInAnnotation = YES)."""


def check_burned_in(ds: Dataset, allow: bool = False) -> None:
    """Refuse (raise :class:`BurnedInAnnotationError`) an image whose pixels may carry identifying text.

    An image with BurnedInAnnotation = YES could show the patient's name in the pixels, which no header
    de-identification removes; the user must allow it explicitly.
    """
    if allow:
        return
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise BurnedInAnnotationError(
            "This image has text burned into its pixels (BurnedInAnnotation = YES), which may identify the "
            "patient. It is not exported unless you explicitly allow it."
        )


@dataclass
class Deidentifier:
    """Consistent de-identification of several objects (see module docstring).

    Attributes:
        date_shift_days: days added to every date (negative moves back); None removes dates and times.
        secret: key for pseudonyms and UID remapping; random per instance unless given (give one to get the
            same mapping in another session).
    """

    date_shift_days: int | None = -3650
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    uid_map: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Deidentifier(date_shift_days={self.date_shift_days}, uids_mapped={len(self.uid_map)})"

    def pseudonym(self, patient_id: str) -> str:
        """A stable, non-reversible stand-in for a patient ID."""
        return "ANON-" + hmac.new(self.secret, patient_id.encode(), hashlib.sha256).hexdigest()[:10].upper()

    def uid(self, original: str) -> str:
        """The new UID for ``original`` (the same answer every time)."""
        original = str(original)
        if original not in self.uid_map:
            digest = hmac.new(self.secret, original.encode(), hashlib.sha256).digest()[:16]
            self.uid_map[original] = f"2.25.{int.from_bytes(digest, 'big')}"
        return self.uid_map[original]

    def apply(self, ds: Dataset) -> Dataset:
        """A de-identified deep copy of ``ds`` (file meta included)."""
        out = copy.deepcopy(ds)
        patient_id = str(out.get("PatientID", "") or "")
        pseudo = self.pseudonym(patient_id or str(out.get("PatientName", "")))
        out.remove_private_tags()
        self._clean(out)
        out.PatientName = f"ANONYMOUS^{pseudo}"
        out.PatientID = pseudo
        for keyword in EMPTIED_KEYWORDS:
            setattr(out, keyword, "")
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = METHOD
        if self.date_shift_days is not None:
            out.LongitudinalTemporalInformationModified = "MODIFIED"
        meta = getattr(out, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.uid(meta.MediaStorageSOPInstanceUID)
        return out

    def _clean(self, ds: Dataset) -> None:
        """Remove, shift and remap in place, recursing into sequences."""
        _remove_keywords(ds)
        for elem in list(ds.iterall()):
            if elem.tag.is_private or elem.value is None or elem.value == "":
                continue
            if elem.VR == "UI" and elem.keyword not in KEPT_UID_KEYWORDS:
                elem.value = [self.uid(v) for v in elem.value] if elem.VM > 1 else self.uid(str(elem.value))
            elif elem.VR in ("DA", "DT") or (elem.VR == "TM" and self.date_shift_days is None):
                values = [str(v) for v in elem.value] if elem.VM > 1 else [str(elem.value)]
                moved = [self._moved(v, elem.VR) for v in values]
                elem.value = moved if len(moved) > 1 else moved[0]
        if self.date_shift_days is None:
            # Dates removed: drop the empty optional ones we blanked, keep Type 2 ones present but empty.
            blanked = [e.tag for e in ds if e.VR in ("DA", "DT", "TM") and e.value == ""]
            for tag in blanked:
                if ds[tag].keyword not in TYPE2_DATES:
                    del ds[tag]

    def _moved(self, value: str, vr: str) -> str:
        """A date shifted by ``date_shift_days``, or "" when dates are removed."""
        return "" if self.date_shift_days is None or vr == "TM" else _shift(value, vr, self.date_shift_days)


#: Type 2 date/time attributes of the general modules: kept present (empty) when dates are removed.
TYPE2_DATES = frozenset({"StudyDate", "StudyTime", "ContentDate", "ContentTime"})


def _shift(value: str, vr: str, days: int) -> str:
    """Shift a DA (YYYYMMDD) or the date part of a DT value by ``days``; unparseable values are removed."""
    text = value.strip()
    if len(text) < 8:
        return ""
    try:
        day = datetime.strptime(text[:8], "%Y%m%d")
    except ValueError:
        return ""
    moved = (day + timedelta(days=days)).strftime("%Y%m%d")
    return moved if vr == "DA" else moved + text[8:]


def _remove_keywords(ds: Dataset) -> None:
    """Delete every :data:`REMOVED_KEYWORDS` attribute from ``ds`` and from the items of its sequences."""
    for keyword in REMOVED_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    for elem in ds:
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                _remove_keywords(item)
