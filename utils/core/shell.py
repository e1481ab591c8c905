"""A command as one line a shell runs as it was given: for the lines that tell a person what to type next (the
command that continues a stopped run).  File and folder names are untrusted: a space, a quote, ``$`` or a newline
in one must neither split the word nor break the line.  Any POSIX shell reads the single quotes; a name with a
control character (a newline) needs ``$'...'``, which bash, zsh and ksh read, dash not."""
from __future__ import annotations

import re
import shlex
from typing import Sequence

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def quote(word: str) -> str:
    """``word`` as one shell word on one line: shlex's single quotes, or ``$'...'`` with escapes where it holds a
    control character (a newline), which single quotes would carry onto a second line."""
    if not _CONTROL.search(word):
        return shlex.quote(word)
    escaped = "".join(f"\\x{ord(c):02x}" if _CONTROL.match(c) else "\\" + c if c in "\\'" else c for c in word)
    return f"$'{escaped}'"


def command(words: Sequence[str]) -> str:
    """``words`` (program, arguments) as one line of shell words (:func:`quote`)."""
    return " ".join(quote(w) for w in words)
