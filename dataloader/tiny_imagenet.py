"""Tiny-ImageNet-200 (docs/fidelity.md#ido-32-tiny-imagenet, IDO-B7 fixed): all 100,000 training images, 200 classes, sorted order.

``data_path`` is the extracted ``tiny-imagenet-200`` folder.  Training images:
``train/<wnid>/images/*.JPEG`` (the ``<wnid>_boxes.txt`` beside ``images/`` is ignored).  Test
images (the 10,000 labelled validation images), first layout found:

1. the official release: ``val/images/*.JPEG`` + ``val/val_annotations.txt`` (file, wnid, box);
2. the reorganised layout of the IDO code: ``test/<wnid>/images/*``;
3. ``val/<wnid>/images/*`` (the same reorganisation, kept under val/).

Classes are the sorted training folder names; every list is sorted by file name, so sample
indices (and the wrong events stored by them) are identical on every machine.
"""
from __future__ import annotations

import os

import numpy as np

from dataloader.base import RawData
from dataloader.files import class_folders, list_images, log_skipped, make_images, read_lines
from dataloader.transforms import LargeSpec
from utils.core.errors import DataError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
NUM_CLASSES, NUM_TRAIN, NUM_TEST = 200, 100_000, 10_000


def layout(root: str) -> str:
    return (f"expected {root}/train/<wnid>/images/*.JPEG and {root}/val/val_annotations.txt with "
            f"{root}/val/images/*.JPEG (official release), or {root}/test/<wnid>/images/* (reorganised); "
            f"download {URL} and extract it, then set data_path to the tiny-imagenet-200 folder")


def _train_split(root: str, log) -> tuple[list[str], list[str], np.ndarray]:
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise DataError(f"tiny_imagenet not found: {train_dir} does not exist; {layout(root)}")
    wnids = class_folders(train_dir)
    if not wnids:
        raise DataError(f"tiny_imagenet: {train_dir} has no class folders; {layout(root)}")
    keys, labels, skipped = [], [], 0
    for label, wnid in enumerate(wnids):
        folder = os.path.join(train_dir, wnid, "images")
        if not os.path.isdir(folder):
            raise DataError(f"tiny_imagenet: {folder} does not exist; every class folder of the official release "
                            f"holds its pictures in train/<wnid>/images/*.JPEG ({layout(root)})")
        names, skip = list_images(folder)
        skipped += skip
        if not names:
            raise DataError(f"tiny_imagenet: {folder} holds no images (.JPEG); {layout(root)}")
        keys += [f"train/{wnid}/images/{n}" for n in names]
        labels += [label] * len(names)
    log_skipped(log, "tiny_imagenet", skipped, f"{train_dir}/<wnid>/images")
    return wnids, keys, np.asarray(labels, dtype=np.int64)


def _test_from_annotations(root: str, index: dict[str, int]) -> tuple[list[str], list[int]]:
    ann = os.path.join(root, "val", "val_annotations.txt")
    pairs = []
    for number, line in enumerate(read_lines(ann), start=1):
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{ann} line {number}: expected 'file<TAB>wnid<TAB>box', got {line[:80]!r}")
        name, wnid = parts[0], parts[1]
        if wnid not in index:
            raise DataError(f"{ann} line {number}: class {wnid} has no folder in {root}/train; the annotations "
                            "belong to another copy of Tiny-ImageNet")
        pairs.append((f"val/images/{name}", index[wnid]))
    pairs.sort()
    missing = [k for k, _ in pairs if not os.path.isfile(os.path.join(root, k))]
    if missing:
        raise DataError(f"tiny_imagenet: {len(missing)} of the {len(pairs)} images listed in {ann} are missing, "
                        f"e.g. {os.path.join(root, missing[0])}; {layout(root)}")
    return [k for k, _ in pairs], [lab for _, lab in pairs]


def _test_from_folders(root: str, split: str, index: dict[str, int], log) -> tuple[list[str], list[int]] | None:
    base = os.path.join(root, split)
    if not os.path.isdir(base):
        return None
    folders = [w for w in class_folders(base) if os.path.isdir(os.path.join(base, w, "images"))]
    if not folders:
        return None
    unknown = [w for w in folders if w not in index]
    if unknown:
        raise DataError(f"tiny_imagenet: {os.path.join(base, unknown[0])} is a class folder with no training "
                        f"folder {root}/train/{unknown[0]}; the splits belong to different copies")
    keys, labels, skipped = [], [], 0
    for wnid in folders:
        names, skip = list_images(os.path.join(base, wnid, "images"))
        skipped += skip
        keys += [f"{split}/{wnid}/images/{n}" for n in names]
        labels += [index[wnid]] * len(names)
    log_skipped(log, "tiny_imagenet", skipped, f"{base}/<wnid>/images")
    return keys, labels


def load_tiny_imagenet(cfg, log=print) -> RawData:
    root = cfg.data_path
    wnids, train_keys, train_labels = _train_split(root, log)
    index = {w: i for i, w in enumerate(wnids)}
    if os.path.isfile(os.path.join(root, "val", "val_annotations.txt")):
        test_keys, test_labels = _test_from_annotations(root, index)
        source = "val/val_annotations.txt"
    else:
        found = _test_from_folders(root, "test", index, log) or _test_from_folders(root, "val", index, log)
        if found is None:
            raise DataError(f"tiny_imagenet: no labelled test split: {root}/val/val_annotations.txt and "
                            f"{root}/test/<wnid>/images do not exist; {layout(root)}")
        test_keys, test_labels = found
        source = "test/<wnid>/images" if test_keys[0].startswith("test/") else "val/<wnid>/images"
    if not test_keys:
        raise DataError(f"tiny_imagenet: the test split ({source}) in {root} holds no images; {layout(root)}")
    if (len(wnids), len(train_keys), len(test_keys)) != (NUM_CLASSES, NUM_TRAIN, NUM_TEST):
        log(f"tiny_imagenet: {len(wnids)} classes, {len(train_keys)} training and {len(test_keys)} test images "
            f"(the release has {NUM_CLASSES}, {NUM_TRAIN} and {NUM_TEST})")
    return RawData(
        name="tiny_imagenet", num_classes=len(wnids),
        train_images=make_images(root, train_keys), train_labels=train_labels,
        test_images=make_images(root, test_keys), test_labels=np.asarray(test_labels, dtype=np.int64),
        mean=CLIP_MEAN, std=CLIP_STD, native_size=64, family="large",
        extra={"root": root, "classes": wnids, "test_source": source, "large": LargeSpec()})

