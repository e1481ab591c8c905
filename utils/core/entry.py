"""The one place an entry point ends: a :class:`~utils.core.errors.UsageError` becomes one line and exit
status 2, Ctrl-C and SIGTERM one line naming ``last.pt``, a finished run its process group ended."""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Sequence

from utils.core.distributed import end_process_group
from utils.core.errors import UsageError, user_message
from utils.core.signals import Terminated, stop_requested, stop_signals_raise


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
    finished destroys its process group (:func:`utils.core.distributed.end_process_group`).
    """
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "main"
    with stop_signals_raise():
        try:
            code, line = _outcome(main, argv, prog)
        except KeyboardInterrupt as err:  # the stop signal was handled while another error was being reported
            code, line = _stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, prog)
    if code == 0:
        end_process_group()
    if line is not None and (code == 2 or os.environ.get("RANK", "0") == "0"):
        print(line, file=sys.stderr)
    if code:
        sys.exit(code)
