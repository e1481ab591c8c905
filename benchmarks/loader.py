"""Input-pipeline cost per worker core: the training views before and after issue 16, in one run.

    python benchmarks/loader.py [--quick] [--out FILE | --write-docs]

The section is printed; ``--out FILE`` writes it into FILE, ``--write-docs`` into docs/performance.md (in
place of the earlier run's section, the rest of the page kept).

What a DataLoader worker does per batch is timed in this one process on one thread (workers run one
torch thread each): load the image (decode the JPEG for the file family), apply the training view(s),
and collate a batch of 32.  Time is CPU time of the process (``time.process_time``), so other jobs on
a shared machine slow the figures less than wall time would; samples/s per core = 1 / CPU seconds per
sample.  Every round times each variant once in a rotating order; a speed-up is the median over rounds
of old / new measured in the same round.

* old: the views as they were before issue 16 (reconstructed here from the current ops): ``ToTensor`` +
  ``Normalize`` in the worker, the strong view with timm's RandAugment (``rand-n2-m10-mstd101-p0.5``,
  translate 30 %, grey fill) and the tensor ``RandomErasing`` square.
* new: the current views: uint8 tensors (``PILToTensor``), the resize computed once for both stage-2
  views, the official RandAugment of docs/fidelity.md#ido-16-stage-2-views with its PIL cutout; the float conversion and normalisation run on the training device and are not
  counted here (on a GPU they cost microseconds per batch).

Families at 224 px: ``small`` = in-memory 32-px images up-sampled (the CIFAR family), ``large`` = JPEG
files of 500 x 375 px (a typical Clothing1M / WebVision photo) resized to 256 and cropped.  Image
content: crops of scikit-learn's two bundled photographs (natural images: JPEG decoding and Equalize
depend on content).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataloader import transforms as tfm  # noqa: E402
from dataloader.base import ArrayImages, FileImages, NoisyLabelDataset  # noqa: E402
from dataloader.ido_randaugment import IdoRandAugment  # noqa: E402
from benchmarks.docs_output import add_output_options, output_path, write_section as _write_section  # noqa: E402

MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
RESOLUTION, BATCH = 224, 32
GREY = (127, 127, 127)
# timm's pool as the project used it before issue 16 (FixMatch's pool without Cutout, 4-8-bit posterize)
OLD_RANDAUG_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeOriginal", "Solarize", "SolarizeAdd",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
                   "TranslateYRel")
BEGIN, END = "<!-- loader benchmark: begin -->", "<!-- loader benchmark: end -->"
DOCS_PAGE = os.path.join("docs", "performance.md")
CORES = 16
# Published GPU training throughput (images/s, mixed precision), NOT measured here: this machine has no GPU
# and no network, so the figures are approximate values recalled from the named public sources and could
# not be re-checked; verify them before relying on them, or measure with benchmarks/overhead.py --device cuda.
PUBLISHED_GPU = (
    ("ResNet-50", "about 3,000 on an A100, roughly 1.5-2x that on an H100",
     "NVIDIA DeepLearningExamples, ResNet-50 v1.5 for PyTorch, training performance tables (AMP); "
     "NVIDIA's H100 launch material for the H100/A100 ratio"),
    ("ViT-B/16", "about a third of ResNet-50's rate",
     "timm's published training benchmark CSVs (AMP, 224 px)"),
)


def _old(transform: T.Compose) -> T.Compose:
    """A current single view ending as before: ToTensor + Normalize instead of PILToTensor."""
    return T.Compose(transform.transforms[:-1] + [T.ToTensor(), T.Normalize(MEAN, STD)])


def _old_strong(strong: T.Compose, *, n: int = 2, m: int = 10, cutout: float = 0.15) -> T.Compose:
    """The strong view before issue 16: weak ops, timm RandAugment, ToTensor, RandomErasing, Normalize."""
    from timm.data.auto_augment import rand_augment_transform

    weak_ops = [op for op in strong.transforms if not isinstance(op, (IdoRandAugment, T.PILToTensor))]
    assert isinstance(weak_ops[0], T.Resize)
    policy = rand_augment_transform(f"rand-n{n}-m{m}-mstd101-p0.5", {"img_mean": GREY, "translate_pct": 0.3},
                                    transforms=list(OLD_RANDAUG_OPS))
    area = cutout * cutout
    erase = T.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=GREY[0] / 255)
    return T.Compose(weak_ops + [policy, T.ToTensor(), erase, T.Normalize(MEAN, STD)])


def variants(family: str) -> dict[str, tuple]:
    """{(view, pipeline): transform} for stage 1 and stage 2 (weak + strong) of ``family``."""
    common = dict(family=family, resolution=RESOLUTION, mean=MEAN, std=STD)
    stage1 = tfm.stage1_transform(native_size=32, **common)
    views = tfm.stage2_transform(**common)
    return {("stage 1", "old"): _old(stage1), ("stage 1", "new"): stage1,
            # before issue 16 each view resized the image on its own
            ("stage 2", "old"): tfm.TwoViews(_old(T.Compose([views.shared] + views.weak.transforms)),
                                             _old_strong(T.Compose([views.shared] + views.strong.transforms))),
            ("stage 2", "new"): views}


def photo_crops(count: int, *, width: int, height: int, seed: int = 0) -> list[Image.Image]:
    """``count`` random crops of scikit-learn's bundled photographs (427 x 640), resized to width x height."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        ch, cw = rng.integers(200, 420), rng.integers(260, 630)
        y, x = rng.integers(0, photo.shape[0] - ch + 1), rng.integers(0, photo.shape[1] - cw + 1)
        crop = Image.fromarray(photo[y:y + ch, x:x + cw])
        out.append(crop.resize((width, height), Image.Resampling.BILINEAR))
    return out


def image_sources(count: int, folder: str) -> dict[str, object]:
    small = ArrayImages(np.stack([np.asarray(im) for im in photo_crops(count, width=32, height=32)]))
    paths = []
    for i, im in enumerate(photo_crops(count, width=500, height=375, seed=1)):
        paths.append(os.path.join(folder, f"{i}.jpg"))
        im.save(paths[-1], quality=90)
    return {"small": small, "large": FileImages(paths)}


def worker_batches(dataset: NoisyLabelDataset, samples: int) -> None:
    """What one DataLoader worker does for ``samples`` items: load, transform, collate per batch."""
    n = len(dataset)
    for start in range(0, samples, BATCH):
        default_collate([dataset[i % n] for i in range(start, min(samples, start + BATCH))])


def measure(sources: dict, *, samples: int, rounds: int) -> dict[tuple, list[float]]:
    """CPU seconds per sample of every (family, view, pipeline), one value per round."""
    torch.set_num_threads(1)
    sets = {(family, *key): NoisyLabelDataset(images, np.zeros(len(images), dtype=np.int64), transform)
            for family, images in sources.items() for key, transform in variants(family).items()}
    names = list(sets)
    for name in names:  # warm-up: imports, caches, first decode
        worker_batches(sets[name], BATCH)
    times = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            torch.manual_seed(r)
            random.seed(r)
            start = time.process_time()
            worker_batches(sets[name], samples)
            times[name].append((time.process_time() - start) / samples)
    return times


def report(times: dict[tuple, list[float]], *, samples: int, rounds: int) -> tuple[str, dict]:
    """The markdown section and {(family, view): (old samples/s, new samples/s, speed-up)}."""
    from benchmarks.overhead import machine

    lines = [
        BEGIN,
        "## Input pipeline: samples per second per worker core (`benchmarks/loader.py`)",
        "",
        f"Measured by `python benchmarks/loader.py` on {machine(torch.device('cpu'))} (a machine shared with "
        f"other jobs), {time.strftime('%Y-%m-%d')}: CPU time of load + view(s) + "
        f"collate of batches of {BATCH}, {samples} samples a round, median of {rounds} rounds, variants in "
        f"rotating order.  224 px; old = ToTensor/Normalize in the worker and timm's RandAugment + tensor "
        "RandomErasing, each view resizing on its own; new = uint8 out of the worker, normalised on the device, "
        "one resize shared by the two views, IDO's own RandAugment (docs/fidelity.md#ido-16-stage-2-views).",
        "",
        f"| family | view | old samples/s/core | new samples/s/core | speed-up (median of rounds) | target | met "
        f"| new, {CORES} cores (implied) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for family, label in (("small", "CIFAR (in memory, 32 px up-sampled)"), ("large", "JPEG files 500x375")):
        for view in ("stage 1", "stage 2"):
            old, new = times[(family, view, "old")], times[(family, view, "new")]
            ratio = statistics.median(o / n for o, n in zip(old, new))
            rate_old, rate_new = 1 / statistics.median(old), 1 / statistics.median(new)
            target = "≥ 1.4" if view == "stage 2" else "-"
            met = ("yes" if ratio >= 1.4 else "no") if view == "stage 2" else "-"
            lines.append(f"| {label} | {view}{' (weak + strong)' if view == 'stage 2' else ''} | {rate_old:.0f} | "
                         f"{rate_new:.0f} | {ratio:.2f} | {target} | {met} | {CORES * rate_new:,.0f} |")
            summary[(family, view)] = (rate_old, rate_new, ratio)
    lines += [
        "",
        f"({CORES} cores implied = {CORES} x the per-core rate: {CORES} workers on {CORES} cores with nothing else "
        "running; the training process itself needs a core too, so a real 16-core machine delivers somewhat "
        "less.)",
        "",
        "GPU consumption for comparison: training images/s with mixed precision, **published figures, not "
        "measured here** (no GPU and no network on this machine: approximate values recalled from the "
        "sources named, not re-checked; `python benchmarks/overhead.py --device cuda --backbone resnet50 "
        "--resolution 224 --batch 128 --precision bf16 --channels_last` measures them).  A stage-2 sample "
        "costs two images (one per view), so the GPU consumes half its images/s in stage-2 samples/s.",
        "",
        "| model | published training images/s | source |",
        "|---|---|---|",
    ]
    for model, rate, source in PUBLISHED_GPU:
        lines.append(f"| {model} | {rate} | {source} |")
    lines += ["", END]
    return "\n".join(lines), summary


def write_section(section: str, path: str) -> None:
    """Replace the loader section of ``path`` (between the markers), or append it."""
    _write_section(section, path, BEGIN, END)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds (a smoke run)")
    add_output_options(parser, DOCS_PAGE)
    args = parser.parse_args(argv)
    samples, rounds = (BATCH, 2) if args.quick else (96, 7)
    with tempfile.TemporaryDirectory() as folder:
        sources = image_sources(64, folder)
        times = measure(sources, samples=samples, rounds=rounds)
    section, summary = report(times, samples=samples, rounds=rounds)
    print(section)
    out = output_path(args, DOCS_PAGE)
    if out:
        write_section(section, out)
    return {"times": times, "summary": summary}


if __name__ == "__main__":
    main()
