"""Food-101N (docs/fidelity.md#act-24-food-101n): 310,009 web images with noisy labels, tested on the Food-101 test set.

``data_path`` is the Food-101N release folder:

* ``meta/classes.txt``: header ``class_name`` then the 101 class names (labels = sorted names);
* ``meta/imagelist.tsv``: header ``class_name/key`` then ``<class>/<file>.jpg`` lines (the folder is
  the noisy label); images in ``images/<class>/<file>.jpg``;
* ``meta/verified_{train,val}.tsv``: verification flags (not used).

The test set is the original Food-101 release (``food101_path``, default ``{data_path}/food-101``):
``meta/test.txt`` lines ``<class>/<id>`` (25,250 images), images ``images/<class>/<id>.jpg``; its
classes are mapped by name to the same sorted index.  ImageNet statistics; 256 -> 224 px.
"""
from __future__ import annotations

import os

import numpy as np

from dataloader.base import RawData
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD, check_files_exist, is_image_name, make_images, read_lines
from dataloader.transforms import LargeSpec
from utils.core.errors import DataError

NUM_CLASSES = 101
URL_N = "https://kuanghuei.github.io/Food-101N/"
URL_101 = "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/"


def layout(root: str, test_root: str) -> str:
    return (f"expected the Food-101N release in {root} (meta/classes.txt, meta/imagelist.tsv, "
            f"images/<class>/*.jpg; {URL_N}) and the Food-101 release in {test_root} (meta/test.txt, "
            f"images/<class>/<id>.jpg; {URL_101}; set food101_path if it lies elsewhere)")


def _require(path: str, root: str, test_root: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"food101n not found: {path} does not exist; {layout(root, test_root)}")
    return path


def _class_of(line: str, number: int, path: str, index: dict[str, int]) -> int:
    cls = line.split("/", 1)[0]
    if "/" not in line or cls not in index:
        raise DataError(f"{path} line {number}: {line[:80]!r} is not '<class>/<file>' with one of the "
                        "classes of meta/classes.txt")
    return index[cls]


def load_food101n(cfg, log=print) -> RawData:
    root = cfg.data_path
    test_root = cfg.food101_path or os.path.join(root, "food-101")
    classes_path = _require(os.path.join(root, "meta", "classes.txt"), root, test_root)
    list_path = _require(os.path.join(root, "meta", "imagelist.tsv"), root, test_root)
    test_path = _require(os.path.join(test_root, "meta", "test.txt"), root, test_root)
    names = [c for c in read_lines(classes_path) if c != "class_name"]
    classes = sorted(set(names))
    if len(classes) != len(names) or not classes:
        raise DataError(f"{classes_path} must list distinct class names, one per line (after the header "
                        "'class_name')")
    if len(classes) != NUM_CLASSES:
        log(f"food101n: {len(classes)} classes (the release has {NUM_CLASSES})")
    index = {c: i for i, c in enumerate(classes)}
    train_keys, train_labels, skipped = [], [], 0
    for number, line in enumerate(read_lines(list_path), start=1):
        if not is_image_name(os.path.basename(line)):  # the header 'class_name/key' and stray lines
            skipped += 1
            continue
        train_labels.append(_class_of(line, number, list_path, index))
        train_keys.append(f"images/{line}")
    if skipped > 1:
        log(f"food101n: skipped {skipped} lines of {list_path} that name no image file")
    if not train_keys:
        raise DataError(f"{list_path} lists no images; {layout(root, test_root)}")
    test_keys, test_labels = [], []
    for number, line in enumerate(read_lines(test_path), start=1):
        test_labels.append(_class_of(line, number, test_path, index))
        test_keys.append(f"images/{line}.jpg")
    hint = layout(root, test_root)
    check_files_exist(root, train_keys, listed_in=list_path, hint=hint)
    check_files_exist(test_root, test_keys, listed_in=test_path, hint=hint)
    log(f"food101n: {len(train_keys)} web training images, {len(test_keys)} Food-101 test images, "
        f"{len(classes)} classes")
    return RawData(
        name="food101n", num_classes=len(classes),
        train_images=make_images(root, train_keys), train_labels=None,
        test_images=make_images(test_root, test_keys), test_labels=np.asarray(test_labels, dtype=np.int64),
        mean=IMAGENET_MEAN, std=IMAGENET_STD, native_size=256, family="large",
        given_labels=np.asarray(train_labels, dtype=np.int64),
        extra={"root": root, "test_root": test_root, "classes": classes,
               "large": LargeSpec(stage1_resize="shorter", stage2_resize="shorter", test="shorter_center")})
