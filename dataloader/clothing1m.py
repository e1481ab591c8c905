"""Clothing1M (docs/fidelity.md#ido-33-clothing1m, IDO-B9 fixed): 14 classes, real web-label noise, clean test set.

``data_path`` holds the release: the list files (in ``annotations/`` as the IDO code expects, or
directly in ``data_path`` as the release unpacks) and the images under ``images/``; every key in
the lists is a path relative to ``data_path`` (``images/0/00/123.jpg``).

* ``noisy_label_kv.txt`` / ``clean_label_kv.txt``: ``key label`` lines;
* ``noisy_train_key_list.txt``: the 1M noisy training keys (labels from ``noisy_label_kv``);
* ``clean_test_key_list.txt``: the 10,526 test keys (labels from ``clean_label_kv``);
* ``clean_val_key_list.txt``: the clean validation keys (optional, not used for training or testing).

Training uses a class-balanced subset of ``clothing1m_samples`` images (the official 1000 x batch
size = 128,000): the noisy training list is permuted with ``np.random.default_rng(seed)`` and each
class keeps at most ``samples / 14`` images.  The subset is drawn once and written to
``{noise_dir}/clothing1m_subset_{n}_seed{seed}.txt`` (relative keys, in dataset order); if that file
exists it is reused, so stage 2 trains on exactly the images whose wrong events stage 1 counted.
The wrong-event fingerprint covers the keys, so a different subset is refused rather than mis-indexed.
"""
from __future__ import annotations

import os

import numpy as np

from dataloader.base import RawData
from dataloader.files import check_files_exist, make_images, parse_key_labels, read_lines
from dataloader.noise import cache_dir
from dataloader.transforms import LargeSpec
from utils.core.errors import DataError
from utils.core.io import save_text

NUM_CLASSES = 14
MEAN, STD = (0.6959, 0.6537, 0.6371), (0.3113, 0.3192, 0.3214)
LISTS = ("noisy_label_kv.txt", "noisy_train_key_list.txt", "clean_label_kv.txt", "clean_test_key_list.txt")
VAL_LIST = "clean_val_key_list.txt"
URL = "https://github.com/Cysu/noisy_label (ask the authors for access)"


def layout(root: str) -> str:
    return (f"expected {root}/annotations/{{{','.join(LISTS)}}} (or the same files directly in {root}, as the "
            f"release unpacks) and the images they list under {root}/images/ (keys such as images/0/00/xxx.jpg "
            f"are relative to {root}); Clothing1M: {URL}")


def find_annotations(root: str) -> str:
    """``root/annotations`` or ``root`` itself, whichever holds the list files."""
    for folder in (os.path.join(root, "annotations"), root):
        if all(os.path.isfile(os.path.join(folder, f)) for f in LISTS):
            return folder
    folder = os.path.join(root, "annotations")
    if not os.path.isdir(folder):
        folder = root if any(os.path.isfile(os.path.join(root, f)) for f in LISTS) else folder
    missing = next(f for f in LISTS if not os.path.isfile(os.path.join(folder, f)))
    raise DataError(f"clothing1m not found: {os.path.join(folder, missing)} does not exist; {layout(root)}")


def _labels_of(keys: list[str], kv: dict[str, int], key_list: str, kv_path: str) -> np.ndarray:
    try:
        return np.fromiter((kv[k] for k in keys), dtype=np.int64, count=len(keys))
    except KeyError as err:
        raise DataError(f"{key_list} lists {err.args[0]} which has no label in {kv_path}; the list files come "
                        "from different releases") from None


def subset_path(cfg) -> str:
    return os.path.join(cache_dir(cfg), f"clothing1m_subset_{cfg.clothing1m_samples}_seed{cfg.seed}.txt")


def draw_balanced_subset(labels: np.ndarray, num_samples: int, seed: int, num_classes: int = NUM_CLASSES
                         ) -> np.ndarray:
    """Positions of a class-balanced subset, as the official loader: in a random order, keep an image
    while its class has fewer than ``num_samples / C`` and the subset fewer than ``num_samples``."""
    perm = np.random.default_rng(seed).permutation(len(labels))
    cap = int(np.ceil(num_samples / num_classes))
    permuted = labels[perm]
    keep = np.zeros(len(perm), dtype=bool)
    for c in range(num_classes):
        keep[np.flatnonzero(permuted == c)[:cap]] = True
    return perm[np.flatnonzero(keep)[:num_samples]]


def _subset(cfg, train_keys: list[str], train_labels: np.ndarray, noisy_kv: dict[str, int], kv_path: str,
            log) -> list[str]:
    path = subset_path(cfg)
    if os.path.isfile(path):
        keys = read_lines(path)
        unknown = next((k for k in keys if k not in noisy_kv), None)
        if unknown is not None or not keys:
            raise DataError(f"clothing1m subset file {path} lists {unknown!r}, which is not in {kv_path}: it was "
                            "drawn from another copy of Clothing1M; delete it to draw a new subset (stage-1 "
                            "results made with the old one no longer apply)")
        log(f"clothing1m: reusing the training subset {path} ({len(keys)} images)")
        return keys
    chosen = draw_balanced_subset(train_labels, cfg.clothing1m_samples, cfg.seed)
    keys = [train_keys[i] for i in chosen]
    try:
        save_text("".join(k + "\n" for k in keys), path)
    except OSError as err:
        raise DataError(f"cannot write the Clothing1M subset list {path}: {err.strerror} (set noise_dir to a "
                        "writable folder)") from None
    counts = np.bincount(train_labels[chosen], minlength=NUM_CLASSES)
    log(f"clothing1m: drew a class-balanced subset of {len(keys)} of {len(train_keys)} noisy training images "
        f"(seed {cfg.seed}, per class {counts.min()}..{counts.max()}), saved to {path}")
    return keys


def load_clothing1m(cfg, log=print) -> RawData:
    root = cfg.data_path
    ann = find_annotations(root)
    noisy_path, train_list, clean_path, test_list = (os.path.join(ann, f) for f in LISTS)
    noisy_kv = dict(parse_key_labels(noisy_path, num_classes=NUM_CLASSES))
    clean_kv = dict(parse_key_labels(clean_path, num_classes=NUM_CLASSES))
    train_keys = read_lines(train_list)
    if not train_keys:
        raise DataError(f"{train_list} is empty; {layout(root)}")
    train_labels = _labels_of(train_keys, noisy_kv, train_list, noisy_path)
    keys = _subset(cfg, train_keys, train_labels, noisy_kv, noisy_path, log)
    given = np.fromiter((noisy_kv[k] for k in keys), dtype=np.int64, count=len(keys))
    test_keys = read_lines(test_list)
    if not test_keys:
        raise DataError(f"{test_list} is empty; {layout(root)}")
    test_labels = _labels_of(test_keys, clean_kv, test_list, clean_path)
    hint = f"data_path must be the folder the keys are relative to ({layout(root)})"
    check_files_exist(root, keys, listed_in=train_list, hint=hint)
    check_files_exist(root, test_keys, listed_in=test_list, hint=hint)
    val_path = os.path.join(ann, VAL_LIST)
    val_keys = read_lines(val_path) if os.path.isfile(val_path) else []
    log(f"clothing1m: {len(keys)} training images (of {len(train_keys)}), {len(test_keys)} clean test images"
        + (f", {len(val_keys)} clean validation keys (not used)" if val_keys else ""))
    return RawData(
        name="clothing1m", num_classes=NUM_CLASSES,
        train_images=make_images(root, keys), train_labels=None,
        test_images=make_images(root, test_keys), test_labels=test_labels,
        mean=MEAN, std=STD, native_size=256, family="large", given_labels=given,
        extra={"root": root, "subset_file": subset_path(cfg), "num_val_keys": len(val_keys),
               "large": LargeSpec(stage1_resize="shorter", stage2_resize="square", test="shorter_center")})
