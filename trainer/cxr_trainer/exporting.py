"""Export a trained model folder for the viewer: safetensors + manifest.json + ONNX (+ optional int8 ONNX).

The ONNX graph comes from :func:`cxrviewer.ml.onnx_export.export_onnx` (outputs ``logits`` and ``features``)
and is verified against torch on real preprocessed images within ``atol`` (1e-4). The int8 graph's accuracy
change against the fp32 graph is measured on a labelled set and recorded in ``manifest.extra["int8"]``;
the viewer uses int8 only when it is marked ``acceptable``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
INT8_MAX_ACCURACY_DROP = 0.01


def _eval_pixels(
    manifest,
    model_dir: Path,
    labels: str | None,
    split_csv: str | None,
    subset: str,
    limit: int,
    cache_dir,
    show_progress: bool,
):
    """(uint8 pixels (N,S,S) — (N,2,S,S) with the lung plane for a lung-channel model —, class indices) for
    the parity check and int8 measurement."""
    from cxr_trainer.datasets import load_dataset
    from cxr_trainer.image_cache import build_cache
    from cxr_trainer.splits import read_split_csv
    from cxr_trainer.tasks import TaskDef

    if labels is None:
        ds_path = (manifest.training or {}).get("dataset")
        if not ds_path or not Path(ds_path).exists():
            return None, None
        labels = ds_path
        split_file = model_dir / (manifest.training.get("split_file") or "split.csv")
        split_csv = split_csv or (str(split_file) if split_file.is_file() else None)
    task = TaskDef.from_dict(manifest.task, manifest.labels)
    ds = load_dataset(labels)
    recs = [r for r in ds.records if task.map_label(r.label) in manifest.labels]
    if split_csv:
        keep = {k for k, s in read_split_csv(split_csv).items() if s == subset}
        recs = [r for r in recs if r.key in keep]
    rng = np.random.default_rng(0)
    if len(recs) > limit:
        recs = [recs[i] for i in sorted(rng.choice(len(recs), limit, replace=False))]
    if not recs:
        return None, None
    cache = build_cache(recs, manifest.preprocess_spec, cache_dir, show_progress=show_progress)
    ok = cache.ok_indices
    y = np.array([manifest.labels.index(task.map_label(recs[i].label)) for i in ok])
    if "lung" in manifest.preprocess_spec.channels:
        from cxr_trainer.lung_cache import build_lung_cache, input_planes

        lung = build_lung_cache(recs, manifest.preprocess_spec, cache_dir, show_progress=show_progress)
        return input_planes(np.asarray(cache.pixels[ok]), np.asarray(lung[ok])), y
    return np.asarray(cache.pixels[ok]), y


def _inputs(pixels: np.ndarray, spec) -> np.ndarray:
    from cxr_trainer.inputs import assemble_channels, to_unit

    return assemble_channels(to_unit(pixels), spec).numpy().astype(np.float32)


def _run_onnx(path: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    from cxrviewer.ml.backends.ort_backend import cpu_session
    from cxrviewer.ml.onnx_export import INPUT_NAME

    sess = cpu_session(path)
    return np.concatenate(
        [sess.run(["logits"], {INPUT_NAME: x[s : s + batch]})[0] for s in range(0, len(x), batch)]
    )


def export_model(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    int8: str | None = None,
    labels: str | None = None,
    split_csv: str | None = None,
    subset: str = "test",
    limit: int = 400,
    atol: float = 1e-4,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write ONNX (and int8 ONNX when ``int8`` is ``dynamic`` or ``static``) into the model folder.

    With ``out_dir`` the weights, split file and manifest are copied there first. Returns what was recorded.
    """
    from cxr_trainer.metrics import roc_auc
    from cxrviewer.ml.manifest import record_file, write_manifest
    from cxrviewer.ml.model_io import load_classifier
    from cxrviewer.ml.onnx_export import (
        OUTPUT_NAMES,
        export_onnx,
        onnx_manifest_entry,
        quantize_int8,
        verify_onnx,
    )

    src = Path(model_dir)
    model, manifest = load_classifier(src)
    dst = Path(out_dir) if out_dir else src
    if dst.resolve() != src.resolve():
        dst.mkdir(parents=True, exist_ok=True)
        for f in manifest.files.values():
            if f.path not in (ONNX_NAME, ONNX_INT8_NAME):
                (dst / f.path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / f.path, dst / f.path)
    spec = manifest.preprocess_spec
    pixels, y = _eval_pixels(manifest, src, labels, split_csv, subset, limit, cache_dir, show_progress)
    onnx_path = export_onnx(model, dst / ONNX_NAME, spec.size, spec.in_chans)
    if pixels is not None and len(pixels):
        x = _inputs(pixels[:32], spec)
        check_on = f"{len(x)} preprocessed images"
    else:
        x = (
            np.random.default_rng(0)
            .standard_normal((8, spec.in_chans, spec.size, spec.size))
            .astype(np.float32)
        )
        check_on = "8 random inputs (no labelled data found)"
    diff = verify_onnx(model, onnx_path, x, atol=atol)
    record_file(dst, manifest, "onnx", ONNX_NAME)
    manifest.extra["onnx"] = onnx_manifest_entry(OUTPUT_NAMES, diff, atol, check_on)
    result: dict[str, Any] = {"onnx": str(onnx_path), "max_abs_diff": diff}
    if int8:
        calib = None
        if int8 == "static":
            if pixels is None:
                raise ValueError("static int8 quantisation needs labelled images for calibration (--labels)")
            calib = [_inputs(pixels[s : s + 16], spec) for s in range(0, min(len(pixels), 128), 16)]
        q_path = quantize_int8(onnx_path, dst / ONNX_INT8_NAME, calib)
        record_file(dst, manifest, "onnx_int8", ONNX_INT8_NAME)
        info: dict[str, Any] = {"mode": int8, "acceptable": False, "accuracy_delta": None}
        if pixels is not None and len(pixels):
            xs = _inputs(pixels, spec)
            lf, lq = _run_onnx(onnx_path, xs), _run_onnx(q_path, xs)
            acc_f, acc_q = float(np.mean(lf.argmax(1) == y)), float(np.mean(lq.argmax(1) == y))
            pos_name = (manifest.thresholds or {}).get("positive_class", manifest.labels[-1])
            pos = manifest.labels.index(pos_name)

            def p(lg):
                e = np.exp(lg - lg.max(1, keepdims=True))
                return e / e.sum(1, keepdims=True)

            auc_f, auc_q = roc_auc(y == pos, p(lf)[:, pos]), roc_auc(y == pos, p(lq)[:, pos])
            info.update(
                n=int(len(y)),
                measured_on=f"{labels or manifest.training.get('dataset')} ({subset if (split_csv or labels is None) else 'all'})",
                accuracy_fp32=acc_f,
                accuracy_int8=acc_q,
                accuracy_delta=acc_q - acc_f,
                roc_auc_fp32=auc_f,
                roc_auc_int8=auc_q,
                argmax_agreement=float(np.mean(lf.argmax(1) == lq.argmax(1))),
                max_prob_diff=float(np.max(np.abs(p(lf) - p(lq)))),
                acceptable=bool(acc_q - acc_f >= -INT8_MAX_ACCURACY_DROP),
                rule=f"accuracy drop at most {INT8_MAX_ACCURACY_DROP}",
            )
        manifest.extra["int8"] = info
        result["int8"] = info
    write_manifest(dst, manifest)
    result["model_dir"] = str(dst)
    return result
