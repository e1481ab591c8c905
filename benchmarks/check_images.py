"""Speed of ``check_images: true`` (images decoded per second), on generated JPEGs of typical sizes.

    python benchmarks/check_images.py [--count 2000] [--workers 0 2]

Writes ``--count`` random-content JPEGs (quality 90) per size into a temporary folder and times
:func:`dataloader.image_check.find_unreadable` over them, the function the check runs on every file
data set.  Random pixels compress worse than photographs, so the files are larger and the decode
somewhat slower than on a real data set: the figures are a lower bound.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TQDM_DISABLE", "1")

from dataloader.base import FileImages  # noqa: E402
from dataloader.image_check import find_unreadable  # noqa: E402

# (width, height): Tiny-ImageNet, WebVision's resized 256-px images, a typical Clothing1M / web photo
SIZES = ((64, 64), (256, 256), (500, 375))


def write_jpegs(folder: str, count: int, size: tuple[int, int]) -> list[str]:
    rng = np.random.default_rng(0)
    # smooth random content (upsampled noise) compresses like a photograph rather than like pure noise
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize(size, Image.BILINEAR)
        path = os.path.join(folder, f"{size[0]}x{size[1]}_{i:05d}.jpg")
        img.save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as folder:
        for size in SIZES:
            images = FileImages(write_jpegs(folder, args.count, size))
            kb = sum(os.path.getsize(p) for p in images.paths) / len(images) / 1024
            for workers in args.workers:
                find_unreadable(FileImages(images.paths[:64]), workers=workers, quiet=True)  # warm the page cache
                start = time.perf_counter()
                bad = find_unreadable(images, workers=workers, quiet=True)
                seconds = time.perf_counter() - start
                assert not bad
                print(f"{size[0]}x{size[1]} JPEG ({kb:.0f} KB): {args.count / seconds:.0f} images/s with "
                      f"num_workers {workers}")


if __name__ == "__main__":
    main()
