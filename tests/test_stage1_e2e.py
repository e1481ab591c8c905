"""stage_1.py end to end on the embedded digits default: the files of docs/fidelity.md#output-names, and exact resume."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import stage_1
from dataloader import build_data
from model import create_model
from utils.training.config import REPO_ROOT, parse_config
from utils.core.distributed import Runtime
from utils.training.batching import batch_sizes
from utils.training.engine import Precision, evaluate, make_loaders, seed_epoch
from utils.core.errors import DataError
import utils.workflow.lifecycle

from fixtures_data import SUBPROCESS_ENV


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_DIGITS_TRAIN = 1257   # 70 % of scikit-learn's 1,797 digits


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def relative_files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e")
    proc = subprocess.run([sys.executable, "stage_1.py", "--epochs", "3", "--output_dir", str(out),
                           "--device", "cpu"], cwd=REPO_ROOT, env=SUBPROCESS_ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = parse_config(["--epochs", "3", "--output_dir", str(out), "--device", "cpu"], prog="stage_1.py",
                       scope="stage1")
    return out, cfg, proc


@pytest.mark.slow
def test_cli_writes_exactly_the_stage1_files(cli_run):
    out, cfg, proc = cli_run
    tag = cfg.tag
    assert tag == "test_resnet_scratch_digits_sym_0.4"
    run = f"checkpoint/stage1_{tag}"
    assert relative_files(out) == sorted([
        f"stage1/{tag}_wrongevent.npy", f"stage1/{tag}_wrongevent.json", f"stage1/{tag}_wrongevent.png",
        f"stage1/{tag}_samples.csv", f"stage1/{tag}_summary.json", f"stage1/{tag}_suspects.png",
        f"stage1/{tag}_review.html",
        f"base_model/{tag}.pt",
        f"{run}/config.yaml", f"{run}/train.log", f"{run}/metrics.csv", f"{run}/last.pt",
        "noise_file/digits_sym_0.4_seed0_ido.json",      # noise_dir defaults to {output_dir}/noise_file
    ])
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_wrong_event_file_and_metadata(cli_run):
    out, cfg, _ = cli_run
    tag = cfg.tag
    counts = np.load(out / "stage1" / f"{tag}_wrongevent.npy")
    assert counts.dtype == np.int32 and counts.shape == (N_DIGITS_TRAIN,)
    assert counts.min() >= 0 and counts.max() <= 3
    assert len(np.unique(counts)) > 1

    with open(out / "stage1" / f"{tag}_wrongevent.json") as f:
        meta = json.load(f)
    for key in ("dataset", "num_samples", "epochs", "fingerprint", "noise_mode", "noise_ratio",
                "realised_noise_rate", "base_model_epoch"):
        assert key in meta, key
    assert meta["dataset"] == "digits" and meta["num_samples"] == N_DIGITS_TRAIN and meta["epochs"] == 3
    assert meta["noise_mode"] == "sym" and meta["noise_ratio"] == 0.4
    assert 1 <= meta["base_model_epoch"] <= 3

    # the fingerprint is the one of the data set and noisy labels (rebuilt here from the noise cache)
    data = build_data(cfg, stage="stage1", log=lambda _: None)
    assert data.noise_info["reused"] is True
    assert meta["fingerprint"] == data.fingerprint
    assert meta["realised_noise_rate"] == pytest.approx(float(np.mean(data.noisy_labels != data.clean_labels)))
    # the AUC of the counts for noisy-label detection: the share of (noisy, clean) pairs in which the noisy
    # sample has more wrong events, ties counted half
    noisy, clean = counts[data.is_noisy], counts[~data.is_noisy]
    pairs = (noisy[:, None] > clean[None, :]).mean() + 0.5 * (noisy[:, None] == clean[None, :]).mean()
    assert meta["wrong_event_auc"] == pytest.approx(pairs, abs=1e-9) and meta["wrong_event_auc"] > 0.5

    # wrong events come from the same forward pass as the training accuracy on the noisy labels:
    # their total is sum over epochs of N * (1 - acc)
    rows = read_metrics(out / "checkpoint" / f"stage1_{tag}" / "metrics.csv")
    wrong_per_epoch = [round(N_DIGITS_TRAIN * (1 - float(r["train_acc_noisy"]) / 100)) for r in rows]
    assert int(counts.sum()) == sum(wrong_per_epoch)

    assert (out / "stage1" / f"{tag}_wrongevent.png").read_bytes()[:8] == PNG_MAGIC


DURATION = r"(\d\.\ds|\d+s|\d+m\d\ds|\d+h\d\dm)"


@pytest.mark.slow
def test_console_opens_with_the_summary_and_epoch_lines_give_time_left(cli_run):
    """The console: the noise line, the run's summary (not the 55-line config), then one line per epoch
    ending in the time per epoch and the time left; the full config is in train.log."""
    out, cfg, proc = cli_run
    lines = proc.stdout.splitlines()
    run_dir = out / "checkpoint" / f"stage1_{cfg.tag}"
    assert lines[0].startswith("noisy labels digits sym ratio=0.4 seed=0 convention=ido: realised noise rate ")
    assert lines[1:8] == [
        f"stage_1.py: run stage1_{cfg.tag} on cpu (world size 1), fp32, 0 data workers per process, "
        f"torch {torch.__version__}",
        "data       digits: 1257 training images (540 test), 10 classes, 32 px",
        "noise      sym 0.4 (ido convention), realised noise rate 0.3556",
        "model      test_resnet, random init (pretrained: false)",
        "optimiser  adamw lr 0.003 weight decay 0.0001, schedule cosine; 3 epochs, batch 64",
        f"outputs    in {out}: stage1/{cfg.tag}_*, base_model/{cfg.tag}.pt",
        f"run dir    {run_dir}: train.log, metrics.csv, last.pt, config.yaml (the full config; --print_config "
        "shows it here)",
    ]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 3 and lines[8] == epochs[0]
    for i, line in enumerate(epochs):
        assert re.fullmatch(rf"epoch {i + 1}/3 loss .* \| {DURATION}/epoch, {DURATION if i < 2 else '0s'} left",
                            line), line
    assert "config:" not in proc.stdout
    assert "config:\n" + cfg.to_yaml() in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_run_directory(cli_run):
    out, cfg, _ = cli_run
    run_dir = out / "checkpoint" / f"stage1_{cfg.tag}"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved == cfg.to_dict()
    rows = read_metrics(run_dir / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert int(rows[0]["prediction_change"]) == N_DIGITS_TRAIN
    for r in rows:
        assert 0.0 <= float(r["test_acc"]) <= 100.0 and float(r["train_loss"]) > 0
    log = (run_dir / "train.log").read_text()
    assert "epoch 3/3" in log and "epoch 1/3" in log
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and len(last["history"]) == 3
    assert last["wrong_events"]["counts"].tolist() == np.load(
        out / "stage1" / f"{cfg.tag}_wrongevent.npy").tolist()


@pytest.mark.slow
def test_base_model_loads_and_reproduces_its_test_accuracy(cli_run):
    out, cfg, _ = cli_run
    state = torch.load(out / "base_model" / f"{cfg.tag}.pt", weights_only=True)
    model = create_model(cfg.backbone, num_classes=10, pretrained=False, img_size=cfg.resolution)
    model.load_state_dict(state)  # strict: every key, every shape
    rows = read_metrics(out / "checkpoint" / f"stage1_{cfg.tag}" / "metrics.csv")
    base_epoch = int(rows[-1]["base_model_epoch"])
    data = build_data(cfg, stage="stage1", log=lambda _: None)
    runtime = Runtime(device=torch.device("cpu"))
    _, test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
    acc = evaluate(model, test_loaders["test"], precision=Precision.create("fp32", runtime.device), runtime=runtime,
                   normalise=data.normalise)
    # the test accuracy logged at the base epoch was measured with exactly these weights
    assert acc == pytest.approx(float(rows[base_epoch - 1]["test_acc"]), abs=0.2)


# ------------------------------------------------------------------------------------- resume

class Interrupted(KeyboardInterrupt):
    pass


# stage 1's exact resume after a kill: tests/test_resume.py::test_killed_run_resumes_to_the_uninterrupted_run


def test_resume_refuses_missing_or_foreign_checkpoints(tmp_path):
    with pytest.raises(DataError, match="last.pt"):
        stage_1.main(["--epochs", "1", "--output_dir", str(tmp_path / "none"), "--device", "cpu", "--resume"])

    # a checkpoint written for other noisy labels (another noise seed, same tag and run name)
    out = tmp_path / "run"
    run_dir = out / "checkpoint" / "stage1_test_resnet_scratch_digits_sym_0.4"
    run_dir.mkdir(parents=True)
    torch.save({"epoch": 0, "fingerprint": "0" * 64}, run_dir / "last.pt")
    with pytest.raises(DataError, match="other data or noisy labels"):
        stage_1.main(["--epochs", "1", "--output_dir", str(out), "--device", "cpu", "--resume"])

    (run_dir / "last.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        stage_1.main(["--epochs", "1", "--output_dir", str(out), "--device", "cpu", "--resume"])


@pytest.mark.slow
def test_resume_never_continues_a_stale_run(tmp_path, monkeypatch):
    out = str(tmp_path)
    base = ["--batch_size", "128", "--set", "resolution=16", "--device", "cpu", "--output_dir", out]
    stage_1.main(base + ["--epochs", "1"])                      # an earlier, finished run (lr 0.003)
    new = base + ["--epochs", "2", "--set", "lr=0.01"]          # same tag and run directory, other lr

    def interrupt(**kwargs):
        raise Interrupted()

    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        stage_1.main(new)                                      # fresh run stopped during epoch 1
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"other settings \(epochs: 1 there, 2 here, lr: 0.003 there, 0.01 here\)"):
        stage_1.main(new + ["--resume"])                       # the stale checkpoint of the old run
    stage_1.main(base + ["--epochs", "1", "--resume"])         # its own settings resume it


@pytest.mark.parametrize("size, world_size, sizes", [(129, 1, [64, 33, 32]), (130, 1, [64, 64, 2]),
                                                     (257, 2, [64, 33, 32]), (259, 2, [64, 64, 2]),
                                                     (64 * 3 + 1, 1, [64, 64, 33, 32])])
def test_training_loader_keeps_every_sample_without_a_batch_of_one(size, world_size, sizes):
    """N = bs*k + 1: BatchNorm cannot train on a batch of one, and a dropped sample would lose its
    prediction of the epoch (-1: a label-wave change and a wrong event); the last two batches share it."""
    cfg = parse_config(["--batch_size", "64"], prog="stage_1.py", scope="stage1")
    runtime = Runtime(device=torch.device("cpu"), rank=world_size - 1, world_size=world_size)
    loader, _ = make_loaders(torch.utils.data.TensorDataset(torch.arange(size)), {}, cfg, runtime)
    orders = []
    for epoch in range(2):
        seed_epoch(0, epoch, runtime, (loader,))
        batches = [batch[0].tolist() for batch in loader]
        assert [len(b) for b in batches] == sizes
        seen = [i for b in batches for i in b]
        assert sorted(seen) == sorted(loader.batch_sampler.sampler)  # every index of this rank, once
        orders.append(seen)
    assert orders[0] != orders[1]  # reshuffled per epoch through the batch sampler
    if world_size == 1:
        assert sorted(orders[0]) == list(range(size))


@pytest.mark.parametrize("n, bs", [(1, 4), (5, 2), (7, 3), (9, 4), (100, 7), (64, 64), (65, 64)])
def test_batch_sizes_cover_n_without_ones(n, bs):
    sizes = batch_sizes(n, bs)
    assert sum(sizes) == n and max(sizes) <= bs + 1
    assert n == 1 or min(sizes) >= 2
