"""Where a benchmark's report goes: into docs/ only when asked (``--write-docs``), else ``--out FILE`` or stdout.

A quick or partial run (``--quick``, ``--only``, other sizes) must not overwrite the measured tables of docs/ by
default: a benchmark prints its report, writes it into the file ``--out`` names, and replaces its section of
the docs page only with ``--write-docs``.
"""
from __future__ import annotations

import argparse
import os

from utils.core.io import save_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_output_options(parser: argparse.ArgumentParser, docs_page: str, *, default_note: str = "only print it"
                       ) -> None:
    """``--out FILE`` and ``--write-docs`` (the page ``docs_page``, relative to the repository), one or neither;
    ``default_note`` says what happens without either."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", default=None, metavar="FILE",
                       help=f"write the report into FILE (default: {default_note})")
    group.add_argument("--write-docs", action="store_true",
                       help=f"write the report into {docs_page}, replacing the measured figures there")


def output_path(args: argparse.Namespace, docs_page: str, default: str | None = None) -> str | None:
    """The file the report goes to: ``docs_page`` with ``--write-docs``, else ``--out``, else ``default``."""
    if args.write_docs:
        return os.path.join(REPO, docs_page)
    return args.out or default


def write_section(text: str, path: str, begin: str, end: str) -> str:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the section between those
    markers in ``path`` (an earlier run's), or append it; the rest of the file is kept."""
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    section = text.strip("\n")
    if begin in old and end in old[old.index(begin):]:
        start = old.index(begin)
        stop = old.index(end, start) + len(end)
        new = old[:start] + section + old[stop:]
    else:
        new = (old.rstrip("\n") + "\n\n" if old.strip() else "") + section + "\n"
    return save_text(new, path)
