"""IDO dynamic loss (docs/fidelity.md#ido-17-dynamic-loss, with the per-sample fix of bug IDO-B4).

L = L_C + L_SIM + L_N, no coefficients:

* ``L_C   = mean_i tau1_i * [CE(z_i^w, y_i) + CE(z_i^s, y_i)]``
* ``L_SIM = mean_i eps_i * mean_c (z_ic^w - z_ic^s)^2`` (logits, gradient through both views),
  ``eps_i = tau1_i * F1_i + (1 - tau2_i) * (1 - F2_i)``
* ``L_N   = mean_i nw_i * kappa_i * H_i`` (``entropy_weight="confidence"``, HEAD intent, per sample)
  or ``mean_i nw_i * H_i`` (``"plain"``, the January-2025 code), where
  ``p_bar_i = 0.5 * (clip(softmax(z_i^w)) + clip(softmax(z_i^s)))`` with clip to [1e-4, 1 - 1e-4]
  (not renormalised), ``H_i = -sum_c p_bar_ic log p_bar_ic``, ``kappa_i = max_c p_bar_ic``
  (not detached) and ``nw_i = 1 - tau1_i`` (``noisy_weight="one_minus_clean"``, official code) or
  ``tau2_i`` (``"noisy_posterior"``, the method figure).

The weights of the three terms depend on a sample's wrong-event count alone: :func:`loss_weights` builds them
once per BMM fit for every count and :func:`weighted_dynamic_loss` takes a batch's gathered weights.  The
per-batch form from tau1, tau2, F1, F2 (``dynamic_loss``) is the tests' reference (tests/reference.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["loss_weights", "weighted_dynamic_loss", "ENTROPY_WEIGHTS", "NOISY_WEIGHTS", "LOSS_TERMS",
           "PROB_CLAMP"]

ENTROPY_WEIGHTS = ("confidence", "plain")
NOISY_WEIGHTS = ("one_minus_clean", "noisy_posterior")
LOSS_TERMS = ("clean", "sim", "noisy")  # the rows of loss_weights and of the parts
PROB_CLAMP = (1e-4, 1.0 - 1e-4)


def _batch_size(logits_weak: torch.Tensor, logits_strong: torch.Tensor) -> int:
    if logits_weak.dim() != 2 or logits_weak.shape != logits_strong.shape:
        raise ValueError(
            f"logits_weak and logits_strong must both be (B, C), got {tuple(logits_weak.shape)} and "
            f"{tuple(logits_strong.shape)}")
    return logits_weak.shape[0]


def loss_weights(
    *,
    clean_posterior: torch.Tensor,
    noisy_posterior: torch.Tensor,
    clean_cdf: torch.Tensor,
    noisy_cdf: torch.Tensor,
    noisy_weight: str = "one_minus_clean",
) -> torch.Tensor:
    """Per-sample weights of the three loss terms from the BMM outputs tau1, tau2, F1, F2.

    Args:
        clean_posterior, noisy_posterior, clean_cdf, noisy_cdf: float tensors of one shape ``S``
            (a batch ``(B,)``, or a lookup table ``(G, K)`` of every group and count).
        noisy_weight: ``"one_minus_clean"`` (1 - tau1, official code) or ``"noisy_posterior"`` (tau2).

    Returns:
        ``(3, *S)`` tensor of the dtype of the inputs, rows in :data:`LOSS_TERMS` order: ``tau1``
        (clean term), ``eps = tau1 * F1 + (1 - tau2) * (1 - F2)`` (consistency term) and ``nw``
        (noisy term).  Like the BMM outputs they depend on the wrong-event count alone, so stage 2
        builds them once per fit for every count and gathers one column per sample.
    """
    if noisy_weight not in NOISY_WEIGHTS:
        raise ValueError(f"unknown noisy_weight {noisy_weight!r}; expected one of {NOISY_WEIGHTS}")
    tau1, tau2, f1, f2 = clean_posterior, noisy_posterior, clean_cdf, noisy_cdf
    consistency = tau1 * f1 + (1.0 - tau2) * (1.0 - f2)
    noisy = (1.0 - tau1) if noisy_weight == "one_minus_clean" else tau2
    return torch.stack([tau1, consistency, noisy])


def weighted_dynamic_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor,
    entropy_weight: str = "confidence",
) -> tuple[torch.Tensor, torch.Tensor]:
    """IDO dynamic loss for one batch whose term weights are already known (see :func:`loss_weights`).

    Args:
        logits_weak, logits_strong: ``(B, C)`` logits of the weak and strong views (any float
            dtype; computed in float32).
        labels: ``(B,)`` int64 given (noisy) labels in ``[0, C)``.
        weights: ``(3, B)`` float32 weights of the clean, consistency and noisy terms, on the logits'
            device (treated as constants, i.e. detached).
        entropy_weight: ``"confidence"`` (per-sample kappa_i * H_i, fixed IDO-B4) or ``"plain"`` (H_i).

    Returns:
        ``(total, parts)``: ``total`` a float32 scalar tensor ``L_C + L_SIM + L_N`` with gradient;
        ``parts`` the detached float32 ``(3,)`` tensor ``(L_C, L_SIM, L_N)`` (no host synchronisation).
    """
    if entropy_weight not in ENTROPY_WEIGHTS:
        raise ValueError(f"unknown entropy_weight {entropy_weight!r}; expected one of {ENTROPY_WEIGHTS}")
    batch = _batch_size(logits_weak, logits_strong)
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    if weights.shape != (len(LOSS_TERMS), batch):
        raise ValueError(f"weights must have shape ({len(LOSS_TERMS)}, {batch}), got {tuple(weights.shape)}")

    zw = logits_weak.float()
    zs = logits_strong.float()
    y = labels.to(device=zw.device, dtype=torch.long)

    ce = F.cross_entropy(zw, y, reduction="none") + F.cross_entropy(zs, y, reduction="none")  # (B,) both views
    sq = (zw - zs).pow(2).mean(dim=1)  # (B,) consistency on logits
    lo, hi = PROB_CLAMP
    p_bar = 0.5 * (F.softmax(zw, dim=1).clamp(lo, hi) + F.softmax(zs, dim=1).clamp(lo, hi))  # (B, C)
    entropy = -(p_bar * p_bar.log()).sum(dim=1)  # (B,) of the averaged clipped prediction
    weights = weights.detach()
    if entropy_weight == "confidence":
        kappa = p_bar.max(dim=1).values  # (B,), not detached
        per_sample = weights * torch.stack([ce, sq, kappa])
        # nw_i * kappa_i * H_i per sample, never a (B, B) broadcast (IDO-B4); multiplied in this order the
        # result is bit-identical to computing each term on its own
        per_sample = torch.cat([per_sample[:2], per_sample[2:] * entropy])
    else:
        per_sample = weights * torch.stack([ce, sq, entropy])
    # one stacked product and mean for the three terms: fewer ops per step than three of each
    parts = per_sample.mean(dim=1)  # (3,)
    return parts.sum(), parts.detach()
