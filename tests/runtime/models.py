"""Tiny classifier model directories with ONNX graphs recorded in the manifest, as `cxr-trainer export` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.tiny_model import make_tiny_classifier_dir


def make_runtime_model_dir(
    out_dir: Path,
    onnx: bool = True,
    int8: bool = False,
    int8_acceptable: bool = False,
    temperature: float = 1.0,
    seed: int = 0,
) -> Path:
    """The tiny 64-px test classifier plus ``model.onnx`` (role ``onnx``) and optionally ``model.int8.onnx``."""
    from cxrviewer.ml.manifest import load_manifest, record_file, write_manifest
    from cxrviewer.ml.model_io import load_classifier
    from cxrviewer.ml.onnx_export import export_onnx, quantize_int8

    model_dir = make_tiny_classifier_dir(out_dir, seed=seed)
    model, _ = load_classifier(model_dir)
    manifest = load_manifest(model_dir)
    manifest.calibration["temperature"] = temperature
    size = manifest.preprocess_spec.size
    if onnx:
        export_onnx(model, model_dir / "model.onnx", size=size, in_chans=1)
        record_file(model_dir, manifest, "onnx", "model.onnx")
    if int8:
        rng = np.random.default_rng(seed)
        calib = [rng.normal(size=(1, size, size)).astype(np.float32) for _ in range(4)]
        quantize_int8(model_dir / "model.onnx", model_dir / "model.int8.onnx", calibration=calib)
        record_file(model_dir, manifest, "onnx_int8", "model.int8.onnx")
        manifest.extra["int8"] = {"accuracy_delta": -0.004, "acceptable": int8_acceptable}
    write_manifest(model_dir, manifest)
    return model_dir


def synthetic_cxr(h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    """A uint8 chest-radiograph-like image: bright mediastinum, two dark lung fields, noise, black border."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 150 + 40 * np.exp(-(((xx - w / 2) / (0.12 * w)) ** 2))
    for cx in (0.3 * w, 0.7 * w):
        img -= 70 * np.exp(-(((xx - cx) / (0.15 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2))
    img += rng.normal(0, 8, size=(h, w))
    out = np.clip(img, 0, 255).astype(np.uint8)
    out[:, :3] = 0
    return out
