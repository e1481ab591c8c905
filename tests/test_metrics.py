"""Noise-detection metrics: AUC of a clean score and the quality of a clean split."""
import numpy as np
import pytest

from utils.method.metrics import detection_auc, split_quality


def test_split_quality_by_hand():
    kept = np.array([1, 1, 1, 0, 0, 1], dtype=bool)
    clean = np.array([1, 1, 0, 1, 0, 1], dtype=bool)
    out = split_quality(kept, clean)
    assert out == {"size": 4, "precision": 3 / 4, "recall": 3 / 4}
    assert split_quality(kept, None) == {"size": 4, "precision": None, "recall": None}
    assert split_quality(np.zeros(3, bool), np.ones(3, bool)) == {"size": 0, "precision": None, "recall": 0.0}
    assert split_quality(np.ones(2, bool), np.zeros(2, bool))["recall"] is None


def test_detection_auc():
    is_noisy = np.array([False, False, True, True])
    assert detection_auc(np.array([0.9, 0.8, 0.1, 0.2]), is_noisy) == 1.0
    assert detection_auc(np.array([0.1, 0.2, 0.9, 0.8]), is_noisy) == 0.0
    assert detection_auc(np.array([0.9, 0.2, 0.5, 0.1]), is_noisy) == pytest.approx(0.75)
    assert detection_auc(np.ones(4), None) is None
    assert detection_auc(np.ones(2), np.array([True, True])) is None
