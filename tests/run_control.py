"""Stop an entry point at a point the test chooses, not at whatever point a poll happens to catch.

:func:`start_parked` runs an entry point (``stage_1.py``, ...) in a subprocess that, once its ``epochs``-th
checkpoint (last.pt) is saved, creates a marker file and sleeps (a long sleep, not a busy loop); the test
waits for the marker with :func:`wait_until_parked`, then kills or signals the process.  So "killed after
epoch 2 of 5" holds on any machine, however fast: polling metrics.csv instead loses the race where a run
finishes its remaining epochs between two polls.  The park happens after ``RunLog.save_state`` returns,
outside its ``deferred_interrupt`` block, so a stop signal is handled at once, as between two epochs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from utils.config import REPO_ROOT

PARKED_FOR_S = 600  # longer than any test waits; the test ends the process well before

_PROGRAM = """
import os, runpy, sys, time
from utils.runlog import RunLog
after, marker, parked_for = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
save_state, saved = RunLog.save_state, []

def save_state_then_park(self, state):
    save_state(self, state)
    saved.append(1)
    if len(saved) == after:
        open(marker, "w").close()
        time.sleep(parked_for)

RunLog.save_state = save_state_then_park
sys.argv = sys.argv[4:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start_parked(script: str, argv: list[str], *, epochs: int, marker: str, **popen_kwargs) -> subprocess.Popen:
    """``python script *argv`` (cwd: the repository), parked after its ``epochs``-th checkpoint; ``marker`` is
    created when it parks.  ``popen_kwargs`` go to subprocess.Popen (stderr, env, start_new_session, ...)."""
    if os.path.exists(marker):
        os.remove(marker)
    cmd = [sys.executable, "-c", _PROGRAM, str(epochs), marker, str(PARKED_FOR_S), script, *argv]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, **popen_kwargs)


def wait_until_parked(proc: subprocess.Popen, marker: str, *, timeout: float = 240) -> None:
    """Return once ``proc`` has parked; fail the test if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(marker):
        if proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            pytest.fail(f"the run ended (exit {proc.returncode}) before it parked: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"the run did not park within {timeout} s")
        time.sleep(0.05)


def wait_for_rows(path, rows: int, proc: subprocess.Popen, *, timeout: float = 240) -> None:
    """Return once metrics.csv at ``path`` holds ``rows`` epochs (a run that cannot be parked: torchrun's ranks);
    fail the test if ``proc`` ends or times out first.  Whether more epochs finish meanwhile is up to the
    machine: assert nothing that depends on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and len(open(path).read().strip().splitlines()) >= rows + 1:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before {rows} epochs: {proc.stderr.read()[-1000:]}")
        time.sleep(0.05)
    pytest.fail("timed out waiting for epochs")
