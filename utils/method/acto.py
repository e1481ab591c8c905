"""ACTO / ACT method math (docs/fidelity.md#act-1-method): pure tensor functions and the per-sample memory.

Two models see the same batch: the RTM (robust trained model, the one reported) and the NTM
(non-robust trained model, plain cross-entropy on everything).  Nothing here does I/O or copies a
tensor to the host; the entry point ``acto.py`` owns the models, loaders and files.

Per batch of the robust phase (epoch ``e >= W``), with ``y`` the given (noisy) labels and the
train-mode weak-view predictions ``r = argmax f_R(x_w)``, ``n = argmax f_N(x_w)``:

* memorisation metric ``M = (Acc_N - Acc_R) / Acc_R`` (accuracies on ``y`` in %); mining is on iff
  ``Acc_R != 0 and M < tau`` (:func:`memorization_metric`, per batch and reversible, ACT-B5);
* agreement ``A = {r = y, n = y}``, discrepancy ``D = {r != y, n = y}``; ``S = A | D`` while mining
  is on, else ``A`` (``paper_fig2``); ``web_variant``: ``S = {r = y} | {n = y}`` / ``{r = y}``
  (:func:`selection_masks`, ACT-B4);
* counter ``c_i += 1`` for ``i in S`` (every sample in warm-up), weight ``w_i = c_i / (e + 1)``
  (:func:`dsrw_weights`, ACT-B6);
* soft-label bank ``q_i <- a q_i + (1 - a) softmax(f_R(x_w))`` for every ``i`` in the batch and CR
  target ``t_i = y_i if i in S else argmax q_i`` with the updated ``q`` (:func:`ema_soft_labels`,
  :func:`cr_targets`, ACT-B17);
* ``L_R = s * mean_S(w * CE(f_R(x_w), y)) + (1 - s) * mean_B CE(f_R(x_s), t)`` with ``L_sel = 0``
  for an empty ``S`` (ACT-B8), ``L_N = mean_B CE(f_N(x_w), y)`` (:func:`robust_losses`).

Warm-up (``e < W``): ``L_R = CE + mean_i sum_k p_ik log p_ik`` (the confidence penalty, ACT-B7 fixed),
``L_N = CE`` (:func:`warmup_losses`).

:class:`ActoMemory` keeps the counter and the bank on the training device.  Within an epoch it
records by index *assignment* into epoch buffers and folds them in at :meth:`ActoMemory.end_epoch`:
with one process every sample is seen once per epoch, so this equals the official per-batch
in-place updates exactly; under DDP the sampler's padding duplicates are merged (max for the
selection, mean for the bank rows) instead of counted twice.  The bank itself is updated in place
(the epoch's rows are not kept twice) and merged in blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from utils.core.errors import ConfigError
from utils.method.metrics import split_quality

__all__ = [
    "SELECTION_RULES", "ActoHParams", "parse_lr_plan", "build_lr_plan", "memorization_metric",
    "selection_masks", "reads_strong_view", "dsrw_weights", "confidence_penalty", "ema_soft_labels",
    "cr_targets", "warmup_losses", "robust_losses", "ActoMemory", "selection_quality",
]

SELECTION_RULES = ("paper_fig2", "web_variant")
PROB_FLOOR = 1e-12
DEFAULT_ETA_END = 1e-4  # lr_plan null: cosine:W,1e-4,E (docs/fidelity.md#act-53-ido-parity-defaults, mirrors IDO's eta_min)

Reduce = Callable[[torch.Tensor], torch.Tensor]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class ActoHParams:
    """The method's knobs (config keys of the same names)."""

    warmup_epochs: int = 2
    tau: float = 0.025
    ema_alpha: float = 0.8
    selection_weight: float = 0.8
    label_smoothing: float = 0.0
    selection_rule: str = "paper_fig2"
    confidence_penalty: bool = True
    faithful_conf_penalty_clamp: bool = False
    use_mining: bool = True
    use_dsrw: bool = True
    use_cr: bool = True

    def __post_init__(self):
        if self.selection_rule not in SELECTION_RULES:
            raise ValueError(f"unknown selection_rule {self.selection_rule!r}; expected one of {SELECTION_RULES}")

    @classmethod
    def from_config(cls, cfg) -> "ActoHParams":
        return cls(**{name: cfg[name] for name in cls.__dataclass_fields__})


# ---------------------------------------------------------------------------------------------
# learning-rate plan (docs/fidelity.md#act-18-learning-rate-plan)
# ---------------------------------------------------------------------------------------------

def parse_lr_plan(plan: str | None, *, key: str = "lr_plan") -> tuple[str, tuple]:
    """Validate a plan string; ``("cosine_at", (S, end, T|None))``, ``("cosine", ())``, ``("constant", ())``
    or ``("baseline", ())``.  Raises :class:`ConfigError` naming ``key``."""
    if plan is None:
        raise ConfigError(f"config key '{key}' is null here; expected a plan")
    text = plan.strip()
    if text in ("cosine", "constant", "baseline"):
        return text, ()
    if text.startswith("cosine:"):
        parts = [p.strip() for p in text[len("cosine:"):].split(",")]
        try:
            if not 1 <= len(parts) <= 3 or parts[0] == "":
                raise ValueError
            start = int(parts[0])
            end = float(parts[1]) if len(parts) > 1 and parts[1] != "" else 0.0
            last = int(parts[2]) if len(parts) > 2 and parts[2] != "" else None
        except ValueError:
            raise ConfigError(f"config key '{key}': {plan!r} is not cosine:S,END,T (S, T integer epochs, END a "
                              "learning rate; END and T optional)") from None
        if start < 0 or end < 0 or not math.isfinite(end):
            raise ConfigError(f"config key '{key}': {plan!r} needs S >= 0 and END >= 0")
        return "cosine_at", (start, end, last)
    raise ConfigError(f"config key '{key}' must be cosine:S,END,T, cosine, constant or baseline; got {plan!r}")


def _cosine(lr: float, end: float, j: int, length: int) -> float:
    return (lr - end) * 0.5 * (1.0 + math.cos(math.pi * j / length)) + end


def build_lr_plan(lr: float, epochs: int, warmup_epochs: int, warmup_lr: float | None = None,
                  decay: str = "cosine") -> list[float]:
    """Per-epoch learning rates (``len == epochs``), the official ``build_lr_plan`` semantics.

    * warm-up: ``warmup_lr`` (default ``lr``) for epochs ``0 .. W-1``, constant;
    * ``cosine:S,END,T``: ``lr`` for ``W .. S-1``, then ``(lr-END)/2 (1 + cos(pi j/(T-S))) + END`` at
      epoch ``S + j`` for ``j < T-S``, then the last value held; ``T`` missing or ``<= S`` -> ``E``,
      ``END`` missing -> 0.  Epochs index the plan absolutely, so ``W > S`` cuts the start of the
      cosine instead of shifting it late (the official list grows to ``E + W - S`` entries);
    * ``cosine``: warm-up, then a cosine from ``lr`` to 0 over the remaining ``E - W`` epochs;
    * ``constant``: warm-up, then ``lr``;
    * ``baseline``: ``lr * 0.1^[e>=60] * 0.1^[e>=120] * 0.1^[e>=150]``, no warm-up value.
    """
    kind, args = parse_lr_plan(decay, key="lr_plan")
    warm = lr if warmup_lr is None else warmup_lr
    if kind == "baseline":
        return [lr * 0.1 ** ((e >= 60) + (e >= 120) + (e >= 150)) for e in range(epochs)]
    plan: list[float] = []
    for e in range(epochs):
        if e < warmup_epochs:
            plan.append(warm)
        elif kind == "constant":
            plan.append(lr)
        elif kind == "cosine":
            plan.append(_cosine(lr, 0.0, e - warmup_epochs, epochs - warmup_epochs))
        else:
            start, end, last = args
            if last is None or last <= start:
                last = epochs
            if e < start:
                plan.append(lr)
            else:
                plan.append(_cosine(lr, end, min(e - start, last - start - 1), last - start))
    return plan


# ---------------------------------------------------------------------------------------------
# per-batch selection
# ---------------------------------------------------------------------------------------------

def memorization_metric(pred_rtm: torch.Tensor, pred_ntm: torch.Tensor, labels: torch.Tensor, tau: float):
    """``(M, mining_on, acc_rtm, acc_ntm)`` of one batch, all 0-d device tensors.

    ``acc_X = 100 * mean(pred_X == labels)``; ``M = (acc_ntm - acc_rtm) / acc_rtm`` (``inf`` when
    ``acc_rtm == 0``); ``mining_on = acc_rtm != 0 and M < tau``.
    """
    acc_r = 100.0 * (pred_rtm == labels).float().mean()
    acc_n = 100.0 * (pred_ntm == labels).float().mean()
    nonzero = acc_r != 0
    m = torch.where(nonzero, (acc_n - acc_r) / torch.where(nonzero, acc_r, torch.ones_like(acc_r)),
                    torch.full_like(acc_r, math.inf))
    return m, nonzero & (m < tau), acc_r, acc_n


@dataclass
class Selection:
    """Boolean (B,) masks of one batch."""

    selected: torch.Tensor  # S: trained on by L_sel, counted by the history counter
    agree: torch.Tensor     # A = {r = y and n = y}
    mined: torch.Tensor     # in S through mining only: D = {r != y and n = y} while mining is on


def selection_masks(pred_rtm: torch.Tensor, pred_ntm: torch.Tensor, labels: torch.Tensor,
                    mining_on: torch.Tensor | bool, rule: str = "paper_fig2") -> Selection:
    """Selected set of a batch (docs/fidelity.md#act-14-robust-phase).

    ``paper_fig2`` (main.py, Figure 2): ``S = A | D`` while mining is on, else ``A``.
    ``web_variant`` (main_web.py, main_food101n.py): ``S = {r = y} | {n = y}`` while mining is on,
    else ``{r = y}`` (this keeps ``r = y != n``, which Figure 2 discards).
    """
    rtm_ok, ntm_ok = pred_rtm == labels, pred_ntm == labels
    mining_on = torch.as_tensor(mining_on, device=labels.device)
    agree = rtm_ok & ntm_ok
    mined = ~rtm_ok & ntm_ok & mining_on
    if rule == "paper_fig2":
        selected = agree | mined
    elif rule == "web_variant":
        selected = rtm_ok | mined
    else:
        raise ValueError(f"unknown selection rule {rule!r}; expected one of {SELECTION_RULES}")
    return Selection(selected, agree, mined)


def reads_strong_view(hp: ActoHParams, epoch: int) -> bool:
    """Whether the step of ``epoch`` (0-based) uses the strong view: only the robust phase's consistency loss
    (``use_cr``) does; warm-up and ``use_cr: false`` train on the weak view alone."""
    return hp.use_cr and epoch >= hp.warmup_epochs


def dsrw_weights(counts: torch.Tensor, epoch: int) -> torch.Tensor:
    """Dynamic sample re-weighting ``w_i = c_i / (e + 1)`` (float32), ``c_i`` including this epoch."""
    return counts.float() / float(epoch + 1)


def confidence_penalty(logits: torch.Tensor, faithful_clamp: bool = False) -> torch.Tensor:
    """Negative entropy ``mean_i sum_k p_ik log p_ik`` (<= 0; adding it to the loss penalises confidence).

    Default: ``p = softmax(z)``, ``log max(p, 1e-12)`` (DivideMix's NegEntropy; ACT-B7 fixed).
    ``faithful_clamp``: the official ``softmax(z.clamp(min=1e-12))``, which zeroes negative logits.
    """
    z = logits.float()
    if faithful_clamp:
        p = F.softmax(z.clamp(min=PROB_FLOOR), dim=1)
        return (p * p.log()).sum(dim=1).mean()
    p = F.softmax(z, dim=1)
    return (p * p.clamp(min=PROB_FLOOR).log()).sum(dim=1).mean()


def ema_soft_labels(rows: torch.Tensor, logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * rows + (1 - alpha) * softmax(logits)`` (float32, no gradient)."""
    return alpha * rows.float() + (1.0 - alpha) * F.softmax(logits.detach().float(), dim=1)


def cr_targets(selected: torch.Tensor, labels: torch.Tensor, soft_rows: torch.Tensor) -> torch.Tensor:
    """Hard CR targets: the given label for selected samples, ``argmax q_i`` otherwise."""
    return torch.where(selected, labels, soft_rows.argmax(dim=1))


def _ce(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=smoothing)


def warmup_losses(logits_rtm: torch.Tensor, logits_ntm: torch.Tensor, labels: torch.Tensor,
                  hp: ActoHParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L_R, L_N, penalty)`` of a warm-up batch: CE (+ confidence penalty on the RTM), CE, and the penalty
    part of ``L_R`` (0-d, detached; 0 without ``confidence_penalty``)."""
    loss_r = _ce(logits_rtm, labels, hp.label_smoothing).mean()
    penalty = torch.zeros_like(loss_r)
    if hp.confidence_penalty:
        penalty = confidence_penalty(logits_rtm, hp.faithful_conf_penalty_clamp)
        loss_r = loss_r + penalty
    loss_n = _ce(logits_ntm, labels, hp.label_smoothing).mean()
    return loss_r, loss_n, penalty.detach()


@dataclass
class RobustBatch:
    """What one robust batch decided (device tensors, detached)."""

    selection: Selection
    mining_on: torch.Tensor     # 0-d bool
    metric: torch.Tensor        # 0-d M (inf when the RTM fits no label)
    acc_rtm: torch.Tensor       # 0-d, % of the batch
    acc_ntm: torch.Tensor
    loss_sel: torch.Tensor      # 0-d parts of L_R
    loss_cr: torch.Tensor


def robust_losses(logits_rtm_weak: torch.Tensor, logits_rtm_strong: torch.Tensor | None,
                  logits_ntm_weak: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                  memory: "ActoMemory", epoch: int, hp: ActoHParams):
    """``(L_R, L_N, RobustBatch)`` of one robust-phase batch; records the selection and the bank rows
    of ``index`` in ``memory``.  ``logits_rtm_strong`` may be None when ``hp.use_cr`` is off."""
    pred_r = logits_rtm_weak.detach().argmax(dim=1)
    pred_n = logits_ntm_weak.detach().argmax(dim=1)
    metric, mining_on, acc_r, acc_n = memorization_metric(pred_r, pred_n, labels, hp.tau)
    if not hp.use_mining:
        mining_on = torch.zeros_like(mining_on)
    sel = selection_masks(pred_r, pred_n, labels, mining_on, hp.selection_rule)
    counts = memory.select(index, sel.selected, sel.mined)  # c_i += 1 for i in S, before the loss
    weights = dsrw_weights(counts, epoch) if hp.use_dsrw else torch.ones_like(labels, dtype=torch.float32)
    soft = memory.update_soft_labels(index, logits_rtm_weak, hp.ema_alpha)

    ce_sel = _ce(logits_rtm_weak, labels, hp.label_smoothing)
    sel_f = sel.selected.float()
    # mean over S of w * CE; 0 (not NaN) for an empty S (ACT-B8); no host sync
    loss_sel = (torch.where(sel.selected, weights * ce_sel, torch.zeros_like(ce_sel))).sum() / sel_f.sum().clamp(min=1)
    if hp.use_cr:
        if logits_rtm_strong is None:
            raise ValueError("use_cr needs the RTM logits of the strong view")
        targets = cr_targets(sel.selected, labels, soft)
        loss_cr = _ce(logits_rtm_strong, targets, hp.label_smoothing).mean()
        loss_r = hp.selection_weight * loss_sel + (1.0 - hp.selection_weight) * loss_cr
    else:
        loss_cr = torch.zeros_like(loss_sel)
        loss_r = loss_sel
    loss_n = _ce(logits_ntm_weak, labels, hp.label_smoothing).mean()
    info = RobustBatch(sel, mining_on, metric, acc_r, acc_n, loss_sel.detach(), loss_cr.detach())
    return loss_r, loss_n, info


# ---------------------------------------------------------------------------------------------
# per-sample memory
# ---------------------------------------------------------------------------------------------

class ActoMemory:
    """History counter ``c`` (N,) and soft-label bank ``q`` (N, C) on the training device.

    ``counter`` holds the counts after the last finished epoch; :meth:`select` returns the live values
    (committed counts plus this epoch's selection).  The bank is updated in place, row by row, as the
    official code does: a process sees each of its samples once per epoch (the sampler's padding
    duplicates land on other processes), so a row read in an epoch is still the committed one.
    :meth:`end_epoch` merges the selections and, under DDP, the bank rows across processes, in
    blocks of at most :data:`MERGE_BLOCK_BYTES`, so the memory never holds more than the bank and one
    block (the bank is the only N x C tensor; the old epoch buffer of rows and the clone / divide /
    where of the merge cost four more banks).
    """

    STATS = ("batches", "mining_batches", "metric_sum", "metric_batches", "samples", "correct_rtm",
             "correct_ntm")
    MERGE_BLOCK_BYTES = 64 << 20

    def __init__(self, noisy_labels: torch.Tensor, num_classes: int, *, device: torch.device | str = "cpu"):
        labels = torch.as_tensor(noisy_labels, dtype=torch.long, device=device)
        n = labels.numel()
        self.counter = torch.zeros(n, dtype=torch.int32, device=device)
        # soft=False: exactly one-hot; scattered into float32 zeros (F.one_hot would first build int64, 3 banks)
        self.bank = torch.zeros(n, num_classes, dtype=torch.float32, device=device).scatter_(
            1, labels[:, None], 1.0)
        self._selected = torch.zeros(n, dtype=torch.int32, device=device)
        self._mined = torch.zeros(n, dtype=torch.int32, device=device)
        self._updated = torch.zeros(n, dtype=torch.float32, device=device)
        self._stats = torch.zeros(len(self.STATS), dtype=torch.float64, device=device)

    @property
    def num_samples(self) -> int:
        return self.counter.numel()

    def select(self, index: torch.Tensor, selected: torch.Tensor, mined: torch.Tensor | None = None) -> torch.Tensor:
        """Record this epoch's selection of ``index``; return the live counts ``c[index]`` (int32)."""
        self._selected[index] = selected.to(torch.int32)
        if mined is not None:
            self._mined[index] = mined.to(torch.int32)
        return self.counter[index] + self._selected[index]

    def update_soft_labels(self, index: torch.Tensor, logits: torch.Tensor, alpha: float) -> torch.Tensor:
        """EMA-update the bank rows of ``index`` from ``softmax(logits)``; return the new rows (B, C)."""
        rows = ema_soft_labels(self.bank[index], logits, alpha)
        self.bank[index] = rows
        self._updated[index] = 1.0
        return rows

    def record_batch(self, *, labels: torch.Tensor, pred_rtm: torch.Tensor, pred_ntm: torch.Tensor,
                     mining_on: torch.Tensor | None = None, metric: torch.Tensor | None = None) -> None:
        """Accumulate this epoch's batch statistics on the device (read once, at :meth:`end_epoch`)."""
        one = torch.ones((), dtype=torch.float64, device=labels.device)
        zero = torch.zeros_like(one)
        finite = torch.isfinite(metric) if metric is not None else torch.zeros((), dtype=torch.bool,
                                                                                 device=labels.device)
        values = torch.stack([
            one,
            mining_on.double() if mining_on is not None else zero,
            torch.where(finite, metric.double(), zero) if metric is not None else zero,
            finite.double(),
            one * labels.numel(),
            (pred_rtm == labels).sum().double(),
            (pred_ntm == labels).sum().double(),
        ])
        self._stats += values

    def end_epoch(self, reduce_max: Reduce = _identity, reduce_sum: Reduce = _identity) -> dict:
        """Merge (across processes) and commit this epoch; return its per-sample masks and sums.

        Returns ``{"selected": (N,) bool, "mined": (N,) bool, "stats": {name: 0-d float64 tensor}}``
        (device tensors; nothing is copied to the host here).
        """
        # clone: the single-process reduce is the identity and the buffers are reset below
        selected = reduce_max(self._selected.clone())
        mined = reduce_max(self._mined.clone())
        stats = reduce_sum(self._stats.clone())
        updated = reduce_sum(self._updated.clone())
        # rows another process updated too (DDP): decided by all processes together, so all take part in
        # the block merges or none does; with one process every row is final already
        if bool(reduce_max((updated != self._updated).any().to(torch.int32))):
            self._merge_bank(updated, reduce_sum)
        self.counter += selected
        self._selected.zero_()
        self._mined.zero_()
        self._updated.zero_()
        self._stats.zero_()
        return {"selected": selected.bool(), "mined": mined.bool(),
                "stats": {name: stats[i] for i, name in enumerate(self.STATS)}}

    def _merge_bank(self, updated: torch.Tensor, reduce_sum: Reduce) -> None:
        """Row ``i`` becomes the mean of the rows the processes updated this epoch (``updated[i]`` of them,
        summed over processes), or stays as committed where none did (the same on every process)."""
        n, c = self.bank.shape
        step = max(1, self.MERGE_BLOCK_BYTES // max(1, c * self.bank.element_size()))
        for start in range(0, n, step):
            block = self.bank[start:start + step]
            total = updated[start:start + step]
            untouched = total == 0
            kept = block[untouched]  # a copy of the rows nobody updated
            block.mul_(self._updated[start:start + step, None])  # this process's rows, 0 elsewhere
            merged = reduce_sum(block)
            # the mean divides by the number of processes that updated the row; x / 1 == x exactly, so only
            # the sampler's padding duplicates (fewer than world_size rows) need the division: one pass over
            # the bank less, the same bits (tests/test_acto.py pins it against dividing every row)
            shared = total > 1
            merged[shared] = merged[shared] / total[shared, None]
            merged[untouched] = kept
            if merged is not block:
                block.copy_(merged)

    def state_dict(self) -> dict:
        """The counter (a host copy).  The bank is not in it: see :meth:`checkpoint_arrays`."""
        return {"counter": _host_copy(self.counter)}

    def checkpoint_arrays(self) -> dict:
        """``{"bank": the live bank}``: the checkpoint streams it to a file of its own, block by block, and
        restores it in place (utils/training/checkpoint_arrays.py), so the host never holds an N x C copy."""
        return {"bank": self.bank}

    def load_state_dict(self, state: dict) -> None:
        """Restore the counter (and the bank where ``state`` holds it: a last.pt written before the bank had
        a file of its own); the epoch's buffers start empty."""
        if state["counter"].shape != self.counter.shape or ("bank" in state and state["bank"].shape != self.bank.shape):
            shape = tuple(state["bank"].shape) if "bank" in state else tuple(state["counter"].shape)
            raise ValueError(f"ACTO memory of shape {shape} does not fit {tuple(self.bank.shape)}")
        self.counter.copy_(state["counter"])
        if "bank" in state:
            self.bank.copy_(state["bank"])
        for buf in (self._selected, self._mined, self._updated, self._stats):
            buf.zero_()


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    return t.clone() if t.device.type == "cpu" else t.cpu()


def selection_quality(selected: torch.Tensor, clean: torch.Tensor | None) -> dict:
    """Size, precision and recall of a selected-sample mask against the clean mask (None if unknown).

    ``precision = |S & clean| / |S|`` (None for an empty S), ``recall = |S & clean| / |clean|``.
    Reads the host once.
    """
    return split_quality(selected.cpu().numpy(), None if clean is None else clean.cpu().numpy())
