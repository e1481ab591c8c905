"""Errors that are the user's to fix (:func:`utils.core.entry.run_main` turns them into one line and exit status 2)."""
from __future__ import annotations

import re


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
