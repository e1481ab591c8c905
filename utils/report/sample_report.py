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

A class whose wrong events cannot be separated by a mixture (all its counts equal, or fewer than
:data:`MIN_JUDGED_SAMPLES` samples; with one global mixture: the whole set) is *not judged*: its samples
get ``label_score`` exactly 0.5 and no flag, and the summary names it (:func:`unjudged_classes`).  Only
the report does this; the training loss weights of stage 2 still come from the mixture as fitted.

The tables are computed by pure functions (:func:`scores_from_predictions`, :func:`suspect_order`,
:func:`summarize`) from arrays; :func:`write_sample_report` writes the files.
Nothing here holds N x C: the evaluation pass keeps three numbers per sample
(:func:`utils.training.engine.predict_labels`) and the CSV is streamed to a temporary file in chunks of rows.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from utils.method.bmm import BetaMixture
from utils.report.evidence import WrongEventTrials, shown_score
from utils.report.identical_images import conflicting_duplicates, describe_groups
from utils.core.io import atomic_path, save_json
from utils.method.metrics import detection_auc, split_quality
from utils.report.review_page import write_review_page
from utils.training.outputs import REPORT_SUFFIXES, ReportFiles

CLEAN_THRESHOLD = 0.5       # a clean posterior below this flags the label (stage 2's clean split)
STAGE1_BMM_ITERS = 20       # EM iterations of the stage-1 score (stage 2's bmm_init_iters default)
# a two-component beta mixture estimates five numbers per group (two alphas, two betas, the weight)
MIN_JUDGED_SAMPLES = 5
CSV_CHUNK_ROWS = 1 << 16    # rows formatted and written at a time (bounded memory at any N)
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
    not_judged: dict | None = None     # {class: reason} of the classes the mixture cannot judge

    def __len__(self) -> int:
        return len(self.given_label)


def scores_from_predictions(predicted: np.ndarray, predicted_prob: np.ndarray, given_prob: np.ndarray,
                            given: np.ndarray, *, label_score: np.ndarray | None = None,
                            wrong_events: np.ndarray | None = None, true_label: np.ndarray | None = None,
                            not_judged: dict | None = None) -> SampleScores:
    """Scores from the final model's predicted label, its probability and the given label's probability
    (each (N,), :class:`utils.training.engine.LabelPredictions`) and the given labels (N,).

    With a ``label_score`` (a clean posterior) a label is flagged when the score is below 0.5; the
    samples of the classes in ``not_judged`` ({class index: reason}) get exactly 0.5 and no flag.
    Without a score, the score is the probability of the given label and a label is flagged where the
    model predicts another class.
    """
    given = np.asarray(given, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    if label_score is None:
        label_score = np.asarray(given_prob, dtype=np.float64)
        flagged = predicted != given
    else:
        label_score = np.array(label_score, dtype=np.float64)  # a copy: the caller's array stays as it was
        if not_judged:
            label_score[np.isin(given, np.fromiter(not_judged, dtype=np.int64))] = CLEAN_THRESHOLD
        flagged = label_score < CLEAN_THRESHOLD
    return SampleScores(given_label=given, predicted_label=predicted,
                        predicted_prob=np.asarray(predicted_prob, dtype=np.float64),
                        label_score=label_score, is_label_issue=flagged,
                        wrong_events=None if wrong_events is None else np.asarray(wrong_events, dtype=np.int64),
                        true_label=None if true_label is None else np.asarray(true_label, dtype=np.int64),
                        not_judged=not_judged)


def unjudged_classes(counts: np.ndarray, given: np.ndarray, *, num_classes: int, class_wise: bool) -> dict:
    """``{class index: reason}`` of the classes (with samples) whose wrong events a mixture cannot separate.

    Class-wise (one mixture per given class): a class with fewer than :data:`MIN_JUDGED_SAMPLES` samples
    or with all counts equal.  Global (one mixture): every class, when the whole set is such a group.
    O(N): two bincounts and a running min / max.
    """
    counts = np.asarray(counts, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    groups = given if class_wise else np.zeros_like(given)
    num_groups = num_classes if class_wise else 1
    size = np.bincount(groups, minlength=num_groups)
    low = np.full(num_groups, np.iinfo(np.int64).max)
    high = np.full(num_groups, np.iinfo(np.int64).min)
    np.minimum.at(low, groups, counts)
    np.maximum.at(high, groups, counts)
    reasons = {}
    for g in np.flatnonzero(size > 0):
        if size[g] < MIN_JUDGED_SAMPLES:
            reasons[int(g)] = f"{int(size[g])} samples, fewer than the {MIN_JUDGED_SAMPLES} a mixture needs"
        elif low[g] == high[g]:
            reasons[int(g)] = f"all {int(size[g])} samples have {int(low[g])} wrong events"
    if class_wise:
        return reasons
    present = np.flatnonzero(np.bincount(given, minlength=num_classes))
    return {int(c): "whole training set: " + reasons[0] for c in present} if reasons else {}


def stage1_label_score(counts: np.ndarray) -> np.ndarray:
    """Clean posterior (N,) of one beta mixture fitted to the stage-1 wrong events ``counts`` (N,)."""
    bmm = BetaMixture(num_groups=1)
    bmm.fit(counts, max_iter=STAGE1_BMM_ITERS)
    return bmm.evaluate(counts)["clean_posterior"]


def suspect_order(scores: SampleScores) -> np.ndarray:
    """Dataset indices (N,), most suspect first; the order of ``_samples.csv``, the suspects' grid and the
    review page alike.

    Flagged first; then by ascending label score *as shown* (:func:`utils.report.evidence.shown_score`: three
    decimals, every score below 0.001 equal, since a posterior of 1e-248 is no surer than one of 1e-9); then
    by more wrong events; then by the model's confidence against the given label (a disagreement predicted
    with 0.99 before one with 0.6, disagreements before agreements, an agreement of 0.6 before one of 0.99);
    then by index (a total order, so the table is reproducible).  Without the confidence, the hundreds of
    samples with the most wrong events came in index order, and under a class-wise mixture, whose scores differ
    per class, one class filled the first screen.
    """
    n = len(scores)
    events = np.zeros(n, np.int64) if scores.wrong_events is None else scores.wrong_events
    disagrees = scores.predicted_label != scores.given_label
    against = np.where(disagrees, scores.predicted_prob, -scores.predicted_prob)  # confidence against the label
    return np.lexsort((np.arange(n), -against, -events, shown_score(scores.label_score), ~scores.is_label_issue))


def _six_digits(value) -> float:
    """Six significant digits: a clean posterior of 1e-9 stays distinguishable from 0 in the CSV."""
    return float(f"{float(value):.6g}")


def _name(label: int, class_names: Sequence[str] | None) -> str:
    return str(label) if class_names is None else str(class_names[label])


def summarize(scores: SampleScores, *, num_classes: int, class_names: Sequence[str] | None) -> dict:
    """Counts of the flags per given class, the given -> predicted matrix of the flagged samples, and
    (where the truth is known) precision / recall / AUC of the flags as a detector of wrong labels."""
    flagged = scores.is_label_issue
    given_count = np.bincount(scores.given_label, minlength=num_classes)
    flagged_count = np.bincount(scores.given_label[flagged], minlength=num_classes)
    matrix = np.bincount(scores.given_label[flagged] * num_classes + scores.predicted_label[flagged],
                         minlength=num_classes * num_classes).reshape(num_classes, num_classes)
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
        # classes the mixture cannot judge: label_score 0.5, never flagged (see the module doc)
        "not_judged": [{"class": names[c], "given": int(given_count[c]), "reason": reason}
                       for c, reason in sorted((scores.not_judged or {}).items())],
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


def write_samples_csv(scores: SampleScores, path: str, *, paths: Sequence[str], class_names: Sequence[str] | None,
                      order: np.ndarray | None = None) -> str:
    """Write the table, one row per training sample in ``order`` (default :func:`suspect_order`; columns
    :data:`COLUMNS`, no ``true_label`` where the truth is unknown, an empty ``wrong_events`` where there are
    none), to ``path`` (temporary file, renamed at the end), formatted and written :data:`CSV_CHUNK_ROWS` rows
    at a time; the bytes equal a ``csv.DictWriter`` over one dict per row (tests/reference.py)."""
    order = suspect_order(scores) if order is None else order
    columns = COLUMNS if scores.true_label is not None else COLUMNS[:-1]
    names = np.array([_name(c, class_names) for c in range(_num_labels(scores))], dtype=object)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for start in range(0, len(order), CSV_CHUNK_ROWS):
            idx = order[start:start + CSV_CHUNK_ROWS]
            cells = [idx.tolist(), [paths[i] for i in idx.tolist()], names[scores.given_label[idx]].tolist(),
                     names[scores.predicted_label[idx]].tolist(),
                     [_six_digits(v) for v in scores.predicted_prob[idx].tolist()],
                     [""] * len(idx) if scores.wrong_events is None else scores.wrong_events[idx].tolist(),
                     [_six_digits(v) for v in scores.label_score[idx].tolist()],
                     scores.is_label_issue[idx].tolist()]
            if scores.true_label is not None:
                cells.append(names[scores.true_label[idx]].tolist())
            writer.writerows(zip(*cells))
    return path


def _num_labels(scores: SampleScores) -> int:
    """One more than the largest label in the table (the name lookup's length)."""
    arrays = [a for a in (scores.given_label, scores.predicted_label, scores.true_label) if a is not None and a.size]
    return max((int(a.max()) for a in arrays), default=-1) + 1


def write_sample_report(scores: SampleScores, *, files: ReportFiles, paths: Sequence[str],
                        class_names: Sequence[str] | None, num_classes: int, load_image: Callable[[int], object],
                        grid: int, title: str, extra_summary: dict | None = None) -> dict:
    """Write the samples CSV, the summary JSON (with ``extra_summary``'s keys) and the suspects' grid of
    ``files``; return their paths (``{"samples", "summary", "suspects"}``)."""
    from utils.report.plots import suspects_grid

    order = suspect_order(scores)
    written = {"samples": write_samples_csv(scores, files.samples, paths=paths, class_names=class_names,
                                            order=order),
               "summary": save_json({**summarize(scores, num_classes=num_classes, class_names=class_names),
                                     **(extra_summary or {})}, files.summary)}
    shown = order[:grid].tolist()
    # two lines, "given" over "-> predicted (prob)", so photo class names fit a cell
    captions = [f"{_short(_name(scores.given_label[i], class_names))}\n\u2192 "
                f"{_short(_name(scores.predicted_label[i], class_names))} ({_six_digits(scores.predicted_prob[i]):.2f})"
                for i in shown]
    written["suspects"] = suspects_grid([load_image(i) for i in shown], captions, files.suspects, title=title)
    return written


# ------------------------------------------------------------------------------ the entry points' glue

class _InMemoryPaths:
    """``train/<index>`` for every sample of an in-memory set, made when asked (no list of N strings)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> str:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return f"train/{i}"


def sample_paths(images) -> Sequence[str]:
    """Path of every training sample relative to ``data_path`` (its key); ``train/<index>`` for in-memory sets."""
    keys = getattr(images, "keys", None)
    return keys if keys is not None else _InMemoryPaths(len(images))


def training_set_predictions(model: torch.nn.Module, data, run):
    """:class:`utils.training.engine.LabelPredictions` of ``model`` over the training images in dataset order, with
    the test transform and the given (noisy) labels, and the content digest (N, 16) uint8 of every image,
    taken from the bytes this pass reads anyway; sharded across the processes (all must call it)."""
    from dataloader.base import NoisyLabelDataset
    from utils.training.engine import predict_labels

    cfg = run.cfg
    dataset = DigestedImages(NoisyLabelDataset(data.raw.train_images, data.noisy_labels, data.test.transform))
    return predict_labels(model, dataset, batch_size=cfg.test_batch_size, num_workers=cfg.num_workers,
                          precision=run.precision, runtime=run.runtime, normalise=data.normalise,
                          channels_last=cfg.channels_last, digest_size=DigestedImages.DIGEST_SIZE)


class DigestedImages(torch.utils.data.Dataset):
    """Items ``(transform(image), given label, index, content digest (16,) uint8)`` of a
    :class:`NoisyLabelDataset`: the digest of the bytes the image was decoded from."""

    DIGEST_SIZE = 16  # bytes (BLAKE2b-128, utils/report/identical_images.py)

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, digest = self.dataset.images.load_with_digest(index)
        return (self.dataset.transform(image), int(self.dataset.labels[index]), index,
                torch.frombuffer(bytearray(digest), dtype=torch.uint8))


def export_sample_report(run, data, model: torch.nn.Module, *, files: ReportFiles,
                         wrong_events: np.ndarray | None = None, label_score: np.ndarray | None = None,
                         class_wise: bool = False, trials: WrongEventTrials | None = None) -> dict | None:
    """The report of a finished run; see the module doc.

    Every process must call this (the evaluation pass is sharded); the main process writes the files and
    gets their paths, the others None.  ``label_score`` with ``wrong_events``: a mixture's clean posterior,
    ``class_wise`` whether the mixture has one group per given class (for the classes it cannot judge);
    ``trials``: how many predictions the ``wrong_events`` are out of (the review page's cards say it).
    """
    cfg = run.cfg
    if not cfg.export_samples:
        return None
    start = time.perf_counter()
    predictions = training_set_predictions(model, data, run)
    seconds = time.perf_counter() - start
    if not run.runtime.is_main:
        return None
    not_judged = None
    if label_score is not None and wrong_events is not None:
        not_judged = unjudged_classes(wrong_events, data.noisy_labels, num_classes=data.num_classes,
                                      class_wise=class_wise)
    scores = scores_from_predictions(predictions.predicted, predictions.predicted_prob, predictions.given_prob,
                                     data.noisy_labels, label_score=label_score, wrong_events=wrong_events,
                                     true_label=data.clean_labels, not_judged=not_judged)
    keys, class_names = sample_paths(data.raw.train_images), data.raw.extra.get("classes")
    duplicates = conflicting_duplicates(predictions.digests, scores.given_label)
    written = write_sample_report(scores, files=files, paths=keys, class_names=class_names, num_classes=data.num_classes,
                                load_image=data.raw.train_images.load, grid=cfg.suspects_grid,
                                title=f"{cfg.tag}: the {min(cfg.suspects_grid, len(scores))} most suspect labels "
                                      "(given \u2192 predicted (prob))",
                                extra_summary={"identical_files_under_different_labels": describe_groups(
                                    duplicates, paths=keys, given=scores.given_label, class_names=class_names)})
    report = os.path.basename(files.review).removesuffix(REPORT_SUFFIXES["review"])
    written["review"] = write_review_page(
        scores, path=files.review, report=report, keys=keys, order=suspect_order(scores), max_shown=cfg.review_samples,
        class_names=class_names or [str(c) for c in range(data.num_classes)], load_image=data.raw.train_images.load,
        duplicate_groups=duplicates, title=f"{report}: review the flagged labels", trials=trials,
        score_name="label score" if label_score is not None else "probability of the given label",
        **export_rows(data))
    unjudged = "" if not not_judged else f"; {len(not_judged)} classes not judged (see the summary)"
    run.log.info(f"{int(scores.is_label_issue.sum())} of {len(scores)} training labels flagged (evaluation pass over "
                 f"the training set {seconds:.1f} s{unjudged}); {len(duplicates)} groups of identical files under "
                 f"different labels: {written['samples']}, {written['summary']}, {written['suspects']}")
    run.log.info(f"review page (open in a browser, export corrected_labels.csv): {written['review']}")
    return written


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
