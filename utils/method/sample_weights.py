"""Stage 2's per-sample loss weights: the beta mixture over the wrong events and a device-side table of the
weights of the three loss terms per count (docs/fidelity.md#ido-17-dynamic-loss)."""
from __future__ import annotations

import numpy as np
import torch

from utils.method.bmm import BetaMixture, BmmLookup, pair_histogram
from utils.method.losses import loss_weights
from utils.method.metrics import grouped_detection_auc, split_quality


class SampleWeights:
    """The beta mixture over the wrong events and a device-side table of the loss weights per count.

    After each fit the weights of the three loss terms (:func:`utils.method.losses.loss_weights` of the
    mixture's tau1, tau2, F1, F2) are computed for every (group, count), so a batch costs one gather.

    ``new_events`` is the most a sample's live count can exceed the counts of the last fit: one
    event per view, since :meth:`WrongEvents.record` returns the counts at the start of the epoch plus
    this epoch's events of the sample (a sample seen twice in one epoch, as with a distributed
    sampler's padding, overwrites rather than adds).  The table covers that margin, so the per-batch
    lookup needs no clamp.
    """

    def __init__(self, *, class_wise: bool, noisy_labels: np.ndarray, num_classes: int, device: torch.device,
                 new_events: int, noisy_weight: str = "one_minus_clean"):
        if new_events < 0:
            raise ValueError(f"new_events must be >= 0, got {new_events}")
        self.class_wise = class_wise
        self.new_events = new_events
        self.noisy_weight = noisy_weight
        self.bmm = BetaMixture(num_groups=num_classes if class_wise else 1)
        self.groups_np = noisy_labels if class_wise else None
        self.groups = torch.as_tensor(noisy_labels, device=device) if class_wise else None
        self.device = device
        self.lookup: BmmLookup | None = None

    def fit(self, counts: np.ndarray, *, iterations: int) -> None:
        self.bmm.fit(counts, groups=self.groups_np, max_iter=iterations)
        self._build_lookup(counts)

    def _build_lookup(self, counts: np.ndarray) -> None:
        # rows above the fitted maximum (this epoch's new events) repeat the last one: IDO-B5's clipping
        max_count = int(counts.max(initial=0)) + self.new_events
        tau1, tau2, f1, f2 = torch.as_tensor(self.bmm.lookup_table(max_count)).unbind(-1)  # each (G, K), float32
        weights = loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2,
                               noisy_weight=self.noisy_weight)  # (3, G, K)
        self.lookup = BmmLookup(weights.permute(1, 2, 0).numpy(), device=self.device, clamp=False)

    def state_dict(self) -> dict:
        return self.bmm.state_dict()

    def load_state_dict(self, state: dict, counts: np.ndarray) -> None:
        """Restore the mixture fitted to ``counts`` (the wrong events it was last fitted on)."""
        self.bmm.load_state_dict(state)
        self._build_lookup(counts)

    def __call__(self, counts: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Loss weights ``(3, B)`` (clean, consistency, noisy term) of the samples ``index`` (B,) whose
        live wrong-event counts are ``counts`` (B,)."""
        return self.lookup(counts, None if self.groups is None else self.groups[index])

    def clean_posterior(self, counts: np.ndarray) -> np.ndarray:
        return self.bmm.evaluate(counts, self.groups_np)["clean_posterior"]

    def detection(self, counts: np.ndarray, is_noisy: np.ndarray | None) -> dict:
        """Noise-detection quality where the truth is known: AUC of the clean posterior, and size,
        precision and recall of the clean split (clean posterior >= 0.5)."""
        # per distinct (group, count) pair, weighted by how many clean / noisy samples have it: O(N) and
        # the same numbers as over the N samples (tests/test_bmm.py)
        group, count, samples, noisy = pair_histogram(counts, self.groups_np, num_groups=self.bmm.num_groups,
                                                      marked=is_noisy)
        clean_posterior = self.bmm.evaluate(count, group if self.class_wise else None)["clean_posterior"]
        if noisy is None:
            auc, split = None, split_quality(clean_posterior >= 0.5, None, weight=samples)
        else:
            auc = grouped_detection_auc(clean_posterior, samples - noisy, noisy)
            # each pair twice: its clean samples, then its noisy ones
            split = split_quality(np.tile(clean_posterior >= 0.5, 2), np.repeat([True, False], len(samples)),
                                  weight=np.concatenate([samples - noisy, noisy]))
        rnd = (lambda v: None if v is None else round(v, 6))
        return {"auc": rnd(auc), "clean_size": split["size"], "clean_precision": rnd(split["precision"]),
                "clean_recall": rnd(split["recall"])}
