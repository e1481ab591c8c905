"""Atomic file writes: every artefact is written to a temporary name in its directory, then renamed.

A crash or Ctrl-C during a save therefore leaves either the previous file or the new one, never a
half-written file.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
import torch



def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask), so
        # weights, reports and logs stay readable by the other users of a shared cluster
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _write_with(path: str, writer: Callable[[str], None]) -> str:
    with atomic_path(path) as tmp:
        writer(tmp)
    return path


def save_torch(obj: Any, path: str) -> str:
    def write(tmp: str) -> None:
        # through a file object: torch.save would otherwise name the archive's folder after the random
        # temporary name, and the same weights saved twice would give different bytes
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return _write_with(path, write)


def save_json(obj: Any, path: str) -> str:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    return _write_with(path, write)


def save_text(text: str, path: str) -> str:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return _write_with(path, write)


def save_npy(array: np.ndarray, path: str) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.save(f, array)
    return _write_with(path, write)


def save_figure(fig, path: str) -> str:
    return _write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
