"""Progress bars that suit a terminal and a job's log file alike: every bar of the project is made here.

On a terminal tqdm redraws its line in place at most every 0.1 s, which is what a person watching wants.  Where
stderr is a file or a pipe (a cluster job's log) each redraw is one more carriage-return line of the file: at
0.1 s a day of training writes close to a million.  There a bar updates at most once every
:data:`LOG_INTERVAL_S` seconds, which still shows a long epoch moving (an ImageNet epoch takes many minutes),
while a log of weeks stays small.  ``TQDM_MININTERVAL`` / ``TQDM_MAXINTERVAL`` in the environment still win, as
they do for any tqdm bar.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress(iterable: Any = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``; where its stream (``file``, default stderr) is not a terminal, at most one
    update every :data:`LOG_INTERVAL_S` seconds."""
    stream = kwargs.get("file") or sys.stderr
    if not _is_terminal(stream):
        for key in ("mininterval", "maxinterval"):
            # maxinterval too: tqdm's monitor thread would otherwise force a redraw every 10 s
            if f"TQDM_{key.upper()}" not in os.environ:
                kwargs.setdefault(key, LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
