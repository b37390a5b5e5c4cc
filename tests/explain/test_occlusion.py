"""Occlusion sensitivity: the fast path returns the naive loop's numbers, finds the deciding patch (on a
hand-built and on a trained model), reports progress coarse-to-fine and stops when cancelled."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cxrviewer.ml.explain import (
    OcclusionCancelled,
    OcclusionSettings,
    explain_occlusion,
    occlusion_map,
    occlusion_map_naive,
    occlusion_offsets,
)
from cxrviewer.ml.registry import create_model
from tests.explain.synthetic import SQUARE, brightness_resnet18, square_images, train_square_model

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained():
    return train_square_model(size=64, corner=(6, 42), steps=30)


def test_paper_style_defaults_give_13_by_13_positions():
    window, stride = OcclusionSettings().resolved(224)
    assert (window, stride) == (32, 16)
    offsets = occlusion_offsets(224, window, stride)
    assert len(offsets) == 13 and offsets[0] == 0 and offsets[-1] == 224 - 32
    assert occlusion_offsets(100, 32, 16) == [0, 16, 32, 48, 64, 68]  # the last window touches the edge
    assert occlusion_offsets(20, 32, 16) == [0]
    with pytest.raises(ValueError, match="fill"):
        OcclusionSettings(fill="noise")


@pytest.mark.parametrize(
    "settings",
    [
        OcclusionSettings(batch_size=5, window=12, stride=6),
        OcclusionSettings(
            batch_size=1, coarse_first=False, fill="zero", window=12, stride=6
        ),  # a 1-image batch must not alias x
        OcclusionSettings(batch_size=64, fill="blur", score="logit", window=10, stride=7),
    ],
)
def test_fast_path_equals_naive_loop(settings):
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", 3, 1)
    x = torch.randn(1, 1, 48, 48)
    before = x.clone()
    fast = occlusion_map(model, x, 2, settings)
    naive = occlusion_map_naive(model, x, 2, settings)
    assert torch.equal(x, before), "the caller's input was modified"
    assert fast.shape == (48, 48) and np.abs(naive).max() > 0
    np.testing.assert_allclose(fast, naive, rtol=1e-4, atol=1e-5 * np.abs(naive).max())


def test_peak_is_on_the_deciding_square_hand_built_model():
    model = brightness_resnet18()
    corner = (6, 42)
    x, y = square_images(2, 64, corner, seed=3, distractor=False)
    heatmap = explain_occlusion(model, x[1:2], 1, occlusion=OcclusionSettings(window=16, stride=8))
    r, c = np.unravel_index(int(heatmap.map.argmax()), heatmap.map.shape)
    assert corner[0] - 8 <= r < corner[0] + SQUARE + 8 and corner[1] - 8 <= c < corner[1] + SQUARE + 8


def test_peak_is_on_the_deciding_square_trained_model(trained):
    corner = (6, 42)
    x, y = square_images(40, 64, corner, seed=1000)
    with torch.no_grad():
        accuracy = (trained(x).argmax(1) == y).float().mean().item()
    assert accuracy >= 0.9, "the synthetic model did not learn the task; the map test would be meaningless"
    for i in np.flatnonzero(y.numpy() == 1)[:2]:
        raw = occlusion_map(trained, x[i : i + 1], 1)  # defaults: 9 px window, stride 4, 14 x 14 positions
        r, c = np.unravel_index(int(raw.argmax()), raw.shape)
        assert corner[0] - 6 <= r < corner[0] + SQUARE + 6 and corner[1] - 6 <= c < corner[1] + SQUARE + 6
        # and the distractor bar (present in both classes) does not matter: the square holds the evidence
        inside = raw[corner[0] : corner[0] + SQUARE, corner[1] : corner[1] + SQUARE].mean()
        assert inside > 5 * max(raw.mean(), 1e-9)


def test_progress_is_coarse_to_fine_and_the_coarse_map_is_the_stride_2s_map():
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", 2, 1)
    x = torch.randn(1, 1, 64, 64)
    reports = []
    settings = OcclusionSettings(window=16, stride=8, batch_size=10)  # 7 x 7 positions, 4 x 4 coarse
    final = occlusion_map(model, x, 0, settings, progress=lambda d, t, m: reports.append((d, t, m.copy())))
    done = [d for d, _, _ in reports]
    assert all(t == 49 for _, t, _ in reports) and done[-1] == 49 and done == sorted(done)
    assert 16 in done, "the coarse pass must be reported on its own"
    coarse_map = reports[done.index(16)][2]
    coarse_only = occlusion_map(model, x, 0, OcclusionSettings(window=16, stride=16))
    np.testing.assert_allclose(coarse_map, coarse_only, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(reports[-1][2], final)


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancellation_stops_early(kind):
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", 2, 1)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    event = threading.Event()
    should_cancel = event if kind == "event" else event.is_set
    settings = OcclusionSettings(window=8, stride=4, batch_size=8)  # 15 x 15 = 225 positions
    with pytest.raises(OcclusionCancelled) as info:
        occlusion_map(model, torch.randn(1, 1, 64, 64), 1, settings, lambda *_: event.set(), should_cancel)
    assert info.value.done == 8 and info.value.total == 225
    assert len(calls) == 2  # the unoccluded forward and one batch, nothing after the cancel
    assert info.value.partial_map.shape == (64, 64)


def test_downscaled_approximation_keeps_the_peak():
    model = brightness_resnet18()
    corner = (40, 150)
    x, _ = square_images(2, 224, corner, seed=5, distractor=False)
    approx = occlusion_map(model, x[1:2], 1, OcclusionSettings(scale=0.5))
    assert approx.shape == (224, 224)
    r, c = np.unravel_index(int(approx.argmax()), approx.shape)
    assert corner[0] - 16 <= r < corner[0] + SQUARE + 16 and corner[1] - 16 <= c < corner[1] + SQUARE + 16
