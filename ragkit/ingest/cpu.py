"""How torch uses the CPU in a ragkit process: set once, before torch starts its thread pool.

Measured on a 2-core machine shared with other work: torch's OpenMP threads spin-wait between
parallel regions, so a ViT-B-32 text query took 800-1,500 ms while another process used the
second core, against ~260 ms with passive waiting. So ragkit asks OpenMP to sleep instead of
spin (``OMP_WAIT_POLICY=PASSIVE``) and sizes torch's pool to the cores this process may really
use (its CPU affinity and its cgroup quota, not the machine's core count).

OpenMP reads its environment when torch loads it, hence ``configure_torch`` must run before the
first ``import torch`` / ``import open_clip`` to change the waiting; the thread count can be set
later. The model worker (ragkit.ingest.model_worker) makes sure only one forward runs at a time,
so these threads are the process's whole inference parallelism.

Override with ``RAGKIT_TORCH_THREADS=N`` (and any ``OMP_WAIT_POLICY`` already in the environment
is kept).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

THREADS_VAR = "RAGKIT_TORCH_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_lock = threading.Lock()
_configured: int | None = None


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> float | None:
    """Cores' worth of CPU time this process's cgroup may use (cpu.max / cfs quota); None: no limit."""
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for folder in (root / "cpu", root / "cpu,cpuacct", root):  # cgroup v1
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def usable_cores() -> int:
    """Cores this process may run on: its affinity, capped by its cgroup quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
    return max(1, cores)


def torch_threads() -> int:
    """The thread count ragkit gives torch: RAGKIT_TORCH_THREADS, else the usable cores."""
    wanted = os.environ.get(THREADS_VAR, "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            log.warning("%s=%r is not a whole number; using the usable cores instead", THREADS_VAR, wanted)
    return usable_cores()


def configure_torch() -> int:
    """Configure torch for this process (once; later calls are free). Returns the thread count."""
    global _configured
    if _configured is not None:
        return _configured
    with _lock:
        if _configured is not None:
            return _configured
        threads = torch_threads()
        if "torch" in sys.modules:  # too late for the waiting policy; the thread count still applies
            log.debug("torch was imported before ragkit configured it; OMP_WAIT_POLICY may not apply")
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        os.environ.setdefault("MKL_NUM_THREADS", str(threads))
        import torch
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)  # ragkit runs one forward at a time (the model worker)
        except RuntimeError:  # already set, or inter-op work already ran: harmless
            pass
        _configured = threads
        return threads
