"""The training step of each method: ``step(model, batch) -> loss`` or ``(loss, terms)``.

:func:`utils.training.engine.train_one_epoch` owns zero_grad, backward and the optimiser step; a step does the
forward passes, its per-sample bookkeeping on the device (wrong events, predictions, ACTO's memory) and
returns the loss, and where the loss has several terms also ``terms``: ``{name: 0-d detached tensor}``, the
batch means a researcher compares with the paper's curves.  The engine sums them on the device (no host sync
per step) and the epoch's history row carries their means (``metrics.csv``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.method.acto import ActoHParams, ActoMemory, robust_losses, warmup_losses
from utils.method.losses import weighted_dynamic_loss
from utils.method.sample_weights import SampleWeights
from utils.method.wrong_events import EpochPredictions, WrongEvents

VIEWS = 2  # stage 2's weak and strong views: each can add one wrong event per sample and epoch

# the terms of each step, in the order of the history rows and metrics.csv
STAGE2_TERMS = ("loss_clean", "loss_hard", "loss_noisy", "weight_clean", "weight_hard", "weight_noisy")
ACTO_TERMS = ("loss_rtm", "loss_ntm", "loss_penalty", "loss_selection", "loss_consistency")


def loss_and_terms(output) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, terms)`` of a step's return value (a loss alone has no terms)."""
    if isinstance(output, torch.Tensor):
        return output, {}
    loss, terms = output
    return loss, terms


def stage1_step(wrong_events: WrongEvents, predictions: EpochPredictions):
    """Plain cross-entropy; the same forward pass counts wrong events and records predictions."""
    def step(model, batch):
        images, labels, index = batch
        _, logits = model(images)
        predicted = logits.detach().argmax(dim=1)
        wrong_events.record(index, predicted, labels=labels)
        predictions.record(index, predicted)
        return F.cross_entropy(logits.float(), labels)
    return step


def stage2_step(wrong_events: WrongEvents, weights: SampleWeights, *, entropy_weight: str):
    """Two forward passes (weak, strong), +1 wrong event per view, then the dynamic loss.

    Terms (:data:`STAGE2_TERMS`): the clean cross-entropy, the hard-sample consistency and the noisy entropy
    (they add up to the loss), and the batch means of their per-sample weights (tau1, eps, nw)."""
    def step(model, batch):
        (weak, strong), labels, index = batch
        _, logits_weak = model(weak)
        _, logits_strong = model(strong)
        counts = wrong_events.record(index, logits_weak.detach().argmax(1), logits_strong.detach().argmax(1),
                                     labels=labels)
        sample_weights = weights(counts, index)  # (3, B)
        loss, parts = weighted_dynamic_loss(logits_weak, logits_strong, labels, weights=sample_weights,
                                            entropy_weight=entropy_weight)
        mean_weights = sample_weights.detach().float().mean(dim=1)
        return loss, dict(zip(STAGE2_TERMS, (*parts.unbind(0), *mean_weights.unbind(0))))
    return step


def acto_step(memory: ActoMemory, hp: ActoHParams, epoch: int):
    """Training step over the model pair (``.rtm``, ``.ntm``) in ``epoch`` (0-based): warm-up or robust losses.

    Terms (of :data:`ACTO_TERMS`, those of the phase): both models' losses (adding up to the loss); in warm-up
    the RTM's confidence penalty (part of its loss), in the robust phase the selected-set loss and, with
    ``use_cr``, the consistency loss (``loss_rtm = s * loss_selection + (1 - s) * loss_consistency``).
    """
    def step(pair, batch):
        # strong: None where the step does not read it (warm-up, use_cr off: acto.py Acto.views)
        (weak, strong), labels, index = batch
        _, logits_r = pair.rtm(weak)
        _, logits_n = pair.ntm(weak)
        if epoch < hp.warmup_epochs:
            loss_r, loss_n, penalty = warmup_losses(logits_r, logits_n, labels, hp)
            memory.select(index, torch.ones_like(labels, dtype=torch.bool))  # every sample counts in warm-up
            memory.record_batch(labels=labels, pred_rtm=logits_r.detach().argmax(1),
                                pred_ntm=logits_n.detach().argmax(1))
            return loss_r + loss_n, {"loss_rtm": loss_r.detach(), "loss_ntm": loss_n.detach(), "loss_penalty": penalty}
        logits_s = pair.rtm(strong)[1] if hp.use_cr else None
        loss_r, loss_n, info = robust_losses(logits_r, logits_s, logits_n, labels, index, memory, epoch, hp)
        memory.record_batch(labels=labels, pred_rtm=logits_r.detach().argmax(1), pred_ntm=logits_n.detach().argmax(1),
                            mining_on=info.mining_on, metric=info.metric)
        terms = {"loss_rtm": loss_r.detach(), "loss_ntm": loss_n.detach(), "loss_selection": info.loss_sel}
        if hp.use_cr:
            terms["loss_consistency"] = info.loss_cr
        # one backward through both models: they share no parameters, so the gradients equal two backwards
        return loss_r + loss_n, terms
    return step
