"""The analysis pipeline gives the input gate the DICOM Modality, so CT/US/... are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrviewer.ml.gate import modality_check


class _ModalityRecordingGate:
    accepts_modality = True

    def __init__(self):
        self.seen = []

    def check(self, image, modality=None):
        self.seen.append(modality)
        why = modality_check(modality)
        return (not why), why


def test_pipeline_hands_the_dicom_modality_to_the_gate(pristine_model_dir, tmp_path):
    """A CT slice read from a DICOM file is refused by name; a PNG reaches the gate without a modality."""
    import cv2
    import pydicom

    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings

    gate = _ModalityRecordingGate()
    pipe = AnalysisPipeline(
        AnalysisSettings(model_dir=pristine_model_dir, device="cpu", threads=1, warmup=False), gate=gate
    )
    ct = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    r = pipe.analyze(ct)
    assert (
        r.status == "abstained" and "DICOM modality CT (computed tomography) is not a radiograph" in r.reason
    )
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), (np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8))
    pipe.analyze(png)
    assert gate.seen == ["CT", None]
