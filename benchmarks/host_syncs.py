"""Host syncs counted per training step (benchmarks/gpu_check.py): on CUDA every synchronizing operation, elsewhere
every Python-side read of a tensor's value.

:class:`SyncCounter` counts, on CUDA, the warnings of ``torch.cuda.set_sync_debug_mode("warn")`` (one per
synchronizing CUDA operation: ``item``, ``nonzero``, a copy to the host, boolean-mask indexing, ...); on any other
device the reads :class:`utils.core.host_reads.HostReads` sees (``item``, ``tolist``, ``float()``, ...: on a GPU
each would wait for the device; reads inside C++, such as boolean-mask indexing, are not seen).  Both keep the
place in the Python code that caused each one (``file:line``), which is what a fix needs.

:func:`count_epoch` splits one training epoch's count into its steps by marking the counter each time the engine
calls the step: the interval between two marks is one whole iteration of
:func:`utils.training.engine.train_one_epoch` (the step, backward, optimiser step, the engine's bookkeeping and
the next batch's copy to the device).
"""
from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import torch

from utils.core.host_reads import HOST_READS, HostReads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNC_WARNING = "called a synchronizing CUDA operation"  # c10/cuda/CUDAFunctions.cpp, warn_or_error_on_sync
CUDA_COUNTER = ("torch.cuda.set_sync_debug_mode('warn'): one warning per synchronizing CUDA operation (item, "
                "nonzero, copies to the host, boolean-mask indexing)")
HOST_READS_COUNTER = ("utils/core/host_reads.HostReads: Python-side reads of a tensor's value (item, tolist, "
                      "float(), ...), each a sync on a GPU; reads inside C++ (boolean-mask indexing) are not seen, "
                      "and reads of tensors that a GPU run keeps on the host (the optimiser's step counters) are "
                      "counted")
TOP_SITES = 10  # the sites kept per measurement, most frequent first


def site(filename: str, lineno: int) -> str:
    """``path:line`` of a place in the code: relative to the repository, to site-packages, or the file name."""
    path = os.path.abspath(filename)
    if path.startswith(REPO + os.sep):
        path = os.path.relpath(path, REPO)
    elif f"site-packages{os.sep}" in path:
        path = path.split(f"site-packages{os.sep}", 1)[1]
    else:
        path = os.path.basename(path)
    return f"{path}:{lineno}"


class _SitedHostReads(HostReads):
    """HostReads that also keeps the calling line of every read."""

    def __init__(self):
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            caller = sys._getframe(1)  # the Python line that asked for the value
            self.sites[site(caller.f_code.co_filename, caller.f_lineno)] += 1
        return super().__torch_function__(func, types, args, kwargs)


class SyncCounter:
    """``with SyncCounter(device) as c: ...``; ``c.total`` (int) and ``c.sites`` (Counter of ``file:line``) so far.

    ``set_mode`` (CUDA only) is ``torch.cuda.set_sync_debug_mode``; the mode is restored on exit.
    """

    def __init__(self, device: torch.device, *, set_mode: Callable[[Any], None] | None = None):
        self.cuda = device.type == "cuda"
        self.name = CUDA_COUNTER if self.cuda else HOST_READS_COUNTER
        self._set_mode = set_mode or torch.cuda.set_sync_debug_mode
        self._reads: _SitedHostReads | None = None
        self._warnings: warnings.catch_warnings | None = None
        self._records: list = []
        self._seen = 0
        self._sites: Counter = Counter()
        self._total = 0

    def __enter__(self) -> "SyncCounter":
        if self.cuda:
            self._warnings = warnings.catch_warnings(record=True)
            self._records = self._warnings.__enter__()
            warnings.simplefilter("always")  # every sync, not once per line
            self._set_mode("warn")
        else:
            self._reads = _SitedHostReads().__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self._set_mode("default")
            self._collect()
            self._warnings.__exit__(*exc)
        else:
            self._reads.__exit__(*exc)

    def _collect(self) -> None:
        for record in self._records[self._seen:]:
            if SYNC_WARNING in str(record.message):
                self._total += 1
                self._sites[site(record.filename, record.lineno)] += 1
        self._seen = len(self._records)

    @property
    def total(self) -> int:
        if self.cuda:
            self._collect()
            return self._total
        return self._reads.total

    @property
    def sites(self) -> Counter:
        if self.cuda:
            self._collect()
            return Counter(self._sites)
        return Counter(self._reads.sites)


@dataclass(frozen=True)
class StepCounts:
    """Host syncs of one counted epoch of ``steps`` steps (``steps`` >= 3).

    ``first_step``: from the epoch's start to the second step (set-up and the first iteration, with what it
    creates lazily: optimiser state, the gradient scaler's scale); ``per_step_counts``: each iteration after it but
    the last (the steady state); ``per_step``: their most, a step that updates the weights (in fp16 the gradient
    scaler skips the optimiser's step while its scale is too large, which saves that step's optimiser reads);
    ``epoch_total``: the whole epoch, its end (the engine's one read of the epoch's sums) included; ``sites``:
    ``{file:line: syncs per steady step}``, the :data:`TOP_SITES` most frequent."""

    first_step: int
    per_step: int
    per_step_counts: list
    epoch_total: int
    steps: int
    sites: dict


def count_epoch(run_epoch: Callable[[Callable], Any], step: Callable, counter: SyncCounter) -> StepCounts:
    """Run ``run_epoch(counted_step)`` (one epoch of the engine with ``counted_step`` in place of ``step``) inside
    ``counter`` (entered already) and split its syncs by iteration."""
    marks: list[tuple[int, Counter]] = []

    def counted_step(model, batch):
        marks.append((counter.total, counter.sites))
        return step(model, batch)

    before = counter.total
    run_epoch(counted_step)
    after = counter.total
    if len(marks) < 3:
        raise ValueError(f"count_epoch needs an epoch of at least 3 steps, got {len(marks)}")
    totals = [total for total, _ in marks]
    steady = [b - a for a, b in zip(totals[1:-1], totals[2:])]
    between = marks[-1][1] - marks[1][1]
    sites = {name: round(n / len(steady), 3) for name, n in between.most_common(TOP_SITES)}
    return StepCounts(first_step=totals[1] - before, per_step=max(steady), per_step_counts=steady,
                      epoch_total=after - before, steps=len(marks), sites=sites)
