"""The analysis as DICOM objects: a Secondary Capture with the overlay burned in, and an Enhanced SR.

Both are built with ``highdicom`` from the analysed image's dataset, in the same study (or, de-identified — the
default — in the remapped study of :class:`~cxrviewer.services.export.deidentify.Deidentifier`), ready to be
saved or sent back with :meth:`cxrviewer.services.pacs.PacsClient.store`.

The SR's content tree (Enhanced SR, root "Diagnostic imaging report", LOINC 18748-4):

- observer context: device ``cxrviewer`` with the model id as model name;
- algorithm name (DCM 111001) = model id, algorithm version (DCM 111003) = app version;
- one NUM per class, "Probability of <class>" (coding scheme ``99CXRV``), unit UCUM ``1``;
- the operating point: its name, class and threshold (NUM), sensitivity/specificity when measured, and the
  result for this image (TEXT);
- warnings and the research-use disclaimer as comments (DCM 121106), similar cases as TEXT;
- IMAGE references to the analysed image and to the Secondary Capture.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from cxrviewer.services.export.deidentify import Deidentifier, check_burned_in
from cxrviewer.services.export.overlay import (
    burn_caption,
    dicom_display_image,
    render_overlay,
    to_display_uint8,
)
from cxrviewer.services.result import AnalysisResult

MANUFACTURER = "cxrviewer"
PRIVATE_SCHEME = "99CXRV"
DISCLAIMER_ASCII = "Research use only - not for diagnosis"
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
#: The Secondary Capture's longer side is at least this many pixels.
SC_MIN_SIDE = 1024


#: Type 2 patient and study attributes the SC and SR copy from the analysed image: added empty when absent.
TYPE2_REFERENCE_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
    "StudyTime", "ReferringPhysicianName",
)  # fmt: skip


class ExportError(Exception):
    """The analysis could not be exported; the message says why."""


@dataclass
class DicomExport:
    """What :func:`export_dicom` made: the Secondary Capture (None when not requested) and the SR."""

    secondary_capture: Dataset | None
    structured_report: Dataset


def export_dicom(
    source: Dataset,
    result: AnalysisResult,
    *,
    display_image: np.ndarray | None = None,
    deidentifier: Deidentifier | None = None,
    deidentify: bool = True,
    include_secondary_capture: bool = True,
    allow_burned_in: bool = False,
) -> DicomExport:
    """Build the Secondary Capture and the SR for ``result``, the analysis of the image ``source``.

    Args:
        source: the analysed image's dataset (never modified).
        result: its analysis (status ``ok``).
        display_image: the image as shown (greyscale); defaults to ``source``'s pixels windowed.
        deidentifier: the de-identifier to use (pass the same one for several exports to keep UIDs
            consistent); a fresh one when None.
        deidentify: False exports with the original patient and study (the user's explicit choice).
        include_secondary_capture: False makes only the SR.
        allow_burned_in: export a Secondary Capture even when ``source`` has BurnedInAnnotation = YES.

    Raises:
        ExportError: the result has no scores, or the image has burned-in text and it was not allowed.
    """
    if result.status != "ok" or not result.probabilities:
        raise ExportError(
            f"There is no analysis to export ({result.status}: {result.reason or 'no scores'})."
        )
    if "StudyInstanceUID" not in source:
        raise ExportError("The image has no Study Instance UID: the results cannot be filed with its study.")
    if deidentify:
        deidentifier = deidentifier or Deidentifier()
        reference = deidentifier.apply(source)
    else:
        reference = source
    missing = [k for k in TYPE2_REFERENCE_KEYWORDS if k not in reference]  # required (maybe empty) by SC/SR
    if missing:
        reference = reference if deidentify else copy.deepcopy(source)  # the source is never modified
        for keyword in missing:
            setattr(reference, keyword, "")
    sc = None
    if include_secondary_capture:
        try:
            check_burned_in(source, allow_burned_in)
        except Exception as exc:
            raise ExportError(str(exc)) from exc
        image = display_image if display_image is not None else dicom_display_image(source)
        try:
            sc = make_secondary_capture(reference, result, image)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ExportError(
                f"The Secondary Capture could not be built from this image's header ({exc})."
            ) from exc
    try:
        sr = make_structured_report(reference, result, secondary_capture=sc)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ExportError(
            f"The structured report could not be built from this image's header ({exc})."
        ) from exc
    return DicomExport(sc, sr)


def caption_lines(result: AnalysisResult) -> list[str]:
    """The text burned into the Secondary Capture (ASCII: OpenCV's fonts have no other glyphs)."""
    scores = " | ".join(
        f"{k} {v:.2f}" for k, v in sorted(result.probabilities.items(), key=lambda kv: -kv[1])
    )
    lines = [f"cxrviewer {result.model_id or ''} - RESEARCH USE ONLY, NOT FOR DIAGNOSIS", scores]
    op = result.operating_point
    if op is not None:
        verdict = {True: "POSITIVE", False: "negative", None: "n/a"}[op.positive]
        lines.append(f"operating point {op.name}: {op.positive_class} >= {op.threshold:.3f} -> {verdict}")
    return lines


def make_secondary_capture(reference: Dataset, result: AnalysisResult, image: np.ndarray) -> Dataset:
    """An RGB Secondary Capture of ``image`` with the heatmap, lung outline and scores burned in, in
    ``reference``'s study and patient."""
    import highdicom as hd

    image = np.asarray(image)
    factor = SC_MIN_SIDE / max(image.shape[:2])
    if factor > 1:  # small images are enlarged so that the burned-in text stays legible
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        image = cv2.resize(to_display_uint8(image), size, interpolation=cv2.INTER_CUBIC)
    pixels = burn_caption(render_overlay(image, result), caption_lines(result))
    orientation = tuple(reference.get("PatientOrientation", []) or ()) or ("L", "F")
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=reference,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=hd.UID(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=orientation[:2],
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description="cxrviewer AI overlay (research use only)",
    )
    sc.BurnedInAnnotation = "YES"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    _copy_deidentification_flags(reference, sc)
    return sc


def make_structured_report(
    reference: Dataset, result: AnalysisResult, secondary_capture: Dataset | None = None
) -> Dataset:
    """An Enhanced SR with the findings of ``result`` (see module docstring), in ``reference``'s study."""
    import highdicom as hd
    from highdicom.sr import CodedConcept, RelationshipTypeValues
    from pydicom.sr.codedict import codes

    from cxrviewer import __version__

    contains = RelationshipTypeValues.CONTAINS
    items: list[Dataset] = []
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=MANUFACTURER,
            manufacturer_name=MANUFACTURER,
            model_name=result.model_id or "unknown",
        ),
    )
    items.extend(observer)
    items.append(_text("111001", "DCM", "Algorithm Name", result.model_id or "unknown"))
    items.append(_text("111003", "DCM", "Algorithm Version", str(__version__)))
    unit = CodedConcept("1", "UCUM", "no units")
    for label, prob in result.probabilities.items():
        items.append(
            hd.sr.NumContentItem(
                name=_private(f"p-{label}", f"Probability of {label}"),
                value=round(float(prob), 6),
                unit=unit,
                relationship_type=contains,
            )
        )
    op = result.operating_point
    if op is not None:
        items.append(_text("op-name", PRIVATE_SCHEME, "Operating point", op.name))
        items.append(_text("op-class", PRIVATE_SCHEME, "Operating point class", op.positive_class))
        items.append(
            hd.sr.NumContentItem(
                name=_private("op-threshold", "Operating point threshold"),
                value=float(op.threshold),
                unit=unit,
                relationship_type=contains,
            )
        )
        for key, value in (("sensitivity", op.sensitivity), ("specificity", op.specificity)):
            if value is not None:
                items.append(
                    hd.sr.NumContentItem(
                        name=_private(f"op-{key}", f"Operating point {key}"),
                        value=float(value),
                        unit=unit,
                        relationship_type=contains,
                    )
                )
        if op.positive is not None:
            score = result.probabilities.get(op.positive_class)
            verdict = "positive" if op.positive else "negative"
            text = f"{verdict} for {op.positive_class}"
            if score is not None:
                text += f" (score {score:.3f}, threshold {op.threshold:.3f})"
            items.append(_text("op-result", PRIVATE_SCHEME, "Result at operating point", text))
    for warning in result.warnings:
        items.append(_text("121106", "DCM", "Comment", f"Warning: {warning}"))
    for n in result.neighbours:
        items.append(
            _text(
                "similar-case",
                PRIVATE_SCHEME,
                "Similar case",
                f"{n.case_id} ({n.label}, distance {n.distance:.3f})",
            )
        )
    items.append(_text("121106", "DCM", "Comment", DISCLAIMER_ASCII))
    items.append(_image("121112", "DCM", "Source of Measurement", reference))
    if secondary_capture is not None:
        items.append(_image("overlay", PRIVATE_SCHEME, "Analysis overlay image", secondary_capture))

    root = hd.sr.ContainerContentItem(name=CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = items
    evidence = [reference] + ([secondary_capture] if secondary_capture is not None else [])
    sr = hd.sr.EnhancedSR(
        evidence=evidence,
        content=root,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="cxrviewer AI findings (research use only)",
    )
    _copy_deidentification_flags(reference, sr)
    return sr


def _private(code: str, meaning: str) -> Dataset:
    from highdicom.sr import CodedConcept

    return CodedConcept(code, PRIVATE_SCHEME, meaning[:64])


def _text(code: str, scheme: str, meaning: str, value: str) -> Dataset:
    import highdicom as hd
    from highdicom.sr import CodedConcept, RelationshipTypeValues

    return hd.sr.TextContentItem(
        name=CodedConcept(code, scheme, meaning),
        value=value,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )


def _image(code: str, scheme: str, meaning: str, ds: Dataset) -> Dataset:
    import highdicom as hd
    from highdicom.sr import CodedConcept, RelationshipTypeValues

    return hd.sr.ImageContentItem(
        name=CodedConcept(code, scheme, meaning),
        referenced_sop_class_uid=ds.SOPClassUID,
        referenced_sop_instance_uid=ds.SOPInstanceUID,
        relationship_type=RelationshipTypeValues.CONTAINS,
    )


def _copy_deidentification_flags(reference: Dataset, target: Dataset) -> None:
    for keyword in (
        "PatientIdentityRemoved",
        "DeidentificationMethod",
        "LongitudinalTemporalInformationModified",
    ):
        if keyword in reference:
            setattr(target, keyword, reference.get(keyword))


def read_findings(sr: Dataset) -> dict:
    """The findings of an SR made by :func:`make_structured_report` (e.g. read back from a PACS).

    Returns a dict with ``probabilities`` (class → value), ``model_id``, ``operating_point`` (name, class,
    threshold, sensitivity, specificity, result — those present), ``comments`` (warnings and disclaimer),
    ``similar_cases`` and ``references`` (SOP instance UIDs of the referenced images).
    """
    out: dict = {
        "probabilities": {},
        "model_id": None,
        "operating_point": {},
        "comments": [],
        "similar_cases": [],
        "references": [],
    }
    for item in sr.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0]
        code, scheme = str(name.CodeValue), str(name.CodingSchemeDesignator)
        kind = item.ValueType
        if kind == "NUM":
            value = float(item.MeasuredValueSequence[0].NumericValue)
            if scheme == PRIVATE_SCHEME and code.startswith("p-"):
                out["probabilities"][code[2:]] = value
            elif scheme == PRIVATE_SCHEME and code.startswith("op-"):
                out["operating_point"][code[3:]] = value
        elif kind == "TEXT":
            text = str(item.TextValue)
            if (code, scheme) == ("111001", "DCM"):
                out["model_id"] = text
            elif (code, scheme) == ("121106", "DCM"):
                out["comments"].append(text)
            elif scheme == PRIVATE_SCHEME and code == "similar-case":
                out["similar_cases"].append(text)
            elif scheme == PRIVATE_SCHEME and code.startswith("op-"):
                out["operating_point"][code[3:]] = text
        elif kind == "IMAGE":
            out["references"].append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
    return out
