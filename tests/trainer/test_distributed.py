"""Distributed data-parallel training with torchrun: 2 CPU processes on gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from cxr_trainer.training import DistInfo, TrainConfig, epoch_order


def test_ranks_get_disjoint_equal_shards_of_the_same_permutation():
    idx = np.arange(101)
    y = np.zeros(200, dtype=np.int64)
    cfg = TrainConfig(dataset="x", out="y", seed=5)
    shards = [epoch_order(idx, y, cfg, epoch=3, d=DistInfo(rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert not set(shards[0]) & set(shards[1])
    assert not np.array_equal(
        epoch_order(idx, y, cfg, 4, DistInfo()), epoch_order(idx, y, cfg, 3, DistInfo())
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes_on_gloo(synthetic_dataset, tmp_path):
    out = tmp_path / "ddp-model"
    env = {**os.environ, "CXR_TRAINER_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "cxr_trainer.cli",
        "train",
        "--data",
        str(synthetic_dataset),
        "--out",
        str(out),
        "--arch",
        "squeezenet1_1",
        "--size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    setup = next(e for e in log["events"] if e["event"] == "setup")
    assert setup["world_size"] == 2
    assert [e["epoch"] for e in log["events"] if e["event"] == "epoch"] == [1, 2]
    assert (out / "model.safetensors").is_file()
    from cxrviewer.ml.model_io import load_classifier

    load_classifier(out)  # hash-verified and loadable
