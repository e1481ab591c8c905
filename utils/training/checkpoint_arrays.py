"""Large tensors of a checkpoint (ACTO's N x C soft-label bank) in ``.npy`` files of their own beside last.pt.

Pickled into last.pt, the bank (4 N C bytes: 5.1 GB at 1.28M x 1,000) needed one host copy of the whole
tensor at every save.  Here it goes to the file one block of rows at a time (device -> host -> file, one
:data:`BLOCK_BYTES` block on the host at most; a CPU tensor is written from its own memory) and comes
back the same way into the live tensor at ``--resume``.  The file is a plain ``.npy``
(``np.load(path, mmap_mode="r")`` reads it).

Pairing with last.pt: every save writes a new file, ``last.{name}.{token}.npy`` with a fresh random token,
to a temporary name then renamed; last.pt (written after it) names that file, its shape and dtype; the
file last.pt named before is removed only once the new last.pt is in place.  A crash at any moment
therefore leaves a last.pt whose file is on disk and belongs to it:

* while the new file is written: last.pt and its file are the previous checkpoint's (a temporary file
  may be left behind);
* after the new file is renamed, before last.pt is: last.pt still names the previous file, which is
  still there; the new file is an orphan;
* after last.pt is renamed, before the previous file is removed: last.pt names the new file; the
  previous one is an orphan.

Orphans and left-over temporary files of these names are removed at the next save.  A file that does
not match what last.pt says (shape, dtype, size) is refused at ``--resume`` with one line.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from typing import Mapping

import numpy as np
import torch

from utils.core.io import atomic_path

__all__ = ["BLOCK_BYTES", "write_npy", "read_npy_into", "save_arrays", "remove_unreferenced", "array_path",
           "is_array_file"]

BLOCK_BYTES = 64 << 20
# the files of this module (and their temporary names, ".last.{name}.{token}.npy.XXXX.tmp")
_OWN_FILE = re.compile(r"^\.?last\.[A-Za-z0-9_.]+\.[0-9a-f]{16}\.npy(\.[^/]*\.tmp)?$")


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


def _rows_per_block(tensor: torch.Tensor, block_bytes: int) -> int:
    row = (tensor[0].numel() if len(tensor) else 1) * tensor.element_size()
    return max(1, block_bytes // max(1, row))


def write_npy(tensor: torch.Tensor, path: str, *, block_bytes: int = BLOCK_BYTES) -> str:
    """Write ``tensor`` (contiguous, any device) to ``path`` as ``.npy``, atomically, ``block_bytes`` of rows
    at a time: the host holds one block of a device tensor, nothing extra for a CPU tensor."""
    if not tensor.is_contiguous():
        raise ValueError("write_npy needs a contiguous tensor")
    tensor = tensor.detach()
    header = {"descr": np.lib.format.dtype_to_descr(_numpy_dtype(tensor.dtype)), "fortran_order": False,
              "shape": tuple(tensor.shape)}
    step = _rows_per_block(tensor, block_bytes)
    host = None if tensor.device.type == "cpu" else torch.empty((min(step, len(tensor)), *tensor.shape[1:]),
                                                                dtype=tensor.dtype)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, len(tensor), step):
                block = tensor[start:start + step]
                if host is not None:  # one reused host block; a CPU tensor is written from its own memory
                    block = host[:len(block)].copy_(block)
                block.numpy().tofile(f)
    return path


def read_npy_into(tensor: torch.Tensor, path: str, *, block_bytes: int = BLOCK_BYTES) -> None:
    """Fill ``tensor`` (contiguous, any device) from the ``.npy`` file at ``path``, ``block_bytes`` of rows at
    a time.  Raises :class:`ValueError` (naming the file) unless the file holds exactly a C-order array of
    the tensor's shape and dtype."""
    expected = _numpy_dtype(tensor.dtype)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except ValueError as err:
            raise ValueError(f"{path} is not a .npy file ({err})") from None
        if tuple(shape) != tuple(tensor.shape) or dtype != expected or fortran:
            raise ValueError(f"{path} holds a {dtype} array of shape {tuple(shape)}, expected {expected} "
                             f"{tuple(tensor.shape)}")
        size = f.tell() + tensor.numel() * tensor.element_size()
        if os.fstat(f.fileno()).st_size != size:
            raise ValueError(f"{path} has {os.fstat(f.fileno()).st_size:,} bytes, expected {size:,} (cut short?)")
        step = _rows_per_block(tensor, block_bytes)
        host = None if tensor.device.type == "cpu" else torch.empty((min(step, len(tensor)), *tensor.shape[1:]),
                                                                    dtype=tensor.dtype)
        for start in range(0, len(tensor), step):
            block = tensor[start:start + step]
            target = block if host is None else host[:len(block)]
            view = memoryview(target.numpy()).cast("B")  # read straight into a CPU tensor's own memory
            if f.readinto(view) != len(view):
                raise ValueError(f"{path} ended early")
            if host is not None:
                block.copy_(target)


def is_array_file(name: str) -> bool:
    """Whether the file ``name`` (no folder) is one of this module's, or the temporary name of one."""
    return _OWN_FILE.match(name) is not None


def array_path(run_dir: str, name: str, token: str) -> str:
    return os.path.join(run_dir, f"last.{name}.{token}.npy")


def save_arrays(run_dir: str, arrays: Mapping[str, torch.Tensor], *, block_bytes: int = BLOCK_BYTES) -> dict:
    """Write every tensor of ``arrays`` to a new file in ``run_dir``; the entries last.pt keeps for them
    (``{name: {"file", "shape", "dtype"}}``, the file name relative to ``run_dir``)."""
    entries = {}
    for name, tensor in arrays.items():
        path = write_npy(tensor, array_path(run_dir, name, secrets.token_hex(8)), block_bytes=block_bytes)
        entries[name] = {"file": os.path.basename(path), "shape": list(tensor.shape),
                         "dtype": str(tensor.dtype).removeprefix("torch.")}
    return entries


def remove_unreferenced(run_dir: str, entries: Mapping[str, dict]) -> list[str]:
    """Remove this module's files in ``run_dir`` that ``entries`` (those of the last.pt now on disk) do not
    name: the previous checkpoint's, and orphans of an earlier crash.  Returns the names removed."""
    keep = {entry["file"] for entry in entries.values()}
    removed = []
    for name in sorted(os.listdir(run_dir)):
        if name not in keep and is_array_file(name):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(run_dir, name))
                removed.append(name)
    return removed
