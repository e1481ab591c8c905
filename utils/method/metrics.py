"""Noise-detection quality of a per-sample clean score."""
from __future__ import annotations

import numpy as np


def detection_auc(clean_score: np.ndarray, is_noisy: np.ndarray | None) -> float | None:
    """ROC AUC of ``clean_score`` for telling clean from noisy samples (1.0 = perfect).

    None where the truth is unknown or only one kind of sample exists.
    """
    if is_noisy is None or is_noisy.all() or not is_noisy.any():
        return None
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(~np.asarray(is_noisy, dtype=bool), clean_score))


def grouped_detection_auc(clean_score: np.ndarray, num_clean: np.ndarray, num_noisy: np.ndarray) -> float | None:
    """:func:`detection_auc` of a score that takes one value per group of samples, from counts alone.

    ``clean_score`` (K,) is the score of every sample of group k, of which ``num_clean[k]`` are clean and
    ``num_noisy[k]`` noisy.  Bit-identical to :func:`detection_auc` over the N samples: sklearn builds
    the same ROC points from integer sample weights (exact sums in float64) as from N samples, in
    O(K log K) instead of O(N log N).  None where the truth has only one kind of sample.
    """
    num_clean, num_noisy = np.asarray(num_clean, dtype=np.int64), np.asarray(num_noisy, dtype=np.int64)
    if not num_clean.any() or not num_noisy.any():
        return None
    from sklearn.metrics import roc_auc_score
    score = np.concatenate([clean_score, clean_score])
    is_clean = np.r_[np.ones(len(num_clean), bool), np.zeros(len(num_noisy), bool)]
    weight = np.concatenate([num_clean, num_noisy])
    keep = weight > 0
    return float(roc_auc_score(is_clean[keep], score[keep], sample_weight=weight[keep].astype(np.float64)))


def split_quality(kept: np.ndarray, is_clean: np.ndarray | None, *, weight: np.ndarray | None = None) -> dict:
    """Size, precision and recall of a method's clean split (the samples it keeps as clean).

    ``precision = |kept & clean| / |kept|`` (None for an empty split), ``recall = |kept & clean| /
    |clean|`` (None without clean samples); both None where the truth is unknown.  With ``weight``
    (int, same length) each entry stands for that many samples.
    """
    kept = np.asarray(kept, dtype=bool)
    weight = np.ones(len(kept), dtype=np.int64) if weight is None else np.asarray(weight, dtype=np.int64)
    out = {"size": int(weight[kept].sum()), "precision": None, "recall": None}
    if is_clean is not None:
        is_clean = np.asarray(is_clean, dtype=bool)
        hit = int(weight[kept & is_clean].sum())
        clean = int(weight[is_clean].sum())
        out["precision"] = hit / out["size"] if out["size"] else None
        out["recall"] = hit / clean if clean else None
    return out
