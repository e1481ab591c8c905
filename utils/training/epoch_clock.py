"""Time per epoch and the time left, for the epoch lines of every entry point."""
from __future__ import annotations

import time
from typing import Callable


def format_duration(seconds: float) -> str:
    """``2.4s``, ``42s``, ``4m05s``, ``2h05m``: precise where it is short, coarse where it is long."""
    seconds = max(0.0, seconds)
    if seconds < 9.95:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes}m{whole % 60:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class EpochClock:
    """Measures each epoch from the previous :meth:`lap` (or the clock's creation) to the next,
    checkpoint writing included; the time left is the mean epoch time of this process times the
    epochs still to run (``epochs`` is the run's total, epochs are counted from 0)."""

    def __init__(self, epochs: int, *, clock: Callable[[], float] = time.monotonic):
        self.epochs = epochs
        self.clock = clock
        self.durations: list[float] = []
        self._last = clock()

    def lap(self, epoch: int) -> str:
        """End ``epoch``: ``"{time}/epoch, {time} left"``."""
        now = self.clock()
        self.durations.append(now - self._last)
        self._last = now
        mean = sum(self.durations) / len(self.durations)
        left = mean * max(0, self.epochs - epoch - 1)
        return f"{format_duration(self.durations[-1])}/epoch, {format_duration(left) if left else '0s'} left"
