"""Predict the class of new images with a model exported by stage 2 or ACTO.

    python predict.py --model stage2/<tag>_class_model.pt IMAGE_OR_FOLDER... [--out predictions.csv]

Folders are searched recursively for image files (hidden entries skipped), in sorted order.  Images are
decoded as the model's training decoded its images (recorded in the model file: ``viewer`` for own data,
``official`` for the paper sets; :mod:`dataloader.decode`).  Writes a CSV (standard output by default)
with ``path, predicted_label, prob``, the top 5 (``top{k}_label``, ``top{k}_prob``) and ``error``.  A file
that is not a readable image, is above ``--max_image_pixels``, or a named path that does not exist gets a
row with only its ``error`` and a line on standard error; the other files are still predicted, and the
exit status is 1.  ``--model`` and ``--out`` are checked before anything is predicted: a missing or
foreign model file, an ``--out`` that cannot be written (a directory, a path under a file, a folder
without write permission), one that is an input (named, found in an input folder, or the same file under
another path) or an existing file that is not a CSV predict.py wrote (:func:`written_by_predict`): one
line, exit status 2.  The CSV is written to a temporary name and renamed.
A file or folder name that is not UTF-8 is refused in one line (exit status 2) before anything is predicted,
as the training listing refuses it (dataloader/names.py).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import sys
from typing import Sequence

import torch
from torch.utils.data import Dataset

from dataloader.decode import DEFAULT_MAX_PIXELS, Decoding, ImageTooLarge, pixel_limit
from dataloader.files import list_images
from dataloader.inference import input_decoding, input_normaliser, input_transform, load_input
from dataloader.names import is_utf8, refuse_non_utf8
from model.export import load_exported
from utils.training.config import DEVICE_PATTERN
from utils.training.outputs import model_file_patterns
from utils.core.errors import ConfigError, DataError
from utils.core.entry import run_main
from utils.core.gpu import auto_precision
from utils.core.io import save_text
from utils.core.progress import progress
from utils.core.signals import DataLoader

TOP_K = 5
MISSING = "no such file or folder"  # the error of a named input path that does not exist


class ImageInputs(Dataset):
    """``(input tensor or an empty tensor, error message or "")`` per image file."""

    def __init__(self, paths: Sequence[str], transform, decoding: Decoding):
        self.paths, self.transform, self.decoding = list(paths), transform, decoding

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return load_input(self.paths[i], self.transform, self.decoding), ""
        except FileNotFoundError:
            return torch.empty(0), MISSING
        except ImageTooLarge as err:
            return torch.empty(0), f"{err.reason} (--max_image_pixels raises it, 0: no limit)"
        except (OSError, ValueError, SyntaxError) as err:  # PIL's UnidentifiedImageError is an OSError
            return torch.empty(0), f"{type(err).__name__}: {err}".replace("\n", " ")


def collate(items):
    """Stack the readable inputs; keep every error message (a batch may hold unreadable files)."""
    ok = [x for x, err in items if not err]
    return (torch.stack(ok) if ok else torch.empty(0)), [err for _, err in items]


def collect_paths(inputs: Sequence[str]) -> list[str]:
    """Image files named or found (recursively) in the named folders, in input order.  A named path that
    does not exist stays in the list (it gets an error row); only when nothing exists is it an error."""
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            names, _ = list_images(item, recursive=True, dangling="list")
            paths += [os.path.join(item, n) for n in names]
        else:
            paths.append(item)
    if not any(os.path.isfile(p) for p in paths):
        missing = [p for p in inputs if not os.path.exists(p)]
        if missing:
            others = "" if len(missing) == len(inputs) else ", and the other paths hold no image files"
            raise DataError(f"{', '.join(missing)}: {MISSING}{others}")
    if not paths:
        raise DataError(f"no image files in {', '.join(inputs)} (extensions: jpg, jpeg, png, ppm, bmp, pgm, tif, "
                        "tiff, webp)")
    # the names go into a UTF-8 CSV: one rule with the training listing (dataloader/names.py)
    refuse_non_utf8([p for p in paths if not is_utf8(p)], where="the inputs")
    return paths


def check_out(path: str) -> None:
    """Refuse (one line) an ``--out`` that cannot be written: a directory, a path below a regular file, or
    a folder without write permission (checked before anything is predicted)."""
    if os.path.isdir(path):
        raise ConfigError(f"--out {path} is a directory; name a CSV file, e.g. {os.path.join(path, 'predictions.csv')}")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # missing folders are created; the nearest existing one must be a folder
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"--out {path}: {folder} is a file, not a folder; name a CSV file in a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path}: no permission to write in {folder}; name a CSV file in a writable folder")


def csv_columns(k: int) -> list[str]:
    """The columns of the CSV of a model with top ``k`` (``min(TOP_K, classes)``) predictions; its header line
    is how a later run recognises a file it may replace (:func:`written_by_predict`)."""
    return ["path", "predicted_label", "prob"] + [f"top{r + 1}_{c}" for r in range(k) for c in ("label", "prob")] \
        + ["error"]


HEADERS = {(",".join(csv_columns(k)) + "\n").encode() for k in range(1, TOP_K + 1)}


def written_by_predict(path: str) -> bool:
    """Whether the existing file ``path`` may be replaced: a CSV this program wrote (its first line is exactly
    one of :data:`HEADERS`), or an empty file (nothing to lose; what ``mktemp`` leaves for a script to fill)."""
    with open(path, "rb") as f:
        head = f.read(max(map(len, HEADERS)))
    return head == b"" or any(head.startswith(header) for header in HEADERS)


def check_out_is_no_input(out: str, paths: Sequence[str]) -> None:
    """Refuse (one line) an existing ``--out`` that is one of the input files ``paths`` (named or found in an
    input folder; compared as files, so another spelling, a symbolic or a hard link count alike) or that is
    not a CSV predict.py wrote: the CSV would replace it."""
    try:
        target = os.stat(out)
    except FileNotFoundError:
        return
    same = (target.st_dev, target.st_ino)
    for path in paths:
        try:
            found = os.stat(path)
        except OSError:  # a missing or unreadable input gets its error row; it is not --out
            continue
        if (found.st_dev, found.st_ino) == same:
            shown = "" if path == out else f" ({path})"
            raise ConfigError(f"--out {out} is one of the inputs{shown}, which the CSV would replace; "
                              "name a new CSV file, e.g. predictions.csv")
    if not written_by_predict(out):
        raise ConfigError(f"--out {out} exists and is not a CSV that predict.py wrote (its first line is not "
                          "predict.py's header path,predicted_label,prob,...); name a new file, or remove this one "
                          "first")


def pick_device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not DEVICE_PATTERN.match(name):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA device here; use --device cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:  # else pinned memory and the allocator use GPU 0 too
        torch.cuda.set_device(device)
    return device


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    class Parser(argparse.ArgumentParser):
        def error(self, message):  # one line, exit status 2 (run_main)
            raise ConfigError(message)

    parser = Parser(prog="predict.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="exported model file (under the training's output_dir: "
                                                       f"{', '.join(model_file_patterns())})")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and folders (searched recursively)")
    parser.add_argument("--out", default=None, help="CSV to write (default: standard output)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--max_image_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"images with more pixels get an error row (default {DEFAULT_MAX_PIXELS:,}, Pillow's "
                             "limit; 0: no limit)")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.num_workers < 0 or args.max_image_pixels < 0:
        raise ConfigError("--batch_size must be >= 1, --num_workers and --max_image_pixels >= 0")
    return args


def autocast_for(device: torch.device):
    """The autocast of ``device``: the training's ``precision: auto`` (utils/core/gpu.py, one rule): bf16 on GPUs
    with bf16 units, fp16 on older ones (V100, T4, where ``torch.cuda.is_bf16_supported()`` is True as well, for
    a slow emulation), none (fp32) on the CPU."""
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(auto_precision(device))
    return torch.autocast(device.type, dtype=half) if half is not None else contextlib.nullcontext()


@torch.no_grad()
def predict(model: torch.nn.Module, paths: Sequence[str], exported: dict, *, decoding: Decoding,
            device: torch.device, batch_size: int, num_workers: int) -> list[dict]:
    """One row per path (input order): label names, probabilities of the top k, or the error."""
    names = exported["class_names"] or [str(c) for c in range(exported["num_classes"])]
    k = min(TOP_K, len(names))
    normalise = input_normaliser(exported)
    loader = DataLoader(ImageInputs(paths, input_transform(exported), decoding), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, collate_fn=collate, pin_memory=device.type == "cuda")
    amp = autocast_for(device)
    rows, start = [], 0
    for images, errors in progress(loader, desc="predict", leave=False, dynamic_ncols=True):
        probs = torch.empty(0)
        if images.numel():
            with amp:
                _, logits = model(normalise(images.to(device, non_blocking=True)))
            probs = torch.softmax(logits.float(), dim=1).cpu()
        top_p, top_i = probs.topk(k, dim=1) if probs.numel() else (probs, probs)
        j = 0
        for offset, err in enumerate(errors):
            row = {"path": paths[start + offset]}
            if err:
                row["error"] = err
            else:
                row.update(predicted_label=names[top_i[j, 0]], prob=round(float(top_p[j, 0]), 6))
                for r in range(k):
                    row[f"top{r + 1}_label"] = names[top_i[j, r]]
                    row[f"top{r + 1}_prob"] = round(float(top_p[j, r]), 6)
                row["error"] = ""
                j += 1
            rows.append(row)
        start += len(errors)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    if args.out:
        check_out(args.out)
    model, exported = load_exported(args.model)
    decoding, note = input_decoding(exported, max_pixels=pixel_limit(args.max_image_pixels))
    if note:
        print(f"predict.py: note: {args.model}: {note}", file=sys.stderr)
    paths = collect_paths(args.paths)
    if args.out:
        check_out_is_no_input(args.out, paths)
    rows = predict(model.to(device), paths, exported, decoding=decoding, device=device, batch_size=args.batch_size,
                   num_workers=args.num_workers)
    columns = csv_columns(min(TOP_K, exported["num_classes"]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if args.out:
        save_text(buffer.getvalue(), args.out)
    else:
        sys.stdout.write(buffer.getvalue())
    failed = [r for r in rows if r["error"]]
    for row in failed:
        print(f"predict.py: cannot read {row['path']} ({row['error']})", file=sys.stderr)
    if args.out:
        print(f"predict.py: {len(rows) - len(failed)} of {len(rows)} images predicted: {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(lambda argv: sys.exit(main(argv)))
