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

from utils.training.config import REPO_ROOT

PARKED_FOR_S = 600  # longer than any test waits; the test ends the process well before

_PROGRAM = """
import os, runpy, sys, time
sys.path.insert(0, os.getcwd())  # the repository (run as a file, sys.path[0] is the file's folder)
from utils.training.runlog import RunLog
after, marker, parked_for = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
save_state, saved = RunLog.save_state, []

def save_state_then_park(self, state, *args, **kwargs):
    save_state(self, state, *args, **kwargs)
    saved.append(1)
    if len(saved) == after:
        if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 writes last.pt: the marker waits for it
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


def parking_launcher(path: str, *, epochs: int, marker: str) -> list[str]:
    """For a launcher that runs a script file itself (torchrun): write the parking program to ``path`` and return
    the arguments that go where the script would, before the entry point and its own arguments.  Every rank
    parks after its ``epochs``-th checkpoint call; only rank 0 writes last.pt, so only rank 0 creates the marker
    (another rank returns from the call at once and would announce the park before last.pt exists)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(_PROGRAM)
    if os.path.exists(marker):
        os.remove(marker)
    return [path, str(epochs), marker, str(PARKED_FOR_S)]


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

