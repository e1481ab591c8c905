"""ACTO's CIFAR-80N: CIFAR-100 with closed-set and open-set label noise (docs/fidelity.md#act-22-cifar-80n).

The 20 last fine classes (80-99: squirrel ... worm) are the open set: their 10,000 training images
stay in the training set, each relabelled uniformly into 0..79; the 40,000 images of classes 0-79
get the synthetic closed-set noise of ``noise_mode`` / ``noise_ratio`` / ``noise_convention`` over 80
classes (:mod:`dataloader.noise`, cached like every synthetic noise).  The model has 80 classes and
is tested on the 8,000 test images of classes 0-79.  Expected total noise: 0.8 r + 0.2.

For diagnostics the true label of an open-set image is -1 (it has no correct class among the 80),
so ``Data.is_noisy`` counts every open-set image as noisy.  Reads the CIFAR-100 python pickles
from ``data_path`` like :mod:`dataloader.cifar`.
"""
from __future__ import annotations


import numpy as np

from dataloader.base import ArrayImages, RawData
from dataloader.cifar import CIFAR100_MEAN, CIFAR100_STD, read_cifar
from dataloader.noise import NoiseCacheError, cache_dir, load_or_create_noisy_labels, transition_matrix
from utils.core.errors import ConfigError, DataError

CLOSED_CLASSES = 80
OPEN_SET_LABEL = -1
# the open-set relabelling has its own generator: default_rng([seed, OPEN_SET_STREAM])
OPEN_SET_STREAM = 8020


def open_set_labels(n: int, seed: int) -> np.ndarray:
    """Uniform labels in 0..79 for ``n`` open-set images (own seeded generator)."""
    return np.random.default_rng([seed, OPEN_SET_STREAM]).integers(0, CLOSED_CLASSES, size=n, dtype=np.int64)


def load_cifar80(cfg, log=print) -> RawData:
    root, train_images, fine_train, test_images, fine_test = read_cifar("cifar100", cfg.data_path, cfg.download,
                                                                        log)
    closed = fine_train < CLOSED_CLASSES
    true_labels = np.where(closed, fine_train, OPEN_SET_LABEL).astype(np.int64)
    keep_test = fine_test < CLOSED_CLASSES

    def make_noisy(cfg, log):
        if cfg.noise_mode == "real":
            raise ConfigError("cifar80 (CIFAR-80N) has synthetic closed-set noise plus open-set noise; set "
                              "noise_mode to sym, asym or idn")
        seed = cfg.seed if cfg.noise_seed is None else cfg.noise_seed
        folder = cache_dir(cfg)
        try:
            noisy_closed, info = load_or_create_noisy_labels(
                true_labels[closed], cache_dir=folder, dataset="cifar80", mode=cfg.noise_mode,
                ratio=cfg.noise_ratio, seed=seed, convention=cfg.noise_convention, num_classes=CLOSED_CLASSES,
                features=lambda: ArrayImages(train_images[closed]).flat_features(), log=log)
        except NoiseCacheError as err:
            raise DataError(str(err)) from None
        except OSError as err:
            raise DataError(f"cannot write the noisy-label cache in {folder}: {err.strerror} "
                            "(set noise_dir to a writable folder)") from None
        noisy = np.empty(len(true_labels), dtype=np.int64)
        noisy[closed] = noisy_closed
        noisy[~closed] = open_set_labels(int((~closed).sum()), seed)
        rate = float(np.mean(noisy != true_labels))
        log(f"cifar80: closed-set noise {info['realised_noise_rate']:.4f} on {int(closed.sum())} images, "
            f"{int((~closed).sum())} open-set images (classes 80-99) relabelled into 0..79; total noise {rate:.4f}")
        return noisy, {"mode": cfg.noise_mode, "realised_noise_rate": rate,
                       "closed_set_noise_rate": info["realised_noise_rate"],
                       "open_set_fraction": float(np.mean(~closed)),
                       "transition_matrix": transition_matrix(true_labels[closed], noisy_closed, CLOSED_CLASSES),
                       "path": info["path"], "reused": info["reused"]}

    return RawData(
        name="cifar80", num_classes=CLOSED_CLASSES,
        train_images=ArrayImages(train_images), train_labels=true_labels,
        test_images=ArrayImages(np.ascontiguousarray(test_images[keep_test])), test_labels=fine_test[keep_test],
        mean=CIFAR100_MEAN, std=CIFAR100_STD, native_size=32, family="small", make_noisy=make_noisy,
        extra={"root": root})
