"""Inference runtime benchmark: every backend against eager torch fp32, measured in the same run.

For each shipped classifier (``models/*/manifest.json`` with kind ``classifier``) and for a freshly
initialised ResNet-18 (224 px, 1 channel; untrained, labelled as such), at the model's own input size, at
224 px and at any ``--extra-sizes`` (fully convolutional networks run at any size), it prints:

- eager torch fp32, batch 1 (``model(x)`` under ``inference_mode``): the baseline;
- each Predictor backend on the same input, batch 1: ``torch-cpu-fp32``, ``onnxruntime-cpu-fp32``
  (graph optimisation ALL, intra-op threads = physical cores) and ``onnxruntime-cpu-int8`` (static QDQ,
  per-channel weights, calibrated on real images); ONNX Runtime int8 *dynamic* quantisation and ORT fp32 at
  optimisation level BASIC as references; ORT fp32 at batch 8 (worklist throughput, per image);
- the speed-up of each over eager torch;
- int8 vs fp32 agreement on real images other than the 16 it was calibrated on (the model's test split when
  its ``split`` file is there): top-1 agreement and the largest probability change (for a trained
  model with labels, also top-1 accuracy of both on those images);
- the single-image end-to-end analysis (``AnalysisPipeline.analyze`` on a real JPEG: read, preprocess,
  classify + CAM, heatmap on the original grid), median over repeats, with the backend ``auto`` chose.

Times are medians over ``--repeats`` runs after 3 warm-up runs. Real images come from the shared data set
(``../shared/data/cxr``); without it synthetic images are used and the agreement figures say so.

    .venv/bin/python benchmarks/run.py [--repeats 30] [--extra-sizes 160 128] [--images 48] [--viewer]

The shipped helper models (lung U-Net, input gate) follow, in their own process (``bench_helpers.py``:
torch eager vs ONNX Runtime, network and whole call; ``--no-helpers`` skips them). ``--viewer`` then runs
the viewer's own benchmarks with the shipped models: drop → all results on screen (``bench_drop_to_results.py``, cold and warm, against the same steps without the viewer) and the longest
GUI-thread stall during analyses (``bench_gui_stall.py``, against the same analysis on the GUI thread).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrviewer.core.preprocess import PreprocessSpec  # noqa: E402
from cxrviewer.ml.backends.ort_backend import cpu_session  # noqa: E402
from cxrviewer.ml.backends.threads import configure_torch_threads, physical_cores  # noqa: E402
from cxrviewer.ml.manifest import ModelManifest, load_manifest, record_file, write_manifest  # noqa: E402
from cxrviewer.ml.predictor import Predictor, PredictorSettings, model_input  # noqa: E402

FRESH_LABEL = "resnet18, freshly initialised (untrained), 1 channel"


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (median reported)")
    p.add_argument("--extra-sizes", type=int, nargs="*", default=[160, 128], help="more input sizes (px)")
    p.add_argument(
        "--images", type=int, default=64, help="real images: 16 calibrate int8, the rest measure it"
    )
    p.add_argument("--models", type=Path, default=REPO / "models", help="folder of shipped model dirs")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    p.add_argument("--threads", type=int, default=None, help="compute threads (default: physical cores)")
    p.add_argument("--no-fresh", action="store_true", help="skip the freshly initialised ResNet-18")
    p.add_argument(
        "--viewer", action="store_true", help="also the viewer's drop-to-results and stall benchmarks"
    )
    p.add_argument(
        "--no-helpers",
        action="store_true",
        help="skip the shipped lung U-Net and input gate (bench_helpers.py)",
    )
    return p.parse_args()


def run_helper_benchmark(repeats: int, threads: int | None) -> None:
    """The shipped lung U-Net and input gate (torch eager vs ONNX Runtime, same run), in their own process."""
    print("\n## shipped helper models: bench_helpers.py (lung U-Net, input gate)\n", flush=True)
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_helpers.py"), "--repeats", str(repeats)]
    cmd += ["--threads", str(threads or physical_cores())]
    subprocess.run(cmd, check=False)


def run_viewer_benchmarks(data: Path) -> None:
    """The viewer's benchmarks, each in its own process (they build Qt windows), output passed through."""
    for script in ("bench_drop_to_results.py", "bench_gui_stall.py"):
        print(f"\n## {script}\n", flush=True)
        subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--data", str(data)], check=False)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, float]]:
    """``(median, min)`` ms of each function, timed round-robin (one run of each per round) after 3 warm-up
    rounds.

    Interleaving exposes every candidate to the same background load, so the ratios stay fair on a machine
    that other work shares; the minimum is the least disturbed run (closest to an idle machine).
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 3):
        for label, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r >= 3:
                times[label].append((time.perf_counter() - t0) * 1000.0)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def machine() -> str:
    """lscpu model name, cores and threads, Python and library versions."""
    import onnxruntime
    import torch

    name = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        name = (
            f"{info.get('Model name', name)}, {info.get('CPU(s)', '?')} CPU(s), "
            f"{info.get('Core(s) per socket', '?')} core(s)/socket, {info.get('Thread(s) per core', '?')} "
            f"thread(s)/core; flags: {' '.join(f for f in ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni') if f in info.get('Flags', '').split())}"
        )
    except (OSError, subprocess.SubprocessError):
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{name}; load average at start {load} (1/5/15 min); physical cores: {physical_cores()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def test_split_paths(model_dir: Path | None, manifest: ModelManifest) -> set[str] | None:
    """Image paths of the model's test split (from its ``split`` file), or None without one."""
    split = manifest.files.get("split")
    if model_dir is None or split is None or not (model_dir / split.path).is_file():
        return None
    with (model_dir / split.path).open(newline="") as fh:
        return {r["path"] for r in csv.DictReader(fh) if r.get("split") == "test"}


def real_images(
    data: Path, n: int, only: set[str] | None = None
) -> tuple[list[np.ndarray], list[str], list[Path], str]:
    """``n`` images spread over the shared data set (grayscale uint8, restricted to ``only`` paths if given),
    their labels, their paths and a description of where they came from."""
    import cv2

    labels_csv = data / "labels.csv"
    if labels_csv.is_file():
        with labels_csv.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if only is None or r["path"] in only]
        picked = rows[:: max(1, len(rows) // n)][:n]
        paths = [data / r["path"] for r in picked]
        imgs = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
        keep = [i for i, im in enumerate(imgs) if im is not None]
        what = (
            "real images of the model's test split" if only is not None else "real images of the shared set"
        )
        return [imgs[i] for i in keep], [picked[i]["label"] for i in keep], [paths[i] for i in keep], what
    from tests.runtime.models import synthetic_cxr

    imgs = [synthetic_cxr(512, 480, seed=i) for i in range(n)]
    return imgs, ["unknown"] * n, [], "synthetic images"


def prepare_dir(model, manifest: ModelManifest, size: int, out: Path, calib: list[np.ndarray]) -> Path:
    """A model dir at input ``size`` with weights, ONNX fp32, int8 static QDQ (role onnx_int8), int8 dynamic."""
    from dataclasses import replace

    from cxrviewer.ml.model_io import save_classifier
    from cxrviewer.ml.onnx_export import export_onnx, quantize_int8

    spec = replace(manifest.preprocess_spec, size=size)
    m = ModelManifest.from_dict({**manifest.to_dict(), "files": {}, "preprocessing": spec.to_dict()})
    m.extra = {k: v for k, v in m.extra.items() if k != "int8"}
    save_classifier(model, m, out)
    export_onnx(model, out / "model.onnx", size=size, in_chans=spec.in_chans)
    record_file(out, m, "onnx", "model.onnx")
    inputs = [model_input(img, spec)[0] for img in calib]
    quantize_int8(out / "model.onnx", out / "model.int8.onnx", calibration=inputs)
    record_file(out, m, "onnx_int8", "model.int8.onnx")
    quantize_int8(out / "model.onnx", out / "model.int8-dynamic.onnx", calibration=None)
    m.extra["int8"] = {"accuracy_delta": None, "acceptable": False}  # measured below; fp32 stays default
    write_manifest(out, m)
    return out


def int8_agreement(d: Path, spec: PreprocessSpec, images, labels, manifest, real: str) -> str:
    """Top-1 agreement and max probability change of int8 vs fp32 (and accuracies when labels map)."""
    settings = PredictorSettings(warmup=False)
    f = Predictor.load(d, backend="onnxruntime-cpu-fp32", settings=settings).predict(images)
    q = Predictor.load(d, backend="onnxruntime-cpu-int8", settings=settings).predict(images)
    agree = np.mean([a.top_index == b.top_index for a, b in zip(f, q, strict=True)])
    dp = max(float(np.abs(a.probabilities - b.probabilities).max()) for a, b in zip(f, q, strict=True))
    text = f"top-1 agreement {agree:.1%}, max |Δp| {dp:.3f} on {len(images)} {real}"
    label_map = (manifest.task or {}).get("label_map") or {}
    truth = [label_map.get(lab) for lab in labels]
    idx = [i for i, t in enumerate(truth) if t in manifest.labels]
    if idx and manifest.metrics:  # a trained model: accuracy means something
        acc_f = np.mean([f[i].labels[f[i].top_index] == truth[i] for i in idx])
        acc_q = np.mean([q[i].labels[q[i].top_index] == truth[i] for i in idx])
        text += f"; accuracy fp32 {acc_f:.1%} → int8 {acc_q:.1%} (Δ {acc_q - acc_f:+.1%}, n={len(idx)})"
    return text


def bench_size(name: str, model, manifest: ModelManifest, size: int, args, images, labels, paths, real, tmp):
    """All rows for one model at one input size."""
    import torch

    from cxrviewer.services.analysis import AnalysisPipeline, AnalysisSettings

    d = prepare_dir(model, manifest, size, tmp / f"{name}-{size}".replace(" ", "_"), images[:16])
    spec = load_manifest(d).preprocess_spec
    x1 = model_input(images[0], spec)[0][None]
    x8 = np.stack([model_input(im, spec)[0] for im in images[:8]])
    xt = torch.from_numpy(x1)
    model.eval()
    fns: dict[str, Callable[[], object]] = {}

    def eager_run():
        with torch.inference_mode():
            return model(xt)

    fns["eager torch fp32 (baseline)"] = eager_run
    for backend in ("torch-cpu-fp32", "onnxruntime-cpu-fp32", "onnxruntime-cpu-int8"):
        p = Predictor.load(d, backend=backend, settings=PredictorSettings(threads=args.threads))
        label = backend + (" (static QDQ)" if backend.endswith("int8") else "")
        fns[label] = lambda p=p: p.run_batch(x1)
    dyn = cpu_session(d / "model.int8-dynamic.onnx", threads=args.threads)
    fns["onnxruntime int8 dynamic"] = lambda: dyn.run(None, {"input": x1})
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads = args.threads
    basic = ort.InferenceSession(str(d / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    fns["onnxruntime fp32, optimisation BASIC"] = lambda: basic.run(None, {"input": x1})
    fp32 = Predictor.load(d, backend="onnxruntime-cpu-fp32", settings=PredictorSettings(threads=args.threads))
    fns["onnxruntime-cpu-fp32, batch 8 (per image)"] = lambda: fp32.run_batch(x8)
    timed = interleaved_times(fns, args.repeats)
    med8, min8 = timed["onnxruntime-cpu-fp32, batch 8 (per image)"]
    timed["onnxruntime-cpu-fp32, batch 8 (per image)"] = (med8 / 8, min8 / 8)
    rows = list(timed.items())

    # calibration used images[:16]; agreement and accuracy are measured on the others
    agreement = int8_agreement(d, spec, images[16:], labels[16:], manifest, real)
    e2e_line = "end-to-end: no real image file available"
    if paths:
        import cv2

        t0 = time.perf_counter()
        pipe = AnalysisPipeline(AnalysisSettings(model_dir=d, device="auto", threads=args.threads))
        pipe.load()
        load_ms = (time.perf_counter() - t0) * 1000.0
        big = tmp / "detector-size.png"  # a detector-sized radiograph: 2,500 × 2,048 px, 16-bit PNG
        cv2.imwrite(str(big), (cv2.resize(images[0], (2048, 2500)).astype(np.uint16) * 257))
        lines = []
        for path, what in (
            (paths[0], f"{images[0].shape[1]}×{images[0].shape[0]} px JPEG"),
            (big, "2048×2500 px 16-bit PNG"),
        ):
            pipe.analyze(path)
            times = [pipe.analyze(path).latency_ms for _ in range(max(5, args.repeats // 2))]
            result = pipe.analyze(path)
            steps = ", ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items() if k != "total")
            lines.append(
                f"{what}: **{statistics.median(times):.1f} ms** median, {min(times):.1f} ms min "
                f"(steps of one run, ms: {steps})"
            )
        e2e_line = (
            f"end-to-end single image ({result.backend}; read, preprocess, classify + CAM, heatmap on the "
            f"original grid): {'; '.join(lines)}. Model load + SHA-256 verify + warm-up: {load_ms:.0f} ms"
        )
    return rows, agreement, e2e_line


def print_table(title: str, rows: list[tuple[str, tuple[float, float]]], agreement: str, e2e: str) -> None:
    eager_med, eager_min = rows[0][1]
    print(f"\n### {title}\n")
    print("| backend | ms/image (median) | speed-up (median) | ms/image (min) | speed-up (min) |")
    print("|---|---:|---:|---:|---:|")
    for label, (med, best) in rows:
        print(f"| {label} | {med:.2f} | {eager_med / med:.2f}× | {best:.2f} | {eager_min / best:.2f}× |")
    print(f"\n- int8 (static QDQ) vs fp32: {agreement}")
    print(f"- {e2e}", flush=True)


def models_to_run(args) -> list[tuple[str, object, ModelManifest, Path | None]]:
    import torch

    from cxrviewer.ml.model_io import load_classifier
    from cxrviewer.ml.registry import create_model

    found = []
    if args.models.is_dir():
        for mf in sorted(args.models.glob("*/manifest.json")):
            manifest = load_manifest(mf.parent, verify=False)
            if manifest.kind == "classifier":
                model, manifest = load_classifier(mf.parent)
                label = f"{manifest.name} {manifest.version} ({manifest.architecture['name']})"
                found.append((label, model, manifest, mf.parent))
    if not found:
        print(f"\n(no shipped classifier under {args.models}; measuring the fresh ResNet-18 only)")
    if not args.no_fresh:
        torch.manual_seed(0)
        model = create_model("resnet18", num_classes=3, in_chans=1).eval()
        manifest = ModelManifest(
            name="fresh-resnet18", version="0", kind="classifier",
            architecture={"name": "resnet18", "num_classes": 3, "in_chans": 1},
            labels=["normal", "pneumonia", "covid"], preprocessing=PreprocessSpec(size=224).to_dict(),
        )  # fmt: skip
        found.append((FRESH_LABEL, model, manifest, None))
    return found


def main() -> int:
    args = _parse()
    args.threads = args.threads or physical_cores()
    threads = configure_torch_threads(args.threads)
    print(
        f"# Inference runtime benchmark\n\nMachine: {machine()}; compute threads (torch and ONNX Runtime) {threads}"
    )
    print(f"{args.repeats} repeats per measurement, interleaved")
    tmp = Path(tempfile.mkdtemp(prefix="cxr-bench-"))
    try:
        for name, model, manifest, model_dir in models_to_run(args):
            images, labels, paths, real = real_images(
                args.data, args.images, test_split_paths(model_dir, manifest)
            )
            print(f"\n{name}: {len(images)} {real} for calibration, agreement and end-to-end")
            own = manifest.preprocess_spec.size
            sizes = [own] + [s for s in [224, *args.extra_sizes] if s != own]
            for size in sizes:
                rows, agreement, e2e = bench_size(
                    name, model, manifest, size, args, images, labels, paths, real, tmp
                )
                tag = "own size" if size == own else "resized input"
                print_table(f"{name} — {size} px ({tag})", rows, agreement, e2e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not args.no_helpers:
        run_helper_benchmark(args.repeats, args.threads)
    if args.viewer:
        run_viewer_benchmarks(args.data)
    if hasattr(os, "getloadavg"):
        print(f"\nLoad average at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
