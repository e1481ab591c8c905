"""Identical content under different labels: groups of training samples whose digests are equal.

The digests come from the report's evaluation pass (:meth:`dataloader.files.FileImagesWithDecoding.load_with_digest`
hashes the bytes it reads anyway), so finding the groups costs no second read of the data.
"""
from __future__ import annotations

import numpy as np


def conflicting_duplicates(digests: np.ndarray, given: np.ndarray) -> list[np.ndarray]:
    """Groups of dataset indices with identical content and at least two different given labels.

    ``digests`` (N, D) uint8, one content digest per sample; ``given`` (N,) int labels.  Each group is
    an ascending int64 index array; the groups are ordered by their first index.  Identical files under
    one label are not returned (they are duplicates, but no label contradicts another).
    """
    digests = np.ascontiguousarray(digests, dtype=np.uint8)
    given = np.asarray(given, dtype=np.int64)
    if digests.ndim != 2 or len(digests) != len(given):
        raise ValueError(f"expected digests (N, D) for {len(given)} labels, got {digests.shape}")
    if len(given) == 0:
        return []
    rows = digests.view(np.dtype((np.void, digests.shape[1]))).ravel()
    _, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    shared = counts[inverse] > 1
    candidates = np.flatnonzero(shared)
    if not len(candidates):
        return []
    order = candidates[np.argsort(inverse[candidates], kind="stable")]  # grouped by content, index ascending
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = [g for g in np.split(order, bounds) if len(np.unique(given[g])) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def describe_groups(groups: list[np.ndarray], *, paths, given: np.ndarray, class_names) -> list[dict]:
    """The groups for the summary JSON: ``[{"paths": [...], "given_labels": [...]}]`` (class names)."""
    name = (lambda c: str(c) if class_names is None else str(class_names[c]))
    return [{"paths": [paths[i] for i in g], "given_labels": [name(given[i]) for i in g]} for g in groups]
