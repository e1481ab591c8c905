"""Which GPU a process takes and that it makes it current (utils/core/distributed.py), with torch.cuda's queries
and torch.distributed's set-up faked: one process on cuda:1, torchrun with all GPUs visible, a launcher that
shows each task one GPU, and the ambiguous case refused in one line."""
from __future__ import annotations

import pytest
import torch

from utils.core import distributed
from utils.core.distributed import local_gpu, setup_runtime
from utils.core.errors import ConfigError


@pytest.fixture
def gpus(monkeypatch):
    """``gpus(n)``: n visible GPUs; returns the list of devices ``torch.cuda.set_device`` was given."""
    selected = []

    def make(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: selected.append(torch.device(device)))
        return selected
    return make


@pytest.fixture
def torchrun(monkeypatch):
    """The environment torchrun gives a process, and a process group that records its backend."""
    joined = []

    def make(*, rank, local_rank, world_size):
        for key, value in (("RANK", rank), ("LOCAL_RANK", local_rank), ("WORLD_SIZE", world_size)):
            monkeypatch.setenv(key, str(value))
        monkeypatch.setattr(distributed.dist, "is_initialized", lambda: bool(joined))
        monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: joined.append(backend))
        return joined
    return make


def test_one_process_on_the_second_gpu_makes_it_current(gpus, monkeypatch):
    """Without set_device the pinned-memory thread and the allocator open a context on GPU 0 as well."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    selected = gpus(2)
    runtime = setup_runtime("cuda:1")
    assert runtime.device == torch.device("cuda", 1) and selected == [torch.device("cuda", 1)]
    assert setup_runtime(None).device == torch.device("cuda", 0) and selected[-1] == torch.device("cuda", 0)


def test_torchrun_with_the_nodes_gpus_visible_takes_cuda_local_rank(gpus, torchrun):
    selected = gpus(8)
    joined = torchrun(rank=13, local_rank=5, world_size=16)
    runtime = setup_runtime(None)
    assert runtime.device == torch.device("cuda", 5) and selected == [torch.device("cuda", 5)]
    assert (runtime.rank, runtime.local_rank, runtime.world_size, joined) == (13, 5, 16, ["nccl"])


def test_a_task_shown_one_gpu_takes_it_whatever_its_local_rank(gpus, torchrun):
    """A launcher that sets CUDA_VISIBLE_DEVICES per task: LOCAL_RANK 3 sees one GPU, cuda:0 (torch's own
    set_device(3) failed here)."""
    selected = gpus(1)
    torchrun(rank=3, local_rank=3, world_size=4)
    assert setup_runtime("cuda").device == torch.device("cuda", 0) and selected == [torch.device("cuda", 0)]


def test_more_local_ranks_than_gpus_seen_is_refused_in_one_line(gpus, torchrun, monkeypatch):
    gpus(4)
    torchrun(rank=5, local_rank=5, world_size=8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with pytest.raises(ConfigError) as err:
        setup_runtime(None)
    assert str(err.value) == ("LOCAL_RANK 5, but this process sees 4 GPU(s) (CUDA_VISIBLE_DEVICES=0,1,2,3): give "
                              "every process all of the node's GPUs or exactly one")


@pytest.mark.parametrize("local_rank, visible, index", [(0, 1, 0), (3, 8, 3), (7, 8, 7), (3, 1, 0)])
def test_local_gpu(local_rank, visible, index):
    assert local_gpu(local_rank, visible) == index


def test_the_cpu_needs_no_gpu_call(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("set_device on the CPU"))
    assert setup_runtime("cpu").device == torch.device("cpu")
