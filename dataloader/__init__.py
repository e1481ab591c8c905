"""Data sets with noisy labels: one loader per family, one factory :func:`build_data`.

``build_data(cfg, stage=...)`` loads the family's raw arrays or file lists, applies (or reads) the
label noise, and wraps train and test splits as :class:`~dataloader.base.NoisyLabelDataset`, whose
items are ``(image_or_views, noisy_label, index)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dataloader import transforms as tfm
from dataloader.act_augment import act_views
from dataloader.base import NoisyLabelDataset, RawData, fingerprint
from dataloader.cifar import load_cifar
from dataloader.cifar80 import load_cifar80
from dataloader.device_normalise import DeviceNormaliser
from dataloader.clothing1m import load_clothing1m
from dataloader.digits import load_digits
from dataloader.decode import pixel_limit, set_pillow_limit
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD, FileImagesWithDecoding
from dataloader.food101n import load_food101n
from dataloader.own import HOLDOUT_DATASETS, load_csv, load_imagefolder
from dataloader.noise import IdnTooLarge, NoiseCacheError, cache_dir, load_or_create_noisy_labels, transition_matrix
from dataloader.tiny_imagenet import load_tiny_imagenet
from dataloader.webfg import load_webfg
from dataloader.webvision import load_webvision
from utils.core.distributed import on_rank0_then_share
from utils.core.errors import ConfigError, DataError

# In-memory test sets whose transformed (uint8) tensors fit in this many bytes are transformed once, not
# every epoch (CIFAR's 10,000 test images at 32 px: 31 MB; at 224 px they would need 1.5 GB and are not).
PRETRANSFORM_BYTES = 512 * 2 ** 20

# Every data set by its config name (``dataset:``); utils.training.config takes the allowed names from here.
LOADERS: dict[str, Callable] = {
    "digits": load_digits,
    "cifar10": load_cifar,
    "cifar100": load_cifar,
    "tiny_imagenet": load_tiny_imagenet,
    "clothing1m": load_clothing1m,
    "webvision": load_webvision,
    "cifar80": load_cifar80,
    "web-aircraft": load_webfg,
    "web-bird": load_webfg,
    "web-car": load_webfg,
    "food101n": load_food101n,
    "imagefolder": load_imagefolder,
    "csv": load_csv,
}


@dataclass
class Data:
    """Everything a training script needs about its data."""

    raw: RawData
    train: NoisyLabelDataset
    test: NoisyLabelDataset
    noisy_labels: np.ndarray          # (N,) int64, the labels trained on
    clean_labels: np.ndarray | None   # (N,) int64 where the truth is known
    num_classes: int
    resolution: int
    fingerprint: str                  # identifies sample order + noisy labels (stage 1 <-> stage 2)
    noise_info: dict
    mean: tuple[float, float, float]  # normalisation of the uint8 images, applied on the device (normalise)
    std: tuple[float, float, float]
    # further clean test sets evaluated beside ``test`` (WebVision: "imagenet_val"), same transform
    extra_tests: dict[str, NoisyLabelDataset] = field(default_factory=dict)
    # what ``test`` is: "test" (a clean test set), "val_given_labels" (own data: the val_fraction share held out
    # of the training images, scored on its given labels) or None (own data without either: no evaluation,
    # ``test`` is empty and only lends its transform)
    test_name: str | None = "test"

    @property
    def test_sets(self) -> dict[str, NoisyLabelDataset]:
        """Every evaluation set by name, ``test_name`` first; possibly none (accuracy keys:
        :func:`utils.training.accuracy_keys.acc_key`)."""
        return ({self.test_name: self.test} if self.test_name else {}) | self.extra_tests

    @property
    def normalise(self) -> DeviceNormaliser:
        """uint8 batch images (or a tuple of views) -> normalised float32, on their device."""
        if getattr(self, "_normaliser", None) is None:
            self._normaliser = DeviceNormaliser(self.mean, self.std)
        return self._normaliser

    @property
    def is_noisy(self) -> np.ndarray | None:
        """(N,) bool: the given label differs from the true one (None where the truth is unknown)."""
        return None if self.clean_labels is None else self.noisy_labels != self.clean_labels


def resolve_resolution(cfg, raw: RawData) -> int:
    if cfg.resolution is not None:
        return cfg.resolution
    if raw.family == "small":
        return 224 if (cfg.pretrained or cfg.pretrained_path) else raw.native_size
    return 224


def _noisy_labels(cfg, raw: RawData, log) -> tuple[np.ndarray, dict]:
    if raw.make_noisy is not None:
        return raw.make_noisy(cfg, log)
    if cfg.noise_mode == "real":
        if raw.given_labels is None:
            raise ConfigError(f"noise_mode 'real' needs a data set with human or web labels; {raw.name} has none "
                              "(use sym, asym or idn)")
        info = {"mode": "real", "realised_noise_rate": None}
        if raw.train_labels is not None:
            info["realised_noise_rate"] = float(np.mean(raw.given_labels != raw.train_labels))
            info["transition_matrix"] = transition_matrix(raw.train_labels, raw.given_labels, raw.num_classes)
        log(f"{raw.name}: real label noise, realised rate {info['realised_noise_rate']}")
        return raw.given_labels, info
    if raw.train_labels is None:
        raise ConfigError(f"{raw.name} has real label noise only and no true labels to corrupt; set noise_mode "
                          "to real")
    folder = cache_dir(cfg)
    seed = cfg.seed if cfg.noise_seed is None else cfg.noise_seed
    try:
        noisy, info = load_or_create_noisy_labels(
            raw.train_labels, cache_dir=folder, dataset=raw.name, mode=cfg.noise_mode,
            ratio=cfg.noise_ratio, seed=seed, convention=cfg.noise_convention, num_classes=raw.num_classes,
            features=raw.train_images.flat_features, log=log)
    except IdnTooLarge as err:
        raise ConfigError(str(err)) from None
    except NoiseCacheError as err:
        raise DataError(str(err)) from None
    except OSError as err:
        raise DataError(f"cannot write the noisy-label cache in {folder}: {err.strerror} "
                        "(set noise_dir to a writable folder)") from None
    return noisy, info


def limit_pixels(raw: RawData, max_image_pixels: int | None) -> None:
    """Every image file of ``raw`` (and Pillow in this process) refuses images above ``max_image_pixels``
    (0 or None: no limit); the images objects carry the limit into DataLoader workers."""
    limit = pixel_limit(max_image_pixels)
    set_pillow_limit(limit)
    sources = [raw.train_images, raw.test_images, *(images for images, _ in raw.extra.get("extra_tests", {}).values())]
    for images in sources:
        if isinstance(images, FileImagesWithDecoding):
            images.decoding = dataclasses.replace(images.decoding, max_pixels=limit)


def build_data(cfg, *, stage: str, log: Callable[[str], None] = print) -> Data:
    """Load ``cfg.dataset`` with its noisy labels; ``stage`` is "stage1" (one view) or "stage2" (two views)."""
    if cfg.val_fraction > 0 and cfg.dataset not in HOLDOUT_DATASETS:
        raise ConfigError(f"config key 'val_fraction' holds out training images of imagefolder or csv data without "
                          f"a test set; {cfg.dataset} has its test set: remove the key")
    raw = LOADERS[cfg.dataset](cfg, log=log)
    limit_pixels(raw, cfg.max_image_pixels)
    # under DDP rank 0 makes (or checks) the noise file and sends the labels: made once, and a bad noise
    # setting is one line on every rank instead of a barrier the others wait at forever
    noisy, noise_info = on_rank0_then_share(lambda: _noisy_labels(cfg, raw, log))
    resolution = resolve_resolution(cfg, raw)
    # ACT normalises every data set with ImageNet statistics (docs/fidelity.md#act-19a-views)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if cfg.views == "act" else (raw.mean, raw.std)
    common = dict(family=raw.family, resolution=resolution, mean=mean, std=std, large=raw.extra.get("large"))
    act = act_views(native_size=raw.native_size, hflip=cfg.hflip, **common) if cfg.views == "act" else None
    if act is not None:
        train_tf = act.weak if stage == "stage1" else act.pair
    elif stage == "stage1":
        train_tf = tfm.stage1_transform(native_size=raw.native_size, hflip=cfg.hflip, **common)
    else:
        train_tf = tfm.stage2_transform(hflip=cfg.hflip, randaug_n=cfg.randaug_n, randaug_m=cfg.randaug_m,
                                        cutout=cfg.cutout, **common)
    clean = raw.train_labels
    train = NoisyLabelDataset(raw.train_images, noisy, train_tf, clean_labels=clean)
    test = NoisyLabelDataset(raw.test_images, raw.test_labels, act.test if act else tfm.test_transform(**common))
    extra_tests = {name: NoisyLabelDataset(images, labels, test.transform)
                   for name, (images, labels) in raw.extra.get("extra_tests", {}).items()}
    for test_set in (test, *extra_tests.values()):
        test_set.pretransform(max_bytes=PRETRANSFORM_BYTES)
    fp = fingerprint(dataset=raw.name, sample_digest=raw.train_images.digest(), noisy_labels=noisy)
    return Data(raw=raw, train=train, test=test, noisy_labels=np.asarray(noisy, dtype=np.int64),
                clean_labels=None if clean is None else np.asarray(clean, dtype=np.int64),
                num_classes=raw.num_classes, resolution=resolution, fingerprint=fp, noise_info=noise_info,
                mean=tuple(mean), std=tuple(std), extra_tests=extra_tests, test_name=raw.extra.get("test_name", "test"))
