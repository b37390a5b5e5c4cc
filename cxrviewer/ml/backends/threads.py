"""Thread counts suited to a laptop: one compute thread per physical core, no oversubscription."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def _allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads counted once); at least 1.

    Linux reads the CPU topology from sysfs; elsewhere, or if that fails, the logical CPU count is halved
    when it is even and above 2 (typical SMT laptops), which errs on the side of fewer threads.
    """
    cpus = _allowed_cpus()
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text(), (topo / "core_id").read_text()))
        except OSError:
            cores.clear()
            break
    if cores:
        return max(1, len(cores))
    logical = len(cpus) or 1
    return logical // 2 if logical > 2 and logical % 2 == 0 else logical


def prefer_passive_openmp() -> None:
    """Let torch's OpenMP workers sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE``).

    On a laptop the viewer shares the cores with its own UI thread and other programs; spinning OpenMP
    workers then wait for descheduled peers, and eager torch slows down several-fold (measured on the 2-core
    benchmark machine under load: MobileNetV3-Small 534 → 46 ms, ResNet-18 1,850 → 279 ms median). OpenMP
    reads the variable when torch is first imported, so this acts only before that; a value the user set
    is kept.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def configure_torch_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: physical cores) and inter-op to 1; returns it."""
    prefer_passive_openmp()
    import torch

    n = int(threads or physical_cores())
    torch.set_num_threads(n)
    # Inter-op threads can only be set before the first parallel region; otherwise keep what is set.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return n
