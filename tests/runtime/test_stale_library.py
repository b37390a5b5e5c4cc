"""A case library built with another model is named in a warning and skipped; up-to-date ones still answer."""

from __future__ import annotations

import numpy as np

from cxrviewer.resources import models_dir
from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
from cxrviewer.services.case_library import CaseLibrary, LibrarySet
from tests.helpers.tiny_model import make_tiny_classifier_dir


def test_stale_library_is_skipped_with_a_warning_and_current_one_is_searched(tmp_path):
    model_dir = make_tiny_classifier_dir(tmp_path / "tiny")
    image = np.tile(np.linspace(30, 220, 96, dtype=np.float32), (80, 1)).astype(np.uint8)

    pipeline = AnalysisPipeline(AnalysisSettings(model_dir=model_dir, warmup=False))
    predictor = pipeline.load()
    pred = predictor.predict([image])[0]

    mine = CaseLibrary.open(tmp_path / "mine.cxrlib", create=True, name="mine", model_id=predictor.model_id)
    mine.add_case(image, pred.embedding, "normal", model_id=predictor.model_id, source="test", licence="CC0")

    libs = LibrarySet()
    # the shipped reference library was embedded by models/cxr-classifier, not by the tiny model
    libs.add(CaseLibrary.open(models_dir() / "reference-library" / "reference.cxrlib", read_only=True))
    libs.add(mine)
    pipeline.libraries = libs

    result = pipeline.analyze(image, name="synthetic")
    assert result.status == "ok"
    assert [n.library for n in result.neighbours] == ["mine"]
    assert result.neighbours[0].distance < 1e-4
    assert any("built with another model" in w and "reference" in w for w in result.warnings)
