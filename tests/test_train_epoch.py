"""The engine's GPU-facing paths, run on the CPU: fp16's skipped steps are not an error, a view the step does not
read is neither copied nor normalised, the evaluation loaders keep their workers and draw no random number, and
the report pass copies every batch to the device without waiting (utils/training/engine.py)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dataloader.device_normalise import DeviceNormaliser
from model.pair import ModelPair
from utils.core.distributed import Runtime
from utils.core.host_reads import HostReads
from utils.method.acto import ActoHParams, ActoMemory, reads_strong_view
from utils.method.steps import acto_step
from utils.training.config import parse_config
from utils.training.engine import NonFiniteLoss, Precision, make_loaders, predict_labels, train_one_epoch

CPU = torch.device("cpu")
N, D, C, B = 24, 6, 4, 6


class LinearNet(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(D, C)

    def forward(self, x):
        return None, self.fc(x.float())


def batches(num: int, *, two_views: bool = False) -> list:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)
    index = torch.arange(num * B).view(num, B)
    if two_views:
        return [((x[i], x[i] + 0.5), y[i], i) for i in index]
    return [(x[i], y[i], i) for i in index]


def epoch(model, data, step, *, precision="fp32", views=None, normalise=None, optimizers=None):
    optimizers = optimizers or torch.optim.SGD(model.parameters(), lr=0.1)
    return train_one_epoch(model=model, loader=data, optimizer=optimizers, step=step,
                           precision=Precision.create(precision, CPU), runtime=Runtime(device=CPU), epoch=0,
                           views=views, normalise=normalise)


def poisoned(bad_steps: set, losses: list):
    """Cross-entropy, NaN at the steps ``bad_steps`` (0-based); the finite losses are appended to ``losses``."""
    calls = [0]

    def step(model, batch):
        x, y, _ = batch
        loss = F.cross_entropy(model(x)[1].float(), y)
        k, calls[0] = calls[0], calls[0] + 1
        if k in bad_steps:
            return loss * float("nan")
        losses.append(loss.item())
        return loss
    return step


def test_fp16_leaves_the_steps_the_scaler_skipped_out_and_goes_on():
    model, losses = LinearNet(), []
    data = batches(4)
    before = [p.detach().clone() for p in model.parameters()]
    stats = epoch(model, data, poisoned({1}, losses), precision="fp16")
    assert stats["nonfinite_steps"] == 1
    assert stats["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)  # the three finite steps
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the finite steps trained


def test_fp16_stops_when_the_scaler_skipped_every_step():
    with pytest.raises(NonFiniteLoss) as err:
        epoch(LinearNet(), batches(3), poisoned({0, 1, 2}, []), precision="fp16")
    assert str(err.value) == ("the train loss was non-finite in every step of epoch 1 under fp16 (the gradient "
                              "scaler skipped them all); the checkpoint of the last finished epoch is kept (lower "
                              "the learning rate, or use precision bf16 or fp32)")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_without_a_scaler_a_non_finite_loss_stops_the_run(precision):
    with pytest.raises(NonFiniteLoss) as err:
        epoch(LinearNet(), batches(4), poisoned({2}, []), precision=precision)
    assert str(err.value) == ("the train loss became non-finite at epoch 1, step 3; the checkpoint of the last "
                              "finished epoch is kept (lower the learning rate, or use precision fp32)")


def test_a_clean_epoch_reports_no_skipped_steps_and_reads_the_host_three_times():
    with HostReads() as reads:
        stats = epoch(LinearNet(), batches(4), poisoned(set(), []), precision="fp16")
    assert "nonfinite_steps" not in stats
    # the per-step reads: the step's own .item() (this test's) and fp16's found-inf check, once per step each
    assert reads.by_name["item"] == 4 + 4 and reads.total - reads.by_name["item"] <= 3


@pytest.mark.parametrize("hp, epoch_index, strong", [
    (ActoHParams(warmup_epochs=1), 0, False),               # warm-up: the weak view alone
    (ActoHParams(warmup_epochs=1), 1, True),                # robust, with the consistency loss
    (ActoHParams(warmup_epochs=1, use_cr=False), 1, False),  # robust without it
])
def test_acto_strong_view_is_neither_copied_nor_normalised_where_unused(hp, epoch_index, strong):
    assert reads_strong_view(hp, epoch_index) is strong
    data = [((w.mul(40).add(128).clamp(0, 255).to(torch.uint8), s.mul(40).add(128).clamp(0, 255).to(torch.uint8)),
             y, i) for (w, s), y, i in batches(3, two_views=True)]
    normalise = DeviceNormaliser((0.5,) * D, (0.25,) * D)  # one "channel" per feature: (B, D, 1, 1) images
    data = [((w[:, :, None, None], s[:, :, None, None]), y, i) for (w, s), y, i in data]

    class Flat(LinearNet):
        def forward(self, x):
            return None, self.fc(x.flatten(1))

    def run(views):
        pair = ModelPair(Flat(0), Flat(1))
        memory = ActoMemory(torch.arange(N) % C, C)
        seen = []
        step = acto_step(memory, hp, epoch_index)

        def recording(model, batch):
            seen.append(batch[0][1])
            return step(model, batch)
        opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (pair.rtm, pair.ntm)]
        stats = epoch(pair, data, recording, views=views, normalise=normalise, optimizers=opts)
        return stats, seen, [p.detach().clone() for p in pair.parameters()], memory.bank.clone()

    stats, seen, weights, bank = run((True, strong))
    assert all((view is None) is (not strong) for view in seen)
    assert all(view.dtype == torch.float32 for view in seen if view is not None)  # normalised where used
    every = run(None)  # both views always: the same epoch, bit for bit
    assert stats == every[0] and torch.equal(bank, every[3])
    assert all(torch.equal(a, b) for a, b in zip(weights, every[2]))


def test_normaliser_passes_an_unused_view_through():
    weak = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = DeviceNormaliser((0.5,) * 3, (0.5,) * 3)((weak, None))
    assert out[1] is None and torch.equal(out[0], torch.ones(1, 3, 2, 2))


class _Items(Dataset):
    def __init__(self, n=10, digest=0):
        self.x = torch.randn(n, D, generator=torch.Generator().manual_seed(3))
        self.digest = digest

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        item = (self.x[i], i % C, i)
        return item + ((torch.full((self.digest,), i, dtype=torch.uint8),) if self.digest else ())


def test_evaluation_loaders_keep_their_workers_and_draw_no_random_number():
    """They draw none (deterministic transforms, a generator of their own), so keeping their workers leaves a
    resumed run exact; the training loader keeps its workers only with persistent_workers."""
    runtime = Runtime(device=CPU)
    cfg = parse_config(["--set", "num_workers=2"], prog="stage_1.py", scope="stage1")
    train, tests = make_loaders(_Items(), {"test": _Items(), "val": _Items()}, cfg, runtime)
    assert [loader.persistent_workers for loader in tests.values()] == [True, True]
    assert not train.persistent_workers
    cfg0 = parse_config(["--set", "num_workers=0"], prog="stage_1.py", scope="stage1")
    _, tests = make_loaders(_Items(), {"test": _Items()}, cfg0, runtime)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    assert len(list(tests["test"])) == 1
    assert torch.equal(torch.get_rng_state(), state)


def test_the_report_pass_copies_every_batch_without_waiting():
    """digests included: a blocking copy from pinned memory waits for the GPU, once per batch."""
    with HostReads() as reads:
        out = predict_labels(LinearNet(), _Items(n=10, digest=4), batch_size=4, num_workers=0,
                             precision=Precision.create("fp32", CPU), runtime=Runtime(device=CPU),
                             normalise=lambda x: x, digest_size=4)
    assert reads.blocking_copies == 0
    assert out.digests[:, 0].tolist() == list(range(10)) and out.predicted.shape == (10,)
    assert not math.isnan(float(out.given_prob.sum()))
