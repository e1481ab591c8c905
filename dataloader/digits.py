"""scikit-learn's bundled digits (1,797 real 8x8 images, 10 classes): the embedded default data set.

No download: the data ship inside scikit-learn.  A fixed stratified split (30 % test, seed 0)
keeps the test set identical for every run and every noise setting.
"""
from __future__ import annotations

import numpy as np

from dataloader.base import ArrayImages, RawData

# statistics of the 3-channel uint8 training images (grey, so equal per channel)
DIGITS_MEAN = (0.3053,) * 3
DIGITS_STD = (0.3759,) * 3
TEST_FRACTION = 0.3
SPLIT_SEED = 0


def _to_rgb_uint8(flat: np.ndarray) -> np.ndarray:
    """(N, 64) values 0..16 -> (N, 8, 8, 3) uint8 0..255."""
    grey = np.clip(np.rint(flat.reshape(-1, 8, 8) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def load_digits(cfg, log=print) -> RawData:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = _to_rgb_uint8(bunch.data)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                           random_state=SPLIT_SEED, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return RawData(
        name="digits", num_classes=10,
        train_images=ArrayImages(images[train_idx]), train_labels=labels[train_idx],
        test_images=ArrayImages(images[test_idx]), test_labels=labels[test_idx],
        mean=DIGITS_MEAN, std=DIGITS_STD, native_size=8, family="small")
