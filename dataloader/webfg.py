"""Web-Aircraft / Web-Bird / Web-Car of WebFG-496 (docs/fidelity.md#act-23-webfg-sets): web images with noisy labels.

``data_path`` is one data set's folder (``.../web-aircraft``) holding ``train/<class>/*.jpg`` (the web
images; the folder is the noisy label) and ``val/<class>/*.jpg`` (the clean test set: the
FGVC-Aircraft, CUB-200-2011 and Stanford Cars test splits).  As torchvision's DatasetFolder: labels
are the sorted training class folders, sub-folders are searched recursively, files are taken by
image extension (hidden and other files are skipped and counted); every list is sorted by path.
ImageNet statistics; 448 px in ACTO (resize the shorter side, random / centre crop).
"""
from __future__ import annotations

import os

import numpy as np

from dataloader.base import RawData
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD, class_folders, class_tree, log_skipped, make_images
from dataloader.transforms import LargeSpec
from utils.core.errors import DataError

NUM_CLASSES = {"web-aircraft": 100, "web-bird": 200, "web-car": 196}
URL = "https://github.com/NUST-Machine-Intelligence-Laboratory/weblyFG-dataset"


def layout(name: str, root: str) -> str:
    return (f"expected {root}/train/<class>/*.jpg (web images) and {root}/val/<class>/*.jpg (clean test images), "
            f"data_path being the {name} folder of WebFG-496 ({URL})")


def _folder_split(name: str, root: str, split: str, classes: list[str] | None, log
                  ) -> tuple[list[str], list[str], list[int]]:
    base = os.path.join(root, split)
    if not os.path.isdir(base):
        raise DataError(f"{name} not found: {base} does not exist; {layout(name, root)}")
    if not class_folders(base):
        raise DataError(f"{name}: {base} has no class folders; {layout(name, root)}")
    tree = class_tree(
        root, split, classes,
        unknown_class=lambda folder: f"{name}: {os.path.join(base, folder)} has no training folder "
                                     f"{root}/train/{folder}; train/ and val/ must use the same class folder names",
        name=name)
    classes, keys, labels = tree.classes, tree.keys, tree.labels
    if split == "train":
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
        if (counts == 0).any():
            empty = classes[int(np.argmin(counts))]
            raise DataError(f"{name}: {os.path.join(base, empty)} holds no images; {layout(name, root)}")
    log_skipped(log, name, tree.skipped, root)
    tree.walk.log_revisits(log, name)
    return classes, keys, labels


def load_webfg(cfg, log=print) -> RawData:
    name, root = cfg.dataset, cfg.data_path
    classes, train_keys, train_labels = _folder_split(name, root, "train", None, log)
    _, test_keys, test_labels = _folder_split(name, root, "val", classes, log)
    if not test_keys:
        raise DataError(f"{name}: {root}/val holds no images; {layout(name, root)}")
    if len(classes) != NUM_CLASSES[name]:
        log(f"{name}: {len(classes)} classes (the release has {NUM_CLASSES[name]})")
    log(f"{name}: {len(train_keys)} web training images, {len(test_keys)} test images, {len(classes)} classes")
    return RawData(
        name=name, num_classes=len(classes),
        train_images=make_images(root, train_keys), train_labels=None,
        test_images=make_images(root, test_keys), test_labels=np.asarray(test_labels, dtype=np.int64),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, native_size=448, family="large",
        given_labels=np.asarray(train_labels, dtype=np.int64),
        extra={"root": root, "classes": classes,
               "large": LargeSpec(resize_ratio=1.0, stage1_resize="shorter", stage2_resize="shorter",
                                  test="shorter_center")})
