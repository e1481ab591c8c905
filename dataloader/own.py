"""Your own images: ``dataset: imagefolder`` (class folders) and ``dataset: csv`` (a ``path,label`` list).

* ``imagefolder``: ``data_path/train/<class>/<image>`` (any depth below the class folder, the usual
  image extensions, hidden entries skipped, sorted order); the test set is ``data_path/val/<class>/``
  or, without it, ``data_path/test/<class>/`` (classes matched to train by name).
* ``csv``: ``train_csv`` (default ``data_path/train.csv``) and optional ``test_csv``, each with a
  header and the columns ``path,label`` or ``path,class_name``; paths relative to the CSV's folder or
  absolute (backslashes read as ``/``); under ``class_name`` labels are names exactly as written, under
  ``label`` class names (stripped, sorted into indices) or plainly written integers (``class_names``
  optional, index -> name; see :func:`_resolve_classes`).

Class names are compared as Unicode NFC.  Refused with one line: class names that differ only by case,
surrounding space or Unicode form, training classes without a usable image (empty folder, only
skipped files, integer labels with gaps) unless ``class_names`` names every class (for ``imagefolder``:
the class folders in index order), training images of one class only, names that are not UTF-8
(:mod:`dataloader.names`) and an ``output_dir`` inside the folders an imagefolder reads.  Named in a
warning line: images in no class folder, a ``test/`` beside ``val/``, TIFF files with more than one page.
Listing happens once per job: rank 0 lists, the other DDP ranks receive the result
(:func:`utils.core.distributed.on_rank0_then_share`).

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
import re

import numpy as np

from dataloader.base import RawData
from dataloader.decode import TIFF_EXTENSIONS, VIEWER, Decoding, tiff_has_more_pages
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD, ClassTree, FileImagesWithDecoding, class_folders, \
    class_name, class_tree, existing_files, log_skipped, make_images
from dataloader.holdout import stratified_holdout
from dataloader.names import named, refuse_non_utf8_path, shown
from dataloader.path_array import RootedPaths
from dataloader.transforms import LargeSpec
from utils.core.distributed import on_rank0_then_share
from utils.core.errors import ConfigError, DataError

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


def _raw(cfg, *, classes: list[str], train: FileImagesWithDecoding, train_labels: list[int],
         test: FileImagesWithDecoding, test_labels: list[int], log) -> RawData:
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


def _subset(images: FileImagesWithDecoding, index: np.ndarray) -> FileImagesWithDecoding:
    if isinstance(images.paths, RootedPaths):
        return FileImagesWithDecoding(images.paths.take(index), decoding=images.decoding)
    return FileImagesWithDecoding(images.paths.take(index), keys=images.keys.take(index), decoding=images.decoding)


def _refuse_lookalikes(name: str, labels, where: str) -> None:
    """One DataError line if two distinct class names differ only by case, surrounding space or Unicode form."""
    groups: dict[str, set[str]] = {}
    for label in labels:
        groups.setdefault(class_name(label.strip()).casefold(), set()).add(label)
    clashes = [sorted(g) for g in groups.values() if len(g) > 1]
    if clashes:
        shown = "; ".join(" / ".join(repr(n) for n in group) for group in sorted(clashes))
        raise DataError(f"{name}: {len(clashes)} groups of class names in {where} differ only by case, surrounding "
                        f"space or Unicode form: {shown}; give each class one spelling")


def _explicit_classes(cfg) -> list[str] | None:
    """``class_names`` as NFC names (None when the key is not set)."""
    names = cfg.class_names
    if names is None:
        return None
    names = [class_name(str(n)) for n in names]
    if not names or len(set(names)) != len(names):
        raise ConfigError("config key 'class_names' must be a non-empty list of distinct names")
    return names


def _refuse_empty(name: str, empty: dict[str, str], explicit: bool, log, fix: str) -> None:
    """Classes with no usable training image (class -> why): one DataError line, or a warning when the user
    named the classes."""
    if not empty:
        return
    listed = named([f"{c!r} ({why})" for c, why in empty.items()], limit=MAX_EXAMPLES)
    if explicit:
        log(f"{name}: warning: {len(empty)} of the classes named in class_names have no training image: {listed}")
        return
    raise DataError(f"{name}: {len(empty)} classes have no usable training image: {listed}; {fix}, or list every "
                    "class in class_names to keep them")


def _refuse_one_class(name: str, classes: list[str], labels: np.ndarray, fix: str) -> None:
    """One DataError line when the training images carry fewer than two classes: a label looks wrong only
    against another class, so nothing could be flagged (refused before training, not after it)."""
    present = np.unique(labels)
    if len(present) < 2:
        one = f"{classes[int(present[0])]!r}, {len(labels)} images" if len(present) else "no images"
        raise DataError(f"{name}: the training images are all of one class ({one}); finding wrong labels needs "
                        f"at least two classes, since a label can only look wrong against another one: {fix}")


def _note_more_pages(name: str, images: list[FileImagesWithDecoding], log) -> None:
    """One warning line naming the TIFF files among ``images`` that hold more than one page: decoding reads
    the first page only.  Only .tif / .tiff files are opened (their header; :func:`tiff_has_more_pages`)."""
    more = [files.keys[i] for files in images for i in np.flatnonzero(files.keys.ends_with(TIFF_EXTENSIONS))
            if tiff_has_more_pages(files.paths[i])]
    if more:
        log(f"{name}: warning: {len(more)} TIFF files hold more than one page; only the first page of each is "
            f"read: {named(more, limit=MAX_EXAMPLES, show=shown)}; save the pages as separate files to use them")


# ------------------------------------------------------------------------------------------- imagefolder

LISTED_SPLITS = ("train", "val", "test")  # the folders of an imagefolder whose images are read


def _refuse_output_inside(cfg, root: str) -> None:
    """A ConfigError line when ``output_dir`` is inside a folder the listing reads: the run's own PNG files
    would become samples of the next run (stage 2 would see another data set than stage 1)."""
    out = os.path.realpath(cfg.output_dir)
    for split in LISTED_SPLITS:
        folder = os.path.realpath(os.path.join(root, split))
        if out == folder or out.startswith(folder + os.sep):
            raise ConfigError(f"config key 'output_dir' {shown(cfg.output_dir)} is inside {shown(folder)}, whose "
                              "images imagefolder reads: the run's own images (plots, the suspects' grid) would "
                              f"become samples; write the outputs outside {root}/train, val/ and test/ (beside them "
                              f"is fine, e.g. {os.path.join(root, 'runs')})")


def _warn_loose(tree: ClassTree, root: str, split: str, log) -> None:
    """One warning line naming the images directly in ``root/split`` (in no class folder: not read)."""
    if tree.loose:
        listed = named(tree.loose, limit=3, show=lambda n: shown(f"{split}/{n}"))
        log(f"imagefolder: warning: {len(tree.loose)} images directly in {shown(os.path.join(root, split))} are in "
            f"no class folder and are not read: {listed}; move them into {split}/<class>/ to use them")


def _class_tree(root: str, split: str, classes: list[str] | None, log) -> ClassTree:
    """The listed ``root/split`` (classes None: this split's folders are the classes); skipped entries logged."""
    base = os.path.join(root, split)
    if classes is None and not class_folders(base):
        raise DataError(f"imagefolder: {base} has no class folders; expected {base}/<class>/<image>")
    unknown = "a training class" if split != "train" else "named in class_names"
    tree = class_tree(
        root, split, classes,
        unknown_class=lambda folder: f"imagefolder: {'test ' if split != 'train' else ''}class {folder!r} "
                                     f"({os.path.join(base, folder)}) is not {unknown}; rename it to one of "
                                     f"{'the folders in ' + root + '/train' if split != 'train' else 'those'} "
                                     "or remove it", name="imagefolder")
    log_skipped(log, "imagefolder", tree.skipped, root)
    tree.walk.log_revisits(log, "imagefolder")
    return tree


def _list_imagefolder(cfg, log) -> tuple:
    root = cfg.data_path
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise DataError(f"imagefolder: {root}/train does not exist; expected {root}/train/<class>/<image> "
                        "(and val/<class>/ or test/<class>/ for the test set)")
    refuse_non_utf8_path(root, key="data_path", prefix="imagefolder: ")
    _refuse_output_inside(cfg, root)
    _refuse_lookalikes("imagefolder", class_folders(train_dir), train_dir)
    explicit = _explicit_classes(cfg)
    tree = _class_tree(root, "train", explicit, log)
    classes = tree.classes
    _warn_loose(tree, root, "train", log)
    if not tree.keys:
        raise DataError(f"imagefolder: {root}/train holds no images (extensions: jpg, jpeg, png, ppm, bmp, pgm, "
                        "tif, tiff, webp)")
    empty = {}
    for c in classes:
        count, skipped = tree.per_class.get(c, (0, None))
        if not count:
            empty[c] = ("no folder" if skipped is None else
                        f"only skipped files: {skipped.kinds(examples=False)}" if skipped else "empty folder")
    _refuse_empty("imagefolder", empty, explicit is not None, log, f"add images to those folders in {train_dir} or "
                  "remove them")
    labels = np.asarray(tree.labels, dtype=np.int64)
    _refuse_one_class("imagefolder", classes, labels, f"add the folders of the other classes to {train_dir}")
    split = next((s for s in ("val", "test") if os.path.isdir(os.path.join(root, s))), None)
    test_keys, test_labels = [], []
    if split is not None:
        test = _class_tree(root, split, classes, log)
        _warn_loose(test, root, split, log)
        test_keys, test_labels = test.keys, test.labels
    if split == "val" and os.path.isdir(os.path.join(root, "test")):
        log(f"imagefolder: warning: {shown(os.path.join(root, 'test'))} is not read: the test images are those of "
            f"{shown(os.path.join(root, 'val'))} (val/ comes first when both exist); merge test/ into val/ to "
            "evaluate on both, or move it out of the data folder")
    train, test = make_images(root, tree.keys), make_images(root, test_keys)
    _note_more_pages("imagefolder", [train, test], log)
    return classes, train, labels, test, np.asarray(test_labels, dtype=np.int64)


def load_imagefolder(cfg, log=print) -> RawData:
    """``data_path/train/<class>/...`` listed once per job (rank 0 under DDP; the other ranks receive it)."""
    classes, train, train_labels, test, test_labels = on_rank0_then_share(lambda: _list_imagefolder(cfg, log))
    return _raw(cfg, classes=classes, train=train, train_labels=train_labels, test=test, test_labels=test_labels,
                log=log)


# --------------------------------------------------------------------------------------------------- csv

LABEL, CLASS_NAME = "label", "class_name"  # the second column's header: see _resolve_classes
HEADERS = ("path,label", "path,class_name")
INT_LIKE = re.compile(r"-?[0-9]+")  # ASCII digits only: int() reads '\u0661' as 1 and fails on '\u00b2'
INDEX = re.compile(r"0|[1-9][0-9]*")  # a class index as written plainly


def _read_rows(path: str) -> tuple[str, list[tuple[int, str, str]]]:
    """The second column's header (:data:`LABEL` or :data:`CLASS_NAME`) and ``(line number, path, label)`` of
    every row of a ``path,label`` or ``path,class_name`` CSV (path stripped, label as written)."""
    if not os.path.isfile(path):
        raise DataError(f"csv: {path} does not exist; write a CSV with the header path,label (or set train_csv)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if ",".join(header[:2]) not in HEADERS:
                raise DataError(f"csv: {path} must start with the header path,label (or path,class_name: labels that "
                                f"are class names whatever they look like), got {','.join(header)!r}")
            rows = []
            for number, row in enumerate(reader, start=2):
                if len(row) >= 2:
                    path, label = row[0].strip(), row[1]
                    if path or label.strip() or any(cell.strip() for cell in row[2:]):
                        rows.append((number, path, label))
                elif row and row[0].strip():
                    rows.append((number, row[0].strip(), ""))
            return header[1], rows
    except UnicodeDecodeError:
        raise DataError(f"csv: {path} is not a UTF-8 text file") from None


def _resolve_classes(cfg, train_labels: list[str], column: str, train_csv: str) -> tuple[list[str], bool]:
    """(class names in index order, whether labels are class indices); gaps in integer labels refused.

    ``train_labels`` are the label cells as written.  Under the header ``path,class_name`` every label is a
    class name exactly as written (``1``, ``01`` and `` lead`` are three classes; the review page exports
    this).  Under ``path,label`` labels are class indices when all are whole numbers written plainly (``0``,
    ``17``), names (stripped) otherwise; numbers written otherwise (``01``, ``-1``) are refused, since reading
    them as indices would merge or rename classes.  Names are compared as NFC.
    """
    names = _explicit_classes(cfg)
    written = set(train_labels)
    if column == CLASS_NAME:
        present = {class_name(t) for t in written if t}
        _refuse_lookalikes("csv", present, "the class_name column of the training CSV")
        return (names if names is not None else sorted(present)), False
    present = {t.strip() for t in written if t.strip()}
    if present and all(INT_LIKE.fullmatch(t) for t in present):
        odd = sorted(t for t in present if not INDEX.fullmatch(t))
        if odd:
            listed = named(odd, limit=MAX_EXAMPLES, show=repr)
            raise DataError(f"csv: the labels of {train_csv} are whole numbers, read as class indices, but {listed} "
                            "are not written as indices (0, 1, 2, ... without leading zeros or a sign) and would "
                            "merge with or become other classes; if the labels are class names, head the column "
                            "class_name (header path,class_name, as the review page exports them), if they are "
                            "indices, write them plainly")
        values = {int(t) for t in present}
        if names is not None:
            return names, True
        top = max(values)
        gaps = sorted(set(range(top + 1)) - values)
        _refuse_empty("csv", {str(g): "no training row" for g in gaps}, False, None,
                      f"the integer labels run 0..{top} with gaps: number the classes 0..{len(values) - 1}")
        return [str(i) for i in range(top + 1)], True
    # a label is text: its Unicode forms are one class (NFC); case or surrounding space are refused as ambiguous
    _refuse_lookalikes("csv", {class_name(t) for t in written if t.strip()},
                       "the label column of the training CSV")
    if names is not None:
        return names, False
    return sorted({class_name(t) for t in present}), False


def _check_rows(csv_path: str, column: str, rows, classes: list[str], integer: bool, kind: str, data_root: str
                ) -> tuple[FileImagesWithDecoding, list[int], list[str], str]:
    """(images, labels, problems, hint) of one CSV's rows; image keys are paths relative to ``data_root`` where
    below it.

    Cells are read as paths relative to the CSV's folder (or absolute), backslashes as folder separators
    (a CSV written on Windows); files are checked by listing each folder the rows name once
    (:func:`existing_files`), not one ``stat`` per row; problems are in row order.  Labels are stripped
    except under ``column`` class_name (names exactly as written).  ``hint``: where missing files exist
    relative to the current directory instead (the likely mistake), a sentence that says so; else "".
    """
    folder = os.path.normpath(os.path.dirname(os.path.abspath(csv_path))) + os.sep
    index = {c: i for i, c in enumerate(classes)}
    under_root = os.path.normpath(os.path.abspath(data_root)) + os.sep
    backslash_separates = os.sep == "/"  # on POSIX a backslash in a CSV path comes from Windows
    exact = column == CLASS_NAME
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    candidates: list[tuple[int, str, str, str]] = []
    name = os.path.basename(csv_path)
    for number, rel, label in rows:
        if not rel:
            problems.append((number, f"{name} line {number}: empty path"))
            continue
        if not exact:
            label = label.strip()
        if not label:
            problems.append((number, f"{name} line {number}: empty {column}"))
            continue
        full = rel.replace("\\", "/") if backslash_separates and "\\" in rel else rel
        if full[0] != os.sep:
            full = folder + full
        if "//" in full or "/." in full or full[-1] == os.sep:  # normpath only where it changes something
            full = os.path.normpath(full)
        first = seen.setdefault(full, number)
        if first != number:
            problems.append((number, f"{name} line {number}: duplicate path {shown(rel)} (also line {first})"))
            continue
        candidates.append((number, rel, full, label))
    del seen
    present = existing_files([c[2] for c in candidates])
    keys, labels, missing = [], [], []
    for (number, rel, full, label), exists in zip(candidates, present):
        if not exists:
            problems.append((number, f"{name} line {number}: missing file {shown(full)}"))
            missing.append(rel.replace("\\", "/") if backslash_separates else rel)
            continue
        if integer and not exact and INDEX.fullmatch(label):
            value = int(label)
            ok = value < len(classes)
        else:
            value = index.get(label)
            if value is None:
                value = index.get(class_name(label), -1)
            ok = value >= 0
        if not ok:
            what = "test class" if kind == "test" else "label"
            problems.append((number, f"{name} line {number}: unknown {what} {label!r}"))
            continue
        keys.append(full[len(under_root):] if full.startswith(under_root) else full)
        labels.append(value)
    problems.sort(key=lambda p: p[0])
    # path = data_root/key, or the key itself where absolute (a file outside data_root)
    return (make_images(under_root, keys), labels, [text for _, text in problems],
            _relative_to_here_hint(missing, folder))


def _relative_to_here_hint(missing: list[str], folder: str) -> str:
    """Where files missing from the CSV's ``folder`` exist relative to the current directory instead (the
    likely mistake), a sentence saying that relative paths are read from the CSV's folder; else "".
    ``missing``: the path cells of the missing files as written (``/`` separators)."""
    here = os.path.normpath(os.getcwd()) + os.sep
    relative = [m for m in missing if not m.startswith(os.sep)]
    if not relative or here == folder:
        return ""
    found = sum(existing_files([os.path.normpath(here + m) for m in relative]))
    if not found:
        return ""
    return (f"relative paths are read from the CSV's folder {folder.rstrip(os.sep)}, and {found} of the {len(missing)} "
            f"missing files exist relative to the current directory {here.rstrip(os.sep)}: write the paths relative "
            "to the CSV's folder, or absolute")


def _list_csv(cfg, log) -> tuple:
    train_csv = cfg.train_csv or os.path.join(cfg.data_path, "train.csv")
    for key, path in (("train_csv", train_csv), ("test_csv", cfg.test_csv)):
        if path is not None:  # the export of the review page names every file by its absolute path
            refuse_non_utf8_path(os.path.dirname(os.path.abspath(path)), key=f"the folder of {key}", prefix="csv: ")
    column, train_rows = _read_rows(train_csv)
    if not train_rows:
        raise DataError(f"csv: {train_csv} has no rows below its header path,{column}")
    classes, integer = _resolve_classes(cfg, [label for _, _, label in train_rows], column, train_csv)
    train, labels, problems, hint = _check_rows(train_csv, column, train_rows, classes, integer, "train",
                                                cfg.data_path)
    hints = [hint] if hint else []
    test, test_labels = FileImagesWithDecoding([]), []
    if cfg.test_csv is not None:
        test_column, test_rows = _read_rows(cfg.test_csv)
        test, test_labels, test_problems, hint = _check_rows(cfg.test_csv, test_column, test_rows, classes, integer,
                                                             "test", cfg.data_path)
        problems += test_problems
        hints += [hint] if hint and hint not in hints else []
    if problems:
        raise DataError(f"csv: {len(problems)} bad rows: {named(problems, limit=MAX_EXAMPLES, sep='; ')}; fix or "
                        "remove them"
                        + "".join(f"; {h}" for h in hints))
    labels = np.asarray(labels, dtype=np.int64)
    _refuse_one_class("csv", classes, labels, f"add the rows of the other classes to {train_csv}")
    _note_more_pages("csv", [train, test], log)
    return classes, train, labels, test, np.asarray(test_labels, dtype=np.int64)


def load_csv(cfg, log=print) -> RawData:
    """``train_csv`` (and ``test_csv``) listed once per job (rank 0 under DDP; the other ranks receive it)."""
    classes, train, train_labels, test, test_labels = on_rank0_then_share(lambda: _list_csv(cfg, log))
    return _raw(cfg, classes=classes, train=train, train_labels=train_labels, test=test, test_labels=test_labels,
                log=log)
