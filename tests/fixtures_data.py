"""Tiny data-set fixtures in the exact on-disk layouts of the real releases, and helpers to run on them.

Each ``write_*`` function writes a handful of small images plus the release's list/annotation files
under ``root`` and returns what a test needs to check the loader (keys, labels).  Nothing here is
downloaded; the layouts follow the releases named in docs/data.md.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from utils.training.config import REPO_ROOT, resolve

# Entry points run as subprocesses with one torch thread (see conftest._one_torch_thread).
SUBPROCESS_ENV = dict(os.environ, OMP_NUM_THREADS="1")

TINY_WNIDS = ("n01443537", "n01629819", "n01641577")


def write_image(path: str, *, size: int = 16, seed: int = 0) -> str:
    """A random RGB image; the format follows the extension (.JPEG/.jpg -> JPEG, .png -> PNG)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    ext = os.path.splitext(path)[1].lower()
    Image.fromarray(pixels).save(path, format="PNG" if ext == ".png" else "JPEG")
    return path


def write_text(path: str, lines: Sequence[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


# ------------------------------------------------------------------ CIFAR and CIFAR-N

def write_cifar(root: str, name: str, *, train_labels: Sequence[int], test_labels: Sequence[int],
                seed: int = 0) -> dict:
    """The python-pickle files of cifar10 (data_batch_1..5, test_batch) or cifar100 (train, test)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels, test_labels = list(train_labels), list(test_labels)
    train = rng.integers(0, 256, size=(len(train_labels), 3072), dtype=np.uint8)
    test = rng.integers(0, 256, size=(len(test_labels), 3072), dtype=np.uint8)

    def dump(fname, data, labels, key):
        with open(os.path.join(root, fname), "wb") as f:
            pickle.dump({"data": data, key: labels}, f)

    if name == "cifar10":
        for i, part in enumerate(np.array_split(np.arange(len(train_labels)), 5), start=1):
            dump(f"data_batch_{i}", train[part], [train_labels[j] for j in part], "labels")
        dump("test_batch", test, test_labels, "labels")
    else:
        dump("train", train, train_labels, "fine_labels")
        dump("test", test, test_labels, "fine_labels")
    return {"train": train, "train_labels": np.asarray(train_labels), "test_labels": np.asarray(test_labels)}


def write_cifar_n(path: str, labels: dict, *, numpy1_names: bool = True) -> str:
    """A CIFAR-N label file: ``torch.save`` of a dict of numpy int64 arrays, as the release ships it.

    The release was written under numpy 1.x, whose pickles name ``numpy.core.multiarray``; with
    ``numpy1_names`` the module names are rewritten to that spelling (protocol-2 GLOBAL opcodes).
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.save({k: np.asarray(v, dtype=np.int64) for k, v in labels.items()}, path)
    if numpy1_names:
        with zipfile.ZipFile(path) as src:
            entries = [(info, src.read(info.filename)) for info in src.infolist()]
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
            for info, data in entries:
                if info.filename.endswith("data.pkl"):
                    data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
                out.writestr(info, data)
    return path


# ------------------------------------------------------------------ Tiny-ImageNet

def write_tiny_imagenet(root: str, *, wnids: Sequence[str] = TINY_WNIDS, per_class: int = 4,
                        test_per_class: int = 2, layout: str = "official") -> dict:
    """tiny-imagenet-200: train/<wnid>/images/*.JPEG (+ <wnid>_boxes.txt), and either the official
    val/images + val/val_annotations.txt (+ unlabelled test/images) or the reorganised test/<wnid>/images."""
    write_text(os.path.join(root, "wnids.txt"), list(reversed(wnids)))  # the release's order is not sorted
    write_text(os.path.join(root, "words.txt"), [f"{w}\tthing {w}" for w in wnids])
    train_keys, train_labels = [], []
    for label, wnid in enumerate(sorted(wnids)):
        # written in reverse order: the loader must sort, not trust the file system's order
        for i in reversed(range(per_class)):
            write_image(os.path.join(root, "train", wnid, "images", f"{wnid}_{i}.JPEG"), seed=label * 100 + i)
        write_text(os.path.join(root, "train", wnid, f"{wnid}_boxes.txt"),
                   [f"{wnid}_{i}.JPEG\t0\t0\t10\t10" for i in range(per_class)])
        train_keys += [f"train/{wnid}/images/{wnid}_{i}.JPEG" for i in range(per_class)]
        train_labels += [label] * per_class
    test = []
    k = 0
    for label, wnid in enumerate(sorted(wnids)):
        for i in range(test_per_class):
            if layout == "official":
                name = f"val_{k}.JPEG"
                write_image(os.path.join(root, "val", "images", name), seed=1000 + k)
                test.append((f"val/images/{name}", wnid, label))
            else:
                name = f"val_{k}.JPEG"
                write_image(os.path.join(root, "test", wnid, "images", name), seed=1000 + k)
                test.append((f"test/{wnid}/images/{name}", wnid, label))
            k += 1
    if layout == "official":
        write_text(os.path.join(root, "val", "val_annotations.txt"),
                   [f"{os.path.basename(key)}\t{wnid}\t0\t0\t10\t10" for key, wnid, _ in reversed(test)])
        write_image(os.path.join(root, "test", "images", "test_0.JPEG"), seed=5000)
    test.sort()
    return {"train_keys": train_keys, "train_labels": np.asarray(train_labels),
            "test_keys": [t[0] for t in test], "test_labels": np.asarray([t[2] for t in test]),
            "num_classes": len(wnids)}


# ------------------------------------------------------------------ Clothing1M

def write_clothing1m(root: str, *, num_classes: int = 14, per_class: int = 4, test_per_class: int = 1,
                     annotations_dir: bool = True) -> dict:
    """Clothing1M: images/<a>/<b>/<id>.jpg and the key/label lists (in annotations/ or the root)."""
    ann = os.path.join(root, "annotations") if annotations_dir else root
    noisy_kv, train_keys, clean_kv, test_keys, val_keys = [], [], [], [], []
    n = 0
    for c in range(num_classes):
        for i in range(per_class):
            key = f"images/{n % 10}/{n:02d}/{n:06d}.jpg"
            write_image(os.path.join(root, key), size=12, seed=n)
            noisy_kv.append(f"{key} {c}")
            train_keys.append(key)
            n += 1
    for c in range(num_classes):
        for i in range(test_per_class + 1):
            key = f"images/{n % 10}/{n:02d}/{n:06d}.jpg"
            write_image(os.path.join(root, key), size=12, seed=n)
            clean_kv.append(f"{key} {c}")
            (test_keys if i < test_per_class else val_keys).append(key)
            n += 1
    write_text(os.path.join(ann, "noisy_label_kv.txt"), noisy_kv)
    write_text(os.path.join(ann, "noisy_train_key_list.txt"), train_keys)
    write_text(os.path.join(ann, "clean_label_kv.txt"), clean_kv)
    write_text(os.path.join(ann, "clean_test_key_list.txt"), test_keys)
    write_text(os.path.join(ann, "clean_val_key_list.txt"), val_keys)
    write_text(os.path.join(root, "category_names_eng.txt"), [f"class{c}" for c in range(num_classes)])
    labels = {line.split()[0]: int(line.split()[1]) for line in noisy_kv}
    clean = {line.split()[0]: int(line.split()[1]) for line in clean_kv}
    return {"noisy": labels, "clean": clean, "train_keys": train_keys, "test_keys": test_keys,
            "annotations": ann}


# ------------------------------------------------------------------ WebVision

def write_webvision(root: str, *, classes: Sequence[int] = (0, 1, 2), per_class: int = 4,
                    val_per_class: int = 1, other_classes: Sequence[int] = (50, 700)) -> dict:
    """WebVision 1.0: info/train_filelist_google.txt, info/val_filelist.txt, google/q####/*.jpg,
    val_images_256/*.jpg, info/synsets.txt.  Images of classes >= 50 are listed but not written
    (a mini-WebVision copy need not have them)."""
    train, val = [], []
    for c in list(classes) + list(other_classes):
        for i in range(per_class):
            key = f"google/q{c + 1:04d}/{c * 10 + i:08d}.jpg"
            if c < 50:
                write_image(os.path.join(root, key), size=12, seed=c * 10 + i)
            train.append((key, c))
    k = 1
    for c in list(classes) + list(other_classes):
        for _ in range(val_per_class):
            name = f"val{k:06d}.jpg"
            if c < 50:
                write_image(os.path.join(root, "val_images_256", name), size=12, seed=9000 + k)
            val.append((name, c))
            k += 1
    write_text(os.path.join(root, "info", "train_filelist_google.txt"), [f"{p} {c}" for p, c in train])
    write_text(os.path.join(root, "info", "val_filelist.txt"), [f"{p} {c}" for p, c in val])
    write_text(os.path.join(root, "info", "synsets.txt"), [f"n{1440764 + i:08d} class {i}" for i in range(1000)])
    kept_train = [(p, c) for p, c in train if c < 50]
    kept_val = [(f"val_images_256/{p}", c) for p, c in val if c < 50]
    return {"train_keys": [p for p, _ in kept_train], "train_labels": np.asarray([c for _, c in kept_train]),
            "test_keys": [p for p, _ in kept_val], "test_labels": np.asarray([c for _, c in kept_val])}


def write_imagenet_val(path: str, *, classes: Sequence[int] = (0, 1, 60), per_class: int = 2,
                       layout: str = "index") -> dict:
    """ILSVRC12 val in class folders: ``<index>/`` (DivideMix) or ``<wnid>/`` (WebVision synsets order)."""
    labels = []
    for c in classes:
        folder = str(c) if layout == "index" else f"n{1440764 + c:08d}"
        for i in range(per_class):
            write_image(os.path.join(path, folder, f"ILSVRC2012_val_{c * 10 + i:08d}.JPEG"), size=12, seed=c + i)
            if c < 50:
                labels.append(c)
    return {"labels": np.asarray(sorted(labels))}


# ------------------------------------------------------------------ Web-Aircraft / Bird / Car

def write_webfg(root: str, *, classes: Sequence[str] = ("707-320", "A300B4", "Boeing_717"), per_class: int = 4,
                val_per_class: int = 1) -> dict:
    """WebFG-496 data set folder: train/<class>/*.jpg, val/<class>/*.jpg (+ a stray non-image file)."""
    train, val = [], []
    for label, cls in enumerate(sorted(classes)):
        for i in range(per_class):
            key = f"train/{cls}/{cls}_{i:04d}.jpg"
            write_image(os.path.join(root, key), size=12, seed=label * 10 + i)
            train.append((key, label))
        for i in range(val_per_class):
            key = f"val/{cls}/{cls}_val_{i:04d}.jpg"
            write_image(os.path.join(root, key), size=12, seed=500 + label * 10 + i)
            val.append((key, label))
    write_text(os.path.join(root, "train", sorted(classes)[0], "Thumbs.db"), ["not an image"])
    write_text(os.path.join(root, "train", sorted(classes)[0], ".DS_Store"), ["not an image"])
    return {"train_keys": [k for k, _ in train], "train_labels": np.asarray([y for _, y in train]),
            "test_keys": [k for k, _ in val], "test_labels": np.asarray([y for _, y in val])}


# ------------------------------------------------------------------ Food-101N

def write_food101n(root: str, *, classes: Sequence[str] = ("apple_pie", "baby_back_ribs", "baklava"),
                   per_class: int = 4, test_per_class: int = 1, test_root: str | None = None) -> dict:
    """Food-101N release (meta/classes.txt, meta/imagelist.tsv, meta/verified_*.tsv, images/) with the
    Food-101 release (meta/classes.txt, meta/test.txt, images/) in ``root/food-101``."""
    test_root = test_root or os.path.join(root, "food-101")
    ordered = sorted(classes)
    listing, train_labels = [], []
    for label, cls in enumerate(ordered):
        for i in range(per_class):
            name = f"{cls}/{label:02d}{i:030d}.jpg"
            write_image(os.path.join(root, "images", name), size=12, seed=label * 10 + i)
            listing.append(name)
            train_labels.append(label)
    write_text(os.path.join(root, "meta", "classes.txt"), ["class_name"] + list(reversed(ordered)))
    write_text(os.path.join(root, "meta", "imagelist.tsv"), ["class_name/key"] + listing)
    write_text(os.path.join(root, "meta", "verified_train.tsv"), ["class_name/key\tverification_label"]
               + [f"{n}\t1" for n in listing[:2]])
    write_text(os.path.join(root, "meta", "verified_val.tsv"), ["class_name/key\tverification_label"])
    tests, test_labels = [], []
    for label, cls in enumerate(ordered):
        for i in range(test_per_class):
            ident = f"{cls}/{100000 + label * 10 + i}"
            write_image(os.path.join(test_root, "images", ident + ".jpg"), size=12, seed=700 + label * 10 + i)
            tests.append(ident)
            test_labels.append(label)
    write_text(os.path.join(test_root, "meta", "classes.txt"), ordered)
    write_text(os.path.join(test_root, "meta", "test.txt"), tests)
    write_text(os.path.join(test_root, "meta", "train.txt"), [])
    return {"train_keys": [f"images/{n}" for n in listing], "train_labels": np.asarray(train_labels),
            "test_labels": np.asarray(test_labels)}


# ------------------------------------------------------------------ configs and runs

def make_cfg(scope: str = "stage1", **values):
    """A validated Config with test-friendly defaults (no workers, tiny model, no download)."""
    base = {"backbone": "test_resnet", "pretrained": False, "resolution": 32, "num_workers": 0,
            "batch_size": 4, "test_batch_size": 8, "epochs": 1}
    base.update(values)
    return resolve([("test", base)], scope, None)


def config_path(stage: str, name: str) -> str:
    return os.path.join(REPO_ROOT, "config", stage, f"{name}.yaml")


def stage_argv(stage: str, name: str, data_path: str, output_dir: str, *extra: str) -> list[str]:
    """The acceptance command line (docs/data.md) with the fast test settings."""
    return ["--config", config_path(stage, name), "--set", f"data_path={data_path}", "--backbone", "test_resnet",
            "--set", "resolution=32", "--epochs", "1", "--set", "pretrained=false", "--set", "num_workers=0",
            "--set", "batch_size=4", "--set", "test_batch_size=8", "--output_dir", output_dir, *extra]


def run_both_stages(name: str, data_path: str, output_dir: str, *extra: str) -> tuple[dict, dict]:
    """stage_1.py then stage_2.py (one epoch each) on a fixture, in process; returns both results."""
    import stage_1
    import stage_2

    first = stage_1.main(stage_argv("stage1", name, data_path, output_dir, *extra))
    second = stage_2.main(stage_argv("stage2", name, data_path, output_dir, *extra))
    return first, second
