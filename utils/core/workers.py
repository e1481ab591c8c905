"""``num_workers: auto``: DataLoader workers from the CPU cores this process may use."""
from __future__ import annotations

import os

MAX_AUTO_WORKERS = 16


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a Slurm/cgroup cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def processes_on_node(environ=os.environ) -> int:
    """Training processes sharing this node: torchrun's LOCAL_WORLD_SIZE (1 without torchrun)."""
    try:
        return max(1, int(environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def auto_workers(*, cores: int, processes: int, cap: int = MAX_AUTO_WORKERS) -> int:
    """``cores // processes``, at least 1 and at most ``cap``.

    The affinity mask of a process launched by torchrun usually covers the whole node, so the cores
    are shared among the node's processes.
    """
    return max(1, min(cap, cores // max(1, processes)))


def resolve_num_workers(value, *, environ=os.environ, cores: int | None = None) -> tuple[int, str | None]:
    """(worker count, log line or None) for a config value: an int as given, ``"auto"`` computed."""
    if value != "auto":
        return int(value), None
    cores = available_cores() if cores is None else cores
    processes = processes_on_node(environ)
    n = auto_workers(cores=cores, processes=processes)
    return n, (f"num_workers auto: {n} ({cores} CPU cores available / {processes} process"
               f"{'es' if processes > 1 else ''} on this node, at most {MAX_AUTO_WORKERS})")
