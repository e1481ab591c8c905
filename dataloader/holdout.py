"""A seeded, class-stratified share of the training images held out for validation (``val_fraction``)."""
from __future__ import annotations

import numpy as np


def stratified_holdout(labels: np.ndarray, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held_out)`` sorted int64 index arrays partitioning ``range(len(labels))``.

    Of each class's ``n_c`` samples (``labels`` (N,) int, the given labels) ``round(fraction * n_c)`` are drawn
    without replacement by ``numpy.random.default_rng(seed)``, classes in ascending order; ``fraction`` < 0.5,
    so every class keeps at least one training sample.  Both parts keep the dataset order.
    """
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"fraction must be in [0, 0.5), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(labels), dtype=bool)
    # one stable sort instead of one scan per class (O(N log N), not O(N C)): each class's slice holds
    # its members in dataset order, exactly what flatnonzero(labels == c) gave, so the draws are the same
    by_class = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[by_class], return_index=True)
    for start, end in zip(starts, np.append(starts[1:], len(labels))):
        members = by_class[start:end]
        held[rng.permutation(members)[:int(round(fraction * len(members)))]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
