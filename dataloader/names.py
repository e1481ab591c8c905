"""File and folder names as this project carries them: valid UTF-8, or refused when listed.

On POSIX a file name is bytes; Python reads bytes that are not UTF-8 (``caf\\xe9.png``, written by another
system in Latin-1) as lone surrogates (``'caf\\udce9.png'``, PEP 383).  Such a name can be opened, but not
written into anything that is UTF-8 text: the samples CSV, the summary JSON read by other tools, the
review page (a browser turns a lone surrogate into U+FFFD, so the exported ``corrected_labels.csv`` would
name another file), train.log, predict.py's CSV.  The one rule (docs/own_data.md): every name that becomes
a sample (image files, their folders and class folders, the data folder itself) must be valid UTF-8; the
listing refuses the others before anything is trained or predicted, in one line that names them with their
bytes escaped (:func:`shown`).  Names that are only mentioned (skipped files, links) are shown escaped.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Sequence

from utils.core.errors import DataError

MAX_NAMED = 10  # names quoted in one error line
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def is_utf8(name: str) -> bool:
    """Whether ``name`` (a path or a part of one, as ``os`` returns it) is valid UTF-8 text (no lone
    surrogate from undecodable bytes).  O(1) for ASCII names, the common case."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(name: str) -> str:
    """``name`` printable in one line of UTF-8 text: its undecodable bytes (``caf\\xe9.png``) and control
    characters (a newline would split a one-line message) as ``\\xNN``, the rest as is."""
    if name.isascii() and name.isprintable():
        return name
    if not is_utf8(name):
        name = os.fsencode(name).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", name)


def named(items: Sequence[str], *, limit: int = MAX_NAMED, show: Callable[[str], str] = str, sep: str = ", ") -> str:
    """The first ``limit`` of ``items``, each as ``show`` writes it, joined by ``sep``, then `` (and N more)`` for
    the rest: the list of names in a one-line message."""
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return sep.join(show(item) for item in items[:limit]) + more


def refuse_non_utf8(names: Sequence[str], *, where: str, prefix: str = "") -> None:
    """One :class:`DataError` line naming the ``names`` (paths relative to ``where``, or as given) that are not
    UTF-8, starting with ``prefix`` (the data set's name and a colon); nothing when there are none."""
    if not names:
        return
    raise DataError(f"{prefix}{len(names)} file or folder names in {shown(where)} are not valid UTF-8: "
                    f"{named(sorted(names), show=shown)}; "
                    "rename them to UTF-8 (e.g. convmv -f latin1 -t utf-8 -r --notest FOLDER, with the encoding they "
                    "were written in): the report, the review page and corrected_labels.csv must name every file "
                    "exactly")


def refuse_non_utf8_path(path: str, *, key: str, prefix: str = "") -> None:
    """One :class:`DataError` line when the absolute form of ``path`` (what ``key`` names: a config key, or the
    folder of one) is not UTF-8: the review page exports absolute paths."""
    full = os.path.abspath(path)
    if not is_utf8(full):
        raise DataError(f"{prefix}{key} {shown(full)} is not valid UTF-8 (the review page exports absolute paths, "
                        "as UTF-8 text); rename the folder, or reach it through a link whose path is UTF-8")
