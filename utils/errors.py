"""Errors that are the user's to fix, and the one place that turns them into exit status 2."""
from __future__ import annotations

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


def run_main(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run an entry point's ``main``; a :class:`UsageError` becomes one line on stderr and exit 2."""
    prog = sys.argv[0].rsplit("/", 1)[-1] if sys.argv and sys.argv[0] else "main"
    try:
        main(argv)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; every finished epoch is saved in checkpoint/<run>/last.pt "
              "(continue with --resume)", file=sys.stderr)
        sys.exit(130)
