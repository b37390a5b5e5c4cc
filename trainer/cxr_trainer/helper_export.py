"""ONNX graphs for the helper models (lung U-Net, input gate), verified against torch on real images.

:func:`export_helper_onnx` adds ``model.onnx`` to a segmentation or gate model folder, records its SHA-256 in
``manifest.files["onnx"]`` and the measured torch/ONNX difference in ``manifest.extra["onnx"]`` (as
``cxr-trainer export`` does for classifiers). Nothing else in the folder changes: the safetensors weights,
the OOD statistics and the thresholds stay byte-identical. ``train-seg``, ``train-gate`` and
``cxr-trainer export --model <helper folder>`` call it, so every helper model ships with its graph.

Graph outputs: the U-Net's ``logits`` (B, 1, S, S); the gate's ``logits`` (B, 3) and ``embedding`` (B, D), the
pooled feature vector of its Mahalanobis check (:mod:`cxrviewer.ml.onnx_export`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_NAME = "model.onnx"
HELPER_KINDS = ("segmentation", "gate")
DEFAULT_CHECK_IMAGES = 16


def _torch_graph(model_dir: Path, manifest) -> tuple[Any, tuple[str, ...]]:
    """The torch module whose outputs the graph reproduces, and the output names."""
    from cxrviewer.ml.onnx_export import GATE_OUTPUT_NAMES, SEG_OUTPUT_NAMES, gate_graph_module

    if manifest.kind == "segmentation":
        from cxrviewer.ml.segmentation import load_unet

        return load_unet(model_dir, manifest), SEG_OUTPUT_NAMES
    from cxrviewer.ml.model_io import load_classifier

    model, _ = load_classifier(model_dir, verify=False)
    return gate_graph_module(model), GATE_OUTPUT_NAMES


def held_out_images(model_dir: str | Path, data: str | Path | None, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` grayscale test-split images of a model folder's ``split.csv`` (paths relative to
    ``data``, default: the manifest's ``training["data"]``), spread over the split; ``[]`` when absent."""
    from cxr_trainer.image_cache import ImageReadError, read_gray
    from cxrviewer.ml.manifest import load_manifest

    root = Path(model_dir)
    manifest = load_manifest(root, verify=False)
    base = Path(data) if data is not None else Path(str((manifest.training or {}).get("data", "")))
    split = manifest.files.get("split")
    if not base.is_dir() or split is None or not (root / split.path).is_file():
        return []
    with open(root / split.path, newline="", encoding="utf-8") as fh:
        paths = [r["path"] for r in csv.DictReader(fh) if r.get("split") == "test"]
    step = max(1, len(paths) // max(1, limit))
    images = []
    for p in paths[::step]:
        try:
            images.append(read_gray(base / p))
        except ImageReadError:
            continue
        if len(images) >= limit:
            break
    return images


def export_helper_onnx(
    model_dir: str | Path,
    images: Sequence[np.ndarray] | None = None,
    data: str | Path | None = None,
    limit: int = DEFAULT_CHECK_IMAGES,
    atol: float = 1e-4,
) -> dict[str, Any]:
    """Export a segmentation or gate model folder's network to ``model.onnx`` and record it in the manifest.

    Args:
        model_dir: the model folder (kind ``segmentation`` or ``gate``; hashes are verified first).
        images: grayscale images (uint8) for the parity check; default: :func:`held_out_images` of ``data``,
            and random inputs only when no real image can be found (``checked_on`` says which).
        data: data folder the model's ``split.csv`` paths are relative to (default: the manifest's).
        limit: at most this many images for the parity check.
        atol: largest allowed absolute difference between torch and ONNX Runtime outputs.

    Returns:
        ``{"onnx": path, "max_abs_diff": float, "checked_on": str, "model_dir": str}``.

    Raises:
        ValueError: not a helper model folder.
        ModelIntegrityError: the folder's files do not match their hashes.
        OnnxParityError: the graph differs from torch by more than ``atol`` (nothing is recorded then).
    """
    from cxrviewer.core.preprocess import preprocess
    from cxrviewer.ml.manifest import load_manifest, record_file, write_manifest
    from cxrviewer.ml.onnx_export import OnnxParityError, export_graph, onnx_manifest_entry, verify_graph

    root = Path(model_dir)
    manifest = load_manifest(root, verify=True)
    if manifest.kind not in HELPER_KINDS:
        raise ValueError(f"{root} holds a {manifest.kind} model; export_helper_onnx exports {HELPER_KINDS}")
    spec = manifest.preprocess_spec
    module, outputs = _torch_graph(root, manifest)
    pics = list(images) if images is not None else held_out_images(root, data, limit)
    if pics:
        x = np.stack([preprocess(np.ascontiguousarray(im), spec)[0] for im in pics[:limit]])[:, None]
        checked_on = f"{len(x)} preprocessed " + (
            "images" if images is not None else "real images (test split)"
        )
    else:
        x = np.random.default_rng(0).standard_normal((8, spec.in_chans, spec.size, spec.size))
        checked_on = "8 random inputs (no real images found)"
    x = x.astype(np.float32)
    onnx_path = export_graph(module, root / ONNX_NAME, spec.size, spec.in_chans, outputs)
    try:
        diff = verify_graph(module, onnx_path, x, outputs, atol=atol)
    except OnnxParityError:
        onnx_path.unlink(missing_ok=True)
        raise
    record_file(root, manifest, "onnx", ONNX_NAME)
    manifest.extra["onnx"] = onnx_manifest_entry(outputs, diff, atol, checked_on)
    write_manifest(root, manifest)
    return {"onnx": str(onnx_path), "max_abs_diff": diff, "checked_on": checked_on, "model_dir": str(root)}
