"""The own-data demo: scikit-learn's digits written as an ``imagefolder`` tree with misplaced files.

    python -m dataloader.digits_tree write ROOT [--misplaced 0.2] [--seed 0]
    python -m dataloader.digits_tree score ROOT SAMPLES_CSV [--top 10]

``write`` puts the digits split of ``dataset: digits`` (70 % train, 30 % test, seed 0) as 8x8 grey PNG
files into ``ROOT/train/<digit>/`` and ``ROOT/test/<digit>/``; exactly ``floor(r * N)`` training
files, drawn with ``seed``, go to a wrong class folder (uniformly among the other nine) and are
listed in ``ROOT/misplaced.csv`` (``path,true_label,given_label``).  ``score`` prints the top
suspects of a ``_samples.csv``, the precision and recall of its flags against that list, and the error
rate of the labels when every flag takes the predicted label.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import Sequence

import numpy as np
from PIL import Image

from dataloader.digits import SPLIT_SEED, TEST_FRACTION, _to_rgb_uint8


def write_digits_tree(root: str, *, misplaced: float = 0.2, seed: int = 0) -> dict:
    """Write the tree; returns ``{"misplaced": set of train keys, "num_train": N, "num_test": M}``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    grey = _to_rgb_uint8(bunch.data)[..., 0]  # (N, 8, 8) uint8
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=TEST_FRACTION,
                                           random_state=SPLIT_SEED, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    rng = np.random.default_rng(seed)
    moved = rng.choice(len(train_idx), size=int(misplaced * len(train_idx)), replace=False)
    given = labels[train_idx].copy()
    given[moved] = (given[moved] + rng.integers(1, 10, size=len(moved))) % 10  # another digit, uniformly
    records = []
    for split, idx, split_labels in (("train", train_idx, given), ("test", test_idx, labels[test_idx])):
        for i, label in zip(idx, split_labels):
            key = f"{split}/{label}/{i:04d}.png"
            os.makedirs(os.path.join(root, split, str(label)), exist_ok=True)
            Image.fromarray(grey[i], mode="L").save(os.path.join(root, key))
            if split == "train" and label != labels[i]:
                records.append((key, int(labels[i]), int(label)))
    with open(os.path.join(root, "misplaced.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "true_label", "given_label"])
        writer.writerows(sorted(records))
    return {"misplaced": {r[0] for r in records}, "num_train": len(train_idx), "num_test": len(test_idx)}


def read_misplaced(root: str) -> set[str]:
    with open(os.path.join(root, "misplaced.csv"), newline="", encoding="utf-8") as f:
        return {row["path"] for row in csv.DictReader(f)}


def flag_quality(samples_csv: str, misplaced: set[str]) -> dict:
    """Precision and recall of the ``is_label_issue`` flags of a ``_samples.csv`` against ``misplaced``."""
    with open(samples_csv, newline="", encoding="utf-8") as f:
        flagged = {row["path"] for row in csv.DictReader(f) if row["is_label_issue"] == "True"}
    hit = len(flagged & misplaced)
    return {"flagged": len(flagged), "misplaced": len(misplaced), "correct": hit,
            "precision": hit / len(flagged) if flagged else None,
            "recall": hit / len(misplaced) if misplaced else None}


def read_truth(root: str) -> dict[str, int]:
    """The true label of every misplaced training file (``misplaced.csv``)."""
    with open(os.path.join(root, "misplaced.csv"), newline="", encoding="utf-8") as f:
        return {row["path"]: int(row["true_label"]) for row in csv.DictReader(f)}


def predicted_for_flags(samples_csv: str, root: str) -> dict:
    """The labels after a review that takes the predicted label for every flag (what the review page's
    corrected_labels.csv holds after pressing p on every card): how many are wrong, before and after."""
    truth = read_truth(root)
    with open(samples_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    def wrong(row, label):
        return int(label) != truth.get(row["path"], int(row["given_label"]))
    before = sum(wrong(r, r["given_label"]) for r in rows)
    after = sum(wrong(r, r["predicted_label"] if r["is_label_issue"] == "True" else r["given_label"]) for r in rows)
    return {"samples": len(rows), "wrong_before": before, "wrong_after": after,
            "error_before": before / len(rows) if rows else None, "error_after": after / len(rows) if rows else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataloader.digits_tree", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write the imagefolder tree")
    w.add_argument("root")
    w.add_argument("--misplaced", type=float, default=0.2)
    w.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="top suspects and flag precision/recall of a _samples.csv")
    s.add_argument("root")
    s.add_argument("samples_csv")
    s.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)
    if args.command == "write":
        info = write_digits_tree(args.root, misplaced=args.misplaced, seed=args.seed)
        print(f"{args.root}: {info['num_train']} training files ({len(info['misplaced'])} in a wrong class folder, "
              f"listed in misplaced.csv), {info['num_test']} test files")
        return 0
    misplaced = read_misplaced(args.root)
    with open(args.samples_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    print(f"top {args.top} suspects of {args.samples_csv}:")
    for row in rows[:args.top]:
        mark = "misplaced" if row["path"] in misplaced else "correct folder"
        print(f"  {row['path']}: given {row['given_label']} -> predicted {row['predicted_label']} "
              f"({float(row['predicted_prob']):.2f}), label score {float(row['label_score']):.2g} [{mark}]")
    q = flag_quality(args.samples_csv, misplaced)
    fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
    print(f"flagged {q['flagged']} of {len(rows)} labels; {q['correct']} of the {q['misplaced']} misplaced files "
          f"found: precision {fmt(q['precision'])}, recall {fmt(q['recall'])} (chance: precision "
          f"{q['misplaced'] / max(len(rows), 1):.2f})")
    c = predicted_for_flags(args.samples_csv, args.root)
    print(f"taking the predicted label for every flag: {c['wrong_after']} of {c['samples']} labels wrong "
          f"({100 * c['error_after']:.1f} %), {c['wrong_before']} before ({100 * c['error_before']:.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
