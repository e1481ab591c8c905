"""CIFAR-10 / CIFAR-100 from the python pickle files.

Two layouts are accepted under ``data_path``: the official IDO one (``data_batch_1..5``,
``test_batch`` or ``train``, ``test`` directly in the folder) and torchvision's extracted archive
(``cifar-10-batches-py/`` or ``cifar-100-python/`` inside it).  ``download: true`` lets
torchvision fetch the archive into ``data_path``.  With ``noise_mode: real`` the CIFAR-N human labels
(``CIFAR-10_human.pt`` / ``CIFAR-100_human.pt``, see :mod:`dataloader.cifar_n`) are the given labels.
"""
from __future__ import annotations

import os
import pickle

import numpy as np

from dataloader.base import ArrayImages, RawData
from utils.core.errors import DataError

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)

_SPEC = {
    # name: (torchvision folder, train files, test file, label key, classes, mean, std, url)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10,
                CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels", 100, CIFAR100_MEAN, CIFAR100_STD),
}
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def find_cifar_root(name: str, data_path: str) -> str | None:
    """The folder holding the pickle files, in either layout, or None."""
    folder, train_files, test_file = _SPEC[name][:3]
    for root in (data_path, os.path.join(data_path, folder)):
        if all(os.path.isfile(os.path.join(root, f)) for f in train_files + [test_file]):
            return root
    return None


def _read_batch(path: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as err:
        raise DataError(f"{path} is not a CIFAR python pickle with keys 'data' and '{label_key}' "
                        f"({type(err).__name__}: {err})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{path}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} "
                        f"and {len(labels)} labels")
    return data, labels


def _to_hwc(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def read_cifar(name: str, data_path: str, download: bool = False, log=print):
    """``(root, train HWC uint8, train labels, test HWC uint8, test labels)`` of cifar10 / cifar100."""
    folder, train_files, test_file, label_key, num_classes, mean, std = _SPEC[name]
    root = find_cifar_root(name, data_path)
    if root is None and download:
        from torchvision.datasets import CIFAR10, CIFAR100
        log(f"downloading {name} into {data_path}")
        (CIFAR10 if name == "cifar10" else CIFAR100)(data_path, train=True, download=True)
        root = find_cifar_root(name, data_path)
    if root is None:
        expected = ", ".join(train_files + [test_file])
        raise DataError(
            f"{name} not found: expected the python pickle files ({expected}) in {data_path} or in "
            f"{os.path.join(data_path, folder)}; get 'CIFAR python version' from {URL} and extract it "
            f"there, or set download=true")
    parts = [_read_batch(os.path.join(root, f), label_key) for f in train_files]
    train_data = np.concatenate([p[0] for p in parts])
    train_labels = np.concatenate([p[1] for p in parts])
    test_data, test_labels = _read_batch(os.path.join(root, test_file), label_key)
    for split, labels in (("train", train_labels), ("test", test_labels)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise DataError(f"{name} {split} labels in {root} lie outside 0..{num_classes - 1}: is this {name}?")
    return root, _to_hwc(train_data), train_labels, _to_hwc(test_data), test_labels


def load_cifar(cfg, log=print) -> RawData:
    name = cfg.dataset
    num_classes, mean, std = _SPEC[name][4:7]
    root, train_images, train_labels, test_images, test_labels = read_cifar(name, cfg.data_path, cfg.download,
                                                                            log)
    given = None
    if cfg.noise_mode == "real":
        from dataloader.cifar_n import load_human_labels
        given = load_human_labels(cfg, name, root, train_labels, num_classes, log)
    return RawData(
        name=name, num_classes=num_classes,
        train_images=ArrayImages(train_images), train_labels=train_labels,
        test_images=ArrayImages(test_images), test_labels=test_labels,
        mean=mean, std=std, native_size=32, family="small", given_labels=given,
        extra={"root": root})
