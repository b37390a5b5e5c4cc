"""Lung-channel input (Goldstein) in training and in the viewer, and the lung-ablation shortcut check."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from cxr_trainer.ablation import ablation_modes, run_ablations
from cxr_trainer.augment import AugmentConfig, augment_batch
from cxr_trainer.cli import main
from cxr_trainer.evaluation import EvalData, run_model_on_csv
from cxr_trainer.inputs import assemble_channels, to_unit
from cxr_trainer.lung_cache import input_planes

from cxrviewer.core.preprocess import PreprocessSpec

pytestmark = pytest.mark.timeout(240)

LUNG_SPEC = PreprocessSpec(size=16, channels=("cxr", "lung", "zeros"))


def test_cached_lung_plane_becomes_the_lung_channel():
    img = np.full((2, 16, 16), 200, np.uint8)
    lung = np.zeros((2, 16, 16), np.uint8)
    lung[:, 4:12, 2:7] = 255
    x = assemble_channels(to_unit(input_planes(img, lung)), LUNG_SPEC)
    assert x.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(x[:, 0].numpy(), (200 / 255 - 0.5) / 0.25, atol=1e-6)
    np.testing.assert_allclose(x[:, 1].numpy(), (lung / 255.0 - 0.5) / 0.25, atol=1e-6)
    assert torch.all(x[:, 2] == 0)
    with pytest.raises(ValueError, match="do not match"):
        input_planes(img, lung[:, :8])


def test_augmentation_moves_the_lung_plane_with_the_image_but_never_relights_it():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(4, 1, 32, 32)
    x = torch.cat([base, base], dim=1)
    geometric = AugmentConfig(rotation_deg=10, scale=0.1, translate=0.1, brightness=0, contrast=0, gamma=0)
    out = augment_batch(x, geometric, g, photometric_channels=1)
    assert not torch.allclose(out[:, 1], base[:, 0])  # it moved ...
    torch.testing.assert_close(out[:, 0], out[:, 1])  # ... exactly like the image
    photometric = AugmentConfig(0, 0, 0, brightness=0.3, contrast=0.3, gamma=0.3)
    out = augment_batch(x, photometric, g, photometric_channels=1)
    torch.testing.assert_close(out[:, 1], base[:, 0])  # the probabilities keep their values
    assert not torch.allclose(out[:, 0], base[:, 0])


def test_ablation_modes_parse():
    assert ablation_modes(["both"]) == ["lungs-removed", "lungs-only"]
    assert ablation_modes(["lungs-only", "lungs-removed,lungs-only"]) == ["lungs-removed", "lungs-only"]
    assert ablation_modes(None) == []
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_modes(["lungs"])


class _PatchProbe(torch.nn.Module):
    """Scores 'covid' by the mean brightness of one fixed patch of the image channel (nothing else)."""

    num_classes = 2

    def __init__(self, rows: slice, cols: slice):
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward_features(self, x):
        return x[:, :1, self.rows, self.cols]

    def forward_head(self, fmap):
        s = fmap.mean(dim=(1, 2, 3))
        return torch.stack([-s, s], dim=1) * 4


def _probe_data(n: int = 40) -> EvalData:
    """Images with the lungs in the middle rows; positives have a bright corner (outside the lungs) AND a
    bright spot inside the left lung, so a probe of either patch separates the classes perfectly."""
    rng = np.random.default_rng(0)
    pixels = np.full((n, 32, 32), 90, np.uint8)
    lung = np.zeros((n, 32, 32), np.uint8)
    lung[:, 8:26, 4:14] = 230
    lung[:, 8:26, 18:28] = 230
    y = np.arange(n) % 2
    pixels[y == 1, 0:4, 0:4] = 220
    pixels[y == 1, 14:18, 7:11] = 220
    pixels = np.clip(pixels + rng.integers(0, 20, pixels.shape), 0, 255).astype(np.uint8)
    return EvalData(
        keys=[str(i) for i in range(n)],
        sources=["a" if i < n // 2 else "b" for i in range(n)],
        y=y,
        logits=np.zeros((n, 2), np.float32),
        embeddings=np.zeros((n, 1)),
        pixels=pixels,
        lung=lung,
    )


@pytest.mark.parametrize(
    ("patch", "outside"),
    [((slice(0, 4), slice(0, 4)), True), ((slice(14, 18), slice(7, 11)), False)],
    ids=["corner-probe", "lung-probe"],
)
def test_ablation_finds_where_the_signal_is(patch, outside):
    data = _probe_data()
    spec = PreprocessSpec(size=32)
    model = _PatchProbe(*patch)
    from cxr_trainer.inputs import predict

    data.logits, _ = predict(model, data.pixels, np.arange(len(data.y)), spec)
    block = run_ablations(model, spec, data, ["lungs-removed", "lungs-only"], ["rest", "covid"], 1, 1.0, 200)
    c = block["conditions"]
    assert c["original"]["roc_auc"] == 1.0
    assert block["mask_area_fraction_mean"] == pytest.approx(2 * 18 * 10 / 32**2)
    kept, lost = ("lungs-removed", "lungs-only") if outside else ("lungs-only", "lungs-removed")
    assert c[kept]["roc_auc"] == 1.0 and c[kept]["accuracy"] == 1.0
    assert c[lost]["roc_auc"] == 0.5 and c[lost]["accuracy"] == 0.5
    assert set(c[kept]["per_source"]) == {"a", "b"}
    assert block["roc_auc_share_kept_lungs_removed"] == (1.0 if outside else 0.0)
    assert ("most of the signal" in block["summary"]) is outside
    assert ("little of the signal" in block["summary"]) is not outside


def test_lung_channel_model_trains_evaluates_with_ablation_and_runs_in_the_viewer(
    synthetic_dataset, tmp_path, monkeypatch
):
    monkeypatch.setenv("CXR_TRAINER_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    train = ["train", "--data", str(synthetic_dataset), "--out", str(model_dir), "--size", "48"]
    train += ["--arch", "mobilenet_v3_small", "--epochs", "1", "--batch-size", "16", "--threads", "1"]
    assert main(train + ["--channels", "cxr,lung,zeros", "--quiet"]) == 0
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["preprocessing"]["channels"] == ["cxr", "lung", "zeros"]
    assert manifest["architecture"]["in_chans"] == 3
    assert manifest["extra"]["lung_model"].startswith("lung-unet-")
    lung_caches = list((tmp_path / "cache").glob("*-lung-unet-*.npy"))
    assert len(lung_caches) == 1  # computed once, reused by training, validation and test
    planes = np.load(lung_caches[0])
    assert planes.shape[1:] == (48, 48) and planes.max() > 200  # the U-Net finds the synthetic lungs

    out = tmp_path / "eval"
    ev = ["evaluate", "--model", str(model_dir), "--labels", str(synthetic_dataset), "--out", str(out)]
    ev += ["--bootstrap", "50", "--no-tsne", "--quiet", "--threads", "1"]
    assert main(ev + ["--ablation", "both"]) == 0
    assert list((tmp_path / "cache").glob("*-lung-unet-*.npy")) == lung_caches
    m = json.loads((out / "metrics.json").read_text())
    a = m["ablation"]
    assert a["modes"] == ["lungs-removed", "lungs-only"]
    assert set(a["conditions"]) == {"original", "lungs-removed", "lungs-only"}
    assert a["conditions"]["original"]["accuracy"] == pytest.approx(m["accuracy"])
    assert a["conditions"]["original"]["roc_auc"] == pytest.approx(m["roc_auc"])
    assert all(c["n"] == m["n"] for c in a["conditions"].values())
    assert set(a["conditions"]["lungs-removed"]["per_source"]) == {"alpha", "beta"}
    assert 0.05 < a["mask_area_fraction_mean"] < 0.6 and a["empty_masks"] == 0
    assert a["summary"].startswith("With the lungs blanked out")
    html = (out / "report.html").read_text()
    assert "Lung ablation" in html and "ablation.png" in html and (out / "ablation.png").is_file()

    # exported to ONNX (verified against torch on lung-channel inputs), then the viewer's pipeline (shipped
    # lung U-Net) feeds the model what the trainer fed it: the same probabilities
    assert main(["export", "--model", str(model_dir), "--quiet"]) == 0
    assert "onnx" in json.loads((model_dir / "manifest.json").read_text())["files"]
    from cxrviewer.ml.segmentation import LungSegmenter
    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings
    from cxrviewer.services.shipped_helpers import LungMaskAdapter

    data, man, _, _ = run_model_on_csv(model_dir, synthetic_dataset, show_progress=False, threads=1)
    temperature = man.calibration["temperature"]
    pipe = AnalysisPipeline(
        AnalysisSettings(model_dir=model_dir, device="cpu", threads=1, warmup=False, heatmap=False),
        segmenter=LungMaskAdapter(LungSegmenter(threads=1)),
    )
    root = synthetic_dataset.parent
    for i in (0, 17, 40):
        result = pipe.analyze(root / data.keys[i])
        assert result.status == "ok", result.reason
        assert pipe.load().backend.startswith("onnxruntime")
        z = data.logits[i] / temperature
        expected = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        got = np.array([result.probabilities[k] for k in man.labels])
        np.testing.assert_allclose(got, expected, atol=1e-4)
        image = cv2.imread(str(root / data.keys[i]), cv2.IMREAD_GRAYSCALE)
        assert result.lung_mask is not None and result.lung_mask.shape == image.shape


def test_a_mask_only_segmenter_is_refused_for_a_lung_channel_model(synthetic_dataset, tmp_path):
    from cxrviewer.ml.lung_channel import lung_input

    class MaskOnly:
        def segment(self, image):
            return np.ones(image.shape, bool)

    img = cv2.imread(str(synthetic_dataset.parent / "images/alpha/normal_000.png"), cv2.IMREAD_GRAYSCALE)
    with pytest.raises(ValueError, match="probability map"):
        lung_input(MaskOnly(), img, LUNG_SPEC)
