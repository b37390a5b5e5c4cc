"""A tiny but real classifier model directory for tests (registry network, safetensors, verified manifest)."""

from __future__ import annotations

from pathlib import Path

LABELS = ["normal", "pneumonia", "covid"]


def make_tiny_classifier_dir(
    out_dir: Path, arch: str = "squeezenet1_1", size: int = 64, seed: int = 0
) -> Path:
    """Write an untrained 3-class classifier at ``size`` px into ``out_dir`` and return it.

    The weights are random (seeded) but the directory is complete: safetensors weights, preprocessing spec,
    operating points, task definition and SHA-256, exactly like a trained model's.
    """
    import torch

    from cxrviewer.core.preprocess import PreprocessSpec
    from cxrviewer.ml.manifest import ModelManifest
    from cxrviewer.ml.model_io import save_classifier
    from cxrviewer.ml.registry import create_model

    torch.manual_seed(seed)
    model = create_model(arch, num_classes=len(LABELS), in_chans=1).eval()
    manifest = ModelManifest(
        name="tiny-test-classifier",
        version="0.0.1",
        kind="classifier",
        architecture={"name": arch, "num_classes": len(LABELS), "in_chans": 1},
        labels=list(LABELS),
        preprocessing=PreprocessSpec(size=size).to_dict(),
        task={
            "name": "normal-pneumonia-covid",
            "label_map": {
                "normal": "normal",
                "pneumonia_bacterial": "pneumonia",
                "pneumonia_viral": "pneumonia",
                "covid": "covid",
            },
        },
        thresholds={
            "positive_class": "covid",
            "default": "balanced",
            "operating_points": {
                "high-sensitivity": {"threshold": 0.1, "sensitivity": 0.97, "specificity": 0.80},
                "balanced": {"threshold": 0.2, "sensitivity": 0.94, "specificity": 0.92},
                "high-specificity": {"threshold": 0.5, "sensitivity": 0.85, "specificity": 0.97},
            },
        },
        calibration={"temperature": 1.0},
    )
    return save_classifier(model, manifest, out_dir)
