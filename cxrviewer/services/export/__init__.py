"""Exports of an analysis: PDF/PNG report, DICOM Secondary Capture and Structured Report, de-identification.

Modules: :mod:`.report` (PDF/PNG), :mod:`.dicom_export` (SC + SR with highdicom), :mod:`.deidentify`
(basic confidentiality profile subset), :mod:`.overlay` (heatmap and lung outline drawn over the image).
"""
