"""The per-sample report: which training labels look wrong (``_samples.csv``, ``_summary.json``, ``_suspects.png``).

Every entry point ends with :func:`export_sample_report`: one evaluation pass of the final model over
the training set (test transform), then a table with one row per training sample, most suspect first,
in the column names cleanlab users know (``given_label``, ``predicted_label``, ``label_score``,
``is_label_issue``, ...), a summary of the flags per class with the given -> predicted matrix of the
flagged samples (the estimated noise structure), and a grid of the most suspect images.

``label_score`` is low for a suspect label (in [0, 1]):

* stage 1: the clean posterior of one beta mixture fitted to the stage-1 wrong events
  (:func:`stage1_label_score`, the fit stage 2 starts from); flagged below 0.5;
* stage 2: the clean posterior of the final mixture (global or class-wise); flagged below 0.5;
* ACTO: the robust model's probability of the given label; flagged where it predicts another class.

The tables are computed by pure functions (:func:`sample_scores`, :func:`suspect_order`,
:func:`sample_rows`, :func:`summarize`) from arrays; :func:`write_sample_report` writes the files.
"""
from __future__ import annotations

import csv
import io
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from utils.bmm import BetaMixture
from utils.duplicates import conflicting_duplicates, describe_groups
from utils.io import save_json, save_text
from utils.metrics import detection_auc, split_quality
from utils.review_page import write_review_page

CLEAN_THRESHOLD = 0.5       # a clean posterior below this flags the label (stage 2's clean split)
STAGE1_BMM_ITERS = 20       # EM iterations of the stage-1 score (stage 2's bmm_init_iters default)
COLUMNS = ("index", "path", "given_label", "predicted_label", "predicted_prob", "wrong_events", "label_score",
           "is_label_issue", "true_label")


@dataclass(frozen=True)
class SampleScores:
    """Per training sample, in dataset order (all arrays of length N)."""

    given_label: np.ndarray            # int64, the label trained on
    predicted_label: np.ndarray        # int64, argmax of the final model (test transform)
    predicted_prob: np.ndarray         # float, its softmax probability
    label_score: np.ndarray            # float in [0, 1]; low = the given label looks wrong
    is_label_issue: np.ndarray         # bool
    wrong_events: np.ndarray | None    # int64 counts (None for ACTO)
    true_label: np.ndarray | None      # int64 where the truth is known

    def __len__(self) -> int:
        return len(self.given_label)


def sample_scores(probs: np.ndarray, given: np.ndarray, *, label_score: np.ndarray | None = None,
                  wrong_events: np.ndarray | None = None, true_label: np.ndarray | None = None) -> SampleScores:
    """Scores from the final model's softmax ``probs`` (N, C) and the given labels (N,).

    With a ``label_score`` (a clean posterior) a label is flagged when the score is below 0.5; without
    one, the score is the probability of the given label and a label is flagged where the model
    predicts another class.
    """
    probs = np.asarray(probs, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    predicted = probs.argmax(axis=1)
    if label_score is None:
        label_score = probs[np.arange(len(given)), given]
        flagged = predicted != given
    else:
        label_score = np.asarray(label_score, dtype=np.float64)
        flagged = label_score < CLEAN_THRESHOLD
    return SampleScores(given_label=given, predicted_label=predicted, predicted_prob=probs.max(axis=1),
                        label_score=label_score, is_label_issue=flagged,
                        wrong_events=None if wrong_events is None else np.asarray(wrong_events, dtype=np.int64),
                        true_label=None if true_label is None else np.asarray(true_label, dtype=np.int64))


def stage1_label_score(counts: np.ndarray) -> np.ndarray:
    """Clean posterior (N,) of one beta mixture fitted to the stage-1 wrong events ``counts`` (N,)."""
    bmm = BetaMixture(num_groups=1)
    bmm.fit(counts, max_iter=STAGE1_BMM_ITERS)
    return bmm.evaluate(counts)["clean_posterior"]


def suspect_order(scores: SampleScores) -> np.ndarray:
    """Dataset indices, most suspect first: flagged first, then by ascending label score, then by more
    wrong events, then by index (a total order, so the table is reproducible)."""
    n = len(scores)
    events = np.zeros(n, np.int64) if scores.wrong_events is None else scores.wrong_events
    return np.lexsort((np.arange(n), -events, scores.label_score, ~scores.is_label_issue))


def _six_digits(value) -> float:
    """Six significant digits: a clean posterior of 1e-9 stays distinguishable from 0 in the CSV."""
    return float(f"{float(value):.6g}")


def _name(label: int, class_names: Sequence[str] | None) -> str:
    return str(label) if class_names is None else str(class_names[label])


def sample_rows(scores: SampleScores, *, paths: Sequence[str], class_names: Sequence[str] | None) -> list[dict]:
    """One dict per training sample in :func:`suspect_order` (keys :data:`COLUMNS`; no ``true_label``
    where the truth is unknown, no ``wrong_events`` value where there are none)."""
    rows = []
    for i in suspect_order(scores):
        row = {"index": int(i), "path": paths[i], "given_label": _name(scores.given_label[i], class_names),
               "predicted_label": _name(scores.predicted_label[i], class_names),
               "predicted_prob": _six_digits(scores.predicted_prob[i]),
               "wrong_events": "" if scores.wrong_events is None else int(scores.wrong_events[i]),
               "label_score": _six_digits(scores.label_score[i]),
               "is_label_issue": bool(scores.is_label_issue[i])}
        if scores.true_label is not None:
            row["true_label"] = _name(scores.true_label[i], class_names)
        rows.append(row)
    return rows


def summarize(scores: SampleScores, *, num_classes: int, class_names: Sequence[str] | None) -> dict:
    """Counts of the flags per given class, the given -> predicted matrix of the flagged samples, and
    (where the truth is known) precision / recall / AUC of the flags as a detector of wrong labels."""
    flagged = scores.is_label_issue
    given_count = np.bincount(scores.given_label, minlength=num_classes)
    flagged_count = np.bincount(scores.given_label[flagged], minlength=num_classes)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (scores.given_label[flagged], scores.predicted_label[flagged]), 1)
    names = [_name(c, class_names) for c in range(num_classes)]
    out = {
        "num_samples": len(scores), "num_flagged": int(flagged.sum()),
        "flagged_share": round(float(flagged.mean()), 6) if len(scores) else 0.0,
        "classes": [{"class": names[c], "given": int(given_count[c]), "flagged": int(flagged_count[c]),
                     "flagged_share": round(float(flagged_count[c] / given_count[c]), 6) if given_count[c] else 0.0}
                    for c in range(num_classes)],
        "flagged_given_to_predicted": {"rows": "given label", "columns": "predicted label", "classes": names,
                                       "counts": matrix.tolist()},
        "detection": None,
    }
    if scores.true_label is not None:
        is_noisy = scores.given_label != scores.true_label
        quality = split_quality(flagged, is_noisy)  # the flagged set against the truly wrong labels
        auc = detection_auc(scores.label_score, is_noisy)
        out["detection"] = {"num_wrong_labels": int(is_noisy.sum()), "precision": quality["precision"],
                            "recall": quality["recall"], "auc": auc}
    return out


def _short(name: str, width: int = 18) -> str:
    """A class name cut to fit a grid caption line."""
    return name if len(name) <= width else name[:width - 1] + "\u2026"


def _csv_text(rows: list[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_sample_report(scores: SampleScores, *, stem: str, paths: Sequence[str], class_names: Sequence[str] | None,
                        num_classes: int, load_image: Callable[[int], object], grid: int, title: str,
                        extra_summary: dict | None = None) -> dict:
    """Write ``{stem}_samples.csv``, ``{stem}_summary.json`` (with ``extra_summary``'s keys) and
    ``{stem}_suspects.png``; return their paths."""
    from utils.plots import suspects_grid

    rows = sample_rows(scores, paths=paths, class_names=class_names)
    columns = COLUMNS if scores.true_label is not None else COLUMNS[:-1]
    files = {"samples": save_text(_csv_text(rows, columns), f"{stem}_samples.csv"),
             "summary": save_json({**summarize(scores, num_classes=num_classes, class_names=class_names),
                                   **(extra_summary or {})}, f"{stem}_summary.json")}
    shown = rows[:grid]
    # two lines, "given" over "-> predicted (prob)", so photo class names fit a cell
    captions = [f"{_short(r['given_label'])}\n\u2192 {_short(r['predicted_label'])} ({r['predicted_prob']:.2f})"
                for r in shown]
    files["suspects"] = suspects_grid([load_image(r["index"]) for r in shown], captions, f"{stem}_suspects.png",
                                      title=title)
    return files


# ------------------------------------------------------------------------------ the entry points' glue

def sample_paths(images) -> list[str]:
    """Path of every training sample relative to ``data_path`` (its key); ``train/<index>`` for in-memory sets."""
    keys = getattr(images, "keys", None)
    return list(keys) if keys is not None else [f"train/{i}" for i in range(len(images))]


def training_set_probabilities(model: torch.nn.Module, data, run) -> tuple[np.ndarray, np.ndarray]:
    """Softmax (N, C) of ``model`` over the training images in dataset order, with the test transform, and
    the content digest (N, 16) uint8 of every image, taken from the bytes this pass reads anyway."""
    from dataloader.base import NoisyLabelDataset
    from utils.engine import predict_probabilities

    cfg = run.cfg
    dataset = DigestedImages(NoisyLabelDataset(data.raw.train_images, data.noisy_labels, data.test.transform))
    digests: list[torch.Tensor] = []
    probs = predict_probabilities(model, dataset, batch_size=cfg.test_batch_size, num_workers=cfg.num_workers,
                                  precision=run.precision, device=run.runtime.device, normalise=data.normalise,
                                  channels_last=cfg.channels_last, targets_out=digests)
    return probs, torch.cat(digests).numpy() if digests else np.zeros((0, 16), np.uint8)


class DigestedImages(torch.utils.data.Dataset):
    """Items ``(transform(image), content digest (16,) uint8, index)`` of a :class:`NoisyLabelDataset`:
    the label's place carries the digest of the bytes the image was decoded from."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, digest = self.dataset.images.load_with_digest(index)
        return self.dataset.transform(image), torch.frombuffer(bytearray(digest), dtype=torch.uint8), index


def export_sample_report(run, data, model: torch.nn.Module, *, stem: str, wrong_events: np.ndarray | None = None,
                         label_score: np.ndarray | None = None) -> dict | None:
    """The report of a finished run (main process, unless ``export_samples`` is false); see the module doc."""
    cfg = run.cfg
    if not cfg.export_samples or not run.runtime.is_main:
        return None
    start = time.perf_counter()
    probs, digests = training_set_probabilities(model, data, run)
    seconds = time.perf_counter() - start
    scores = sample_scores(probs, data.noisy_labels, label_score=label_score, wrong_events=wrong_events,
                           true_label=data.clean_labels)
    keys, class_names = sample_paths(data.raw.train_images), data.raw.extra.get("classes")
    duplicates = conflicting_duplicates(digests, scores.given_label)
    files = write_sample_report(scores, stem=stem, paths=keys, class_names=class_names, num_classes=data.num_classes,
                                load_image=data.raw.train_images.load, grid=cfg.suspects_grid,
                                title=f"{cfg.tag}: the {min(cfg.suspects_grid, len(scores))} most suspect labels "
                                      "(given \u2192 predicted (prob))",
                                extra_summary={"identical_files_under_different_labels": describe_groups(
                                    duplicates, paths=keys, given=scores.given_label, class_names=class_names)})
    files["review"] = write_review_page(
        scores, stem=stem, keys=keys, order=suspect_order(scores), max_shown=cfg.review_samples,
        class_names=class_names or [str(c) for c in range(data.num_classes)], load_image=data.raw.train_images.load,
        duplicate_groups=duplicates, title=f"{os.path.basename(stem)}: review the flagged labels",
        **export_rows(data))
    run.log.info(f"{int(scores.is_label_issue.sum())} of {len(scores)} training labels flagged (evaluation pass over "
                 f"the training set {seconds:.1f} s); {len(duplicates)} groups of identical files under different "
                 f"labels: {files['samples']}, {files['summary']}, {files['suspects']}")
    run.log.info(f"review page (open in a browser, export corrected_labels.csv): {files['review']}")
    return files


def export_rows(data) -> dict:
    """``export_paths`` (absolute; None for in-memory images) and ``export_labels`` of the review page:
    the training samples in dataset order with the labels trained on, then the ``val_fraction`` share
    held out of the training images with its given labels (not judged, but part of the user's data)."""
    images, labels = data.raw.train_images, [np.asarray(data.noisy_labels, np.int64)]
    paths = [os.path.abspath(p) for p in images.paths] if hasattr(images, "paths") else None
    if data.test_name == "val_given_labels" and paths is not None:
        paths += [os.path.abspath(p) for p in data.raw.test_images.paths]
        labels.append(np.asarray(data.raw.test_labels, np.int64))
    return {"export_paths": paths, "export_labels": np.concatenate(labels)}
