"""Run a test function on two CPU processes in a gloo group, as torchrun's ranks would run it.

Each process joins the group, runs ``fn(rank, world_size, *args)`` and leaves with ``os._exit``, without
tearing the group down: at torch 2.4 and 2.5 ProcessGroupGloo's destructor can deadlock (it joins its
worker threads while holding the GIL, and a thread still releasing a finished collective's tensor waits for
the GIL), and the test would then hang instead of finishing (see utils.core.distributed.end_process_group).
A failure prints its traceback and exits 1, which ``mp.spawn`` reports.
"""
from __future__ import annotations

import os
import socket
import sys
import traceback

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, fn, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    code = 0
    try:
        fn(rank, world_size, *args)
    except BaseException:  # noqa: BLE001 - reported on stderr and by the exit status
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_ranks(fn, *args, world_size: int = 2) -> None:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes (a module-level function: it is pickled)."""
    mp.spawn(_rank_main, args=(fn, world_size, free_port(), args), nprocs=world_size, join=True)
