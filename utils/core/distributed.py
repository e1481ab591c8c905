"""Device choice, torchrun/DistributedDataParallel set-up, samplers and cross-process reductions.

One :class:`Runtime` is made at start-up and passed down; nothing else in the code picks a device.
Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) every process takes
``cuda:LOCAL_RANK`` (``cuda:0`` where a launcher shows it one GPU alone) with NCCL, or the CPU with gloo;
without it the run is a single process.
"""
from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from utils.core.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def reduce_max(self, t: torch.Tensor) -> torch.Tensor:
        """Element-wise max over processes (a copy; the input is left unchanged)."""
        if not self.distributed:
            return t
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return out

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return t
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Copy rank 0's buffers of ``model`` (batch-norm running statistics) into every process's, in place.
        Called before each evaluation: the ranks then evaluate the model that rank 0 saves (see
        :func:`data_parallel`)."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)


_DRAIN_S = 0.1  # end_process_group's pause: long enough for gloo's worker threads to finish their last release

# DDP's broadcast_buffers is forward_sync_buffers in newer torch (2.14 warns on the old name; 2.4, 2.5: old only)
_NO_FORWARD_BUFFER_SYNC = ("forward_sync_buffers" if "forward_sync_buffers" in
                           inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
                           else "broadcast_buffers")


def data_parallel(model: torch.nn.Module, runtime: Runtime) -> torch.nn.parallel.DistributedDataParallel:
    """``model`` under DistributedDataParallel, without DDP's copy of rank 0's buffers before every forward.

    Why: torch 2.4 and 2.5 make that copy in place into the batch-norm buffers that the previous forward
    saved for backward, so a step with two forwards before one backward (stage 2's weak and strong views,
    ACTO's two passes) fails in backward ("modified by an inplace operation"); torch 2.14 does not.  Without
    the copy nothing a step computes changes: training-mode batch norm uses the batch's statistics, and
    rank 0, whose buffers the copy came from, never received any.  The other ranks' running statistics
    drift from rank 0's; they are used only in evaluation, which takes rank 0's first
    (:meth:`Runtime.broadcast_buffers`), as it is rank 0's model that is saved and exported.
    """
    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                        **{_NO_FORWARD_BUFFER_SYNC: False})
    runtime.broadcast_buffers(model)  # torch 2.4 does not sync buffers at construction without the forward copy
    return wrapped


def local_gpu(local_rank: int, visible: int) -> int:
    """The index of the GPU that process ``local_rank`` of a node takes among the ``visible`` GPUs it sees.

    ``cuda:LOCAL_RANK`` where the process sees the node's GPUs; ``cuda:0`` where it sees one GPU alone (a
    launcher that gives each task its own GPU through CUDA_VISIBLE_DEVICES, e.g. Slurm's --gpus-per-task=1);
    anything else is ambiguous and refused with one line."""
    if local_rank < visible:
        return local_rank
    if visible == 1:
        return 0
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    raise ConfigError(f"LOCAL_RANK {local_rank}, but this process sees {visible} GPU(s)"
                      + (f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else "")
                      + ": give every process all of the node's GPUs or exactly one")


def choose_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """The training device of a process (no side effect): ``requested`` (cpu, cuda, cuda:N, mps; None: cuda
    if available, else the CPU); a bare ``cuda`` is :func:`local_gpu` of ``local_rank``."""
    if requested is None and not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device(requested or "cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {requested} requested but CUDA is not available (use --device cpu)")
        visible = torch.cuda.device_count()
        if device.index is None:
            return torch.device("cuda", local_gpu(local_rank, visible))
        if device.index >= visible:
            raise ConfigError(f"device {requested}: only {visible} GPU(s) visible")
        return device
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps requested but not available (use --device cpu)")
    return device


def setup_runtime(requested_device: str | None) -> Runtime:
    """Pick the device and make it this process's current CUDA device; join the torchrun process group when
    launched by torchrun.

    Why ``set_device`` also for one process: without it, a run on ``cuda:1`` still opens a CUDA context on
    GPU 0 (the DataLoader's pinned-memory thread and the caching allocator use the current device), taking
    memory on another job's GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        device = choose_device(requested_device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return Runtime(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if requested_device is not None and requested_device.startswith("cuda:"):
        raise ConfigError("under torchrun use --device cuda (each process takes cuda:LOCAL_RANK), not cuda:N")
    device = choose_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def end_process_group() -> None:
    """Destroy the process group this process joined (:func:`setup_runtime` under torchrun), if any.

    Called by :func:`utils.core.entry.run_main` when an entry point's ``main`` has returned: a group left to the
    interpreter's exit makes torch warn that it was not destroyed and leaves NCCL's communicators to be torn
    down in an undefined order.  A failed run exits without it (a peer may still wait in a collective).

    The GIL is released for a moment first: at torch 2.4 and 2.5 a gloo group's destructor joins its worker
    threads while holding the GIL, and a thread still releasing a finished collective's tensor waits for
    the GIL, a deadlock.  Two processes, three all-reduces, then the destroy: 10 of 40 runs hung at 2.4.0,
    14 of 40 at 2.5.1, none of 40 with this pause (none of 30 at 2.14.1 without it)."""
    if dist.is_available() and dist.is_initialized():
        time.sleep(_DRAIN_S)
        dist.destroy_process_group()


class EpochShuffleSampler(Sampler[int]):
    """Random order drawn from ``(seed, epoch)`` alone, so a resumed run sees the same batches.

    With ``world_size > 1`` this is torch's DistributedSampler scheme: the permutation is padded
    by repeating its first indices so every rank gets the same number of samples.
    """

    def __init__(self, num_samples: int, *, seed: int, rank: int = 0, world_size: int = 1):
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.epoch = 0
        self.per_rank = -(-num_samples // world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        total = self.per_rank * self.world_size
        order += order[: total - len(order)]
        return iter(order[self.rank:total:self.world_size])

    def __len__(self) -> int:
        return self.per_rank


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``w`` takes indices r, r+w, ... in order, without padding (for evaluation)."""

    def __init__(self, num_samples: int, *, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def on_rank0_then_share(make):
    """``make()`` on rank 0 only, its result sent to every other rank (``broadcast_object_list``).

    For work that must happen once per job, such as listing a million files: the other ranks wait and
    receive the (pickled) result.  A :class:`~utils.core.errors.UsageError` raised on rank 0 (a bad folder,
    one line for the user) is raised on every rank, so no rank waits forever; any other failure on rank 0
    becomes a RuntimeError on the others.  Without an initialised process group this is ``make()``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return make()
    box = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", make())
        except UsageError as err:
            box[0] = ("usage", err)
        except Exception as err:  # noqa: BLE001 - re-raised below after the other ranks are told
            box[0] = ("failed", f"{type(err).__name__}: {err}")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "usage":
        raise value
    if status == "failed":
        raise RuntimeError(f"rank 0 failed while preparing shared data: {value}")
    return value
