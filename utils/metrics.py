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
