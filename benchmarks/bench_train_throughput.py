"""Training throughput (images/s) of eager fp32 against the trainer's optimised paths, in the same run.

Every path does what ``cxr-trainer train`` does per batch: uint8 pixels from the preprocessing cache →
tensor augmentation → channel assembly → forward → weighted cross-entropy → backward → Adam step.
Paths (repeats are interleaved so that load from other processes hits all of them alike):

- ``eager-fp32``: contiguous NCHW, fp32 (the baseline);
- ``channels_last``: NHWC memory format, fp32;
- ``bf16+channels_last``: bf16 autocast on the CPU (fast only with native bf16: AVX512-BF16/AMX);
- two-stage transfer, stage 1 (frozen trunk, ``--stage1-epochs`` epochs over the training images):
  ``frozen-eager`` runs the frozen trunk on every batch of every epoch; ``frozen-cached`` (what the trainer
  does) computes the trunk's pooled features once and trains only the head on them.

Goal: the optimised path ≥ 2× eager fp32.

    .venv/bin/python benchmarks/bench_train_throughput.py [--arch mobilenet_v3_small] [--size 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="mobilenet_v3_small")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=4, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=512, help="training images for the stage-1 comparison")
    p.add_argument("--stage1-epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-bf16", action="store_true")
    return p.parse_args()


def main() -> None:
    args = _parse()
    import numpy as np
    import torch
    import torch.nn.functional as F
    from cxr_trainer.augment import AugmentConfig, augment_batch
    from cxr_trainer.inputs import assemble_channels, predict, to_unit
    from cxr_trainer.training import cpu_has_native_bf16, set_bn_momentum

    from cxrviewer.core.preprocess import PreprocessSpec
    from cxrviewer.ml.registry import create_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = PreprocessSpec(size=args.size)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (args.images, args.size, args.size), dtype=np.uint8)
    y = torch.as_tensor(rng.integers(0, 3, args.images))
    aug = AugmentConfig()
    gen = torch.Generator().manual_seed(0)
    bs = args.batch_size

    def make_model(channels_last: bool):
        m = create_model(args.arch, num_classes=3, in_chans=1)
        set_bn_momentum(m, 0.1)
        return m.to(memory_format=torch.channels_last) if channels_last else m

    def full_steps(model, opt, channels_last: bool, bf16: bool) -> float:
        mf = torch.channels_last if channels_last else torch.contiguous_format
        model.train()
        t0 = time.perf_counter()
        for s in range(args.steps):
            idx = np.sort(rng.choice(args.images, bs, replace=False))
            x = assemble_channels(augment_batch(to_unit(pixels[idx]), aug, gen), spec).contiguous(
                memory_format=mf
            )
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if s == 0:
                t0 = time.perf_counter()  # first step is warm-up
        return (args.steps - 1) * bs / (time.perf_counter() - t0)

    modes = {"eager-fp32": (False, False), "channels_last": (True, False)}
    if not args.skip_bf16:
        modes["bf16+channels_last"] = (True, True)
    models = {}
    for name, (cl, _) in modes.items():
        m = make_model(cl)
        models[name] = (m, torch.optim.Adam(m.parameters(), lr=1e-4))
    rates: dict[str, list[float]] = {n: [] for n in modes}
    for rep in range(args.repeats):
        for name, (cl, bf) in modes.items():
            rates[name].append(full_steps(*models[name], cl, bf))
            print(f"  repeat {rep + 1}: {name} {rates[name][-1]:.1f} images/s", file=sys.stderr, flush=True)

    # stage 1 of two-stage transfer (frozen trunk), over --images images x --stage1-epochs epochs
    def frozen_eager() -> float:
        m = make_model(True)
        for p in m.features.parameters():
            p.requires_grad_(False)
        m.train()
        m.features.eval()
        opt = torch.optim.Adam(m.head.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        n = 0
        for _ in range(args.stage1_epochs):
            for s in range(0, args.images, bs):
                idx = np.arange(s, min(s + bs, args.images))
                x = assemble_channels(to_unit(pixels[idx]), spec).contiguous(
                    memory_format=torch.channels_last
                )
                loss = F.cross_entropy(m(x), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n += len(idx)
        return n / (time.perf_counter() - t0)

    def frozen_cached() -> float:
        m = make_model(True)
        t0 = time.perf_counter()
        _, feats = predict(m, pixels, np.arange(args.images), spec, "cpu", 64, True, embeddings=True)
        f = torch.as_tensor(feats)
        opt = torch.optim.Adam(m.head.parameters(), lr=1e-3)
        n = 0
        for _ in range(args.stage1_epochs):
            for s in range(0, args.images, bs):
                loss = F.cross_entropy(m.head(m.dropout(f[s : s + bs])), y[s : s + bs])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                n += len(f[s : s + bs])
        return n / (time.perf_counter() - t0)

    frozen = {"frozen-eager": [], "frozen-cached": []}
    for _ in range(max(1, args.repeats - 1)):
        frozen["frozen-eager"].append(frozen_eager())
        frozen["frozen-cached"].append(frozen_cached())
        print(
            f"  stage 1: eager {frozen['frozen-eager'][-1]:.1f}, cached {frozen['frozen-cached'][-1]:.1f} images/s",
            file=sys.stderr,
            flush=True,
        )

    med = {k: statistics.median(v) for k, v in {**rates, **frozen}.items()}
    base = med["eager-fp32"]
    print(
        f"training throughput, {args.arch} at {args.size} px, batch {bs}, {args.threads} threads, "
        f"torch {torch.__version__}, native CPU bf16: {cpu_has_native_bf16()}"
    )
    print(
        f"{'path':22s} {'images/s':>10s} {'× eager fp32':>14s}   (median of {args.repeats} interleaved repeats)"
    )
    for name, r in med.items():
        print(f"{name:22s} {r:10.1f} {r / base:13.2f}×")
    best_full = max((n for n in rates), key=lambda n: med[n])
    print(f"\nfull fine-tuning: fastest path is {best_full} ({med[best_full] / base:.2f}× eager fp32)")
    print(
        f"stage 1 (frozen trunk, {args.stage1_epochs} epochs): cached features {med['frozen-cached'] / med['frozen-eager']:.1f}× "
        f"the frozen eager loop, {med['frozen-cached'] / base:.1f}× eager fp32 full training"
    )


if __name__ == "__main__":
    main()
