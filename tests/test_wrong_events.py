"""Wrong events and epoch predictions (utils/method/wrong_events.py), by hand and through the stage-1 step."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import stage_1
from utils.core.distributed import EpochShuffleSampler, Runtime
from utils.training.engine import Precision, train_one_epoch
from utils.method import steps
from utils.method.wrong_events import EpochPredictions, WrongEvents


def t(values, dtype=torch.int64):
    return torch.tensor(values, dtype=dtype)


# ------------------------------------------------------------------------------- by hand

def test_counts_over_epochs_match_a_hand_count():
    n = 6
    we = WrongEvents(n)
    labels = t([0, 1, 2, 0, 1, 2])
    # epoch 1: two batches (order shuffled), predictions chosen by hand
    we.record(t([4, 0, 2]), t([1, 1, 2]), labels=t([1, 0, 2]))      # wrong: sample 0
    we.record(t([5, 1, 3]), t([0, 0, 0]), labels=t([2, 1, 0]))      # wrong: samples 5, 1
    # nothing is in the totals before the epoch ends
    assert we.counts.tolist() == [0] * n
    we.end_epoch()
    assert we.counts.tolist() == [1, 1, 0, 0, 0, 1]
    assert we.counts.dtype == torch.int32
    # epoch 2: everything wrong except sample 3
    idx = t([3, 2, 1, 0, 5, 4])
    preds = t([0, 0, 0, 1, 0, 0])
    we.record(idx, preds, labels=labels[idx])
    we.end_epoch()
    assert we.counts.tolist() == [2, 2, 1, 0, 1, 2]
    # epoch 3: all right
    we.record(t([0, 1, 2, 3, 4, 5]), labels.clone(), labels=labels)
    we.end_epoch()
    assert we.counts.tolist() == [2, 2, 1, 0, 1, 2]
    assert we.epoch_events.tolist() == [0] * n


def test_two_views_count_twice_and_record_returns_live_counts():
    we = WrongEvents(4, initial=t([3, 0, 1, 2], torch.int32))
    labels = t([0, 1, 2, 3])
    weak = t([0, 0, 2, 0])      # wrong: 1, 3
    strong = t([1, 0, 2, 3])    # wrong: 0, 1
    live = we.record(t([0, 1, 2, 3]), weak, strong, labels=labels)
    assert live.tolist() == [3 + 1, 0 + 2, 1 + 0, 2 + 1]
    assert live.dtype == torch.int32
    # the totals do not move until the epoch ends
    assert we.counts.tolist() == [3, 0, 1, 2]
    we.end_epoch()
    assert we.counts.tolist() == [4, 2, 1, 3]
    # live counts of a partial batch in the next epoch: totals + this epoch only
    live = we.record(t([2, 0]), t([0, 0]), t([0, 0]), labels=t([2, 0]))
    assert live.tolist() == [1 + 2, 4 + 0]


def test_live_counts_do_not_include_events_of_unrelated_samples():
    we = WrongEvents(5)
    we.record(t([0, 1]), t([9, 9]), labels=t([0, 1]))
    live = we.record(t([2, 3]), t([2, 0]), labels=t([2, 3]))
    assert live.tolist() == [0, 1]
    we.end_epoch()
    assert we.counts.tolist() == [1, 1, 0, 1, 0]


def test_state_dict_roundtrip_and_initial_shape_check():
    we = WrongEvents(3)
    we.record(t([0, 1, 2]), t([1, 1, 1]), labels=t([0, 1, 2]))
    we.end_epoch()
    state = we.state_dict()
    other = WrongEvents(3)
    other.record(t([0]), t([5]), labels=t([0]))  # a pending event is dropped by the load
    other.load_state_dict(state)
    assert other.counts.tolist() == [1, 0, 1]
    other.end_epoch()
    assert other.counts.tolist() == [1, 0, 1]
    with pytest.raises(ValueError):
        WrongEvents(3, initial=torch.zeros(4, dtype=torch.int32))
    # initial counts are copied, not aliased
    initial = torch.tensor([1, 2, 3], dtype=torch.int32)
    we = WrongEvents(3, initial=initial)
    we.record(t([0]), t([1]), labels=t([0]))
    we.end_epoch()
    assert initial.tolist() == [1, 2, 3] and we.counts.tolist() == [2, 2, 3]


def test_state_dict_is_a_snapshot_on_cpu():
    we = WrongEvents(3)
    we.record(t([0, 1, 2]), t([1, 1, 1]), labels=t([0, 1, 2]))
    we.end_epoch()
    state = we.state_dict()
    we.record(t([0]), t([1]), labels=t([0]))
    we.end_epoch()
    assert state["counts"].tolist() == [1, 0, 1]


def test_epoch_predictions_by_hand():
    ep = EpochPredictions(5)
    ep.record(t([3, 1]), t([7, 8]))
    ep.record(t([0, 4, 2]), t([1, 2, 3]))
    out = ep.end_epoch()
    assert out.tolist() == [1, 8, 3, 7, 2]
    # reset: unseen samples are -1 and the returned tensor is not overwritten by the next epoch
    ep.record(t([0]), t([9]))
    assert ep.end_epoch().tolist() == [9, -1, -1, -1, -1]
    assert out.tolist() == [1, 8, 3, 7, 2]


def test_max_reduce_over_two_ranks_counts_padding_duplicates_once():
    """Rank 1 sees sample 0 again (sampler padding); the max-reduce must count it once."""
    n = 5
    labels = t([0, 1, 2, 3, 4])
    ranks = [WrongEvents(n), WrongEvents(n)]
    preds = [EpochPredictions(n), EpochPredictions(n)]
    # DistributedSampler scheme for 5 samples on 2 ranks: order [0..4] + pad [0]
    shards = [t([0, 2, 4]), t([1, 3, 0])]
    wrong = t([9, 9, 2, 9, 4])  # samples 0, 1, 3 wrong
    for events, p, idx in zip(ranks, preds, shards):
        events.record(idx, wrong[idx], labels=labels[idx])
        p.record(idx, wrong[idx])
    reduced = torch.maximum(ranks[0].epoch_events, ranks[1].epoch_events)
    merged = torch.maximum(preds[0].current, preds[1].current)
    for events, p in zip(ranks, preds):
        events.end_epoch(lambda _: reduced)
        assert p.end_epoch(lambda _: merged).tolist() == [9, 9, 2, 9, 4]
    for events in ranks:
        assert events.counts.tolist() == [1, 1, 0, 1, 0]   # not 2 for sample 0
    # a second epoch accumulates on top, again once per sample
    for events, idx in zip(ranks, shards):
        events.record(idx, wrong[idx], labels=labels[idx])
    reduced = torch.maximum(ranks[0].epoch_events, ranks[1].epoch_events)
    for events in ranks:
        events.end_epoch(lambda _: reduced)
        assert events.counts.tolist() == [2, 2, 0, 2, 0]


def test_sampler_padding_duplicates_end_to_end():
    """With the real EpochShuffleSampler on 3 ranks, the reduced counts equal a single-process count."""
    n, world = 10, 3
    labels = torch.arange(n) % 4
    predictions = torch.tensor([0, 0, 2, 0, 0, 1, 2, 0, 0, 3])
    expected = (predictions != labels).int()
    ranks = [WrongEvents(n) for _ in range(world)]
    seen = []
    for r, events in enumerate(ranks):
        idx = torch.tensor(list(EpochShuffleSampler(n, seed=1, rank=r, world_size=world)))
        seen += idx.tolist()
        events.record(idx, predictions[idx], labels=labels[idx])
    assert len(seen) == 12 and len(set(seen)) == n  # two samples seen twice
    reduced = torch.stack([e.epoch_events for e in ranks]).amax(0)
    for events in ranks:
        events.end_epoch(lambda _: reduced)
        assert torch.equal(events.counts, expected)


# --------------------------------------------------------------- through the real training step

class LinearNet(nn.Module):
    """No BatchNorm, no dropout: predictions depend on the weights only."""

    def __init__(self, d, c):
        super().__init__()
        self.fc = nn.Linear(d, c)

    def forward(self, x):
        return x, self.fc(x)


class IndexedTensors(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i]), i


def test_stage1_step_in_train_one_epoch_counts_like_a_hand_count():
    torch.manual_seed(0)
    n, d, c, epochs = 37, 5, 4, 4
    x = torch.randn(n, d)
    y = torch.randint(0, c, (n,))
    model = LinearNet(d, c)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = DataLoader(IndexedTensors(x, y), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    runtime = Runtime(device=torch.device("cpu"))
    precision = Precision.create("fp32", runtime.device)
    wrong_events = WrongEvents(n)
    predictions = EpochPredictions(n)
    step = steps.stage1_step(wrong_events, predictions)

    hand = torch.zeros(n, dtype=torch.int32)
    for epoch in range(epochs):
        with torch.no_grad():
            expected_pred = model(x)[1].argmax(1)
        hand += (expected_pred != y).int()
        stats = train_one_epoch(model=model, loader=loader, optimizer=optimizer, step=step, precision=precision,
                                runtime=runtime, epoch=epoch)
        wrong_events.end_epoch(runtime.reduce_max)
        epoch_pred = predictions.end_epoch(runtime.reduce_max)
        assert torch.equal(epoch_pred, expected_pred), epoch
        assert torch.equal(wrong_events.counts, hand), epoch
        with torch.no_grad():
            expected_loss = nn.functional.cross_entropy(model(x)[1], y).item()
        assert stats["loss"] == pytest.approx(expected_loss, rel=1e-5)
        # lr = 0 kept the weights; now move them by hand so the next epoch predicts differently
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
    assert 0 < int(hand.sum()) < n * epochs
    assert int(hand.max()) >= 2  # samples really accumulate over epochs


def test_stage1_step_returns_cross_entropy_and_records_predictions():
    torch.manual_seed(1)
    n, d, c = 6, 3, 3
    x, y = torch.randn(n, d), torch.tensor([0, 1, 2, 0, 1, 2])
    model = LinearNet(d, c)
    we, ep = WrongEvents(n), EpochPredictions(n)
    idx = torch.tensor([5, 3, 1])
    loss = steps.stage1_step(we, ep)(model, (x[idx], y[idx], idx))
    logits = model(x[idx])[1]
    assert loss.item() == pytest.approx(nn.functional.cross_entropy(logits, y[idx]).item())
    assert loss.requires_grad
    pred = logits.argmax(1)
    assert ep.current[idx].tolist() == pred.tolist()
    assert ep.current[torch.tensor([0, 2, 4])].tolist() == [-1, -1, -1]
    assert we.epoch_events[idx].tolist() == (pred != y[idx]).int().tolist()


def test_state_for_saving_is_a_copy():
    model = LinearNet(3, 2)
    saved = stage_1.state_for_saving(model)
    before = {k: v.clone() for k, v in saved.items()}
    with torch.no_grad():
        model.fc.weight.add_(1.0)
        model.fc.bias.zero_()
    for k in saved:
        assert torch.equal(saved[k], before[k]), k
        assert saved[k].data_ptr() != model.state_dict()[k].data_ptr()
    assert np.isfinite(saved["fc.weight"].numpy()).all()
