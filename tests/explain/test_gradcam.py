"""Grad-CAM: the exact fast path equals hook-based autograd Grad-CAM, the numpy version equals both, the map
finds the deciding patch, and randomising the weights changes it (Adebayo et al. sanity check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from cxrviewer.ml.explain import cam_from_features, explain_gradcam, forward_with_cam, gradcam_reference
from cxrviewer.ml.registry import create_model
from tests.explain.synthetic import SQUARE, brightness_resnet18, square_images

torch.set_num_threads(2)


@pytest.mark.parametrize(
    "arch", ["resnet18", "squeezenet1_1", "densenet121", "mobilenet_v3_small", "efficientnet_b0", "vgg16"]
)  # small inputs keep this fast; the maps are 1 x 1 to 3 x 3, enough to compare numbers
def test_fast_path_equals_hook_reference(arch):
    torch.manual_seed(0)
    model = create_model(arch, 3, 1)
    with torch.no_grad():  # a head with some weight on every channel, so that the maps are not all zero
        model.head.weight.normal_(0.0, 1.0)
    x = torch.randn(2, 1, 64, 64)
    logits, cams = forward_with_cam(model, x)
    assert not model.training
    with torch.no_grad():
        assert torch.allclose(logits, model(x), rtol=1e-5, atol=1e-5)
    nonzero = 0
    for c in range(3):
        ref_logits, ref = gradcam_reference(model, x, c)
        scale = float(ref.abs().max())
        nonzero += scale > 0
        assert cams.shape[:2] == (2, 3) and cams.shape[2:] == ref.shape[1:]
        assert torch.allclose(cams[:, c], ref, rtol=1e-4, atol=1e-5 * max(scale, 1e-30))
        assert torch.allclose(ref_logits, logits, rtol=1e-5, atol=1e-5)
    assert nonzero >= 1, "every map is zero: the comparison would prove nothing"


def test_numpy_cam_equals_torch():
    torch.manual_seed(1)
    model = create_model("resnet18", 3, 1)
    x = torch.randn(2, 1, 64, 64)
    _, cams = forward_with_cam(model, x)
    with torch.no_grad():
        fmap = model.forward_features(x).numpy()
    weight = model.head.weight.detach().numpy()
    np.testing.assert_allclose(cam_from_features(fmap, weight), cams.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        cam_from_features(fmap[0], weight, 2), cams[0, 2].numpy(), rtol=1e-4, atol=1e-6
    )
    with pytest.raises(ValueError, match="out of range"):
        cam_from_features(fmap[0], weight, 3)
    with pytest.raises(ValueError, match="feature channels"):
        cam_from_features(fmap[0], weight[:, :10], 0)


def test_gradcam_peak_is_on_the_deciding_square():
    model = brightness_resnet18()
    corner = (16, 88)  # top right, off the diagonal: a transposed or flipped map fails
    x, y = square_images(4, 128, corner, seed=3, distractor=False)
    for i in np.flatnonzero(y.numpy() == 1):
        heatmap = explain_gradcam(model, x[i : i + 1], class_index=1)
        assert heatmap.map.shape == (128, 128) and heatmap.method == "gradcam"
        assert heatmap.map.min() >= 0.0 and heatmap.map.max() == pytest.approx(1.0)
        r, c = np.unravel_index(int(heatmap.map.argmax()), heatmap.map.shape)
        # the last map is 4 x 4 (32 px cells): the peak must fall in the square's cell
        centre = (corner[0] + SQUARE / 2, corner[1] + SQUARE / 2)
        assert abs(r - centre[0]) <= 32 and abs(c - centre[1]) <= 32, (r, c)
        quadrants = heatmap.map.reshape(2, 64, 2, 64).mean(axis=(1, 3))
        assert np.unravel_index(int(quadrants.argmax()), (2, 2)) == (0, 1), quadrants


def test_randomising_the_weights_changes_the_map():
    model = brightness_resnet18()
    x, y = square_images(8, 224, (40, 150), seed=4, distractor=False)
    x = x[y == 1]
    _, cams = forward_with_cam(model, x)
    correlations = []
    for seed in range(3):
        torch.manual_seed(100 + seed)
        random_model = create_model("resnet18", 2, 1)
        _, random_cams = forward_with_cam(random_model, x)
        for i in range(len(x)):
            rho = spearmanr(cams[i, 1].flatten(), random_cams[i, 1].flatten()).correlation
            correlations.append(0.0 if np.isnan(rho) else abs(rho))
    # a map that ignored the weights (an edge detector, a bug that reads the input) would keep rho near 1
    assert np.mean(correlations) < 0.5, correlations
    # the control: the same weights give the same map
    _, again = forward_with_cam(model, x)
    assert spearmanr(cams[0, 1].flatten(), again[0, 1].flatten()).correlation > 0.99


def test_gradcam_rejects_a_bad_class():
    model = create_model("squeezenet1_1", 2, 1)
    with pytest.raises(ValueError, match="out of range"):
        gradcam_reference(model, torch.zeros(1, 1, 64, 64), 2)
    with pytest.raises(ValueError, match="out of range"):
        explain_gradcam(model, torch.zeros(1, 1, 64, 64), -1)
