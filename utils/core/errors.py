"""Errors that end a run with one line (:func:`utils.core.entry.run_main`): the user's to fix (exit status 2), or a file
that cannot be written (exit status 1)."""
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


class WriteFailed(OSError):
    """A file could not be written: the disk filled up, or its folder is read-only or not the user's to write
    (:mod:`utils.core.io` raises it, the temporary file removed; :func:`utils.core.entry.run_main` prints it as
    one line, exit status 1).  An :class:`OSError` with the errno of the cause, so a caller that turns a failed
    write into its own message (the noisy-label cache) still catches it."""

    def __init__(self, code: int, cause: str, path: str):
        super().__init__(code, cause, path)

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


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
