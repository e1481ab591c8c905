"""DistributedDataParallel on CPU (gloo, 2 processes): merged per-sample state and rank-0-only files."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gloo_ranks import free_port, run_ranks
from utils.method.steps import stage1_step
from utils.core.distributed import EpochShuffleSampler, Runtime, ShardSampler, data_parallel
from utils.method.acto import ActoMemory, ema_soft_labels
from utils.training.engine import Precision, evaluate, predict_labels, predict_probabilities, train_one_epoch
from utils.method.wrong_events import EpochPredictions, WrongEvents

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N, DIM, CLASSES, EPOCHS = 37, 5, 3, 3  # 37 samples on 2 ranks: the sampler pads one duplicate


class _Points(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(N, DIM, generator=g)
        self.y = torch.randint(0, CLASSES, (N,), generator=g)

    def __len__(self):
        return N

    def __getitem__(self, i):
        return self.x[i], int(self.y[i]), i


class _Linear(nn.Module):
    """Predictions independent of the batch composition (no batch norm)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        return x, self.fc(x)


def _count(rank: int, world_size: int, out: str) -> None:
    runtime = Runtime(device=torch.device("cpu"), rank=rank, world_size=world_size)
    model = _Linear()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # weights (and predictions) stay fixed
    data = _Points()
    loader = DataLoader(data, batch_size=4, sampler=EpochShuffleSampler(N, seed=0, rank=rank,
                                                                        world_size=world_size))
    wrong, preds = WrongEvents(N), EpochPredictions(N)
    step = stage1_step(wrong, preds)
    merged_predictions = []
    for epoch in range(EPOCHS):
        loader.sampler.set_epoch(epoch)
        train_one_epoch(model=ddp, loader=loader, optimizer=optimizer, step=step,
                        precision=Precision.create("fp32", runtime.device), runtime=runtime, epoch=epoch)
        wrong.end_epoch(runtime.reduce_max)
        merged_predictions.append(preds.end_epoch(runtime.reduce_max))
    if rank == 0:
        torch.save({"counts": wrong.counts, "predictions": torch.stack(merged_predictions)}, out)


def _report_and_bank(rank: int, world_size: int, out: str) -> None:
    """The sharded evaluation pass of the report and the ACTO bank merge over a real gloo all-reduce."""
    runtime = Runtime(device=torch.device("cpu"), rank=rank, world_size=world_size)
    predictions = predict_labels(_Linear(), _Points(), batch_size=4, num_workers=0,
                                 precision=Precision.create("fp32", runtime.device), runtime=runtime,
                                 normalise=lambda x: x)
    memory = ActoMemory(_Points().y, CLASSES)
    memory.MERGE_BLOCK_BYTES = 5 * CLASSES * 4  # blocks of five rows
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(N, CLASSES, generator=g)  # the same on both ranks; each uses its shard's rows
    index = torch.tensor(list(EpochShuffleSampler(N, seed=0, rank=rank, world_size=world_size)))
    memory.update_soft_labels(index, logits[index], 0.8)
    memory.end_epoch(runtime.reduce_max, runtime.reduce_sum)
    torch.save({"predictions": predictions.__dict__, "bank": memory.bank}, f"{out}.{rank}")


@pytest.mark.slow
def test_sharded_report_pass_and_blockwise_bank_merge_equal_one_process(tmp_path):
    out = str(tmp_path / "r")
    run_ranks(_report_and_bank, out)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    data, model = _Points(), _Linear()
    probs = predict_probabilities(model, data, batch_size=4, num_workers=0,
                                  precision=Precision.create("fp32", torch.device("cpu")),
                                  device=torch.device("cpu"), normalise=lambda x: x)
    for rank in ranks:  # every process ends with the whole table, bit-identical to one process's pass
        got = rank["predictions"]
        assert np.array_equal(got["predicted"], probs.argmax(1))
        assert np.array_equal(got["predicted_prob"], probs.max(1))
        assert np.array_equal(got["given_prob"], probs[np.arange(N), data.y.numpy()])
    # the bank: each row the EMA of the one-hot label; the padding duplicate (the same row from both
    # ranks) is their mean, not their sum
    logits = torch.randn(N, CLASSES, generator=torch.Generator().manual_seed(7))
    expected = ema_soft_labels(torch.nn.functional.one_hot(data.y, CLASSES).float(), logits, 0.8)
    assert torch.equal(ranks[0]["bank"], ranks[1]["bank"])
    assert torch.equal(ranks[0]["bank"], expected)


class _Normed(nn.Module):
    """Batch norm between two layers: its running statistics are buffers that DDP could broadcast."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Linear(DIM, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        return x, self.fc(self.body(x))


def _two_views_then_evaluate(rank: int, world_size: int, out: str) -> None:
    """Two forwards before one backward (stage 2's weak and strong views), each rank on data of its own
    scale (its running statistics drift from rank 0's), then the sharded evaluation and report pass."""
    runtime = Runtime(device=torch.device("cpu"), rank=rank, world_size=world_size)
    model = _Normed()
    ddp = data_parallel(model, runtime)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(10 + rank)
    for _ in range(3):
        weak = torch.randn(6, DIM, generator=g) * (1 + 4 * rank) + 3 * rank
        (ddp(weak)[1].logsumexp(1).mean() + ddp(weak.flip(0) * 0.5)[1].logsumexp(1).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    drifted = [b.clone() for b in model.buffers()]
    data = _Points()
    loader = DataLoader(data, batch_size=4, sampler=ShardSampler(N, rank=rank, world_size=world_size))
    precision = Precision.create("fp32", runtime.device)
    accuracy = evaluate(model, loader, precision=precision, runtime=runtime)
    evaluated = [b.clone() for b in model.buffers()]
    for buffer, before in zip(model.buffers(), drifted):  # drifted again: the report pass must sync too
        buffer.copy_(before)
    predictions = predict_labels(model, data, batch_size=4, num_workers=0, precision=precision,
                                 runtime=runtime, normalise=lambda x: x)
    torch.save({"state": model.state_dict(), "drifted": drifted, "evaluated": evaluated, "accuracy": accuracy,
                "predictions": predictions.__dict__}, f"{out}.{rank}")


@pytest.mark.slow
def test_two_forwards_before_backward_and_every_rank_evaluates_rank0s_model(tmp_path):
    """torch 2.4/2.5 failed this step under DDP's default (buffers copied before every forward, in place);
    without that copy the other ranks' batch-norm statistics drift, and evaluation must use rank 0's:
    every rank's accuracy and report pass equal one process's with rank 0's saved weights."""
    out = str(tmp_path / "r")
    run_ranks(_two_views_then_evaluate, out)
    ranks = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert not all(torch.equal(a, b) for a, b in zip(ranks[0]["drifted"], ranks[1]["drifted"])), \
        "the ranks' running statistics should differ before evaluation (else the test shows nothing)"
    for name, tensor in ranks[0]["state"].items():  # parameters by all-reduce, buffers by the broadcast
        assert torch.equal(ranks[1]["state"][name], tensor), name
    saved = _Normed()
    saved.load_state_dict(ranks[0]["state"])
    data, precision = _Points(), Precision.create("fp32", torch.device("cpu"))
    one = Runtime(device=torch.device("cpu"))
    accuracy = evaluate(saved, DataLoader(data, batch_size=4), precision=precision, runtime=one)
    probs = predict_probabilities(saved, data, batch_size=4, num_workers=0, precision=precision,
                                  device=torch.device("cpu"), normalise=lambda x: x)
    for rank in ranks:
        assert all(torch.equal(a, b) for a, b in zip(rank["evaluated"], saved.buffers()))
        assert rank["accuracy"] == accuracy
        # to float rounding: the shards' batches hold other rows than one process's (the drift moves them ~1e-1)
        assert np.allclose(rank["predictions"]["predicted_prob"], probs.max(1), rtol=0, atol=1e-6)
        assert np.array_equal(rank["predictions"]["predicted"], probs.argmax(1))


def _build_data_on_rank(rank: int, world_size: int, out: str) -> None:
    import dataloader
    from fixtures_data import make_cfg
    real = dataloader._noisy_labels

    def counted(*args):
        with open(os.path.join(out, f"noise_made_by_rank{rank}"), "w"):
            pass
        return real(*args)

    dataloader._noisy_labels = counted
    data = dataloader.build_data(make_cfg(noise_mode="sym", noise_ratio=0.4, noise_dir=out), stage="stage1",
                                 log=lambda m: None)
    np.save(os.path.join(out, f"labels{rank}.npy"), data.noisy_labels)


@pytest.mark.slow
def test_noisy_labels_are_made_once_by_rank0_and_shared(tmp_path):
    out = str(tmp_path)
    run_ranks(_build_data_on_rank, out)
    assert sorted(p.name for p in tmp_path.glob("noise_made_by_rank*")) == ["noise_made_by_rank0"]
    assert np.array_equal(np.load(tmp_path / "labels0.npy"), np.load(tmp_path / "labels1.npy"))


def test_sampler_pads_so_merging_must_not_double_count():
    shards = [list(EpochShuffleSampler(N, seed=0, rank=r, world_size=2)) for r in range(2)]
    together = shards[0] + shards[1]
    assert len(together) == N + 1 and len(set(together)) == N  # one sample is seen twice per epoch


@pytest.mark.slow
def test_merged_wrong_events_equal_single_process_counts(tmp_path):
    out = str(tmp_path / "merged.pt")
    run_ranks(_count, out)
    merged = torch.load(out, weights_only=True)
    data, model = _Points(), _Linear()
    with torch.no_grad():
        predicted = model(data.x)[1].argmax(1)
    expected = EPOCHS * (predicted != data.y).int()
    assert torch.equal(merged["counts"], expected)
    for epoch_predictions in merged["predictions"]:
        assert torch.equal(epoch_predictions, predicted)  # every sample recorded once, none left at -1


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_gloo_available(), reason="needs gloo")
def test_torchrun_two_processes_write_one_set_of_artefacts(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()),
           "stage_1.py", "--epochs", "2", "--device", "cpu", "--output_dir", str(tmp_path),
           "--set", "batch_size=128"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tag = "test_resnet_scratch_digits_sym_0.4"
    counts = np.load(tmp_path / "stage1" / f"{tag}_wrongevent.npy")
    assert counts.shape == (1257,) and counts.min() >= 0 and counts.max() <= 2
    log = (tmp_path / "checkpoint" / f"stage1_{tag}" / "train.log").read_text().splitlines()
    epoch_lines = [line for line in log if " epoch " in f" {line.split(' ', 2)[-1]}" and "/2 loss" in line]
    assert len(epoch_lines) == 2, "only rank 0 logs, once per epoch"
    assert "world size 2" in log[0]
    # batch_size is per process: the summary states the recipe the two processes train
    assert any(line.endswith("scale      global batch 256 = 2 processes x batch_size 128 (per process), learning "
                             "rate 0.003 as configured (not scaled with the number of processes)") for line in log)
    rows = (tmp_path / "checkpoint" / f"stage1_{tag}" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3
    leftovers = [p for p in tmp_path.rglob("*.tmp")]
    assert not leftovers

    # stage 2 (class-wise BMM) and ACTO under torchrun on the same output: one set of artefacts each
    for program, extra in (("stage_2_class.py", ["--epochs", "1"]),
                           ("acto.py", ["--epochs", "2", "--set", "warmup_epochs=1"])):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
               str(free_port()), program, "--device", "cpu", "--output_dir", str(tmp_path),
               "--set", "batch_size=128", *extra]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    report = ["_samples.csv", "_summary.json", "_suspects.png", "_review.html", "_model.pt"]
    assert sorted(p.name for p in (tmp_path / "stage2").iterdir()) == sorted(
        [f"{tag}_class.json", f"{tag}_class_bmm.png"] + [f"{tag}_class{s}" for s in report])
    assert sorted(p.name for p in (tmp_path / "acto").iterdir()) == sorted([f"{tag}.json"] + [tag + s for s in report])
    for run_name, epochs in ((f"stage2_{tag}_class", 1), (f"acto_{tag}", 2)):
        log = (tmp_path / "checkpoint" / run_name / "train.log").read_text()
        assert "world size 2" in log and log.count(f"/{epochs} ") == epochs, "rank 0 alone logs each epoch once"
    assert not [p for p in tmp_path.rglob("*.tmp")]
    # the ACTO bank beside last.pt: written by rank 0 alone (one file, the one last.pt names; the first
    # epoch's was removed), every row a probability vector
    acto_dir = tmp_path / "checkpoint" / f"acto_{tag}"
    entry = torch.load(acto_dir / "last.pt", weights_only=True)["arrays"]["memory.bank"]
    assert sorted(p.name for p in acto_dir.glob("*.npy")) == [entry["file"]]
    assert np.allclose(np.load(acto_dir / entry["file"]).sum(1), 1.0, atol=1e-5)
