"""``check_images: true``: decode every image file of a run once, before training, and list all unreadable ones.

Without it, one corrupt JPEG (WebVision and Clothing1M ship some) stops a run when an epoch first
reaches it, possibly hours in, and only that one file is named.  The check works on any image source
read from files (:class:`~dataloader.base.FileImages`, the container of every file data set), so a new
file data set is covered without code of its own; in-memory sets have nothing to check.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import torch.distributed as dist
from torch.utils.data import Dataset

from dataloader.base import FileImages
from dataloader.files import UnreadableImage
from utils.core.errors import DataError
from utils.core.io import save_text
from utils.core.progress import progress
from utils.core.signals import DataLoader

SHOWN = 10  # paths named in the error line; the full list goes to bad_images.txt


class _Decode(Dataset):
    """Item ``i``: ``None`` if image ``indices[i]`` decodes to RGB, else ``(path, reason)``."""

    def __init__(self, images: FileImages, indices: Sequence[int]):
        self.images, self.indices = images, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[str, str] | None:
        index = self.indices[i]
        try:
            self.images.load(index)  # the same decode (to RGB) as training does
            return None
        except Exception as err:  # any reason (missing, truncated, too large, not an image): the user needs them all
            return self.images.paths[index], unreadable_reason(err)


def unreadable_reason(err: Exception) -> str:
    """``cannot be decoded: <reason>``, ``too large: WxH pixels ...`` or ``missing`` for a failed load."""
    if isinstance(err, UnreadableImage):
        return err.reason
    if isinstance(err, FileNotFoundError):
        return "missing"
    return f"cannot be decoded: {type(err).__name__}: {err}".replace("\n", " ")


def _as_list(batch: list) -> list:
    return batch


def find_unreadable(images: FileImages, *, indices: Sequence[int] | None = None, workers: int = 0,
                    desc: str = "check images", quiet: bool = False) -> list[tuple[str, str]]:
    """``(path, reason)`` of the images (all, or those at ``indices``) that cannot be read, in index order.

    Decoding runs in ``workers`` DataLoader processes (0: in this process), with a progress bar.
    """
    indices = range(len(images)) if indices is None else indices
    loader = DataLoader(_Decode(images, indices), batch_size=32, num_workers=workers, collate_fn=_as_list)
    bad: list[tuple[str, str]] = []
    for batch in progress(loader, desc=desc, leave=False, dynamic_ncols=True, **({"disable": True} if quiet else {})):
        bad += [item for item in batch if item is not None]
    return bad


def file_image_sources(datasets: Mapping[str, object]) -> dict[str, FileImages]:
    """The image sources read from files among ``{name: NoisyLabelDataset}`` (by ``.images``)."""
    return {name: ds.images for name, ds in datasets.items() if isinstance(getattr(ds, "images", None), FileImages)}


def check_images(datasets: Mapping[str, object], *, workers: int, report_path: str,
                 log: Callable[[str], None], rank: int = 0, world_size: int = 1) -> None:
    """Decode every file image of ``datasets`` once; raise DataError listing all unreadable files, each
    with its reason (``cannot be decoded: ...``, ``too large: WxH pixels ...``, ``missing``).

    Under torchrun each process decodes every ``world_size``-th image and the lists are gathered, so
    the check takes 1/world_size of the time and every process raises the same error.  The full list
    (one path per line) is written by rank 0 to ``report_path``.
    """
    sources = file_image_sources(datasets)
    if not sources:
        log("check_images: the data set is held in memory; no image files to check")
        return
    total = sum(len(images) for images in sources.values())
    start = time.perf_counter()
    bad: list[tuple[str, str]] = []
    for name, images in sources.items():
        bad += find_unreadable(images, indices=range(rank, len(images), world_size), workers=workers,
                               desc=f"check images ({name})", quiet=rank != 0)
    if world_size > 1:
        gathered: list = [None] * world_size
        dist.all_gather_object(gathered, bad)
        bad = sorted({tuple(item) for part in gathered for item in part})
    seconds = time.perf_counter() - start
    log(f"check_images: decoded {total} images in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} images/s, "
        f"{max(workers, 1)} process(es) per rank), {len(bad)} unreadable")
    if bad:
        if rank == 0:
            save_text("".join(f"{path}\t{reason}\n" for path, reason in bad), report_path)
        more = f" (+{len(bad) - SHOWN} more)" if len(bad) > SHOWN else ""
        shown = ", ".join(f"{path} ({reason})" for path, reason in bad[:SHOWN])
        raise DataError(f"{len(bad)} of {total} images cannot be read: {shown}{more}; full list (path, tab, reason) "
                        f"in {report_path}; replace or delete the files (and their entries in the list files), or "
                        "raise max_image_pixels for those too large")
