"""Errors that are the user's to fix, and the one place that turns them into exit status 2."""
from __future__ import annotations

import os
import re
import signal
import sys
from typing import Callable, Sequence

from utils.signals import Terminated, stop_requested, stop_signals_raise


class UsageError(Exception):
    """Bad input the user can fix: a config value, a missing file, a mismatched artefact.

    Entry points print the message as one line and exit with status 2 (no traceback).
    """


class ConfigError(UsageError):
    """A config key has an unknown name, a wrong type or an out-of-range value."""


class DataError(UsageError):
    """A data set or artefact on disk is missing or does not match what is expected."""


# torch re-raises an exception of a DataLoader worker as the same type holding the worker's whole traceback
WORKER_TRACEBACK = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def user_message(err: BaseException) -> str:
    """The one line to show for ``err``.  Raised inside a DataLoader worker, it arrives as the worker's
    traceback text, whose last line is ``module.Type: message``: the message is taken from there."""
    text = str(err)
    if WORKER_TRACEBACK.match(text):
        last = text.rstrip().splitlines()[-1]
        text = re.sub(r"^[\w.]+: ", "", last, count=1)
    return text


# last.pt of the run in progress (set by the main process's run log), named when a run is stopped
_checkpoint: dict[str, str | None] = {"path": None}


def remember_checkpoint(path: str) -> None:
    _checkpoint["path"] = path


def stopped_line(prog: str, why: str) -> str:
    """The one line of a stopped run: where its ``last.pt`` is and that ``--resume`` continues it."""
    path = _checkpoint["path"]
    if path is not None and os.path.isfile(path):
        return f"{prog}: {why}; every finished epoch is saved in {path} (continue with --resume)"
    return f"{prog}: {why} before an epoch finished; nothing to resume (start again)"


def _stopped(signum: int, prog: str) -> tuple[int, str]:
    if signum == signal.SIGTERM:
        return 143, stopped_line(prog, "stopped by SIGTERM")
    return 130, stopped_line(prog, "interrupted")


def _outcome(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None, prog: str
             ) -> tuple[int, str | None]:
    """Run ``main``; the exit status and the one line to print for how it ended."""
    try:
        main(argv)
        return 0, None
    except UsageError as err:
        return 2, f"{prog}: error: {user_message(err)}"
    except KeyboardInterrupt as err:
        return _stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, prog)
    except Exception:
        signum = stop_requested()
        if signum is None:
            raise
        # the same stop reached a DataLoader worker or a peer process first, and its failure arrived here
        # before (or instead of) this process's own Terminated
        return _stopped(signum, prog)


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main``: a :class:`UsageError` becomes one line on stderr and exit 2; Ctrl-C
    and SIGTERM (a scheduler's stop) end it with one line naming ``last.pt``, exit 130 / 143.

    Under torchrun only rank 0 prints the stop line (every rank is stopped the same way); a run that
    finished destroys its process group (:func:`utils.distributed.end_process_group`).
    """
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "main"
    with stop_signals_raise():
        try:
            code, line = _outcome(main, argv, prog)
        except KeyboardInterrupt as err:  # the stop signal was handled while another error was being reported
            code, line = _stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, prog)
    if code == 0:
        from utils.distributed import end_process_group  # here: utils.distributed imports this module
        end_process_group()
    if line is not None and (code == 2 or os.environ.get("RANK", "0") == "0"):
        print(line, file=sys.stderr)
    if code:
        sys.exit(code)
