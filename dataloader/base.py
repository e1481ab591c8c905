"""Data-set building blocks shared by every family: image sources, the noisy-label dataset, fingerprints."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dataloader.path_array import PathArray, RootedPaths


DIGEST_BYTES = 16  # content digests: blake2b, 128 bit


def content_digest(content: bytes) -> bytes:
    """The :data:`DIGEST_BYTES`-byte blake2b digest of ``content`` (equal digests: identical content)."""
    return hashlib.blake2b(content, digest_size=DIGEST_BYTES).digest()


class ArrayImages:
    """Images held in memory as one uint8 array of shape (N, H, W, 3) (HWC, RGB)."""

    def __init__(self, images: np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index])

    def load_with_digest(self, index: int) -> tuple[Image.Image, bytes]:
        """The image and :func:`content_digest` of its pixels."""
        pixels = np.ascontiguousarray(self.images[index])
        return Image.fromarray(pixels), content_digest(pixels.tobytes())

    def digest(self) -> str:
        """sha256 of the pixels: identifies the sample order of an in-memory set."""
        return hashlib.sha256(np.ascontiguousarray(self.images).data).hexdigest()

    def flat_features(self) -> np.ndarray:
        """(N, 3*H*W) float32 raw 0-255 pixels in CHW order (the input of the idn noise generator)."""
        return self.images.transpose(0, 3, 1, 2).reshape(len(self.images), -1).astype(np.float32)


class FileImages:
    """Images read from files, in a fixed order of paths (sorted by the family's loader), decoded with Pillow's
    defaults; its errors are Pillow's.  The type of every file image source (the counterpart of
    :class:`ArrayImages`); the data sets build :class:`dataloader.files.FileImagesWithDecoding`.

    ``paths`` and ``keys`` are held as :class:`~dataloader.path_array.PathArray` (two numpy arrays,
    no Python object per sample, so forked DataLoader workers do not copy them), ``paths`` as
    :class:`~dataloader.path_array.RootedPaths` (root + the keys) where all share a root; both index
    like a list of ``str``.
    """

    def __init__(self, paths: "Sequence[str] | PathArray", keys: "Sequence[str] | PathArray | None" = None):
        self.paths = paths if isinstance(paths, RootedPaths) else PathArray(paths)
        # keys identify samples independently of where the data set is mounted (relative paths)
        if keys is None:
            self.keys = self.paths.keys if isinstance(paths, RootedPaths) else self.paths
        else:
            self.keys = PathArray(keys)
        if len(self.keys) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.keys)} keys")

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as img:
            return img.convert("RGB")

    def load_with_digest(self, index: int) -> tuple[Image.Image, bytes]:
        """The image and :func:`content_digest` of its file's bytes, from one read of the file."""
        with open(self.paths[index], "rb") as f:
            content = f.read()
        with Image.open(io.BytesIO(content)) as img:
            return img.convert("RGB"), content_digest(content)

    def digest(self) -> str:
        """sha256 over ``key + "\\n"`` of every sample in order (the sample order in the fingerprint)."""
        return self.keys.sha256_lines()

    def flat_features(self) -> np.ndarray:
        raise NotImplementedError("instance-dependent noise needs in-memory images")


@dataclass
class RawData:
    """What a data-set family loads from disk, before noise and transforms.

    ``train_labels`` are the true labels (None where unknown, e.g. Clothing1M, WebVision);
    ``given_labels`` the labels a real-noise set ships (human or web labels; None for clean sets).
    Synthetic noise (sym/asym/idn) is drawn from ``train_labels``; ``noise_mode: real`` trains on
    ``given_labels``.  A family with its own noise model (CIFAR-80N's open-set classes) sets
    ``make_noisy(cfg, log) -> (noisy_labels, info)``.
    """

    name: str
    num_classes: int
    train_images: "ArrayImages | FileImages"
    train_labels: np.ndarray | None
    test_images: "ArrayImages | FileImages"
    test_labels: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    native_size: int = 32
    family: str = "small"  # "small": upsampled in-memory images; "large": resize/crop from files
    given_labels: np.ndarray | None = None
    make_noisy: Callable | None = None
    extra: dict = field(default_factory=dict)


class NoisyLabelDataset(Dataset):
    """Training/test items ``(transform(image), label, index)``; ``index`` is the dataset position."""

    def __init__(self, images, labels: np.ndarray, transform: Callable, clean_labels: np.ndarray | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.clean_labels = None if clean_labels is None else np.asarray(clean_labels, dtype=np.int64)
        self.transform = transform
        self.pretransformed = None  # (N, ...) tensor once :meth:`pretransform` has run

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        if self.pretransformed is not None:
            return self.pretransformed[index], int(self.labels[index]), index
        return self.transform(self.images.load(index)), int(self.labels[index]), index

    def pretransform(self, *, max_bytes: int) -> bool:
        """Apply the transform to every image once and keep the results, if they fit in ``max_bytes``.

        Only for a deterministic transform (evaluation): every epoch would compute the same tensors,
        and on a CPU the per-image PIL work costs about half the forward pass of a small model (digits:
        0.13 s against 0.2 s per evaluation).
        Only in-memory images are considered (a set read from files is too large to hold).  Returns
        whether the set is now held as tensors; its items are identical either way.
        """
        if not isinstance(self.images, ArrayImages) or len(self) == 0:
            return False
        first = self.transform(self.images.load(0))
        if not isinstance(first, torch.Tensor) or first.numel() * first.element_size() * len(self) > max_bytes:
            return False
        out = torch.empty((len(self), *first.shape), dtype=first.dtype)
        out[0] = first
        for i in range(1, len(self)):
            out[i] = self.transform(self.images.load(i))
        self.pretransformed = out
        return True


def fingerprint(*, dataset: str, sample_digest: str, noisy_labels: np.ndarray) -> str:
    """sha256 over the data set name, its sample order and its noisy labels.

    Stage 2 compares this with the fingerprint stored beside the stage-1 wrong events, so a
    wrong-event file is never applied to other samples or other labels (the Clothing1M bug IDO-B9).
    """
    h = hashlib.sha256()
    h.update(dataset.encode())
    h.update(sample_digest.encode())
    h.update(np.ascontiguousarray(noisy_labels, dtype="<i8").data)
    return h.hexdigest()
