"""Explainability speed on CPU: forward vs Grad-CAM (hook-based vs fast path) and occlusion (naive eager loop
vs the batched fast path, and the downscaled approximation with its error), with ratios from the same run.

    .venv/bin/python benchmarks/bench_explain.py [--repeats 3] [--threads 2] [--image path.jpg]
    .venv/bin/python benchmarks/bench_explain.py --model models/cxr-classifier --skip-naive

With ``--model`` and a model folder that ships ``model.onnx``, the same occlusion also runs on ONNX Runtime
(the predictor's session, as the viewer does; no torch on that path) and is compared with the torch fast path.

ResNet-18 classifier (random weights: timing does not depend on them), 224 px, 1 input channel, 3 classes.
Goals: Grad-CAM <= 1.2 x one forward; paper-style occlusion (13 x 13 = 169 positions) <= 1.0 s.
Every figure is the median of ``--repeats`` runs; methods are interleaved so a busy machine hurts all alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from cxrviewer.ml.explain import (
    OcclusionSettings,
    forward_with_cam,
    gradcam_reference,
    occlusion_map,
    occlusion_map_naive,
    occlusion_offsets,
    predictor_occlusion_map,
)
from cxrviewer.ml.registry import create_model

REPO = Path(__file__).resolve().parents[1]


def _input(image: str | None, size: int) -> tuple[torch.Tensor, str]:
    """A real preprocessed CXR when one is given or the shared data is present, else smooth noise."""
    from cxrviewer.core.preprocess import PreprocessSpec, preprocess

    path = Path(image) if image else None
    if path is None:
        shared = REPO.parent / "shared" / "data" / "cxr" / "images"
        path = next(iter(sorted(shared.glob("*/*.jpg"))), None) if shared.is_dir() else None
    if path is not None and path.is_file():
        import cv2

        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        x, _ = preprocess(pixels, PreprocessSpec(size=size))
        return torch.from_numpy(x)[None, None], f"real CXR ({path.parent.name}/{path.name})"
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.randn(1, 1, size, size, generator=g), 9, 1, 4) * 3
    return x, "smoothed noise (no shared data)"


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a.ravel())).astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel())).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--image", default=None, help="a CXR image for the approximation-error figures")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive occlusion loop")
    parser.add_argument(
        "--model",
        default=None,
        help="a trained model folder (e.g. models/cxr-classifier): time it at its own input size instead of ResNet-18",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        from cxrviewer.ml.model_io import load_classifier

        model, manifest = load_classifier(args.model)
        args.size = manifest.preprocess_spec.size
        name = f"{manifest.name} ({manifest.architecture['name']}, trained)"
    else:
        model = create_model("resnet18", 3, 1).eval()
        name = "ResNet-18"
    x, source = _input(args.image, args.size)
    predictor = None
    if args.model and (Path(args.model) / "model.onnx").is_file():
        from cxrviewer.ml.predictor import Predictor, PredictorSettings

        predictor = Predictor.load(
            args.model, backend="onnxruntime-cpu-fp32", settings=PredictorSettings(threads=args.threads)
        )
    cls = 0
    settings = OcclusionSettings()
    window, stride = settings.resolved(args.size)
    positions = len(occlusion_offsets(args.size, window, stride)) ** 2
    print(f"{name}, {args.size} px, 1 channel, {args.threads} threads, input: {source}")
    print(
        f"occlusion: window {window}, stride {stride}, {positions} positions, fill {settings.fill}, "
        f"batch {settings.batch_size}",
        flush=True,
    )

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    first_map: list[float] = []

    def fast_occlusion() -> np.ndarray:
        t0 = time.perf_counter()
        marks: list[float] = []

        def progress(done: int, total: int, _m: np.ndarray) -> None:
            marks.append(time.perf_counter() - t0)

        out = occlusion_map(model, x, cls, settings, progress=progress)
        first_map.append(marks[0] if marks else float("nan"))
        return out

    ort_first: list[float] = []

    def ort_occlusion() -> np.ndarray:
        t0 = time.perf_counter()
        marks: list[float] = []

        def progress(done: int, total: int, _m: np.ndarray) -> None:
            marks.append(time.perf_counter() - t0)

        out = predictor_occlusion_map(predictor, x.numpy(), cls, settings, progress=progress)
        ort_first.append(marks[0] if marks else float("nan"))
        return out

    if predictor is not None:
        ort_occlusion()  # warm-up
    for fn in (forward, lambda: forward_with_cam(model, x), lambda: gradcam_reference(model, x, cls)):
        fn()  # warm-up
    times: dict[str, list[float]] = {
        k: [] for k in ("forward", "cam_fast", "cam_hook", "occ_fast", "occ_half")
    }
    times["occ_naive"] = []
    times["occ_ort"] = []
    exact = approx = naive = ort = None
    for _ in range(args.repeats):
        times["forward"].append(_time(forward))
        times["cam_fast"].append(_time(lambda: forward_with_cam(model, x)))
        times["cam_hook"].append(_time(lambda: gradcam_reference(model, x, cls)))
        t0 = time.perf_counter()
        exact = fast_occlusion()
        times["occ_fast"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        approx = occlusion_map(model, x, cls, OcclusionSettings(scale=0.5))
        times["occ_half"].append(time.perf_counter() - t0)
        if predictor is not None:
            t0 = time.perf_counter()
            ort = ort_occlusion()
            times["occ_ort"].append(time.perf_counter() - t0)
        if not args.skip_naive:
            t0 = time.perf_counter()
            naive = occlusion_map_naive(model, x, cls, settings)
            times["occ_naive"].append(time.perf_counter() - t0)
        print("run:", ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items() if v), flush=True)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"\n{'what':44s} {'median s':>9s}   runs")
    rows = [
        ("forward (1 image, inference_mode)", "forward"),
        ("Grad-CAM fast path (forward_with_cam, all classes)", "cam_fast"),
        ("Grad-CAM hook-based (forward + backward)", "cam_hook"),
        ("occlusion naive eager loop (169 forwards)", "occ_naive"),
        ("occlusion fast path, exact", "occ_fast"),
        ("occlusion fast path, scale 0.5 (approximation)", "occ_half"),
        ("occlusion on ONNX Runtime, exact (no torch)", "occ_ort"),
    ]
    for label, key in rows:
        if key in med:
            print(f"{label:44s} {med[key]:9.3f}   {', '.join(f'{t:.3f}' for t in times[key])}")
    print(f"{'occlusion fast path: first (coarse) map':44s} {statistics.median(first_map):9.3f}")
    if ort_first:
        print(f"{'occlusion on ONNX Runtime: first (coarse) map':44s} {statistics.median(ort_first):9.3f}")
    print("\nratios")
    print(f"  Grad-CAM fast / forward          {med['cam_fast'] / med['forward']:6.2f}x   (goal <= 1.2x)")
    print(f"  Grad-CAM hook / fast             {med['cam_hook'] / med['cam_fast']:6.2f}x")
    if "occ_naive" in med:
        print(f"  occlusion naive / fast exact     {med['occ_naive'] / med['occ_fast']:6.2f}x")
        print(f"  occlusion naive / scale 0.5      {med['occ_naive'] / med['occ_half']:6.2f}x")
        err = np.abs(exact - naive).max() / max(np.abs(naive).max(), 1e-12)
        print(f"  fast exact vs naive: max |diff| / max |naive| = {err:.1e}")
    print(
        f"  occlusion fast exact {med['occ_fast']:.2f} s, scale 0.5 {med['occ_half']:.2f} s   (goal <= 1.0 s)"
    )
    if "occ_ort" in med:
        print(f"  occlusion torch fast / ONNX Runtime {med['occ_fast'] / med['occ_ort']:6.2f}x")
        print(f"  ONNX Runtime vs torch fast: max |diff| = {np.abs(ort - exact).max():.1e} (raw score drops)")
    rho = _spearman(exact, approx)
    peak_e = np.unravel_index(int(exact.argmax()), exact.shape)
    peak_a = np.unravel_index(int(approx.argmax()), approx.shape)
    dist = float(np.hypot(peak_e[0] - peak_a[0], peak_e[1] - peak_a[1]))
    print(f"  scale 0.5 vs exact: Spearman rho {rho:.3f}, peak distance {dist:.0f} px (random weights)")


if __name__ == "__main__":
    main()
