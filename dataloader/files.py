"""Helpers shared by the file-based families: listing image folders, reading list files, clear errors.

Every problem a user can fix (a missing folder or list file, a list of another length, an image that
cannot be decoded) raises :class:`~utils.core.errors.DataError` with one line naming the path and what
was expected there.  Folder listings are sorted by name (plain code-point order), so the dataset
index of every image is the same on every machine (docs/fidelity.md IDO-B7).
"""
from __future__ import annotations

import io
import os
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

from dataloader.base import FileImages, content_digest
from dataloader.decode import Decoding, ImageTooLarge, decode_file
from dataloader.names import is_utf8, named, refuse_non_utf8, shown
from dataloader.path_array import PathArray, RootedPaths
from utils.core.distributed import on_rank0_then_share
from utils.core.errors import DataError

# torchvision's IMG_EXTENSIONS (what DatasetFolder accepts), compared case-insensitively
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# ImageNet statistics (WebVision everywhere, IDO-B10; ACTO's web and food sets)

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


class FileImagesWithDecoding(FileImages):
    """:class:`FileImages` decoded as ``decoding`` says (:mod:`dataloader.decode`: ``official`` for the paper
    data sets, ``viewer`` for own data), whose read errors name the file (DataError, not a PIL traceback): the
    images of every file data set."""

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
        """(N, H*W*3) uint8 raw pixels, HWC order (the idn generator's input for Tiny-ImageNet, docs/fidelity.md#ido-32-tiny-imagenet).

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


def make_images(root: str, keys: "Sequence[str] | PathArray") -> FileImagesWithDecoding:
    """Images ``root/key`` identified by their relative ``key`` (independent of the mount point)."""
    return FileImagesWithDecoding(RootedPaths(root, keys))


def class_name(folder: str) -> str:
    """The class a folder (or CSV label) names: Unicode NFC, so NFD and NFC spellings are one class."""
    return unicodedata.normalize("NFC", folder)


def _skip_kind(name: str, *, is_dir: bool = False) -> str:
    if name.startswith("."):
        return "hidden"
    if is_dir:
        return "folder"
    ext = os.path.splitext(name)[1].lower()
    return ext if ext else "no extension"


class SkippedFiles:
    """Entries passed over while listing, counted by kind (extension, ``hidden``, ...) with a few examples."""

    EXAMPLES = 3

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.only_files = True

    def add(self, kind: str, path: str, *, is_file: bool = True) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.EXAMPLES or path < shown[-1]:  # keep the first few in sorted order
            shown.append(path)
            shown.sort()
            del shown[self.EXAMPLES:]
        self.only_files = self.only_files and is_file

    def merge(self, other: "SkippedFiles") -> None:
        for kind, count in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + count
            self.examples[kind] = sorted(self.examples.get(kind, []) + other.examples[kind])[:self.EXAMPLES]
        self.only_files = self.only_files and other.only_files

    def __len__(self) -> int:
        return sum(self.counts.values())

    def kinds(self, *, examples: bool = True) -> str:
        """``.gif 1 (a/b.gif), .heic 1 (c/d.heic)``: kinds by count (most first), then name."""
        order = sorted(self.counts, key=lambda k: (-self.counts[k], k))
        return ", ".join(f"{k} {self.counts[k]}" + (f" ({', '.join(self.examples[k])})" if examples else "")
                         for k in order)

    def summary(self) -> str:
        """``skipped 2 files: .gif 1 (a/b.gif), .heic 1 (c/d.heic)`` (empty when nothing was skipped)."""
        if not self:
            return ""
        return f"skipped {len(self)} {'files' if self.only_files else 'entries'}: {self.kinds()}"


class FolderWalk:
    """Lists image files below folders, following symbolic links but entering no real folder twice.

    Every real folder entered (or claimed with :meth:`claim`) is recorded by ``(st_dev, st_ino)``; a
    symbolic link that leads to a recorded folder (a loop such as ``train/3/up -> ..``, or a second
    route to a class folder) is not entered and is noted in :attr:`revisits`.  Links whose target does
    not exist are collected in :attr:`dangling` (see :meth:`raise_dangling`); image files and folders
    whose names are not UTF-8 in :attr:`non_utf8` (not listed, not entered; :meth:`raise_non_utf8`,
    :mod:`dataloader.names`).  Paths in the examples and notes are relative to ``base`` (the listed split
    or folder), skipped ones shown with undecodable bytes escaped.
    """

    def __init__(self, base: str):
        self.base = base
        self.visited: dict[tuple[int, int], str] = {}
        self.revisits: list[str] = []
        self.dangling: list[str] = []
        self.non_utf8: list[str] = []

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.base)

    def claim(self, path: str) -> str | None:
        """Record the real folder at ``path``; return the path it was first recorded under, if any."""
        st = os.stat(path)
        first = self.visited.setdefault((st.st_dev, st.st_ino), path)
        return None if first == path else first

    def images(self, folder: str, skipped: SkippedFiles, *, recursive: bool, claimed: bool = False) -> list[str]:
        """Sorted image paths relative to ``folder``; other entries are added to ``skipped``."""
        if not claimed and (first := self.claim(folder)) is not None:
            self.revisits.append(f"{self.rel(folder)} -> {self.rel(first)}")
            return []
        found: list[str] = []
        stack = [("", folder)]
        while stack:
            prefix, path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError as err:
                raise DataError(f"cannot list {path}: {err.strerror}") from None
            for entry in entries:
                name = entry.name
                if entry.is_file():  # follows symbolic links; no stat for a plain file (most entries)
                    if not is_image_name(name):
                        skipped.add(_skip_kind(name), shown(self.rel(entry.path)))
                    elif is_utf8(name):
                        found.append(prefix + name)
                    else:
                        self.non_utf8.append(self.rel(entry.path))
                elif entry.is_dir():
                    if name.startswith(".") or not recursive:
                        skipped.add(_skip_kind(name, is_dir=True), shown(self.rel(entry.path)), is_file=False)
                    elif not is_utf8(name):  # every image below it would carry the name
                        self.non_utf8.append(self.rel(entry.path) + os.sep)
                    elif (first := self.claim(entry.path)) is not None:
                        self.revisits.append(f"{self.rel(entry.path)} -> {self.rel(first)}")
                    else:
                        stack.append((prefix + name + os.sep, entry.path))
                elif entry.is_symlink() and not os.path.exists(entry.path):
                    self.dangling.append(self.rel(entry.path))
                else:  # a socket, fifo or device
                    skipped.add("other", shown(self.rel(entry.path)), is_file=False)
        found.sort()
        return found

    def raise_dangling(self, name: str) -> None:
        """One DataError line naming every symbolic link whose target does not exist."""
        if self.dangling:
            raise DataError(f"{name}: {len(self.dangling)} symbolic links in {shown(self.base)} point to nothing: "
                            f"{named(sorted(self.dangling), show=shown)}; remove them or restore their targets")

    def raise_non_utf8(self, name: str = "") -> None:
        """One DataError line (starting ``name:`` where given) naming every image file or folder whose name is
        not UTF-8 (dataloader/names.py)."""
        refuse_non_utf8(self.non_utf8, where=self.base, prefix=f"{name}: " if name else "")

    def log_revisits(self, log: Callable[[str], None], name: str) -> None:
        if self.revisits:
            log(f"{name}: warning: {len(self.revisits)} symbolic links in {shown(self.base)} lead to folders already "
                f"listed, not entered again (a loop or a second route): {shown(', '.join(sorted(self.revisits)))}")


def list_images(folder: str, *, recursive: bool = False, dangling: str = "error") -> tuple[list[str], int]:
    """Image files in ``folder`` as sorted paths relative to it, and the number of entries skipped.

    Hidden entries and files without an image extension are skipped (counted); sub-folders are
    entered only when ``recursive`` (following symbolic links, no real folder twice).  A symbolic link
    to nothing raises DataError (``dangling="error"``) or is listed like a file (``"list"``: its read
    fails later, e.g. predict.py's error row).  An image file or folder whose name is not UTF-8 raises
    DataError naming all of them (:mod:`dataloader.names`).
    """
    walk, skipped = FolderWalk(folder), SkippedFiles()
    found = walk.images(folder, skipped, recursive=recursive)
    walk.raise_non_utf8()
    if dangling == "error":
        walk.raise_dangling(folder)
    else:
        found = sorted(found + [n for n in walk.dangling if is_image_name(os.path.basename(n))])
    return found, len(skipped)


def class_folders(folder: str) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder``."""
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def loose_images(folder: str) -> list[str]:
    """Sorted names of the image files directly in ``folder`` (a split folder: they are in no class folder)."""
    return sorted(e.name for e in os.scandir(folder) if is_image_name(e.name) and e.is_file())


@dataclass
class ClassTree:
    """One listed split ``root/split/<class>/...`` (see :func:`class_tree`)."""

    classes: list[str]
    keys: list[str]
    labels: list[int]
    skipped: SkippedFiles  # all entries passed over in the split
    per_class: dict[str, tuple[int, SkippedFiles]]  # class -> (images, skipped entries) of this split
    walk: FolderWalk
    loose: list[str]  # image files directly in the split folder, in no class folder (not listed), sorted


def class_tree(root: str, split: str, classes: list[str] | None, *,
               unknown_class: Callable[[str], str], name: str = "data") -> ClassTree:
    """A DatasetFolder-style split ``root/split/<class>/...``.

    ``classes`` None: this split's sorted class folders are the classes (training split); otherwise a
    folder not in ``classes`` raises :class:`DataError` with ``unknown_class(folder)``.  Folder names are
    matched as :func:`class_name` (NFC).  ``keys`` are ``split/<folder>/<path below it>`` (the names on
    disk; images found recursively, sorted), ``labels`` their class index.  The data root, the split and
    every class folder are claimed before any is walked, so a link back into the tree is never entered.
    A symbolic link to nothing, and image files or folders (class folders included) whose names are not
    UTF-8, raise DataError (one line naming all of them, starting ``name:``; names first).  Image files
    directly in the split folder are not samples: ``loose`` names them.  Paths in messages are relative
    to ``root`` (``train/gifs/x.gif``).
    """
    base = os.path.join(root, split)
    walk = FolderWalk(root)
    folders = class_folders(base)
    # a class folder whose name is not UTF-8 is not entered; it is refused below, with the files of the others
    walk.non_utf8 += [f"{split}{os.sep}{f}{os.sep}" for f in folders if not is_utf8(f)]
    folders = [f for f in folders if is_utf8(f)]
    classes = [class_name(f) for f in folders] if classes is None else classes
    index = {c: i for i, c in enumerate(classes)}
    for top in (root, base):
        walk.claim(top)
    keys: list[str] = []
    labels: list[int] = []
    total = SkippedFiles()
    per_class: dict[str, tuple[int, SkippedFiles]] = {}
    owners = {}
    for folder in folders:
        if class_name(folder) not in index:
            raise DataError(unknown_class(folder))
        owners[folder] = walk.claim(os.path.join(base, folder))
    for folder in folders:
        skipped = SkippedFiles()
        names = []
        if owners[folder] is None:
            names = walk.images(os.path.join(base, folder), skipped, recursive=True, claimed=True)
        else:
            walk.revisits.append(f"{walk.rel(os.path.join(base, folder))} -> {walk.rel(owners[folder])}")
        keys += [f"{split}/{folder}/{n}" for n in names]
        labels += [index[class_name(folder)]] * len(names)
        total.merge(skipped)
        per_class[class_name(folder)] = (len(names), skipped)
    walk.raise_non_utf8(name)
    walk.raise_dangling(name)
    return ClassTree(classes, keys, labels, total, per_class, walk, loose_images(base))


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
    """Raise DataError naming the first of ``root/key`` that is missing (and how many are).

    Checked once per job: rank 0 lists the folders (:func:`existing_files`, one ``scandir`` per folder
    instead of one ``stat`` per image: a paper list names a million files) and the other ranks receive
    its verdict, as own data's listing does."""
    def missing() -> tuple[int, int] | None:  # (how many, index of the first)
        exists = existing_files([os.path.normpath(os.path.join(os.path.abspath(root), k)) for k in keys])
        absent = [i for i, present in enumerate(exists) if not present]
        return (len(absent), absent[0]) if absent else None

    verdict = on_rank0_then_share(missing)
    if verdict is not None:
        count, first = verdict
        raise DataError(f"{count} of the {len(keys)} images listed in {listed_in} are missing, e.g. "
                        f"{os.path.join(root, keys[first])}; {hint}")


def existing_files(paths: Sequence[str], *, listed_from: int = 8) -> list[bool]:
    """``os.path.isfile`` of every absolute normalised path, by listing folders instead of one stat per path.

    A folder named by at least ``listed_from`` paths is listed once (``os.scandir``, which needs a
    ``stat`` only for symbolic links); the others are checked one by one.  A name not found in its
    folder's listing is checked with ``isfile`` too (e.g. a case-insensitive file system).
    """
    by_folder: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        by_folder.setdefault(path.rpartition(os.sep)[0], []).append(i)
    exists = [False] * len(paths)
    for folder, rows in by_folder.items():
        names: set[str] = set()
        if len(rows) >= listed_from:
            try:
                with os.scandir(folder or os.sep) as entries:
                    names = {e.name for e in entries if e.is_file()}
            except OSError:
                pass
        for i in rows:
            exists[i] = paths[i].rpartition(os.sep)[2] in names or os.path.isfile(paths[i])
    return exists


def log_skipped(log: Callable[[str], None], name: str, skipped: "int | SkippedFiles", where: str) -> None:
    """One line about the entries a listing passed over (by kind with examples, or a bare count)."""
    if isinstance(skipped, SkippedFiles):
        if skipped:
            log(f"{name}: {skipped.summary()} in {where} (hidden or not an image: {', '.join(IMAGE_EXTENSIONS)})")
    elif skipped:
        log(f"{name}: skipped {skipped} hidden or non-image entries in {where}")
