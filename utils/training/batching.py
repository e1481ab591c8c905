"""Training batches that keep every sample of every epoch, without a batch of one.

A last batch of one sample cannot train BatchNorm (its variance is undefined), and dropping it costs
that sample its prediction of the epoch (-1, which the label wave counts as a change and the wrong
events as a miss).  Instead the last two batches share the remainder: ``bs + 1`` samples split into
two halves (``ceil``, ``floor``), or, for ``bs = 2``, one batch of 3.
"""
from __future__ import annotations

from typing import Iterator

from torch.utils.data import Sampler


def batch_sizes(num_samples: int, batch_size: int) -> list[int]:
    """Sizes of the batches that cover ``num_samples`` in order; none is 1 unless ``num_samples`` or
    ``batch_size`` is.  Sums to ``num_samples``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    full, rest = divmod(num_samples, batch_size)
    sizes = [batch_size] * full + ([rest] if rest else [])
    if rest == 1 and full >= 1 and batch_size > 1:
        merged = batch_size + 1
        sizes[-2:] = [merged - merged // 2, merged // 2] if merged // 2 >= 2 else [merged]
    return sizes


class KeepAllBatchSampler(Sampler[list]):
    """Groups the indices of ``sampler`` into :func:`batch_sizes` batches (a ``batch_sampler``).

    ``set_epoch`` is forwarded to the wrapped sampler, which stays reachable as ``.sampler``.
    """

    def __init__(self, sampler: Sampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size
        self.sizes = batch_sizes(len(sampler), batch_size)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list]:
        indices = iter(self.sampler)
        for size in self.sizes:
            yield [next(indices) for _ in range(size)]

    def __len__(self) -> int:
        return len(self.sizes)
