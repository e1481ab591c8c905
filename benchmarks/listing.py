"""Own-data listing at ImageNet size: listing seconds and DataLoader-worker memory, before and after, one run.

Two measurements (issue 25 items 4 and 5), both side by side in one run on one machine:

1. **Worker memory.**  A forked DataLoader worker reads every one of ``--paths`` file paths once, as the
   training loop's ``FileImagesWithDecoding.load`` does (``paths[i]``).  Before: the paths as a list of ``str`` (what
   ``FileImages.paths`` was); after: :class:`dataloader.path_array.PathArray`.  Reported: the worker's
   growth of USS (private memory) and RSS from its start to after the last read, per 1M paths
   (``/proc/self/smaps_rollup``).
2. **Listing seconds.**  A tree ``train/<class>/<image>.jpg`` of ``--files`` empty files in ``--classes``
   class folders and a ``train.csv`` naming them are made in a temporary folder (removed afterwards); the
   data-set loaders of ``--baseline`` (a git revision, extracted with ``git archive``) and of this working
   tree list them, each in its own process (``imagefolder`` and ``csv``, seconds and peak RSS).  The files
   were just created, so the file system's caches are warm (a cold first listing is slower for both).

    python benchmarks/listing.py                     # 1M paths, 1.28M files, baseline main
    python benchmarks/listing.py --quick             # 100k paths, 50k files (a minute)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dataloader.path_array import PathArray  # noqa: E402


# ------------------------------------------------------------------------------------- worker memory

def _memory() -> tuple[int, int]:
    """(USS, RSS) of this process in bytes, from /proc/self/smaps_rollup."""
    fields = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return fields["Private_Clean"] + fields["Private_Dirty"], fields["Rss"]


class _ReadAll:
    """Item ``chunk`` reads ``paths[i]`` for every i in the chunk; item ``None`` returns the memory growth."""

    def __init__(self, paths):
        self.paths = paths
        self.start = None

    def __getitem__(self, chunk):
        if self.start is None:
            self.start = _memory()
        if chunk is None:
            uss, rss = _memory()
            return uss - self.start[0], rss - self.start[1]
        return sum(len(self.paths[i]) for i in chunk)


def worker_growth(paths, chunk: int = 65536) -> tuple[int, int]:
    """(USS, RSS) growth in bytes of one forked DataLoader worker that reads every path once."""
    import torch.utils.data as tud

    n = len(paths)
    order = [np.arange(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    dataset = _ReadAll(paths)
    # the first item only takes the starting measurement (an empty chunk), then every path, then the growth
    loader = tud.DataLoader(dataset, batch_size=None, sampler=[np.arange(0)] + order + [None], num_workers=1,
                            multiprocessing_context="fork")
    *_, growth = list(loader)
    return tuple(int(g) for g in growth)


def synthetic_paths(n: int, classes: int = 1000) -> list[str]:
    return [f"/data/imagenet/train/n{i % classes:08d}/n{i % classes:08d}_{i:07d}.JPEG" for i in range(n)]


# ----------------------------------------------------------------------------------------- listing

LISTING_CHILD = r"""
import json, os, pickle, resource, sys, time
sys.path.insert(0, os.getcwd())
from tests.fixtures_data import make_cfg
from dataloader import own
dataset, root = sys.argv[1], sys.argv[2]
cfg = make_cfg(dataset=dataset, data_path=root, noise_mode="real")
loader = own.load_imagefolder if dataset == "imagefolder" else own.load_csv
start = time.perf_counter()
raw = loader(cfg, log=lambda m: None)
seconds = time.perf_counter() - start
images = raw.train_images
print(json.dumps({"seconds": seconds, "n": len(images), "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  * 1024, "digest": images.digest(), "pickled": len(pickle.dumps((images, raw.given_labels)))}))
"""


def make_tree(root: str, files: int, classes: int) -> None:
    per = -(-files // classes)
    rows = ["path,label"]
    made = 0
    for c in range(classes):
        folder = os.path.join(root, "train", f"n{c:08d}")
        os.makedirs(folder)
        for i in range(min(per, files - made)):
            name = f"n{c:08d}_{i:06d}.jpg"
            open(os.path.join(folder, name), "wb").close()
            rows.append(f"train/n{c:08d}/{name},n{c:08d}")
        made += min(per, files - made)
    with open(os.path.join(root, "train.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")


def listing(code_dir: str, dataset: str, root: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LISTING_CHILD, dataset, root], cwd=code_dir, capture_output=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    if out.returncode:
        raise SystemExit(f"listing with the code in {code_dir} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _git(*args) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=1_000_000, help="paths read by the DataLoader worker")
    parser.add_argument("--files", type=int, default=1_280_000, help="empty image files listed")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--baseline", default="main", help="git revision measured as 'before'")
    parser.add_argument("--tmp", default=None, help="folder for the generated tree (default: the system's)")
    parser.add_argument("--quick", action="store_true", help="100k paths, 50k files, 100 classes")
    args = parser.parse_args(argv)
    if args.quick:
        args.paths, args.files, args.classes = 100_000, 50_000, 100

    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.python_version()}, commit "
          f"{_git('rev-parse', '--short', 'HEAD')}{' (+ uncommitted changes)' if _git('status', '--porcelain') else ''}"
          f", baseline {args.baseline} = {_git('rev-parse', '--short', args.baseline)}")

    paths = synthetic_paths(args.paths)
    as_list = list(paths)
    as_array = PathArray(paths)
    del paths
    per_million = 1e6 / args.paths / 2 ** 20
    growth = {"list of str (before)": worker_growth(as_list), "PathArray (after)": worker_growth(as_array)}
    print(f"\n### Worker memory growth after reading {args.paths:,} paths once (one forked DataLoader worker)\n")
    print("| paths held as | USS growth | RSS growth | per 1M paths (USS) | held in the main process |")
    print("|---|---|---|---|---|")
    held = {"list of str (before)": sum(sys.getsizeof(p) for p in as_list) + sys.getsizeof(as_list),
            "PathArray (after)": as_array.nbytes}
    for name, (uss, rss) in growth.items():
        print(f"| {name} | {uss / 2 ** 20:.1f} MB | {rss / 2 ** 20:.1f} MB | {uss * per_million:.1f} MB | "
              f"{held[name] / 2 ** 20:.0f} MB |")
    del as_list, as_array

    tmp = tempfile.mkdtemp(prefix="listing_bench_", dir=args.tmp)
    baseline_dir = os.path.join(tmp, "baseline_code")
    try:
        os.makedirs(baseline_dir)
        archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline_dir], input=archive, check=True)
        data = os.path.join(tmp, "data")
        start = time.perf_counter()
        make_tree(data, args.files, args.classes)
        print(f"\n### Listing {args.files:,} files in {args.classes} class folders (made in {time.perf_counter() - start:.0f} s,"
              " warm caches)\n")
        print("| loader | code | seconds | peak RSS of the process | sample digest | pickled result (DDP broadcast) |")
        print("|---|---|---|---|---|---|")
        for dataset in ("imagefolder", "csv"):
            results = {}
            for name, code in (("before", baseline_dir), ("after", REPO)):
                r = results[name] = listing(code, dataset, data)
                print(f"| {dataset} | {name} | {r['seconds']:.1f} | {r['maxrss'] / 2 ** 20:.0f} MB | "
                      f"{r['digest'][:12]} | {r['pickled'] / 2 ** 20:.0f} MB |", flush=True)
            if results["before"]["digest"] != results["after"]["digest"]:
                print(f"WARNING: {dataset}: the sample digest differs before and after")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
