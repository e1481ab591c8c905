"""SIGTERM handled like Ctrl-C: cluster schedulers (and torchrun, when it shuts its processes down) stop a
job with SIGTERM, which by default kills Python on the spot.

The entry points turn it into :class:`Terminated`, a :class:`KeyboardInterrupt`, so everything that
already lets Ctrl-C end a run cleanly applies unchanged: a ``last.pt`` being written is finished first
(:func:`deferred_interrupt`), DataLoader workers leave quietly, and
:func:`utils.core.entry.run_main` prints one line saying where ``last.pt`` is (exit status 143).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

import torch.utils.data

# The signals that stop a run, and the exit status of each (128 + signal number, as the shell reports).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (exit status 143)."""


def raise_for(signum: int) -> None:
    """Raise what a stop signal means here: KeyboardInterrupt for SIGINT, :class:`Terminated` for SIGTERM."""
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


# Stop signals received inside :func:`stop_signals_raise`.  Python drops an exception raised by a signal
# handler while it runs at-fork callbacks or ``__del__`` (it prints "Exception ignored"): a SIGTERM
# arriving while a DataLoader forks its workers would be lost.  :func:`check_stop` raises it again.
_received: list[int] = []


def _on_stop(signum, frame) -> None:
    _received.append(signum)
    if len(_received) == 1:  # later signals (a scheduler's repeats, torchrun's forward) only add to the record
        raise_for(signum)


def stop_requested() -> int | None:
    """The first stop signal received inside :func:`stop_signals_raise`, if any."""
    return _received[0] if _received else None


def check_stop() -> None:
    """Raise a stop signal received earlier whose exception was dropped (call at safe points: per batch)."""
    if _received:
        raise_for(_received[0])


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` and SIGINT KeyboardInterrupt in the main thread,
    and both are remembered for :func:`check_stop`; the previous handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_stop) for s in STOP_SIGNALS}
    previous_hook = sys.unraisablehook

    def hook(unraisable) -> None:  # a dropped stop is raised again by check_stop: no "Exception ignored" text
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = previous_hook
        _received.clear()


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block ends, so a checkpoint being written is finished
    first (or a DataLoader's workers are all started and tracked); then the first of them is raised as usual
    (KeyboardInterrupt or :class:`Terminated`), and remembered as :func:`stop_signals_raise` remembers one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            if previous[received[0]] is _on_stop:  # inside stop_signals_raise: check_stop sees it too
                _received.extend(received)
            raise_for(_received[0] if _received else received[0])


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a scheduler signals the whole process group, workers included; a
    worker then leaves as on Ctrl-C (torch's worker loop ends quietly on KeyboardInterrupt) instead of
    dying, which the main process would report as a crash before its own SIGTERM is handled."""
    signal.signal(signal.SIGTERM, _on_stop)


class DataLoader(torch.utils.data.DataLoader):
    """torch's DataLoader, safe to stop: its workers leave as on Ctrl-C on SIGTERM (:func:`worker_init`, the
    default ``worker_init_fn``), and a stop signal that arrives while an iterator starts its workers is held
    back until every worker is started and tracked, then raised.

    Raised inside torch's iterator set-up, the stop left the iterator half-built (its ``__del__`` then fails
    on a missing attribute): a worker forked in that moment could be tracked by nobody, miss the signal
    (sent before the fork) and outlive the run with its stderr open; seen once in CI, a stopped stage 1
    that had not ended after 120 s.  Every loader of the project is this class.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("worker_init_fn", worker_init)
        super().__init__(*args, **kwargs)

    def __iter__(self):
        with deferred_interrupt():
            return super().__iter__()
