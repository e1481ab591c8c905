"""Tests for utils/method/acto.py (docs/fidelity.md#act-1-method): selection, mining switch, DSRW, soft labels, losses, LR plan."""
import math
import os
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

from utils.method.acto import (ActoHParams, ActoMemory, build_lr_plan, confidence_penalty, cr_targets, dsrw_weights,
                        ema_soft_labels, memorization_metric, parse_lr_plan, robust_losses, selection_masks,
                        selection_quality, warmup_losses)
from utils.training.config import REPO_ROOT
from utils.core.errors import ConfigError

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

from scale import _old_block_merge  # noqa: E402  (the merge before, measured there)

# four samples covering the four cells of Figure 2's truth table
LABELS = torch.tensor([0, 1, 2, 3])
PRED_R = torch.tensor([0, 1, 5, 6])  # RTM fits samples 0, 1
PRED_N = torch.tensor([0, 7, 2, 8])  # NTM fits samples 0, 2
#            sample:   0 (both)  1 (RTM only)  2 (NTM only)  3 (neither)


def _b(*values):
    return torch.tensor(values, dtype=torch.bool)


# --- selection and mining masks -------------------------------------------------------------------

@pytest.mark.parametrize("rule, mining, selected, mined", [
    ("paper_fig2", True, _b(1, 0, 1, 0), _b(0, 0, 1, 0)),   # select A, mine D
    ("paper_fig2", False, _b(1, 0, 0, 0), _b(0, 0, 0, 0)),  # A only
    ("web_variant", True, _b(1, 1, 1, 0), _b(0, 0, 1, 0)),  # either model fits the label
    ("web_variant", False, _b(1, 1, 0, 0), _b(0, 0, 0, 0)),  # the RTM fits the label
])
def test_selection_masks_truth_table(rule, mining, selected, mined):
    sel = selection_masks(PRED_R, PRED_N, LABELS, torch.tensor(mining), rule)
    assert torch.equal(sel.selected, selected)
    assert torch.equal(sel.mined, mined)
    assert torch.equal(sel.agree, _b(1, 0, 0, 0))


def test_selection_mining_on_is_ntm_fits_label():
    # docs/fidelity.md#act-14-robust-phase step 5: A | D = {n = y} while mining is on
    torch.manual_seed(0)
    y = torch.randint(0, 5, (200,))
    r, n = torch.randint(0, 5, (200,)), torch.randint(0, 5, (200,))
    sel = selection_masks(r, n, y, True, "paper_fig2")
    assert torch.equal(sel.selected, n == y)


def test_selection_unknown_rule():
    with pytest.raises(ValueError):
        selection_masks(PRED_R, PRED_N, LABELS, True, "both")
    with pytest.raises(ValueError):
        ActoHParams(selection_rule="both")


# --- memorisation metric and the tau switch ------------------------------------------------------------

def _preds(correct: int, total: int = 100):
    y = torch.zeros(total, dtype=torch.long)
    p = torch.ones(total, dtype=torch.long)
    p[:correct] = 0
    return p, y


@pytest.mark.parametrize("acc_r, acc_n, on", [
    (40, 40, True),   # M = 0 < tau
    (40, 30, True),   # the NTM fits fewer labels: M < 0
    (40, 42, False),  # M = 0.05 >= 0.025: the NTM memorises
    (80, 81, True),   # M = 0.0125
    (80, 84, False),  # M = 0.05
])
def test_memorization_metric_and_switch(acc_r, acc_n, on):
    pr, y = _preds(acc_r)
    pn, _ = _preds(acc_n)
    m, mining, ar, an = memorization_metric(pr, pn, y, tau=0.025)
    assert ar.item() == pytest.approx(acc_r) and an.item() == pytest.approx(acc_n)
    assert m.item() == pytest.approx((acc_n - acc_r) / acc_r, abs=1e-6)
    assert bool(mining) is on


def test_memorization_metric_rtm_fits_nothing():
    pr, y = _preds(0)
    pn, _ = _preds(10)
    m, mining, _, _ = memorization_metric(pr, pn, y, tau=0.025)
    assert math.isinf(m.item()) and not bool(mining)


def test_tau_moves_the_switch():
    pr, y = _preds(40)
    pn, _ = _preds(42)  # M = 0.05
    assert not bool(memorization_metric(pr, pn, y, tau=0.025)[1])
    assert bool(memorization_metric(pr, pn, y, tau=0.06)[1])


# --- DSRW and the history counter -----------------------------------------------------------------

def test_dsrw_weights():
    w = dsrw_weights(torch.tensor([6, 3, 1], dtype=torch.int32), epoch=5)
    assert w.dtype == torch.float32
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 1 / 6]))


def test_counter_warmup_then_selection_weights():
    n, warmup = 4, 3
    mem = ActoMemory(LABELS, 10)
    idx = torch.arange(n)
    for _ in range(warmup):  # every sample counts once per warm-up epoch
        mem.select(idx, torch.ones(n, dtype=torch.bool))
        mem.end_epoch()
    assert mem.counter.tolist() == [warmup] * n
    # first robust epoch e = W: the current selection counts, so selected samples weigh (W+1)/(W+1) = 1
    live = mem.select(idx, _b(1, 0, 1, 0))
    assert live.tolist() == [4, 3, 4, 3]
    assert torch.allclose(dsrw_weights(live, warmup)[torch.tensor([0, 2])], torch.ones(2))
    mem.end_epoch()
    live = mem.select(idx, _b(1, 1, 0, 0))  # e = W + 1
    assert live.tolist() == [5, 4, 4, 3]
    assert torch.allclose(dsrw_weights(live, warmup + 1), torch.tensor([5, 4, 4, 3]) / 5.0)


# --- soft-label bank -----------------------------------------------------------------------------

def test_ema_soft_labels_value():
    rows = F.one_hot(torch.tensor([0, 2]), 3).float()
    logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]])
    expected = 0.8 * rows + 0.2 * F.softmax(logits, dim=1)
    assert torch.allclose(ema_soft_labels(rows, logits, 0.8), expected)
    assert torch.allclose(ema_soft_labels(rows, logits, 0.8).sum(1), torch.ones(2))


def test_bank_starts_one_hot_and_cr_target_flips_after_three_updates():
    # the RTM is sure sample 0 is class 1 while its noisy label is 0: 0.8^3 = 0.512 > 0.5 keeps the
    # label as the CR target for 3 robust epochs, the 4th update flips it (docs/fidelity.md#act-14-robust-phase step 9)
    labels = torch.tensor([0, 1])
    mem = ActoMemory(labels, 3)
    assert torch.equal(mem.bank, F.one_hot(labels, 3).float())
    logits = torch.tensor([[-50.0, 50.0, -50.0], [-50.0, 50.0, -50.0]])
    not_selected = torch.zeros(2, dtype=torch.bool)
    targets = []
    for _ in range(4):
        rows = mem.update_soft_labels(torch.arange(2), logits, 0.8)
        targets.append(cr_targets(not_selected, labels, rows)[0].item())
        mem.end_epoch()
    assert targets == [0, 0, 0, 1]
    assert mem.bank[0, 0].item() == pytest.approx(0.8 ** 4, rel=1e-5)
    # selected samples always train on their label
    assert cr_targets(torch.ones(2, dtype=torch.bool), labels, mem.bank).tolist() == [0, 1]


def test_memory_live_values_equal_in_place_updates():
    # one process, each sample once per epoch: the epoch buffers give the official per-batch values
    torch.manual_seed(1)
    n, c = 12, 4
    labels = torch.randint(0, c, (n,))
    mem = ActoMemory(labels, c)
    counter, bank = torch.zeros(n, dtype=torch.int32), F.one_hot(labels, c).float()
    for epoch in range(3):
        order = torch.randperm(n)
        for batch in order.split(5):
            selected = torch.rand(len(batch)) < 0.5
            logits = torch.randn(len(batch), c)
            live = mem.select(batch, selected)
            counter[batch[selected]] += 1
            assert torch.equal(live, counter[batch])
            rows = mem.update_soft_labels(batch, logits, 0.8)
            bank[batch] = 0.8 * bank[batch] + 0.2 * F.softmax(logits, 1)
            assert torch.allclose(rows, bank[batch])
        merged = mem.end_epoch()
        assert torch.equal(mem.counter, counter) and torch.allclose(mem.bank, bank)
        assert merged["selected"].dtype == torch.bool


class _ThreadGroup:
    """A fake process group for threads: each reduce waits for every member and combines their tensors."""

    def __init__(self, size: int):
        self.size, self.barrier, self.slots = size, threading.Barrier(size), {}

    def reducer(self, rank: int, op):
        def reduce(t):
            self.slots[rank] = t.clone()
            self.barrier.wait()
            out = self.slots[0].clone()
            for r in range(1, self.size):
                out = op(out, self.slots[r])
            self.barrier.wait()
            return out
        return reduce


def _end_epochs_together(memories, *, block_bytes=None):
    group = _ThreadGroup(len(memories))
    merged = [None] * len(memories)

    def run(rank):
        mem = memories[rank]
        if block_bytes is not None:
            mem.MERGE_BLOCK_BYTES = block_bytes
        merged[rank] = mem.end_epoch(group.reducer(rank, torch.maximum), group.reducer(rank, torch.add))
    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(memories))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return merged


@pytest.mark.parametrize("block_bytes", [None, 24])  # one block; blocks of two rows of three floats
def test_memory_ddp_merge_counts_padding_once(block_bytes):
    # two "ranks"; sample 0 is the sampler's padding duplicate, seen by both; sample 5 by neither
    torch.manual_seed(3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ranks = [ActoMemory(labels, 3), ActoMemory(labels, 3)]
    index = [torch.tensor([0, 1, 2]), torch.tensor([3, 4, 0])]
    logits = [torch.randn(3, 3), torch.randn(3, 3)]
    for mem, idx, z in zip(ranks, index, logits):
        mem.select(idx, torch.ones(3, dtype=torch.bool), mined=torch.tensor([True, False, False]))
        mem.update_soft_labels(idx, z, 0.8)
        mem.record_batch(labels=labels[idx], pred_rtm=labels[idx], pred_ntm=labels[idx])

    merged = _end_epochs_together(ranks, block_bytes=block_bytes)[0]
    mem = ranks[0]
    assert mem.counter.tolist() == [1, 1, 1, 1, 1, 0]  # not 2 for sample 0
    one_hot = F.one_hot(labels, 3).float()
    row_a = ema_soft_labels(one_hot[:1], logits[0][:1], 0.8)[0]
    row_b = ema_soft_labels(one_hot[:1], logits[1][2:], 0.8)[0]
    # exactly the old merge: (sum of the rows) / (number of processes that updated the row)
    assert torch.equal(mem.bank[0], (row_a + row_b) / 2.0)
    assert torch.equal(mem.bank[4], ema_soft_labels(one_hot[4:5], logits[1][1:2], 0.8)[0])
    assert torch.equal(mem.bank[1], ema_soft_labels(one_hot[1:2], logits[0][1:2], 0.8)[0])
    assert torch.equal(mem.bank[5], one_hot[5])  # updated by nobody: as committed
    assert torch.equal(ranks[1].bank, mem.bank)  # every process holds the same bank afterwards
    assert merged["mined"].tolist() == [True, False, False, True, False, False]
    assert merged["stats"]["samples"].item() == 6 and merged["stats"]["batches"].item() == 2


class _DividingEveryRow(ActoMemory):
    """The block merge before the padding-only division (006d548): every merged row divided by its count
    (kept once, in benchmarks/scale.py, which measures it against the current merge)."""

    def _merge_bank(self, updated, reduce_sum):
        _old_block_merge(self, updated, reduce_sum)


@pytest.mark.parametrize("block_bytes", [None, 5 * 7 * 4])  # one block; blocks of five rows
def test_merge_divides_only_shared_rows_and_equals_dividing_every_row_bit_for_bit(block_bytes):
    # three "ranks", random subsets: rows updated by 0, 1, 2 or 3 processes (3: x / 3 is inexact, so a
    # difference in the division would show), several epochs so merged rows feed the next EMA
    torch.manual_seed(11)
    n, c, world = 41, 7, 3
    labels = torch.randint(0, c, (n,))
    fast = [ActoMemory(labels, c) for _ in range(world)]
    reference = [_DividingEveryRow(labels, c) for _ in range(world)]
    counts = []
    for epoch in range(4):
        seen = torch.zeros(n, dtype=torch.int32)
        for rank in range(world):
            index = torch.randperm(n)[:20 + 5 * rank]
            logits = 3 * torch.randn(len(index), c)
            for mem in (fast[rank], reference[rank]):
                mem.update_soft_labels(index, logits, 0.8)
            seen[index] += 1
        counts.append(torch.bincount(seen, minlength=world + 1))
        _end_epochs_together(fast, block_bytes=block_bytes)
        _end_epochs_together(reference, block_bytes=block_bytes)
        for rank in range(world):
            assert torch.equal(fast[rank].bank, reference[rank].bank), (epoch, rank)
            assert torch.equal(fast[rank].bank, fast[0].bank)  # every process holds the same bank
    assert (sum(counts) > 0).all()  # rows updated by 0, 1, 2 and 3 processes all occurred
    assert not torch.equal(fast[0].bank, F.one_hot(labels, c).float())


class _EpochBufferBank:
    """The bank before the in-place version (reference): rows kept in an epoch buffer, merged with
    clone / divide / where at the end of the epoch (one process)."""

    def __init__(self, labels, c):
        self.bank = F.one_hot(labels, c).float()
        self.rows, self.updated = torch.zeros_like(self.bank), torch.zeros(len(labels))

    def update(self, index, logits, alpha):
        rows = ema_soft_labels(self.bank[index], logits, alpha)
        self.rows[index], self.updated[index] = rows, 1.0
        return rows

    def end_epoch(self):
        hit = self.updated > 0
        self.bank = torch.where(hit[:, None], self.rows.clone() / self.updated.clamp(min=1.0)[:, None], self.bank)
        self.rows.zero_()
        self.updated.zero_()


def test_in_place_bank_equals_the_epoch_buffer_bank_bit_for_bit():
    torch.manual_seed(5)
    n, c = 50, 7
    labels = torch.randint(0, c, (n,))
    mem, ref = ActoMemory(labels, c), _EpochBufferBank(labels, c)
    for epoch in range(6):
        order = torch.randperm(n)[: n - epoch]  # some epochs leave samples out: those rows stay
        for batch in order.split(8):
            logits = 3 * torch.randn(len(batch), c)
            rows = mem.update_soft_labels(batch, logits, 0.8)
            assert torch.equal(rows, ref.update(batch, logits, 0.8))  # so the CR targets are the same too
        mem.end_epoch()
        ref.end_epoch()
        assert torch.equal(mem.bank, ref.bank)


def test_memory_end_epoch_stays_within_one_and_a_half_banks(monkeypatch):
    # the bank is the only N x C tensor: end_epoch allocates nothing of its size on one process, and
    # under DDP at most one block besides (counted from the storages the merge creates)
    n, c = 64, 10
    labels = torch.randint(0, c, (n,))
    mem = ActoMemory(labels, c)
    mem.update_soft_labels(torch.arange(n), torch.randn(n, c), 0.8)
    bank_bytes = mem.bank.numel() * mem.bank.element_size()
    before = mem.bank.data_ptr()
    seen = []
    real_clone = torch.Tensor.clone

    def clone(self, *args, **kwargs):
        out = real_clone(self, *args, **kwargs)
        seen.append(out.numel() * out.element_size())
        return out
    monkeypatch.setattr(torch.Tensor, "clone", clone)
    mem.end_epoch()
    assert mem.bank.data_ptr() == before and max(seen) < bank_bytes / 4  # in place; only (N,) buffers cloned


def test_memory_state_round_trip():
    # last.pt holds the counter; the bank is a checkpoint array (its own file, tests/test_checkpoint_arrays.py)
    mem = ActoMemory(torch.tensor([0, 1, 2]), 3)
    mem.select(torch.arange(3), torch.tensor([True, False, True]))
    mem.update_soft_labels(torch.arange(3), torch.randn(3, 3), 0.8)
    mem.end_epoch()
    other = ActoMemory(torch.tensor([0, 0, 0]), 3)
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.counter, mem.counter) and not torch.equal(other.bank, mem.bank)
    # a last.pt written before the bank had a file of its own holds it inline: still restored
    other.load_state_dict({**mem.state_dict(), "bank": mem.bank.clone()})
    assert torch.equal(other.counter, mem.counter) and torch.equal(other.bank, mem.bank)
    with pytest.raises(ValueError):
        ActoMemory(torch.tensor([0, 1]), 3).load_state_dict(mem.state_dict())
    with pytest.raises(ValueError):
        ActoMemory(torch.tensor([0, 1, 2]), 4).load_state_dict({**mem.state_dict(), "bank": mem.bank})


def test_memory_state_is_a_snapshot_on_cpu_and_the_bank_is_not_copied():
    mem = ActoMemory(torch.tensor([0, 1, 2]), 3)
    mem.select(torch.arange(3), torch.tensor([True, False, True]))
    mem.end_epoch()
    state = mem.state_dict()
    assert set(state) == {"counter"} and mem.checkpoint_arrays()["bank"] is mem.bank  # the live bank
    mem.select(torch.arange(3), torch.tensor([True, True, True]))
    mem.update_soft_labels(torch.arange(3), torch.randn(3, 3), 0.5)
    mem.end_epoch()
    assert state["counter"].tolist() == [1, 0, 1]


# --- losses ----------------------------------------------------------------------------------------

def test_confidence_penalty_values():
    z = torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, 1.0]])
    p = F.softmax(z, 1)
    assert confidence_penalty(z).item() == pytest.approx((p * p.log()).sum(1).mean().item(), rel=1e-6)
    # ACT-B7: the official clamp of the *logits* zeroes the negative ones first
    pf = F.softmax(z.clamp(min=1e-12), 1)
    faithful = confidence_penalty(z, faithful_clamp=True).item()
    assert faithful == pytest.approx((pf * pf.log()).sum(1).mean().item(), rel=1e-6)
    assert faithful != pytest.approx(confidence_penalty(z).item())
    assert confidence_penalty(torch.zeros(1, 4)).item() == pytest.approx(-math.log(4))


def test_warmup_losses():
    z_r, z_n = torch.randn(5, 3), torch.randn(5, 3)
    y = torch.tensor([0, 1, 2, 0, 1])
    lr, ln, penalty = warmup_losses(z_r, z_n, y, ActoHParams())
    assert lr.item() == pytest.approx(F.cross_entropy(z_r, y).item() + confidence_penalty(z_r).item(), rel=1e-6)
    assert ln.item() == pytest.approx(F.cross_entropy(z_n, y).item(), rel=1e-6)
    assert penalty.item() == confidence_penalty(z_r).item() and not penalty.requires_grad
    lr2, _, penalty2 = warmup_losses(z_r, z_n, y, ActoHParams(confidence_penalty=False, label_smoothing=0.35))
    assert lr2.item() == pytest.approx(F.cross_entropy(z_r, y, label_smoothing=0.35).item(), rel=1e-6)
    assert penalty2.item() == 0.0


def _logits_for(pred, c=4, scale=5.0):
    return F.one_hot(pred, c).float() * scale


def test_robust_losses_hand_computed():
    hp = ActoHParams(warmup_epochs=2)
    mem = ActoMemory(LABELS, 10)
    for _ in range(2):
        mem.select(torch.arange(4), torch.ones(4, dtype=torch.bool))
        mem.end_epoch()
    z_rw, z_n = _logits_for(PRED_R, 10), _logits_for(PRED_N, 10)
    z_rs = torch.randn(4, 10)
    # pred_r fits 2/4 labels, pred_n 2/4: M = 0 < tau, mining on -> S = {0, 2}
    loss_r, loss_n, info = robust_losses(z_rw, z_rs, z_n, LABELS, torch.arange(4), mem, 3, hp)
    assert bool(info.mining_on)
    assert info.selection.selected.tolist() == [True, False, True, False]
    ce = F.cross_entropy(z_rw, LABELS, reduction="none")
    w = torch.tensor([3.0, 0.0, 3.0, 0.0]) / 4.0  # c = W + 1 = 3 at e = 3
    l_sel = (w * ce)[torch.tensor([0, 2])].mean()
    rows = 0.8 * F.one_hot(LABELS, 10).float() + 0.2 * F.softmax(z_rw, 1)
    targets = torch.where(info.selection.selected, LABELS, rows.argmax(1))
    l_cr = F.cross_entropy(z_rs, targets)
    assert loss_r.item() == pytest.approx(0.8 * l_sel.item() + 0.2 * l_cr.item(), rel=1e-5)
    assert loss_n.item() == pytest.approx(F.cross_entropy(z_n, LABELS).item(), rel=1e-6)
    assert info.loss_sel.item() == pytest.approx(l_sel.item(), rel=1e-5)


def test_robust_loss_empty_selection_is_finite():
    hp = ActoHParams(warmup_epochs=1)
    mem = ActoMemory(LABELS, 10)
    wrong = (LABELS + 1) % 10  # neither model fits any label: S is empty
    z_rw = _logits_for(wrong, 10).requires_grad_(True)
    z_rs = torch.randn(4, 10, requires_grad=True)
    z_n = _logits_for(wrong, 10).requires_grad_(True)
    loss_r, loss_n, info = robust_losses(z_rw, z_rs, z_n, LABELS, torch.arange(4), mem, 1, hp)
    assert not info.selection.selected.any() and not bool(info.mining_on)
    assert info.loss_sel.item() == 0.0
    assert torch.isfinite(loss_r) and torch.isfinite(loss_n)
    assert loss_r.item() == pytest.approx(0.2 * info.loss_cr.item(), rel=1e-6)
    (loss_r + loss_n).backward()
    assert all(torch.isfinite(t.grad).all() for t in (z_rw, z_rs, z_n))


def test_ablation_flags():
    z_rw, z_n = _logits_for(PRED_R, 10), _logits_for(PRED_N, 10)
    mem = ActoMemory(LABELS, 10)
    _, _, info = robust_losses(z_rw, None, z_n, LABELS, torch.arange(4), mem, 0,
                               ActoHParams(warmup_epochs=0, use_mining=False, use_cr=False))
    assert info.selection.selected.tolist() == [True, False, False, False]  # A only
    loss_r, _, info = robust_losses(z_rw, None, z_n, LABELS, torch.arange(4), ActoMemory(LABELS, 10), 0,
                                    ActoHParams(warmup_epochs=0, use_dsrw=False, use_cr=False))
    ce = F.cross_entropy(z_rw, LABELS, reduction="none")
    assert loss_r.item() == pytest.approx(ce[torch.tensor([0, 2])].mean().item(), rel=1e-6)  # w = 1, no 0.8
    with pytest.raises(ValueError):
        robust_losses(z_rw, None, z_n, LABELS, torch.arange(4), ActoMemory(LABELS, 10), 0, ActoHParams())


def test_selection_quality():
    sel = _b(1, 1, 0, 1, 0)
    clean = _b(1, 0, 1, 1, 1)
    q = selection_quality(sel, clean)
    assert q == {"size": 3, "precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 4)}
    assert selection_quality(torch.zeros(5, dtype=torch.bool), clean)["precision"] is None
    assert selection_quality(sel, None) == {"size": 3, "precision": None, "recall": None}


# --- learning-rate plan (docs/fidelity.md#act-18-learning-rate-plan worked values) ------------------------------------------------

def test_lr_plan_cifar_default():
    plan = build_lr_plan(1e-3, 100, 20, 1e-3, "cosine:20,5e-4,100")
    assert len(plan) == 100
    assert plan[:21] == [1e-3] * 21  # 1e-3 for epochs 0-20
    assert plan[99] == pytest.approx(5.0e-4, rel=1e-2) and plan[99] > 5e-4
    assert all(a > b for a, b in zip(plan[20:], plan[21:]))


def test_lr_plan_food101n():
    rtm = build_lr_plan(5e-4, 50, 5, 1e-3, "cosine:5,5e-5,50")
    assert rtm[:5] == [1e-3] * 5 and rtm[5] == pytest.approx(5e-4)
    assert rtm[49] == pytest.approx(5.05e-5, rel=2e-3)
    ntm = build_lr_plan(1e-3, 50, 5, 1e-3, "baseline")  # baseline ignores the warm-up value
    assert ntm == [1e-3] * 50


def test_lr_plan_other_modes():
    web_ntm = build_lr_plan(1e-3, 100, 20, None, "baseline")
    assert web_ntm[59] == 1e-3 and web_ntm[60] == pytest.approx(1e-4) and web_ntm[99] == pytest.approx(1e-4)
    assert build_lr_plan(0.1, 4, 1, 0.01, "constant") == [0.01, 0.1, 0.1, 0.1]
    cos = build_lr_plan(1.0, 5, 1, None, "cosine")
    assert cos[0] == 1.0 and cos[1] == 1.0 and cos[4] == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 4)))
    # T missing or <= S: T = E; END missing: 0
    assert build_lr_plan(1.0, 10, 0, None, "cosine:2") == build_lr_plan(1.0, 10, 0, None, "cosine:2,0,10")
    assert build_lr_plan(1.0, 10, 0, None, "cosine:2,0.1,1") == build_lr_plan(1.0, 10, 0, None, "cosine:2,0.1,10")
    # T < E: hold the last value
    short = build_lr_plan(1.0, 10, 0, None, "cosine:2,0.1,6")
    assert short[6:] == [short[5]] * 4
    # W > S: epochs index the plan absolutely (the official list would be E + W - S long, shifted)
    late = build_lr_plan(1.0, 10, 4, 0.5, "cosine:2,0.1,10")
    assert len(late) == 10 and late[:4] == [0.5] * 4
    assert late[4:] == build_lr_plan(1.0, 10, 0, None, "cosine:2,0.1,10")[4:]


@pytest.mark.parametrize("bad", ["cosine:", "cosine:a,1", "cosine:1,2,3,4", "cosine:-1", "linear", "step:10"])
def test_lr_plan_rejects(bad):
    with pytest.raises(ConfigError, match="lr_plan"):
        parse_lr_plan(bad)
