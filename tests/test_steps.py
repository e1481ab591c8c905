"""The methods' training steps (utils/method/steps.py) in the engine: every loss term comes back as an epoch mean,
the terms add up to the loss, and the loop reads the host the same number of times for 2 batches as for 6 (the
terms are summed on the device, read once per epoch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from model.pair import ModelPair
from utils.core.distributed import Runtime
from utils.core.host_reads import HostReads
from utils.method.acto import ActoHParams, ActoMemory
from utils.method.losses import weighted_dynamic_loss
from utils.method.sample_weights import SampleWeights
from utils.method.steps import ACTO_TERMS, STAGE2_TERMS, VIEWS, acto_step, loss_and_terms, stage2_step
from utils.method.wrong_events import WrongEvents
from utils.training.engine import Precision, train_one_epoch

N, D, C, B = 48, 6, 4, 8


class LinearNet(nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(D, C)

    def forward(self, x):
        return None, self.fc(x)


def batches(num: int, *, seed: int = 0) -> list:
    """``num`` two-view batches ``((weak, strong), labels, index)`` over disjoint samples."""
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(N, generator=g)[: num * B].view(num, B)
    x = torch.randn(N, D, generator=g)
    y = torch.randint(0, C, (N,), generator=g)
    return [((x[i], x[i] + 0.3 * torch.randn(B, D, generator=g)), y[i], i) for i in index]


def stage2_setup():
    labels = np.random.default_rng(0).integers(0, C, N)
    weights = SampleWeights(class_wise=True, noisy_labels=labels, num_classes=C, device=torch.device("cpu"),
                            new_events=VIEWS)
    weights.fit(np.random.default_rng(1).integers(0, 6, N), iterations=5)
    return weights


def run_epoch(model, step, data, optimizers):
    return train_one_epoch(model=model, loader=data, optimizer=optimizers, step=step,
                           precision=Precision.create("fp32", torch.device("cpu")),
                           runtime=Runtime(device=torch.device("cpu")), epoch=0)


def test_stage2_terms_are_the_epoch_means_of_the_dynamic_loss_parts():
    weights = stage2_setup()
    data = batches(3)
    model = LinearNet(0)
    reference = LinearNet(0)
    # lr 0: every batch sees the same model, so the parts can be recomputed afterwards
    stats = run_epoch(model, stage2_step(WrongEvents(N), weights, entropy_weight="confidence"), data,
                      torch.optim.SGD(model.parameters(), lr=0.0))
    assert list(stats) == ["loss", *STAGE2_TERMS]
    events = WrongEvents(N)
    parts, means = [], []
    for (weak, strong), y, i in data:
        zw, zs = reference(weak)[1], reference(strong)[1]
        w = weights(events.record(i, zw.argmax(1), zs.argmax(1), labels=y), i)
        parts.append(weighted_dynamic_loss(zw, zs, y, weights=w, entropy_weight="confidence")[1])
        means.append(w.mean(dim=1))
    expected = torch.stack(parts).double().mean(0).tolist() + torch.stack(means).double().mean(0).tolist()
    assert [stats[t] for t in STAGE2_TERMS] == pytest.approx(expected, rel=1e-6)
    assert sum(stats[t] for t in ("loss_clean", "loss_hard", "loss_noisy")) == pytest.approx(stats["loss"], rel=1e-6)


@pytest.mark.parametrize("epoch", [0, 1])
def test_acto_terms_of_each_phase(epoch):
    hp = ActoHParams(warmup_epochs=1)
    data = batches(3)
    pair = ModelPair(LinearNet(0), LinearNet(1))
    memory = ActoMemory(torch.randint(0, C, (N,)), C)
    opts = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (pair.rtm, pair.ntm)]
    stats = run_epoch(pair, acto_step(memory, hp, epoch), data, opts)
    expected = ["loss_rtm", "loss_ntm"] + (["loss_penalty"] if epoch == 0 else ["loss_selection", "loss_consistency"])
    assert list(stats) == ["loss", *expected] and set(expected) <= set(ACTO_TERMS)
    assert stats["loss_rtm"] + stats["loss_ntm"] == pytest.approx(stats["loss"], rel=1e-6)
    if epoch == 0:
        ce = np.mean([F.cross_entropy(pair.rtm(w)[1], y).item() for (w, _), y, _ in data])
        assert stats["loss_rtm"] == pytest.approx(ce + stats["loss_penalty"], rel=1e-5)
    else:
        mixed = hp.selection_weight * stats["loss_selection"] + (1 - hp.selection_weight) * stats["loss_consistency"]
        assert mixed == pytest.approx(stats["loss_rtm"], rel=1e-6)


def test_a_step_without_terms_returns_the_loss_alone():
    loss = torch.tensor(1.5)
    assert loss_and_terms(loss) == (loss, {})
    assert loss_and_terms((loss, {"a": loss}))[1] == {"a": loss}


@pytest.mark.parametrize("method", ["stage2", "acto"])
def test_host_reads_do_not_grow_with_the_number_of_steps(method):
    """The engine reads the loss and the terms once per epoch: 2 and 6 batches cost the same host reads."""
    def reads(num):
        if method == "stage2":
            model = LinearNet(0)
            step, opts = stage2_step(WrongEvents(N), stage2_setup(), entropy_weight="confidence"), \
                torch.optim.SGD(model.parameters(), lr=0.1)
        else:
            model = ModelPair(LinearNet(0), LinearNet(1))
            step = acto_step(ActoMemory(torch.randint(0, C, (N,)), C), ActoHParams(warmup_epochs=0), 0)
            opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (model.rtm, model.ntm)]
        data = batches(num)
        with HostReads() as counted:
            run_epoch(model, step, data, opts)
        return counted.total

    few, many = reads(2), reads(6)
    assert few == many and few <= 4  # the loss, the terms and the non-finite check, once each


def test_the_counter_sees_a_read_per_step():
    """HostReads counts what a per-step ``.item()`` would cost: the test above could fail."""
    with HostReads() as counted:
        for _ in range(5):
            torch.ones(2).sum().item()
    assert counted.by_name["item"] == 5
