"""Your own images: ``dataset: imagefolder`` (class folders) and ``dataset: csv`` (a ``path,label`` list).

* ``imagefolder``: ``data_path/train/<class>/<image>`` (any depth below the class folder, the usual
  image extensions, hidden entries skipped, sorted order); the test set is ``data_path/val/<class>/``
  or, without it, ``data_path/test/<class>/`` (classes matched to train by name).
* ``csv``: ``train_csv`` (default ``data_path/train.csv``) and optional ``test_csv``, each with a
  header and the columns ``path,label``; paths relative to the CSV's folder or absolute; labels are
  class names (sorted into indices) or integers (``class_names`` optional, index -> name).

Without a test set, ``val_fraction`` > 0 holds out a seeded, class-stratified share of the training images
(:func:`dataloader.holdout.stratified_holdout`) as ``Data.test`` named ``"val_given_labels"`` (scored on the
given labels); ``val_fraction`` 0 leaves the run without evaluation (``Data.test_sets`` empty).  Beside a test
set ``val_fraction`` > 0 is refused.

Both: ImageNet statistics, the ``large`` transforms (shorter side to 256/224 x resolution, random /
centre crop), ``noise_mode: real`` trains on the given labels (their truth is unknown), ``sym`` and
``idn`` corrupt the given labels for experiments (the given labels then count as the truth);
``asym`` needs a class map that own data lack and is refused.  Images are decoded as a viewer shows them
(:mod:`dataloader.decode`, ``viewer``: EXIF orientation, transparency onto ``decode_background``, 16 bit
scaled), not with the paper sets' bare ``convert("RGB")``.  The sample keys (paths relative to
``data_path``) enter the fingerprint, so stage 2 refuses a stage 1 made on another version of the
folder.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from dataloader.base import RawData
from dataloader.decode import VIEWER, Decoding
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD, ImageFiles, class_folders, class_tree, log_skipped, \
    make_images
from dataloader.holdout import stratified_holdout
from dataloader.transforms import LargeSpec
from utils.errors import ConfigError, DataError

# resize the shorter side to 256/224 x resolution, then a random (train) or centre (test) crop
OWN_SPEC = LargeSpec(resize_ratio=256 / 224, stage1_resize="shorter", stage2_resize="shorter",
                     test="shorter_center")
MAX_EXAMPLES = 10  # bad CSV rows quoted in the error line
HOLDOUT_DATASETS = ("imagefolder", "csv")  # the data sets val_fraction applies to (the others have a test set)


def _labels_for_noise(cfg, given: np.ndarray) -> np.ndarray | None:
    """The labels synthetic noise corrupts (the given ones), None for ``real``; ``asym`` refused."""
    if cfg.noise_mode == "asym":
        raise ConfigError(f"config key 'noise_mode': asym needs a class map that {cfg.dataset} data do not have; "
                          "use real (your labels as given), sym or idn")
    return None if cfg.noise_mode == "real" else given


def _raw(cfg, *, classes: list[str], train: ImageFiles, train_labels: list[int], test: ImageFiles,
         test_labels: list[int], log) -> RawData:
    # own images are decoded as a viewer shows them (EXIF, transparency, 16 bit; dataloader/decode.py)
    train.decoding = test.decoding = Decoding(VIEWER, background=cfg.decode_background)
    given = np.asarray(train_labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    where = "val/ or test/ folders" if cfg.dataset == "imagefolder" else "test_csv"
    test_name = "test"
    if len(test):
        if cfg.val_fraction > 0:  # refused rather than ignored: a held-out share would silently shrink training
            raise ConfigError(f"config key 'val_fraction' holds out training images only without a test set; "
                              f"{cfg.data_path} has {len(test)} test images ({where}): remove the key")
    elif cfg.val_fraction > 0:
        kept, held = stratified_holdout(given, fraction=cfg.val_fraction, seed=cfg.seed)
        if not len(held):
            raise DataError(f"config key 'val_fraction' {cfg.val_fraction:g} holds out no image of {len(given)} "
                            f"({len(classes)} classes); raise it or add {where}")
        test, test_labels = _subset(train, held), given[held]
        train, given, test_name = _subset(train, kept), given[kept], "val_given_labels"
        log(f"{cfg.dataset}: no test set; val_fraction {cfg.val_fraction:g} holds out {len(held)} training images "
            f"(seed {cfg.seed}, per class), not trained on; their accuracy is on the given labels "
            "(val_acc_given_labels), not a clean accuracy")
    else:
        test_name = None
        log(f"{cfg.dataset}: no test set ({where}) and val_fraction 0: training without evaluation (no accuracy "
            "in the logs and result files)")
    log(f"{cfg.dataset}: {len(train)} training images, {len(test)} "
        f"{'held-out' if test_name == 'val_given_labels' else 'test'} images, {len(classes)} classes")
    return RawData(
        name=cfg.dataset, num_classes=len(classes), train_images=train, train_labels=_labels_for_noise(cfg, given),
        test_images=test, test_labels=test_labels,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, native_size=224, family="large", given_labels=given,
        extra={"root": cfg.data_path, "classes": list(classes), "large": OWN_SPEC, "test_name": test_name})


def _subset(images: ImageFiles, index: np.ndarray) -> ImageFiles:
    return ImageFiles([images.paths[i] for i in index], keys=[images.keys[i] for i in index],
                      decoding=images.decoding)


# ------------------------------------------------------------------------------------------- imagefolder

def _class_tree(root: str, split: str, classes: list[str] | None, log) -> tuple[list[str], list[str], list[int]]:
    """(classes, keys ``split/<class>/...``, labels) of ``root/split``; ``classes`` None: this split's folders."""
    base = os.path.join(root, split)
    if classes is None and not class_folders(base):
        raise DataError(f"imagefolder: {base} has no class folders; expected {base}/<class>/<image>")
    classes, keys, labels, skipped = class_tree(
        root, split, classes,
        unknown_class=lambda folder: f"imagefolder: test class {folder!r} ({os.path.join(base, folder)}) is not a "
                                     f"training class; rename it to one of the folders in {root}/train or remove it")
    log_skipped(log, "imagefolder", skipped, base)
    return classes, keys, labels


def load_imagefolder(cfg, log=print) -> RawData:
    root = cfg.data_path
    if not os.path.isdir(os.path.join(root, "train")):
        raise DataError(f"imagefolder: {root}/train does not exist; expected {root}/train/<class>/<image> "
                        "(and val/<class>/ or test/<class>/ for the test set)")
    classes, train_keys, train_labels = _class_tree(root, "train", None, log)
    if not train_keys:
        raise DataError(f"imagefolder: {root}/train holds no images (extensions: jpg, jpeg, png, ppm, bmp, pgm, "
                        "tif, tiff, webp)")
    split = next((s for s in ("val", "test") if os.path.isdir(os.path.join(root, s))), None)
    test_keys, test_labels = [], []
    if split is not None:
        _, test_keys, test_labels = _class_tree(root, split, classes, log)
    return _raw(cfg, classes=classes, train=make_images(root, train_keys), train_labels=train_labels,
                test=make_images(root, test_keys), test_labels=test_labels, log=log)


# --------------------------------------------------------------------------------------------------- csv

def _read_rows(path: str) -> list[tuple[int, str, str]]:
    """``(line number, path, label)`` of a ``path,label`` CSV with a header."""
    if not os.path.isfile(path):
        raise DataError(f"csv: {path} does not exist; write a CSV with the header path,label (or set train_csv)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if header[:2] != ["path", "label"]:
                raise DataError(f"csv: {path} must start with the header path,label, got {','.join(header)!r}")
            return [(number, (row[0] if row else "").strip(), (row[1] if len(row) > 1 else "").strip())
                    for number, row in enumerate(reader, start=2) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise DataError(f"csv: {path} is not a UTF-8 text file") from None


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _resolve_classes(cfg, train_labels: list[str]) -> tuple[list[str], bool]:
    """(class names in index order, whether labels are integers)."""
    names = cfg.class_names
    if names is not None and (len(set(map(str, names))) != len(names) or not names):
        raise ConfigError("config key 'class_names' must be a list of distinct names")
    present = [t for t in train_labels if t]
    if present and all(_is_int(t) for t in present):
        top = max(int(t) for t in present)
        if names is None:
            return [str(i) for i in range(top + 1)], True
        return [str(n) for n in names], True
    if names is not None:
        return [str(n) for n in names], False
    return sorted(set(present)), False


def _check_rows(csv_path: str, rows, classes: list[str], integer: bool, kind: str, data_root: str
                ) -> tuple[list[str], list[str], list[int], list[str]]:
    """(absolute paths, keys, labels, problems) of one CSV's rows."""
    folder = os.path.dirname(os.path.abspath(csv_path))
    index = {c: i for i, c in enumerate(classes)}
    paths, keys, labels, problems, seen = [], [], [], [], {}
    root = os.path.abspath(data_root)
    for number, rel, label in rows:
        where = f"{os.path.basename(csv_path)} line {number}"
        full = os.path.normpath(rel if os.path.isabs(rel) else os.path.join(folder, rel))
        if not rel:
            problems.append(f"{where}: empty path")
            continue
        if not label:
            problems.append(f"{where}: empty label")
            continue
        if full in seen:
            problems.append(f"{where}: duplicate path {rel} (also line {seen[full]})")
            continue
        seen[full] = number
        if not os.path.isfile(full):
            problems.append(f"{where}: missing file {full}")
            continue
        if integer and _is_int(label):
            value = int(label)
            ok = 0 <= value < len(classes)
        else:
            value = index.get(label, -1)
            ok = value >= 0
        if not ok:
            what = "test class" if kind == "test" else "label"
            problems.append(f"{where}: unknown {what} {label!r}")
            continue
        paths.append(full)
        keys.append(os.path.relpath(full, root) if full.startswith(root + os.sep) else full)
        labels.append(value)
    return paths, keys, labels, problems


def load_csv(cfg, log=print) -> RawData:
    train_csv = cfg.train_csv or os.path.join(cfg.data_path, "train.csv")
    train_rows = _read_rows(train_csv)
    if not train_rows:
        raise DataError(f"csv: {train_csv} has no rows below its header path,label")
    classes, integer = _resolve_classes(cfg, [label for _, _, label in train_rows])
    paths, keys, labels, problems = _check_rows(train_csv, train_rows, classes, integer, "train", cfg.data_path)
    test_paths, test_keys, test_labels = [], [], []
    if cfg.test_csv is not None:
        test_paths, test_keys, test_labels, test_problems = _check_rows(
            cfg.test_csv, _read_rows(cfg.test_csv), classes, integer, "test", cfg.data_path)
        problems += test_problems
    if problems:
        shown = "; ".join(problems[:MAX_EXAMPLES])
        more = f" (and {len(problems) - MAX_EXAMPLES} more)" if len(problems) > MAX_EXAMPLES else ""
        raise DataError(f"csv: {len(problems)} bad rows: {shown}{more}; fix or remove them")
    return _raw(cfg, classes=classes, train=ImageFiles(paths, keys=keys), train_labels=labels,
                test=ImageFiles(test_paths, keys=test_keys), test_labels=test_labels, log=log)
