"""IDO dynamic loss (IDO.md 1.7, with the per-sample fix of bug B4).

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
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["dynamic_loss", "ENTROPY_WEIGHTS", "NOISY_WEIGHTS", "PROB_CLAMP"]

ENTROPY_WEIGHTS = ("confidence", "plain")
NOISY_WEIGHTS = ("one_minus_clean", "noisy_posterior")
PROB_CLAMP = (1e-4, 1.0 - 1e-4)


def _as_weight(x: Any, name: str, batch: int, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(t.shape)}")
    return t.detach().to(device=device, dtype=torch.float32, non_blocking=True)


def dynamic_loss(
    logits_weak: torch.Tensor,
    logits_strong: torch.Tensor,
    labels: torch.Tensor,
    *,
    clean_posterior: Any,
    noisy_posterior: Any,
    clean_cdf: Any,
    noisy_cdf: Any,
    entropy_weight: str = "confidence",
    noisy_weight: str = "one_minus_clean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """IDO dynamic loss for one batch.

    Args:
        logits_weak, logits_strong: ``(B, C)`` logits of the weak and strong views (any float
            dtype; computed in float32).
        labels: ``(B,)`` int64 given (noisy) labels in ``[0, C)``.
        clean_posterior, noisy_posterior, clean_cdf, noisy_cdf: ``(B,)`` per-sample BMM outputs
            tau1, tau2, F1, F2 (tensors or arrays; treated as constants, i.e. detached).
        entropy_weight: ``"confidence"`` (per-sample kappa_i * H_i, fixed B4) or ``"plain"`` (H_i).
        noisy_weight: ``"one_minus_clean"`` (1 - tau1, official code) or ``"noisy_posterior"`` (tau2).

    Returns:
        ``(total, parts)``: ``total`` a float32 scalar tensor ``L_C + L_SIM + L_N`` with gradient;
        ``parts`` a dict of detached float32 scalar tensors ``{"clean": L_C, "sim": L_SIM,
        "noisy": L_N}`` (no host synchronisation is done here).
    """
    if entropy_weight not in ENTROPY_WEIGHTS:
        raise ValueError(f"unknown entropy_weight {entropy_weight!r}; expected one of {ENTROPY_WEIGHTS}")
    if noisy_weight not in NOISY_WEIGHTS:
        raise ValueError(f"unknown noisy_weight {noisy_weight!r}; expected one of {NOISY_WEIGHTS}")
    if logits_weak.dim() != 2 or logits_weak.shape != logits_strong.shape:
        raise ValueError(
            f"logits_weak and logits_strong must both be (B, C), got {tuple(logits_weak.shape)} and "
            f"{tuple(logits_strong.shape)}")
    batch = logits_weak.shape[0]
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    device = logits_weak.device
    tau1 = _as_weight(clean_posterior, "clean_posterior", batch, device)
    tau2 = _as_weight(noisy_posterior, "noisy_posterior", batch, device)
    f1 = _as_weight(clean_cdf, "clean_cdf", batch, device)
    f2 = _as_weight(noisy_cdf, "noisy_cdf", batch, device)

    zw = logits_weak.float()
    zs = logits_strong.float()
    y = labels.to(device=device, dtype=torch.long)

    # clean term: per-sample CE on both views, weighted by tau1
    ce = F.cross_entropy(zw, y, reduction="none") + F.cross_entropy(zs, y, reduction="none")  # (B,)
    loss_clean = (tau1 * ce).mean()

    # consistency term on logits, weight eps_i
    sim_weight = tau1 * f1 + (1.0 - tau2) * (1.0 - f2)  # (B,)
    sq = (zw - zs).pow(2).mean(dim=1)  # (B,)
    loss_sim = (sim_weight * sq).mean()

    # entropy term on the averaged clipped prediction
    lo, hi = PROB_CLAMP
    p_bar = 0.5 * (F.softmax(zw, dim=1).clamp(lo, hi) + F.softmax(zs, dim=1).clamp(lo, hi))  # (B, C)
    entropy = -(p_bar * p_bar.log()).sum(dim=1)  # (B,)
    nw = (1.0 - tau1) if noisy_weight == "one_minus_clean" else tau2  # (B,)
    if entropy_weight == "confidence":
        kappa = p_bar.max(dim=1).values  # (B,), not detached
        per_sample = nw * kappa * entropy  # (B,) -- never a (B, B) broadcast (B4)
    else:
        per_sample = nw * entropy
    loss_noisy = per_sample.mean()

    total = loss_clean + loss_sim + loss_noisy
    parts = {"clean": loss_clean.detach(), "sim": loss_sim.detach(), "noisy": loss_noisy.detach()}
    return total, parts
