"""Errors that are the user's to fix, and the one place that turns them into exit status 2."""
from __future__ import annotations

import re
import sys
from typing import Callable, Sequence


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


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main``; a :class:`UsageError` becomes one line on stderr and exit 2."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "main"
    try:
        main(argv)
    except UsageError as err:
        print(f"{prog}: error: {user_message(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; every finished epoch is saved in checkpoint/<run>/last.pt "
              "(continue with --resume)", file=sys.stderr)
        sys.exit(130)
