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


def split_quality(kept: np.ndarray, is_clean: np.ndarray | None) -> dict:
    """Size, precision and recall of a method's clean split (the samples it keeps as clean).

    ``precision = |kept & clean| / |kept|`` (None for an empty split), ``recall = |kept & clean| /
    |clean|`` (None without clean samples); both None where the truth is unknown.
    """
    kept = np.asarray(kept, dtype=bool)
    out = {"size": int(kept.sum()), "precision": None, "recall": None}
    if is_clean is not None:
        is_clean = np.asarray(is_clean, dtype=bool)
        hit = int((kept & is_clean).sum())
        out["precision"] = hit / out["size"] if out["size"] else None
        out["recall"] = hit / int(is_clean.sum()) if is_clean.any() else None
    return out
