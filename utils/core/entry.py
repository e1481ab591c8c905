"""The one place an entry point ends: a :class:`~utils.core.errors.UsageError` becomes one line and exit
status 2, a file that cannot be written (:class:`~utils.core.errors.WriteFailed`: a full disk) one line and exit
status 1, Ctrl-C and SIGTERM one line naming ``last.pt`` and the command that continues, a finished run its
process group ended."""
from __future__ import annotations

import errno
import os
import signal
import sys
from typing import Callable, Sequence

from utils.core.distributed import end_process_group
from utils.core.errors import UsageError, WriteFailed, user_message
from utils.core.signals import Terminated, stop_requested, stop_signals_raise


# last.pt of the run in progress once it has saved (or resumed) one (set by the main process's run log), and the
# command that continues a stopped run where that is not the run's own command with --resume (clean_labels.py)
_checkpoint: dict[str, str | None] = {"path": None}
_rerun: dict[str, str | None] = {"command": None}


def remember_checkpoint(path: str | None) -> None:
    """The ``last.pt`` that holds the finished epochs of the run in progress (None: none yet)."""
    _checkpoint["path"] = path


def remember_rerun(command: str | None) -> None:
    """The command (shell-quoted) that continues this program after a stop: the same command, where it goes on
    by itself from what is saved (clean_labels.py); None: the run's own command with ``--resume``."""
    _rerun["command"] = command


def _saved() -> str | None:
    path = _checkpoint["path"]
    return path if path is not None and os.path.isfile(path) else None


def continuation(first: str = "") -> str | None:
    """How a stopped run goes on, for its one line: where its finished epochs are and the command that
    continues it (``first``: what to do before it, e.g. "free space, then "); None where nothing is saved and
    nothing continues it."""
    saved, command = _saved(), _rerun["command"]
    if command is not None:
        kept = f"every finished epoch is saved in {saved}; " if saved else "finished stages are kept; "
        return f"{kept}{first}run the same command to continue: {command}"
    if saved:
        return f"every finished epoch is saved in {saved} ({first}continue with --resume)"
    return None


def stopped_line(prog: str, why: str) -> str:
    """The one line of a stopped run: where its ``last.pt`` is and the command that continues it."""
    then = continuation()
    if then is not None:
        return f"{prog}: {why}; {then}"
    return f"{prog}: {why} before an epoch finished; nothing to resume (start again)"


def failed_write_line(prog: str, err: OSError) -> str:
    """The one line of a run ended by a file it could not write: the file, the cause, and how to go on."""
    then = continuation("free space, then " if err.errno in (errno.ENOSPC, errno.EDQUOT) else
                        "make it writable, then ")
    return f"{prog}: error: {err}" + (f"; {then}" if then else "")


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
    except WriteFailed as err:
        return 1, failed_write_line(prog, err)
    except KeyboardInterrupt as err:
        return _stopped(signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT, prog)
    except Exception as err:
        signum = stop_requested()
        if signum is not None:
            # the same stop reached a DataLoader worker or a peer process first, and its failure arrived here
            # before (or instead of) this process's own Terminated
            return _stopped(signum, prog)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT) and err.filename:
            # a full disk met by a write outside utils/core/io.py, which names its file
            return 1, failed_write_line(prog, WriteFailed(err.errno, "disk full", err.filename))
        raise


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main``: a :class:`UsageError` becomes one line on stderr and exit 2, a
    :class:`WriteFailed` (a full disk) one line and exit 1; Ctrl-C and SIGTERM (a scheduler's stop) end it
    with one line naming ``last.pt`` and the command that continues, exit 130 / 143.

    Under torchrun only rank 0 prints the stop line (every rank is stopped the same way); a run that
    finished destroys its process group (:func:`utils.core.distributed.end_process_group`).
    """
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "main"
    remember_checkpoint(None)  # nothing of an earlier main run in this process (tests) names this one's files
    remember_rerun(None)
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
