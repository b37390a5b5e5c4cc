"""Helper models on the CPU: ONNX Runtime (the shipped ``model.onnx``) against torch eager, same run.

For the shipped lung U-Net (``models/lung-unet``) and input gate (``models/input-gate``), each loaded through
its public class with a forced backend (``onnxruntime-cpu-fp32`` / ``torch-cpu-fp32``, the same threads):

- ``network``: one preprocessed image through the network (batch 1): ``LungSegmenter.probability`` /
  ``InputGate.scores`` minus preprocessing (the gate's scores include the numpy Mahalanobis distance);
- ``end to end``: ``LungSegmenter.segment`` / ``InputGate.check`` on a real-sized display image (preprocess,
  network, post-processing / decision);
- ``cold start`` (``--cold``): a fresh interpreter importing the module, loading the model and answering one
  image — what the viewer's first analysis pays (torch's import included on the torch path).

Times are medians over ``--repeats`` runs after warm-up; ratio = torch / ONNX Runtime (> 1: ORT faster).
Inputs are real images when the shared data is there (else the bundled samples).

    .venv/bin/python benchmarks/bench_helpers.py [--repeats 50] [--threads 1] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import median_ms  # noqa: E402

ORT, TORCH = "onnxruntime-cpu-fp32", "torch-cpu-fp32"


def bench_images(n: int = 4) -> tuple[list[np.ndarray], str]:
    """Real frontal CXRs from the shared data (the lung U-Net's test split), else the bundled samples."""
    import csv

    import cv2

    data = REPO.parent / "shared" / "data" / "cxr"
    split = REPO / "models" / "lung-unet" / "split.csv"
    if data.is_dir() and split.is_file():
        with open(split, newline="", encoding="utf-8") as fh:
            paths = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][::25][:n]
        images = [cv2.imread(str(data / p), cv2.IMREAD_GRAYSCALE) for p in paths]
        return (
            images,
            f"{len(images)} shared test-split images (median {int(np.median([i.size for i in images]) / 1e3)} kpx)",
        )
    from cxrviewer.services.analysis import read_display_image

    samples = sorted(p for p in (REPO / "resources" / "samples").iterdir() if p.suffix in (".dcm", ".png"))
    return [read_display_image(p) for p in samples], f"{len(samples)} bundled samples"


def load(kind: str, backend: str, threads: int):
    if kind == "lung U-Net":
        from cxrviewer.ml.segmentation import LungSegmenter

        return LungSegmenter(threads=threads, backend=backend)
    from cxrviewer.ml.gate import InputGate

    return InputGate(threads=threads, backend=backend)


def warm_rows(images: list[np.ndarray], threads: int, repeats: int) -> list[tuple[str, str, float, float]]:
    """(model, what, torch ms, ORT ms) per model for the network and end to end."""
    from cxrviewer.core.preprocess import preprocess

    rows = []
    for kind in ("lung U-Net", "input gate"):
        times: dict[str, dict[str, float]] = {}
        for backend in (TORCH, ORT):
            m = load(kind, backend, threads)
            x = preprocess(images[0], m.spec)[0][None]
            if kind == "lung U-Net":
                net = lambda m=m, x=x: m.probability(x)  # noqa: E731
                e2e = lambda m=m: [m.segment(im) for im in images]  # noqa: E731
            else:
                net = lambda m=m, x=x: m._runner.run(x[:, None])  # noqa: E731 - the graph, batch 1
                e2e = lambda m=m: [m.check(im) for im in images]  # noqa: E731
            times[backend] = {
                "network": median_ms(net, repeats),
                "end to end": median_ms(e2e, max(5, repeats // 5)) / len(images),
            }
        for what in ("network", "end to end"):
            rows.append((kind, what, times[TORCH][what], times[ORT][what]))
    return rows


COLD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from cxrviewer.services.analysis import read_display_image
image = read_display_image({sample!r})
t1 = time.perf_counter()
from cxrviewer.ml.gate import InputGate
from cxrviewer.ml.segmentation import LungSegmenter
gate = InputGate(threads={threads}, backend={backend!r})
seg = LungSegmenter(threads={threads}, backend={backend!r})
ok = gate.check(image).ok
mask = seg.segment(image).mask
t2 = time.perf_counter()
print(json.dumps({{"ms": (t2 - t1) * 1000, "torch": "torch" in sys.modules, "ok": bool(ok)}}))
"""


def cold_rows(threads: int, runs: int) -> list[tuple[str, str, float, float]]:
    """Fresh interpreter: import + load both helpers + one gate check and one segmentation (median of runs)."""
    sample = str(REPO / "resources" / "samples" / "sample_ap.dcm")
    out = {}
    for backend in (TORCH, ORT):
        ms = []
        for _ in range(runs):
            code = COLD.format(sample=sample, threads=threads, backend=backend)
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            assert r["torch"] == (backend == TORCH), r
            ms.append(r["ms"])
        out[backend] = statistics.median(ms)
    return [("gate + U-Net", f"cold start (median of {runs})", out[TORCH], out[ORT])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cold", action="store_true", help="also time a fresh interpreter's first answer")
    p.add_argument("--cold-runs", type=int, default=3)
    args = p.parse_args()

    from cxrviewer.ml.backends.threads import prefer_passive_openmp

    prefer_passive_openmp()  # as the runtime does before its first torch import
    import onnxruntime as ort
    import torch

    images, what = bench_images()
    rows = warm_rows(images, args.threads, args.repeats)
    if args.cold:
        rows += cold_rows(args.threads, args.cold_runs)
    print(
        f"helpers on CPU: {args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"onnxruntime {ort.__version__}, median of {args.repeats}; inputs: {what}"
    )
    print(f"{'model':14s} {'what':26s} {'torch ms':>9s} {'ORT ms':>8s} {'torch/ORT':>10s}")
    for model, w, t_ms, o_ms in rows:
        print(f"{model:14s} {w:26s} {t_ms:9.1f} {o_ms:8.1f} {t_ms / o_ms:9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
