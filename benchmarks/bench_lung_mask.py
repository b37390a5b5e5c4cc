"""Lung-mask inference speed on CPU at the model's input size, against eager torch fp32 in the same run.

Variants (batch 1, the shipped ``models/lung-unet`` weights, input = the model's own size):

- ``eager fp32`` — ``model(x)`` under ``inference_mode``, contiguous NCHW: the baseline;
- ``eager fp32 channels_last`` — what :class:`~cxrviewer.ml.segmentation.LungSegmenter` runs;
- ``torchscript fp32`` — ``torch.jit.trace`` + ``freeze`` (conv+BN folded);
- ``eager bf16 autocast`` — CPU autocast to bfloat16;
- ``onnxruntime fp32`` — exported graph, optimisation level ALL.

Also the end-to-end ``LungSegmenter.segment`` on a 512 px image (preprocess, network, two-component
post-processing, mapping back to the original grid, mask QA). Times are medians over ``--repeats`` runs after
warm-up; ratios are baseline time / variant time (> 1 = faster). Outputs are checked against the baseline.

    .venv/bin/python benchmarks/bench_lung_mask.py [--repeats 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import median_ms  # noqa: E402

from cxrviewer.ml.segmentation import DEFAULT_MODEL_DIR, LungSegmenter  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.threads)
    seg = LungSegmenter(args.model, backend="torch-cpu-fp32")  # the torch variants need the module
    size = seg.spec.size
    n_params = sum(t.numel() for t in seg.model.parameters())
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 1, (1, 1, size, size)).astype(np.float32))

    eager = LungSegmenter(args.model, backend="torch-cpu-fp32").model.to(
        memory_format=torch.contiguous_format
    )
    with torch.inference_mode():
        ref = eager(x)
    results: list[tuple[str, float, float]] = []

    def run_eager() -> torch.Tensor:
        with torch.inference_mode():
            return eager(x)

    xcl = x.contiguous(memory_format=torch.channels_last)

    def run_cl() -> torch.Tensor:
        with torch.inference_mode():
            return seg.model(xcl)

    with torch.inference_mode():
        traced = torch.jit.freeze(torch.jit.trace(eager.eval(), x))

    def run_ts() -> torch.Tensor:
        with torch.inference_mode():
            return traced(x)

    def run_bf16() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return eager(x).float()

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "lung.onnx"
        torch.onnx.export(
            eager,
            (x,),
            str(onnx_path),
            input_names=["x"],
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
        )
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        xn = x.numpy()

        def run_ort() -> np.ndarray:
            return sess.run(None, {"x": xn})[0]

        variants = [
            ("eager fp32 (baseline)", run_eager),
            ("eager fp32 channels_last", run_cl),
            ("torchscript fp32 (frozen)", run_ts),
            ("eager bf16 autocast", run_bf16),
            ("onnxruntime fp32", run_ort),
        ]
        base = None
        for name, fn in variants:
            ms = median_ms(fn, args.repeats)
            out = fn()
            out = out.numpy() if isinstance(out, torch.Tensor) else out
            err = float(np.abs(out - ref.numpy()).max())
            base = base or ms
            results.append((name, ms, err))
        print(
            f"lung U-Net: {n_params / 1e6:.2f} M parameters, input {size}x{size}, batch 1, "
            f"{args.threads} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"onnxruntime {ort.__version__}, median of {args.repeats}"
        )
        print(f"{'variant':30s} {'ms/image':>9s} {'speed-up':>9s} {'max |Δlogit|':>13s}")
        for name, ms, err in results:
            print(f"{name:30s} {ms:9.1f} {base / ms:8.2f}x {err:13.2e}")

    img = (rng.random((512, 420)) * 255).astype(np.uint8)
    e2e = median_ms(lambda: seg.segment(img), max(5, args.repeats // 2))
    print(f"{'LungSegmenter.segment 512x420 end-to-end':42s} {e2e:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
