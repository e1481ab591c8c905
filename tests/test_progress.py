"""utils/core/progress.py: a bar writes at most one update every LOG_INTERVAL_S seconds into a log file or a pipe,
and keeps tqdm's redraws on a terminal.  The clock is a fake one, advanced by the loop: no wall-clock time."""
from __future__ import annotations

import io

import pytest
import tqdm.std

from utils.core.progress import LOG_INTERVAL_S, progress

STEP_S = 1.0  # the fake seconds one iteration takes
ITERATIONS = 300


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """tqdm's clock, advanced by hand; its monitor thread (real time) off."""
    now = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: now[0])
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    monkeypatch.delenv("TQDM_MININTERVAL", raising=False)
    monkeypatch.delenv("TQDM_MAXINTERVAL", raising=False)
    return now


def updates(stream, clock) -> int:
    """The displays a bar writes into ``stream`` over a loop of ITERATIONS fake seconds (each starts with \\r)."""
    for _ in progress(range(ITERATIONS), file=stream, desc="epoch 1"):
        clock[0] += STEP_S
    return stream.getvalue().count("\r")


def test_a_log_file_gets_one_update_every_interval(clock):
    written = updates(io.StringIO(), clock)
    # the first display, one per interval of the loop's 300 s, the last one at the end
    assert written <= 2 + ITERATIONS * STEP_S / LOG_INTERVAL_S
    assert written >= ITERATIONS * STEP_S / LOG_INTERVAL_S  # still a sign of life in every interval


def test_a_terminal_keeps_tqdms_redraws(clock):
    assert updates(Terminal(), clock) >= ITERATIONS  # one per iteration: each took longer than 0.1 s


def test_the_users_setting_wins(clock, monkeypatch):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    monkeypatch.setenv("TQDM_MAXINTERVAL", "0")
    assert updates(io.StringIO(), clock) >= ITERATIONS
