"""Helpers shared by the file-based families: listing image folders, reading list files, clear errors.

Every problem a user can fix (a missing folder or list file, a list of another length, an image that
cannot be decoded) raises :class:`~utils.errors.DataError` with one line naming the path and what
was expected there.  Folder listings are sorted by name (plain code-point order), so the dataset
index of every image is the same on every machine (IDO.md B7).
"""
from __future__ import annotations

import io
import os
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from dataloader.base import FileImages, content_digest
from dataloader.decode import Decoding, ImageTooLarge, decode_file
from utils.errors import DataError

# torchvision's IMG_EXTENSIONS (what DatasetFolder accepts), compared case-insensitively
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# ImageNet statistics (WebVision everywhere, B10; ACTO's web and food sets)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def is_image_name(name: str) -> bool:
    """A visible file name with a standard image extension."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


class UnreadableImage(DataError):
    """An image file that cannot be read: ``path``, the ``reason`` (``cannot be decoded: ...`` or
    ``too large: WxH pixels ...``, what ``check_images`` lists per file) and the one line for the user."""

    # one positional argument: torch re-raises a DataLoader worker's exception as ``type(message)``
    def __init__(self, message: str, path: str = "", reason: str = ""):
        super().__init__(message)
        self.path, self.reason = path, reason


CHECK_HINT = "--set check_images=true lists every unreadable file before training"


class ImageFiles(FileImages):
    """:class:`FileImages` decoded as ``decoding`` says (:mod:`dataloader.decode`: ``official`` for the paper
    data sets, ``viewer`` for own data), whose read errors name the file (DataError, not a PIL traceback)."""

    def __init__(self, paths: Sequence[str], keys: Sequence[str] | None = None, *, decoding: Decoding = Decoding()):
        super().__init__(paths, keys)
        self.decoding = decoding

    def load(self, index: int) -> Image.Image:
        return self._decode(self.paths[index], self.paths[index])

    def load_with_digest(self, index: int) -> tuple[Image.Image, bytes]:
        """The image and :func:`content_digest` of its file's bytes, from one read of the file (the
        report's evaluation pass finds identical files under different labels with it)."""
        path = self.paths[index]
        try:
            with open(path, "rb") as f:
                content = f.read()
        except FileNotFoundError:
            return self._decode(path, path), b""  # raises load's line for a missing file
        return self._decode(io.BytesIO(content), path), content_digest(content)

    def _decode(self, source, path: str) -> Image.Image:
        """``source`` (the file ``path`` or its bytes) decoded under ``decoding``; errors name ``path``."""
        try:
            return decode_file(source, self.decoding)
        except FileNotFoundError:
            raise UnreadableImage(f"image {path} does not exist (it was there when the data set was listed; "
                                  f"{CHECK_HINT})", path=path, reason="missing") from None
        except ImageTooLarge as err:
            raise UnreadableImage(
                f"image {path} is {err.reason} (config key max_image_pixels: --set "
                f"max_image_pixels={err.width * err.height} reads it, 0 reads any size; {CHECK_HINT})",
                path=path, reason=err.reason) from None
        except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
            reason = f"{type(err).__name__}: {err}".replace("\n", " ")
            raise UnreadableImage(f"cannot decode image {path} ({reason}); replace or delete the file ({CHECK_HINT})",
                                  path=path, reason=f"cannot be decoded: {reason}") from None

    def flat_features(self) -> np.ndarray:
        """(N, H*W*3) uint8 raw pixels, HWC order (the idn generator's input for Tiny-ImageNet, IDO.md §3.2).

        Reads every image once (only when idn noise is generated; the result is cached as labels).
        """
        first = np.asarray(self.load(0))
        out = np.empty((len(self), first.size), dtype=np.uint8)
        for i in range(len(self)):
            pixels = first if i == 0 else np.asarray(self.load(i))
            if pixels.shape != first.shape:
                raise DataError(f"idn noise needs images of one size: {self.paths[i]} is {pixels.shape[1]}x"
                                f"{pixels.shape[0]}, {self.paths[0]} is {first.shape[1]}x{first.shape[0]}")
            out[i] = pixels.reshape(-1)
        return out


def make_images(root: str, keys: Sequence[str]) -> ImageFiles:
    """Images ``root/key`` identified by their relative ``key`` (independent of the mount point)."""
    return ImageFiles([os.path.join(root, k) for k in keys], keys=list(keys))


def require_dir(path: str, message: str) -> None:
    if not os.path.isdir(path):
        raise DataError(message)


def list_images(folder: str, *, recursive: bool = False) -> tuple[list[str], int]:
    """Image files in ``folder`` as sorted paths relative to it, and the number of entries skipped.

    Hidden entries and files without an image extension are skipped (counted); sub-folders are
    entered only when ``recursive``.
    """
    found: list[str] = []
    skipped = 0
    if recursive:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = os.path.relpath(dirpath, folder)
            for name in filenames:
                if is_image_name(name):
                    found.append(name if rel == "." else os.path.join(rel, name))
                else:
                    skipped += 1
    else:
        for entry in os.scandir(folder):
            if entry.is_file() and is_image_name(entry.name):
                found.append(entry.name)
            else:
                skipped += 1
    return sorted(found), skipped


def class_folders(folder: str) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder``."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def class_tree(root: str, split: str, classes: list[str] | None, *,
               unknown_class: Callable[[str], str]) -> tuple[list[str], list[str], list[int], int]:
    """A DatasetFolder-style split ``root/split/<class>/...``: ``(classes, keys, labels, skipped)``.

    ``classes`` None: this split's sorted class folders are the classes (training split); otherwise a
    folder not in ``classes`` raises :class:`DataError` with ``unknown_class(folder)``.  ``keys`` are
    ``split/<class>/<path below it>`` (images found recursively, sorted), ``labels`` their class index,
    ``skipped`` the hidden or non-image entries passed over.
    """
    base = os.path.join(root, split)
    folders = class_folders(base)
    classes = folders if classes is None else classes
    index = {c: i for i, c in enumerate(classes)}
    keys: list[str] = []
    labels: list[int] = []
    skipped = 0
    for folder in folders:
        if folder not in index:
            raise DataError(unknown_class(folder))
        names, skip = list_images(os.path.join(base, folder), recursive=True)
        skipped += skip
        keys += [f"{split}/{folder}/{n}" for n in names]
        labels += [index[folder]] * len(names)
    return classes, keys, labels, skipped


def read_lines(path: str) -> list[str]:
    """Non-empty, stripped lines of a text list file."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text file") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror}") from None


def parse_key_labels(path: str, lines: Iterable[str] | None = None, *, num_classes: int | None = None
                     ) -> list[tuple[str, int]]:
    """``"relative/path label"`` lines -> ``[(key, label)]``; errors name the file and line."""
    pairs = []
    for number, line in enumerate(read_lines(path) if lines is None else lines, start=1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path} line {number}: expected 'relative/path label', got {line[:80]!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise DataError(f"{path} line {number}: label {label} outside 0..{num_classes - 1}")
        pairs.append((parts[0], label))
    return pairs


def check_files_exist(root: str, keys: Sequence[str], *, listed_in: str, hint: str) -> None:
    """Raise DataError naming the first of ``root/key`` that is missing (and how many are)."""
    missing = [k for k in keys if not os.path.isfile(os.path.join(root, k))]
    if missing:
        first = os.path.join(root, missing[0])
        raise DataError(f"{len(missing)} of the {len(keys)} images listed in {listed_in} are missing, e.g. "
                        f"{first}; {hint}")


def log_skipped(log: Callable[[str], None], name: str, skipped: int, where: str) -> None:
    if skipped:
        log(f"{name}: skipped {skipped} hidden or non-image entries in {where}")
