"""Training a classifier end to end: data → leak-free split → cache → (two-stage) training → model folder.

:func:`run_training` takes a :class:`TrainConfig` and writes a complete model directory (safetensors weights,
``manifest.json`` with task, preprocessing spec, validation operating points, temperature, test metrics and
the hashed ``split.csv``) plus ``train_log.json``. It runs the same under ``torchrun`` (distributed
data-parallel, gloo on CPU / nccl on CUDA): rank 0 writes, every rank trains on its shard.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxr_trainer import __version__
from cxr_trainer.augment import AugmentConfig, augment_batch
from cxr_trainer.datasets import Dataset, load_dataset
from cxr_trainer.image_cache import build_cache
from cxr_trainer.inputs import assemble_channels, predict, to_unit
from cxr_trainer.metrics import choose_operating_points, fit_temperature, softmax, threshold_table
from cxr_trainer.progress import RunLog, progress
from cxr_trainer.splits import LeakageError, leakage_report, make_split, read_split_csv, write_split_csv
from cxr_trainer.tasks import TaskDef, get_task
from cxrviewer.core.preprocess import PreprocessSpec
from cxrviewer.ml.manifest import ModelManifest, record_file
from cxrviewer.ml.model_io import save_classifier
from cxrviewer.ml.registry import WeightsMismatchError, create_model

SPLIT_NAME = "split.csv"
CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "train_log.json"


@dataclass
class TrainConfig:
    """Everything a training run depends on (a JSON config file holds these keys)."""

    dataset: str
    out: str
    task: str = "normal-pneumonia-covid"
    arch: str = "resnet18"
    size: int = 128
    clahe: bool = False
    channels: tuple[str, ...] = ("cxr",)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    patience: int = 10
    lr_patience: int = 5
    lr_factor: float = 0.1
    init: str = "scratch"
    two_stage: bool | None = None
    stage1_epochs: int = 5
    cache_features: bool = True
    class_balance: str = "loss"
    bn_momentum: float | None = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    threads: int = 2
    split_csv: str | None = None
    holdout_sources: tuple[str, ...] = ()
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_images: int | None = None
    max_minutes: float | None = None
    cache_dir: str | None = None
    name: str = "cxr-classifier"
    version: str = "0.1.0"
    resume: bool = False
    progress: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.channels = tuple(self.channels)
        self.holdout_sources = tuple(self.holdout_sources)
        self.fractions = tuple(float(f) for f in self.fractions)
        if self.class_balance not in ("loss", "sampler", "none"):
            raise ValueError("class_balance must be loss, sampler or none")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError("precision must be auto, fp32, bf16 or fp16")

    @property
    def starts_from_weights(self) -> bool:
        return self.init not in ("", "scratch")

    @property
    def use_two_stage(self) -> bool:
        return self.starts_from_weights if self.two_stage is None else bool(self.two_stage)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a JSON (or TOML) config file; ``overrides`` (non-None) win."""
        p = Path(path)
        if p.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(p.read_text(encoding="utf-8"))
        else:
            data = json.loads(p.read_text(encoding="utf-8"))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


# ----------------------------------------------------------------------------------------------- devices


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 / AMX); without them bf16 autocast is emulated and,
    as measured on AVX2 machines, about 20× slower than fp32."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read(200_000)
    except OSError:
        pass
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → fp16 AMP on CUDA, bf16 on CPUs with native bf16, fp32 otherwise."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """An autocast context for ``precision`` (disabled for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


# ----------------------------------------------------------------------------------------------- distributed


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group started by ``torchrun`` (``WORLD_SIZE`` > 1), gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size())


def _barrier(d: DistInfo) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


# ----------------------------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """Records of the task, their classes, the split and the cached pixels."""

    dataset: Dataset
    task: TaskDef
    records: list
    y: np.ndarray
    split: dict[str, str]
    pixels: np.ndarray
    index: dict[str, np.ndarray]
    excluded: dict[str, int]
    failed: dict[str, str]
    notes: list[str]
    lung_model: str | None = None  # segmentation model that made the lung channel, if the spec has one


def prepare_data(
    cfg: TrainConfig, spec: PreprocessSpec, dist_info: DistInfo, log: RunLog | None
) -> PreparedData:
    """Load, map labels, split (refusing leakage), and cache the pixels."""
    ds = load_dataset(cfg.dataset)
    task = get_task(cfg.task)
    excluded = Counter(r.label for r in ds.records if task.map_label(r.label) is None)
    records = [r for r in ds.records if task.map_label(r.label) is not None]
    if cfg.max_images and len(records) > cfg.max_images:
        rng = random.Random(cfg.seed)
        records = sorted(rng.sample(records, cfg.max_images), key=lambda r: r.key)
    classes = [task.map_label(r.label) for r in records]
    notes: list[str] = []
    if cfg.split_csv:
        given = read_split_csv(cfg.split_csv)
        split = {r.key: given[r.key] for r in records if r.key in given}
        notes.append(f"split read from {cfg.split_csv}")
    else:
        plan = make_split(records, ds.near_duplicates, classes, cfg.fractions, cfg.seed, cfg.holdout_sources)
        split, notes = plan.assignment, list(plan.notes)
    report = leakage_report(ds.records, ds.near_duplicates, split)
    if not report.ok:
        raise LeakageError(report.summary() + "; refusing to train on a leaky split")
    if log:
        log.event("split", leakage=report.to_dict(), counts=dict(Counter(split.values())))
    if dist_info.main:
        cache = build_cache(records, spec, cfg.cache_dir, show_progress=cfg.progress)
    _barrier(dist_info)
    if not dist_info.main:
        cache = build_cache(records, spec, cfg.cache_dir, show_progress=False)
    y = np.array([task.labels.index(c) for c in classes], dtype=np.int64)
    index = {
        s: np.array(
            [i for i, r in enumerate(records) if split.get(r.key) == s and i not in cache.failed],
            dtype=np.int64,
        )
        for s in ("train", "val", "test")
    }
    failed = {records[i].key: msg for i, msg in cache.failed.items()}
    for s in ("train", "val"):
        if index[s].size == 0:
            raise ValueError(f"the {s} split is empty; use more images or other fractions")
    pixels, lung_model = cache.pixels, None
    if "lung" in spec.channels:  # lung U-Net once per image (cached), never per epoch
        from cxr_trainer.lung_cache import build_lung_cache, input_planes, load_segmenter
        from cxrviewer.ml.lung_channel import segmenter_identity

        seg = load_segmenter(threads=cfg.threads)
        lung_model = segmenter_identity(seg)
        if dist_info.main:
            build_lung_cache(records, spec, cfg.cache_dir, seg, show_progress=cfg.progress)
        _barrier(dist_info)
        pixels = input_planes(cache.pixels, build_lung_cache(records, spec, cfg.cache_dir, seg, False))
        if log:
            log.event("lung_channel", segmenter=lung_model)
    return PreparedData(ds, task, records, y, split, pixels, index, dict(excluded), failed, notes, lung_model)


# ----------------------------------------------------------------------------------------------- training


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(y: np.ndarray, k: int) -> torch.Tensor:
    """Inverse-frequency class weights normalised to mean 1 (absent classes get 0)."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / k, 0.0)
    return torch.tensor(w / w[w > 0].mean(), dtype=torch.float32)


def epoch_order(
    train_idx: np.ndarray, y: np.ndarray, cfg: TrainConfig, epoch: int, d: DistInfo
) -> np.ndarray:
    """This rank's sample order for one epoch (same permutation on every rank, then sharded)."""
    rng = np.random.default_rng(cfg.seed * 1000 + epoch)
    if cfg.class_balance == "sampler":
        w = 1.0 / np.bincount(y[train_idx])[y[train_idx]]
        order = rng.choice(train_idx, size=train_idx.size, replace=True, p=w / w.sum())
    else:
        order = rng.permutation(train_idx)
    per_rank = len(order) // d.world
    return order[d.rank * per_rank : (d.rank + 1) * per_rank] if d.enabled else order


def train_step_batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches (the last short one dropped when it would hold a single image: BatchNorm)."""
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) > 1]


def _make_batch(
    data: PreparedData, idx: np.ndarray, spec: PreprocessSpec, cfg: TrainConfig, gen, augment: bool
):
    srt = np.sort(idx)
    x = to_unit(data.pixels[srt])
    if augment and cfg.augment.enabled:
        x = augment_batch(x, cfg.augment, gen, photometric_channels=1)  # the lung plane moves, unlit
    return assemble_channels(x, spec), torch.as_tensor(data.y[srt])


def evaluate_split(model, data: PreparedData, split: str, spec, device, cfg: TrainConfig, weights=None):
    """Loss, accuracy and logits on one split (unaugmented)."""
    idx = data.index[split]
    logits, _ = predict(
        model,
        data.pixels,
        idx,
        spec,
        device,
        batch_size=max(64, cfg.batch_size),
        channels_last=cfg.channels_last,
    )
    y = data.y[idx]
    lt = torch.as_tensor(logits)
    loss = float(F.cross_entropy(lt, torch.as_tensor(y), weight=weights).item()) if len(y) else float("nan")
    acc = float((logits.argmax(1) == y).mean()) if len(y) else float("nan")
    return loss, acc, logits


def train_head_on_cached_features(
    model, data: PreparedData, spec, device, cfg: TrainConfig, weights, log
) -> None:
    """Stage 1 of two-stage transfer: the trunk is frozen, so its pooled features are computed ONCE per image
    (unaugmented) and only the linear head is trained on them."""
    t0 = time.perf_counter()
    _, f_train = predict(
        model, data.pixels, data.index["train"], spec, device, 64, cfg.channels_last, embeddings=True
    )
    _, f_val = predict(
        model, data.pixels, data.index["val"], spec, device, 64, cfg.channels_last, embeddings=True
    )
    ft, fv = torch.as_tensor(f_train), torch.as_tensor(f_val)
    yt, yv = torch.as_tensor(data.y[data.index["train"]]), torch.as_tensor(data.y[data.index["val"]])
    head = model.head
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr * 10, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    for ep in range(cfg.stage1_epochs):
        head.train()
        perm = torch.randperm(len(ft), generator=g)
        for s in range(0, len(perm), cfg.batch_size):
            b = perm[s : s + cfg.batch_size]
            loss = F.cross_entropy(head(model.dropout(ft[b].to(device))), yt[b].to(device), weight=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            vl = float(F.cross_entropy(head(fv.to(device)), yv.to(device), weight=weights))
        if log:
            log.event("stage1_epoch", epoch=ep + 1, val_loss=vl)
    if log:
        log.event("stage1_done", seconds=round(time.perf_counter() - t0, 2), cached_features=True)


def run_training(cfg: TrainConfig, log: RunLog | None = None) -> Path | None:
    """Train per ``cfg`` and write the model directory ``cfg.out``; returns it (None on non-zero ranks)."""
    torch.set_num_threads(max(1, cfg.threads))
    device = resolve_device(cfg.device)
    d = init_distributed(device)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    precision = resolve_precision(cfg.precision, device)
    log = log or RunLog("train", cfg.to_dict())
    show = cfg.progress and d.main
    _seed_everything(cfg.seed)
    out = Path(cfg.out)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    spec = PreprocessSpec(size=cfg.size, clahe=cfg.clahe, channels=cfg.channels)
    init_path = _weights_path(cfg.init)
    if init_path is not None:  # a file for another architecture fails now, not after the image cache is built
        check_init_weights(cfg, spec.in_chans, init_path)
    data = prepare_data(cfg, spec, d, log if d.main else None)
    k = len(data.task.labels)
    model = create_model(cfg.arch, num_classes=k, in_chans=spec.in_chans, pretrained=init_path)
    set_bn_momentum(model, cfg.bn_momentum)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    weights = (
        class_weights(data.y[data.index["train"]], k).to(device) if cfg.class_balance == "loss" else None
    )
    log.event(
        "setup",
        device=str(device),
        precision=precision,
        world_size=d.world,
        arch=cfg.arch,
        classes=list(data.task.labels),
        n={s: int(v.size) for s, v in data.index.items()},
        excluded=data.excluded,
        failed=len(data.failed),
        init=model.init_weights.to_dict() if model.init_weights else "scratch",
    )

    ckpt_path = out / CHECKPOINT_NAME
    state = {
        "epoch": 0,
        "best_loss": math.inf,
        "best_state": None,
        "bad": 0,
        "history": [],
        "stage1_done": False,
    }
    resumed = cfg.resume and ckpt_path.is_file()
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False) if resumed else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        state.update({k2: ckpt[k2] for k2 in state})
        log.event("resumed", epoch=state["epoch"])
    elif cfg.resume and d.main:
        log.event("resume_without_checkpoint", path=str(ckpt_path))
        print(f"--resume: no {ckpt_path}; starting from the beginning", file=sys.stderr, flush=True)

    loop = dict(
        model=model,
        data=data,
        spec=spec,
        device=device,
        precision=precision,
        cfg=cfg,
        d=d,
        weights=weights,
        log=log,
        state=state,
        show=show,
    )
    two_stage = cfg.use_two_stage and not state["stage1_done"]
    if two_stage:
        log.event("stage", stage=1, trainable="head", cached_features=cfg.cache_features)
        for p in model.features.parameters():
            p.requires_grad_(False)
        if cfg.cache_features:
            train_head_on_cached_features(model, data, spec, device, cfg, weights, log if d.main else None)
        else:
            _train_epochs(**loop, epochs=cfg.stage1_epochs, ckpt=None, frozen=True)
            state.update(epoch=0, best_loss=math.inf, best_state=None, bad=0)
        for p in model.features.parameters():
            p.requires_grad_(True)
        state["stage1_done"] = True

    log.event("stage", stage=2 if cfg.use_two_stage else 1, trainable="all")
    deadline = t_start + cfg.max_minutes * 60 if cfg.max_minutes else None
    _train_epochs(**loop, epochs=cfg.epochs, ckpt=ckpt, frozen=False, deadline=deadline)
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    model.eval()
    if not d.main:
        return None
    result = finalise_model(
        model, data, spec, device, cfg, precision, weights, log, time.time() - t_start, state["history"]
    )
    log.write(out / LOG_NAME)
    return result


def set_bn_momentum(model: torch.nn.Module, momentum: float | None) -> None:
    """Use one BatchNorm momentum everywhere (torchvision's MobileNetV3/EfficientNet use 0.01, whose running
    statistics lag far behind in short from-scratch runs and make eval-mode outputs constant)."""
    if momentum is None:
        return
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def check_init_weights(cfg: TrainConfig, in_chans: int, path: str) -> None:
    """Build the model from ``path`` once, without touching the random state, so that a file for another
    architecture is refused before any data work; the error names the architecture a model folder's
    manifest records."""
    try:
        with torch.random.fork_rng(devices=[]):
            create_model(cfg.arch, len(get_task(cfg.task).labels), in_chans, pretrained=path)
    except WeightsMismatchError as exc:
        manifest = Path(path).parent / "manifest.json"
        arch = None
        if manifest.is_file():
            arch = json.loads(manifest.read_text(encoding="utf-8")).get("architecture", {}).get("name")
        if arch and arch != cfg.arch:
            raise WeightsMismatchError(f"{exc} (its manifest.json says --arch {arch})") from None
        raise


def _weights_path(init: str) -> str | None:
    if init in ("", "scratch"):
        return None
    p = Path(init)
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise ValueError(f"--init {init}: no such weights file or model folder")
    return str(p)


def _past_deadline(deadline: float | None, d: DistInfo) -> bool:
    """Whether the time budget is spent; under DDP rank 0 decides for all (clocks differ)."""
    stop = deadline is not None and time.time() > deadline
    if d.enabled:
        import torch.distributed as dist

        flag = torch.tensor([int(stop)])
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _train_epochs(
    model,
    data,
    spec,
    device,
    precision,
    cfg,
    d,
    weights,
    log,
    state,
    epochs,
    ckpt,
    frozen,
    show,
    deadline=None,
):
    """The epoch loop with early stopping, ReduceLROnPlateau and per-epoch checkpoints."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
    )
    if ckpt is not None and "optimizer" in ckpt:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" and device.type == "cuda" else None
    net = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + d.rank)
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    out = Path(cfg.out)
    for epoch in range(state["epoch"], epochs):
        if _past_deadline(deadline, d):
            log.event("time_budget_reached", epoch=epoch)
            break
        gen.manual_seed(cfg.seed * 7919 + d.rank + 100003 * epoch)
        net.train()
        if frozen:
            model.features.eval()
        t0 = time.perf_counter()
        order = epoch_order(data.index["train"], data.y, cfg, epoch, d)
        batches = train_step_batches(order, cfg.batch_size)
        total, seen = 0.0, 0
        bar = progress(batches, desc=f"epoch {epoch + 1}/{epochs}", enabled=show, unit="batch")
        for b in bar:
            x, y = _make_batch(data, b, spec, cfg, gen, augment=True)
            x, y = x.to(device, non_blocking=True).contiguous(memory_format=mf), y.to(device)
            with autocast(device, precision):
                loss = F.cross_entropy(net(x).float(), y, weight=weights)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            total += float(loss.item()) * len(b)
            seen += len(b)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / max(seen, 1):.3f}")
        train_time = time.perf_counter() - t0
        val_loss, val_acc, _ = evaluate_split(model, data, "val", spec, device, cfg, weights)
        sched.step(val_loss)
        improved = val_loss < state["best_loss"] - 1e-4
        if improved:
            state["best_loss"], state["bad"] = val_loss, 0
            state["best_state"] = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            state["bad"] += 1
        row = {
            "epoch": epoch + 1,
            "train_loss": total / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": opt.param_groups[0]["lr"],
            "images_per_s": seen * d.world / max(train_time, 1e-9),
            "seconds": round(time.perf_counter() - t0, 2),
            "frozen_trunk": frozen,
        }
        state["history"].append(row)
        state["epoch"] = epoch + 1
        log.event("epoch", **row)
        if d.main:
            print(
                f"epoch {epoch + 1:3d}  train loss {row['train_loss']:.4f}  val loss {val_loss:.4f}  "
                f"val acc {val_acc:.3f}  lr {row['lr']:.1e}  {row['images_per_s']:.1f} img/s"
                + ("  *" if improved else ""),
                flush=True,
            )
            if not frozen:
                tmp = out / (CHECKPOINT_NAME + ".tmp")
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        **state,
                    },
                    tmp,
                )
                tmp.replace(out / CHECKPOINT_NAME)
        if state["bad"] >= cfg.patience:
            log.event("early_stop", epoch=epoch + 1)
            break


def finalise_model(
    model,
    data: PreparedData,
    spec,
    device,
    cfg: TrainConfig,
    precision,
    weights,
    log: RunLog,
    seconds,
    history,
):
    """Temperature and operating points on VALIDATION, test figures, then the model directory."""
    from cxr_trainer.evaluation import summarise_predictions

    out = Path(cfg.out)
    task = data.task
    pos = (
        task.labels.index(task.positive_class) if task.positive_class in task.labels else len(task.labels) - 1
    )
    _, _, val_logits = evaluate_split(model, data, "val", spec, device, cfg, weights)
    yv = data.y[data.index["val"]]
    temperature = fit_temperature(val_logits, yv)
    pv = softmax(val_logits, temperature)
    ops = choose_operating_points(pv[:, pos], yv == pos)
    thresholds = {
        "positive_class": task.labels[pos],
        "default": "balanced",
        "chosen_on": "validation",
        "operating_points": {n: _op(r) for n, r in ops.items()},
        "table": [_op(r) for r in threshold_table(pv[:, pos], yv == pos)],
    }
    test_metrics: dict[str, Any] = {}
    if data.index["test"].size:
        _, _, test_logits = evaluate_split(model, data, "test", spec, device, cfg, weights)
        recs = [data.records[i] for i in data.index["test"]]
        test_metrics = summarise_predictions(
            test_logits,
            data.y[data.index["test"]],
            [r.source for r in recs],
            list(task.labels),
            pos,
            temperature,
            thresholds,
        )
    split_path = write_split_csv(out / SPLIT_NAME, data.records, data.split)
    manifest = ModelManifest(
        name=cfg.name,
        version=cfg.version,
        kind="classifier",
        architecture={"name": cfg.arch, "num_classes": len(task.labels), "in_chans": spec.in_chans},
        labels=list(task.labels),
        preprocessing=spec.to_dict(),
        task=task.to_dict(),
        thresholds=thresholds,
        calibration={"temperature": temperature, "fitted_on": "validation"},
        metrics={"test": test_metrics},
        extra={"lung_model": data.lung_model} if data.lung_model else {},
        training={
            "dataset": str(Path(cfg.dataset).resolve()),
            "split_file": SPLIT_NAME,
            "split_counts": {s: int(v.size) for s, v in data.index.items()},
            "excluded_labels": data.excluded,
            "failed_images": len(data.failed),
            "seed": cfg.seed,
            "config": cfg.to_dict(),
            "command": cfg.command,
            "epochs_run": len(history),
            "best_val_loss": min((h["val_loss"] for h in history), default=None),
            "history": history,
            "duration_s": round(seconds, 1),
            "precision": precision,
            "device": str(device),
            "hardware": f"{platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()}".strip(),
            "trainer_version": __version__,
            "torch": torch.__version__,
            "notes": data.notes,
        },
    )
    record_file(out, manifest, "split", split_path.name)
    save_classifier(model.to("cpu").to(memory_format=torch.contiguous_format), manifest, out)
    log.result.update(
        {
            "model_dir": str(out),
            "temperature": temperature,
            "test": _brief(test_metrics),
            "operating_points": thresholds["operating_points"],
        }
    )
    return out


def _op(row: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "threshold",
        "sensitivity",
        "specificity",
        "sensitivity_ci",
        "specificity_ci",
        "tp",
        "fn",
        "tn",
        "fp",
    )
    return {k: (list(row[k]) if isinstance(row[k], tuple) else row[k]) for k in keep}


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m.get(k) for k in ("n", "accuracy", "macro_f1", "roc_auc", "roc_auc_ci", "pr_auc", "ece")}
