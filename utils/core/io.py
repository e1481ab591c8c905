"""Atomic file writes: every artefact is written to a temporary name in its directory, then renamed.

A crash or Ctrl-C during a save therefore leaves either the previous file or the new one, never a
half-written file.  A write that fails for want of space or permission (a full disk, a read-only folder)
raises :class:`~utils.core.errors.WriteFailed` naming the file and the cause, the temporary file removed;
an appended log keeps its size from before the failed append.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from typing import Any, Callable, Iterator

import numpy as np
import torch

from utils.core.errors import WriteFailed

# the errors of a write that say the file cannot be written there, and the words of the one line for each
WRITE_CAUSES = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk full (quota exceeded)",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                errno.EPERM: "operation not permitted"}
# torch.save writing to a file object reports a failed write of its zip archive as a RuntimeError (the OSError
# of the write is only its __context__, and may be lost): a short write, in practice a full disk
TORCH_WRITE_FAILED = ("unexpected pos", "PytorchStreamWriter failed")


def write_failure(err: BaseException, path: str, *, own: tuple[str, ...] = ()) -> WriteFailed | None:
    """``err`` raised while ``path`` was written, as a :class:`WriteFailed` naming ``path``, or None where it is
    not a failure to write (then it propagates as it is).  The OSError may be ``err`` or in its chain
    (``__cause__``/``__context__``); one that names another file than ``path`` or ``own`` (the temporary name,
    the folder) is not this write's: an image the writer reads that turns out unreadable stays its own error."""
    seen: BaseException | None = err
    for _ in range(8):  # a short chain: torch's RuntimeError over the OSError of the write
        if seen is None:
            break
        if isinstance(seen, WriteFailed):
            return seen
        if isinstance(seen, OSError) and seen.errno in WRITE_CAUSES and \
                (seen.filename is None or seen.filename in (path, *own)):
            return WriteFailed(seen.errno, WRITE_CAUSES[seen.errno], path)
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, RuntimeError) and any(text in str(err) for text in TORCH_WRITE_FAILED):
        return WriteFailed(errno.ENOSPC, WRITE_CAUSES[errno.ENOSPC], path)
    return None


def unwritable(folder: str) -> tuple[str, str] | None:
    """``(folder probed, cause)`` when no file can be created in ``folder``, or, where it does not exist yet, in
    the nearest existing folder above it (where it would be created); None when one can.  Probed by creating
    and removing an empty temporary file, which sees what ``os.access`` does not (root on a read-only mount,
    ACLs, a server that squashes root) and leaves nothing behind."""
    probe = os.path.abspath(folder)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return probe, "a file, not a folder"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write_probe.", suffix=".tmp", dir=probe)
    except OSError as err:
        return probe, WRITE_CAUSES.get(err.errno, err.strerror or type(err).__name__)
    os.close(fd)
    os.remove(tmp)
    return None


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as err:  # the folder or the temporary file cannot be created: nothing else was touched
        if err.errno not in WRITE_CAUSES:
            raise
        raise WriteFailed(err.errno, WRITE_CAUSES[err.errno], path) from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask), so
        # weights, reports and logs stay readable by the other users of a shared cluster
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        failed = write_failure(err, path, own=(tmp,))
        if failed is None:
            raise
        raise failed from None


def append_text(text: str, path: str) -> str:
    """Append ``text`` to ``path`` (a log); a failed append (:class:`WriteFailed`) cuts the file back to its size
    before it, so no half line stays behind."""
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        size = None
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        failed = write_failure(err, path)
        if failed is None:
            raise
        with contextlib.suppress(OSError):  # cutting a file back needs no space
            if size is None:
                os.remove(path)
            else:
                os.truncate(path, size)
        raise failed from None
    return path


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
