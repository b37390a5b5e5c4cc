"""CPU latency of trained classifier folders with ONNX Runtime: ms/image at 1 and 2 intra-op threads.

The first ``--model`` is the baseline (the shipped classifier by default); every other model's time is printed
as a ratio against it, measured in the same run. Each model runs at its own input size and channel count
(from its manifest) on real preprocessed images when the shared data set is there (else random inputs, said
so), batch 1, through :func:`cxrviewer.ml.backends.ort_backend.cpu_session` (the session the viewer uses).
Timings are interleaved round-robin across models (one call each per round, 3 warm-up rounds) so background
load hits all of them alike; median and minimum are printed.

    .venv/bin/python benchmarks/bench_classifier_latency.py --model models/cxr-classifier \
        --model runs/cmp/npc-resnet18-128 [--repeats 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cxrviewer.core.preprocess import preprocess  # noqa: E402
from cxrviewer.ml.backends.ort_backend import cpu_session  # noqa: E402
from cxrviewer.ml.manifest import load_manifest  # noqa: E402
from cxrviewer.ml.onnx_export import INPUT_NAME  # noqa: E402


def _bench_run_module():
    """``benchmarks/run.py`` (for its interleaved timer and machine description)."""
    spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).with_name("run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def real_inputs(manifest, data: Path, n: int) -> tuple[list[np.ndarray], str]:
    """``n`` preprocessed shared images at the model's spec (random normal inputs without the data)."""
    spec = manifest.preprocess_spec
    files = sorted((data / "images").rglob("*.jpg")) if (data / "images").is_dir() else []
    files = files[:: max(1, len(files) // n)]
    if not files:
        rng = np.random.default_rng(0)
        shape = (1, spec.in_chans, spec.size, spec.size)
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)], "random inputs"
    import cv2

    xs = []
    for f in files[:n]:
        x, _ = preprocess(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), spec)
        x = np.asarray(x, np.float32)
        x = x[None] if x.ndim == 2 else x
        x = np.repeat(x, spec.in_chans, axis=0) if x.shape[0] != spec.in_chans else x
        xs.append(x[None])
    return xs, f"{len(xs)} real shared images"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", action="append", type=Path, help="model folder with model.onnx (first = baseline)"
    )
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "cxr")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    models = args.model or [REPO / "models" / "cxr-classifier"]
    bench = _bench_run_module()
    print(bench.machine())
    rows: dict[str, dict] = {}
    for threads in args.threads:
        fns, info = {}, {}
        for m in models:
            man = load_manifest(m)
            onnx = m / man.files["onnx"].path
            sess = cpu_session(onnx, threads=threads)
            xs, what = real_inputs(man, args.data, args.images)
            counter = iter(range(10**9))

            def fn(sess=sess, xs=xs, counter=counter):
                return sess.run(None, {INPUT_NAME: xs[next(counter) % len(xs)]})

            label = str(m)
            fns[label] = fn
            info[label] = (man.architecture.get("name"), man.preprocess_spec.size, what)
        times = bench.interleaved_times(fns, args.repeats)
        base = times[str(models[0])][0]
        print(
            f"\nONNX Runtime CPU, {threads} intra-op thread(s), batch 1, median / min over {args.repeats} runs"
        )
        for label, (med, mn) in times.items():
            arch, size, what = info[label]
            print(
                f"  {label:40s} {arch:20s} {size:4d} px  {med:7.2f} ms (min {mn:6.2f})  "
                f"{med / base:5.2f}x baseline  [{what}]"
            )
            rows.setdefault(label, {"arch": arch, "size": size})[f"ms_{threads}t"] = {
                "median": med,
                "min": mn,
            }
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
