"""Count the places where Python reads a tensor's value on the host: on a GPU each one waits for the device
(a host sync).  ``torch.cuda.set_sync_debug_mode`` counts real syncs on CUDA; this counts the reads that cause
them, on any device, so a CPU test can tell a loop that reads once per epoch from one that reads every step.

It sees the tensor methods that hand a value to Python (``item``, ``tolist``, ``bool()``, ``float()``,
``int()``, ``numpy``, ``cpu``, ``nonzero``); reads inside C++ (boolean-mask indexing) are not seen.
Apart from them (not in ``total``) it counts ``blocking_copies``: ``.to(device)`` and ``.cuda()`` without
``non_blocking=True``.  From the host to a GPU such a copy waits for the device as well (every earlier kernel
of the stream), even from pinned memory; on the CPU it is a no-op, so only code that copies batches to the
training device is expected to have none.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

HOST_READS = frozenset({"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu",
                        "nonzero"})


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...`` then ``reads.total`` and ``reads.by_name`` (a Counter)."""

    def __init__(self):
        super().__init__()
        self.by_name: Counter = Counter()
        self.blocking_copies = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        kwargs = kwargs or {}
        if name in HOST_READS:
            self.by_name[name] += 1
        elif name in ("to", "cuda") and _to_a_device(name, args, kwargs) and not _non_blocking(args, kwargs):
            self.blocking_copies += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.by_name.values())


def _to_a_device(name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a ``Tensor.to`` / ``Tensor.cuda`` call names a device (a dtype-only ``.to`` copies nothing across)."""
    if name == "cuda" or kwargs.get("device") is not None:
        return True
    return any(isinstance(a, (torch.device, str)) for a in args[1:2])


def _non_blocking(args: tuple, kwargs: dict) -> bool:
    """``non_blocking=True``, by keyword or as ``.to(device, dtype, True)``."""
    return bool(kwargs.get("non_blocking")) or any(a is True for a in args[2:4])
