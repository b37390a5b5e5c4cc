"""Occlusion on ONNX Runtime: the predictor's session gives the torch fast path's map (tiny test model and the
shipped classifier, max |diff| <= 1e-4), reports the same progress, and stops when cancelled."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cxrviewer.ml.explain import (
    OcclusionCancelled,
    OcclusionSettings,
    explain_occlusion,
    explain_occlusion_with_predictor,
    occlusion_map,
    predictor_occlusion_map,
    runs_on_onnxruntime,
)
from cxrviewer.ml.model_io import load_classifier
from cxrviewer.ml.predictor import Predictor, PredictorSettings, model_input
from tests.conftest import REPO_ROOT
from tests.runtime.models import make_runtime_model_dir, synthetic_cxr

SHIPPED = REPO_ROOT / "models" / "cxr-classifier"
TOL = 1e-4  # float32: ONNX Runtime's kernels sum in another order than torch's


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny 64-px classifier on ONNX Runtime, its torch network and one real-looking input."""
    model_dir = make_runtime_model_dir(tmp_path_factory.mktemp("occ-ort") / "tiny")
    predictor = Predictor.load(
        model_dir, backend="onnxruntime-cpu-fp32", settings=PredictorSettings(threads=1)
    )
    model, _ = load_classifier(model_dir)
    x, geometry = model_input(synthetic_cxr(96, 80, seed=1), predictor.spec)
    return predictor, model.eval(), x, geometry


@pytest.mark.parametrize(
    "settings",
    [
        OcclusionSettings(),  # defaults: window 9, stride 4 at 64 px
        OcclusionSettings(batch_size=5, window=12, stride=6, fill="zero"),
        OcclusionSettings(batch_size=1, coarse_first=False, fill="blur", score="logit", window=10, stride=7),
    ],
)
def test_ort_map_equals_the_torch_fast_path_tiny_model(tiny, settings):
    predictor, model, x, _ = tiny
    assert runs_on_onnxruntime(predictor)
    before = x.copy()
    for cls in (0, 2):
        ort_map = predictor_occlusion_map(predictor, x, cls, settings)
        torch_map = occlusion_map(model, torch.from_numpy(x), cls, settings)
        assert ort_map.shape == torch_map.shape == (64, 64) and ort_map.dtype == np.float32
        assert np.abs(torch_map).max() > 1e-4, "a flat map would make the comparison meaningless"
        assert np.abs(ort_map - torch_map).max() <= TOL
    assert np.array_equal(x, before), "the caller's input was modified"


def test_ort_progress_matches_the_torch_progress(tiny):
    predictor, model, x, _ = tiny
    settings = OcclusionSettings(window=16, stride=8, batch_size=10)  # 7 x 7 positions, 4 x 4 coarse
    ort_reports, torch_reports = [], []
    predictor_occlusion_map(predictor, x, 1, settings, lambda d, t, m: ort_reports.append((d, t, m.copy())))
    occlusion_map(
        model, torch.from_numpy(x), 1, settings, lambda d, t, m: torch_reports.append((d, t, m.copy()))
    )
    assert [(d, t) for d, t, _ in ort_reports] == [(d, t) for d, t, _ in torch_reports]
    assert 16 in [d for d, _, _ in ort_reports], "the coarse pass is reported on its own"
    for (_, _, a), (_, _, b) in zip(ort_reports, torch_reports, strict=True):
        assert np.abs(a - b).max() <= TOL


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_ort_cancellation_stops_early(tiny, kind):
    predictor, _, x, _ = tiny
    runs = []
    backend_run = predictor._backend.run
    predictor._backend.run = lambda batch: runs.append(len(batch)) or backend_run(batch)
    try:
        event = threading.Event()
        should_cancel = event if kind == "event" else event.is_set
        settings = OcclusionSettings(window=8, stride=4, batch_size=8)  # 15 x 15 = 225 positions
        with pytest.raises(OcclusionCancelled) as info:
            predictor_occlusion_map(predictor, x, 1, settings, lambda *_: event.set(), should_cancel)
    finally:
        predictor._backend.run = backend_run
    assert info.value.done == 8 and info.value.total == 225
    assert runs == [1, 8]  # the unoccluded forward and one batch, nothing after the cancel
    assert info.value.partial_map.shape == (64, 64) and np.abs(info.value.partial_map).max() > 0


def test_ort_heatmap_equals_the_torch_heatmap(tiny):
    predictor, model, x, geometry = tiny
    occ = OcclusionSettings(window=16, stride=8)
    ort = explain_occlusion_with_predictor(predictor, x, 2, geometry, occlusion=occ)
    ref = explain_occlusion(model, torch.from_numpy(x), 2, geometry, occlusion=occ)
    assert ort.map.shape == ref.map.shape == (96, 80) and ort.method == "occlusion"
    assert np.abs(ort.map - ref.map).max() <= 1e-3  # normalised to [0, 1]: raw 1e-4 over the map's range


def test_shipped_classifier_ort_map_equals_torch(shared_data):
    """The model the viewer ships, on a real test image, with the viewer's default settings (169 positions)."""
    if not (SHIPPED / "model.onnx").is_file():
        pytest.skip("no shipped classifier")
    import cv2

    predictor = Predictor.load(SHIPPED, backend="onnxruntime-cpu-fp32", settings=PredictorSettings(threads=1))
    model, _ = load_classifier(SHIPPED)
    image = sorted((shared_data / "cxr" / "images" / "cohen").glob("*.jpg"))[0]
    x, _ = model_input(cv2.imread(str(image), cv2.IMREAD_GRAYSCALE), predictor.spec)
    for name in ("covid", "normal"):
        cls = predictor.labels.index(name)
        ort_map = predictor_occlusion_map(predictor, x, cls)
        torch_map = occlusion_map(model.eval(), torch.from_numpy(x), cls)
        assert np.abs(torch_map).max() > 1e-3
        assert np.abs(ort_map - torch_map).max() <= TOL, name
