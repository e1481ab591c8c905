"""CIFAR-10N / CIFAR-100N human labels (Wei et al., ICLR 2022) for ``noise_mode: real``.

The release ships ``CIFAR-10_human.pt`` (keys ``aggre_label``, ``worse_label``, ``random_label1..3``,
``clean_label``) and ``CIFAR-100_human.pt`` (keys ``noisy_label``, ``clean_label``, and the coarse
variants): ``torch.save``'d dicts of numpy integer arrays, one label per CIFAR training image in the
order of the python pickles.  They are read with ``torch.load(weights_only=True)`` and an allow-list
of exactly the numpy globals such a file needs (array reconstruction and the integer dtypes), so a
file that tries to run code is refused instead of unpickled.
"""
from __future__ import annotations

import codecs
import contextlib
import os
import pickle
import zipfile

import numpy as np
import torch

from utils.core.errors import DataError

HUMAN_FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}
CIFAR100N_KEY = "noisy_label"
URL = "https://github.com/UCSC-REAL/cifar-10-100n (folder data/)"


def _numpy_safe_globals() -> list:
    """What ``torch.save`` of numpy integer arrays pickles, under both numpy-1 and numpy-2 names."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    allowed: list = [np.ndarray, np.dtype, _reconstruct]
    # files written under numpy 1.x name numpy.core.multiarray._reconstruct, under 2.x numpy._core...
    for alias in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
        allowed.append((_reconstruct, alias))
    # numpy >= 1.25 pickles the dtype through its class (numpy.dtypes.Int64DType, ...)
    allowed += sorted({type(np.dtype(code)) for code in np.typecodes["AllInteger"]}, key=repr)
    return allowed


def _allowed(safe: list):
    """``torch.serialization.safe_globals(safe)`` (torch >= 2.5); torch 2.4 has only the process-wide
    ``add_safe_globals``, which takes plain objects (no ``(object, name)`` aliases), and does not yet allow
    ``_codecs.encode``, through which numpy pickles an array's bytes."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(safe)
    torch.serialization.add_safe_globals([entry for entry in safe if not isinstance(entry, tuple)] + [codecs.encode])
    return contextlib.nullcontext()


def safe_load_label_file(path: str) -> dict:
    """``torch.load`` a CIFAR-N label file with ``weights_only=True`` and the numpy allow-list."""
    try:
        with _allowed(_numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, AttributeError,
            ValueError, TypeError) as err:
        reason = next((line.strip() for line in str(err).splitlines() if "Unsupported global" in line
                       or "WeightsUnpickler error" in line), str(err).strip().splitlines()[0] if str(err) else "")
        raise DataError(f"{path} is not a CIFAR-N label file that can be read safely (a torch.save'd dict of "
                        f"numpy integer arrays; it is never unpickled with arbitrary code): {reason[:300]}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} holds a {type(data).__name__}, expected a dict of label arrays as in {URL}")
    return data


def human_label_path(cfg, name: str, root: str) -> str:
    """``noisy_label_file``, else the release file name in ``data_path`` (or beside the pickles)."""
    if cfg.noisy_label_file:
        return cfg.noisy_label_file
    candidates = [os.path.join(cfg.data_path, HUMAN_FILES[name]), os.path.join(root, HUMAN_FILES[name])]
    return next((p for p in candidates if os.path.isfile(p)), candidates[0])


def _as_labels(value, path: str, key: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(f"{path}: '{key}' must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


def load_human_labels(cfg, name: str, root: str, train_labels: np.ndarray, num_classes: int,
                      log=print) -> np.ndarray:
    """The human labels of CIFAR-10N (``cifar10n_label``) or CIFAR-100N (``noisy_label``), checked."""
    path = human_label_path(cfg, name, root)
    if not os.path.isfile(path):
        raise DataError(f"{name} with noise_mode real needs the CIFAR-N human labels: {path} not found; get "
                        f"{HUMAN_FILES[name]} from {URL} and put it there, or set noisy_label_file")
    data = safe_load_label_file(path)
    key = cfg.cifar10n_label if name == "cifar10" else CIFAR100N_KEY
    if key not in data:
        expected = "CIFAR-10_human.pt" if name == "cifar10" else "CIFAR-100_human.pt"
        raise DataError(f"{path} has no key '{key}' (keys: {', '.join(sorted(map(str, data)))}); {name} needs "
                        f"{expected} from {URL}")
    labels = _as_labels(data[key], path, key)
    if len(labels) != len(train_labels):
        raise DataError(f"{path}: '{key}' has {len(labels)} labels but {name} has {len(train_labels)} training "
                        f"images; is it the file of the other CIFAR ({', '.join(HUMAN_FILES.values())})?")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{path}: '{key}' holds labels outside 0..{num_classes - 1}; is it the file of the "
                        "other CIFAR?")
    if "clean_label" in data:
        clean = _as_labels(data["clean_label"], path, "clean_label")
        if len(clean) != len(train_labels) or not np.array_equal(clean, train_labels):
            raise DataError(f"{path}: its 'clean_label' does not match the training labels of {name} in {root}; "
                            "the human labels belong to another copy or order of the data set")
    log(f"{name}: human labels '{key}' from {path} (noise rate {np.mean(labels != train_labels):.4f})")
    return labels
