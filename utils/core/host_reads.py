"""Count the places where Python reads a tensor's value on the host: on a GPU each one waits for the device
(a host sync).  ``torch.cuda.set_sync_debug_mode`` counts real syncs on CUDA; this counts the reads that cause
them, on any device, so a CPU test can tell a loop that reads once per epoch from one that reads every step.

It sees the tensor methods that hand a value to Python (``item``, ``tolist``, ``bool()``, ``float()``,
``int()``, ``numpy``, ``cpu``, ``nonzero``); reads inside C++ (boolean-mask indexing) are not seen.
"""
from __future__ import annotations

from collections import Counter

from torch.overrides import TorchFunctionMode

HOST_READS = frozenset({"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu",
                        "nonzero"})


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...`` then ``reads.total`` and ``reads.by_name`` (a Counter)."""

    def __init__(self):
        super().__init__()
        self.by_name: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.by_name[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_name.values())
