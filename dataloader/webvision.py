"""Mini-WebVision (docs/fidelity.md#ido-34-webvision, IDO-B10 fixed): the Google images of the first 50 WebVision 1.0 classes.

``data_path`` is the WebVision 1.0 root:

* ``info/train_filelist_google.txt``: ``google/q0001/xxx.jpg label`` lines; keys are relative to
  ``data_path``; lines with label >= 50 are dropped (about 66k images remain);
* ``info/val_filelist.txt``: ``val000001.jpg label``; images in ``val_images_256/`` (2,500 kept).

ImageNet mean/std in every transform (the official stage 2 used Clothing1M's: IDO-B10).  Optionally
``imagenet_val_path`` adds the ILSVRC12 validation images of the same 50 classes as a second test
set (``Data.extra_tests["imagenet_val"]``): folders named by class index (``0/`` ... ``49/``, the
DivideMix layout ``imagenet/val/<index>/``) or by WordNet id (``n01440764/`` ...), mapped to indices
with ``info/synsets.txt`` of WebVision (or the sorted order when all 1,000 folders are present).
"""
from __future__ import annotations

import os

import numpy as np

from dataloader.base import RawData
from dataloader.files import (IMAGENET_MEAN, IMAGENET_STD, check_files_exist, class_folders, list_images,
                              log_skipped, make_images, parse_key_labels, read_lines)
from dataloader.transforms import LargeSpec
from utils.core.errors import DataError

NUM_CLASSES = 50
URL = "https://data.vision.ee.ethz.ch/cvl/webvision/download.html (WebVision 1.0: resized images + info)"


def layout(root: str) -> str:
    return (f"expected {root}/info/train_filelist_google.txt, {root}/info/val_filelist.txt, the Google images "
            f"they list under {root}/google/ and the validation images in {root}/val_images_256/ (WebVision 1.0 "
            f"release: {URL})")


def _read_list(path: str, root: str) -> list[tuple[str, int]]:
    if not os.path.isfile(path):
        raise DataError(f"webvision not found: {path} does not exist; {layout(root)}")
    return parse_key_labels(path)


def _imagenet_val(path: str, root: str, log) -> tuple[list[str], np.ndarray]:
    """Keys (relative to ``path``) and labels of the ILSVRC12 val images of classes 0..49."""
    expected = (f"expected class folders {path}/0 ... {path}/49 (DivideMix layout) or {path}/<wnid>/ "
                "(ILSVRC12 val sorted into class folders)")
    if not os.path.isdir(path):
        raise DataError(f"imagenet_val_path {path} does not exist; {expected}")
    folders = class_folders(path)
    if folders and all(f.isdigit() for f in folders):
        index = {f: int(f) for f in folders}
    else:
        synsets = os.path.join(root, "info", "synsets.txt")
        if os.path.isfile(synsets):
            order = [line.split()[0] for line in read_lines(synsets)]
        elif len(folders) == 1000:
            order = folders
        else:
            raise DataError(f"imagenet_val_path {path}: cannot map its {len(folders)} folders to WebVision class "
                            f"indices without {synsets} (or all 1,000 wnid folders); {expected}")
        index = {w: i for i, w in enumerate(order)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise DataError(f"imagenet_val_path: {os.path.join(path, unknown[0])} is not an ILSVRC12 class "
                            f"folder; {expected}")
    keys, labels, skipped = [], [], 0
    for folder in folders:
        label = index[folder]
        if label >= NUM_CLASSES:
            continue
        names, skip = list_images(os.path.join(path, folder))
        skipped += skip
        keys += [f"{folder}/{n}" for n in names]
        labels += [label] * len(names)
    log_skipped(log, "imagenet_val", skipped, path)
    if not keys:
        raise DataError(f"imagenet_val_path {path} holds no images of classes 0..{NUM_CLASSES - 1}; {expected}")
    return keys, np.asarray(labels, dtype=np.int64)


def load_webvision(cfg, log=print) -> RawData:
    root = cfg.data_path
    train_list = os.path.join(root, "info", "train_filelist_google.txt")
    val_list = os.path.join(root, "info", "val_filelist.txt")
    val_dir = os.path.join(root, "val_images_256")
    train = [(k, y) for k, y in _read_list(train_list, root) if y < NUM_CLASSES]
    test = [(f"val_images_256/{k}", y) for k, y in _read_list(val_list, root) if y < NUM_CLASSES]
    if not os.path.isdir(val_dir):
        raise DataError(f"webvision not found: {val_dir} does not exist; {layout(root)}")
    for name, items, listed in (("training", train, train_list), ("validation", test, val_list)):
        if not items:
            raise DataError(f"{listed} lists no {name} image of the first {NUM_CLASSES} classes; {layout(root)}")
        check_files_exist(root, [k for k, _ in items], listed_in=listed,
                          hint=f"data_path must be the WebVision root the lists are relative to ({layout(root)})")
    extra_tests = {}
    if cfg.imagenet_val_path:
        keys, labels = _imagenet_val(cfg.imagenet_val_path, root, log)
        extra_tests["imagenet_val"] = (make_images(cfg.imagenet_val_path, keys), labels)
        log(f"webvision: ILSVRC12 validation of the same {NUM_CLASSES} classes: {len(keys)} images from "
            f"{cfg.imagenet_val_path}")
    log(f"webvision: {len(train)} Google training images and {len(test)} validation images of the first "
        f"{NUM_CLASSES} classes")
    return RawData(
        name="webvision", num_classes=NUM_CLASSES,
        train_images=make_images(root, [k for k, _ in train]), train_labels=None,
        test_images=make_images(root, [k for k, _ in test]),
        test_labels=np.asarray([y for _, y in test], dtype=np.int64),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, native_size=256, family="large",
        given_labels=np.asarray([y for _, y in train], dtype=np.int64),
        extra={"root": root, "extra_tests": extra_tests,
               "large": LargeSpec(stage1_resize="square", stage2_resize="square", test="square_center")})
