"""acto.py end to end on the embedded digits default: one warm-up and one robust epoch, exact resume."""
from __future__ import annotations

import csv
import json
import os

import numpy as np

import pytest
import torch
import yaml

import acto
from utils.core.errors import ConfigError, DataError
from utils.core.entry import run_main
import utils.workflow.lifecycle

ARGS = ["--epochs", "2", "--set", "warmup_epochs=1", "--device", "cpu"]
TAG = "test_resnet_scratch_digits_sym_0.4"
N_DIGITS_TRAIN = 1257


class Interrupted(KeyboardInterrupt):
    pass


def bank_file(run_dir) -> str:
    """The bank's file that last.pt names (checkpoint/{run}/last.memory.bank.{token}.npy)."""
    last = torch.load(run_dir / "last.pt", weights_only=True)
    return last["arrays"]["memory.bank"]["file"]


def saved_bank(run_dir) -> torch.Tensor:
    return torch.from_numpy(np.load(run_dir / bank_file(run_dir)))


def read_metrics(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("acto_full")
    return out, acto.main(ARGS + ["--output_dir", str(out)])


@pytest.mark.slow
def test_files_and_result_keys(full_run):
    out, result = full_run
    files = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    run = f"checkpoint/acto_{TAG}"
    report = [f"acto/{TAG}{s}"
              for s in ("_samples.csv", "_summary.json", "_suspects.png", "_review.html", "_model.pt")]
    assert files == sorted(report + [f"acto/{TAG}.json", f"{run}/config.yaml", f"{run}/train.log", f"{run}/metrics.csv",
                            f"{run}/last.pt", f"{run}/{bank_file(out / run)}",
                            "noise_file/digits_sym_0.4_seed0_ido.json"])
    saved = json.loads((out / "acto" / f"{TAG}.json").read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("best_acc", "last_acc", "last_k_mean", "test_acc", "ntm_test_acc", "selected_size",
                "selected_precision", "selected_recall", "mined_share", "mining_active_frac", "history"):
        assert key in saved, key
    assert saved["phase"] == ["warmup", "robust"] and saved["last_k"] == 2
    assert len(saved["test_acc"]) == 2 and saved["last_acc"] == saved["test_acc"][-1]
    assert saved["best_acc"] == max(saved["test_acc"])
    assert saved["last_k_mean"] == pytest.approx(sum(saved["test_acc"]) / 2, abs=1e-3)
    # warm-up has no selection; the robust epoch's selected set is measured against the clean labels
    assert saved["selected_size"][0] is None
    assert 0 < saved["selected_size"][1] <= N_DIGITS_TRAIN
    assert 0.0 <= saved["selected_precision"][1] <= 1.0 and 0.0 <= saved["selected_recall"][1] <= 1.0
    assert 0.0 <= saved["mining_active_frac"][1] <= 1.0 and 0.0 <= saved["mined_share"][1] <= 1.0
    assert all(0.0 <= a <= 100.0 for a in saved["test_acc"] + saved["ntm_test_acc"])

    run_dir = out / run
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["warmup_epochs"] == 1
    rows = read_metrics(run_dir / "metrics.csv")
    assert [r["phase"] for r in rows] == ["warmup", "robust"]
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and set(last) >= {"rtm", "ntm", "opt_rtm", "opt_ntm", "scaler", "memory", "history"}
    # counter: every sample once in warm-up, then once more if selected in the robust epoch
    counter = last["memory"]["counter"]
    assert counter.shape == (N_DIGITS_TRAIN,) and counter.min() >= 1 and counter.max() <= 2
    assert int((counter == 2).sum()) == saved["selected_size"][1]
    assert "bank" not in last["memory"]  # in its own file, beside last.pt
    assert last["arrays"]["memory.bank"]["shape"] == [N_DIGITS_TRAIN, 10]
    bank = saved_bank(run_dir)
    assert torch.allclose(bank.sum(1), torch.ones(N_DIGITS_TRAIN), atol=1e-5)
    assert "epoch 2/2 robust" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_the_uninterrupted_one(full_run, tmp_path, monkeypatch):
    full_dir, full = full_run
    part_dir = tmp_path / "part"
    real = utils.workflow.lifecycle.train_one_epoch

    def stop_at_second_epoch(**kwargs):
        if kwargs["epoch"] == 1:
            raise Interrupted()
        return real(**kwargs)

    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", stop_at_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        acto.main(ARGS + ["--output_dir", str(part_dir)])
    run_dir = part_dir / "checkpoint" / f"acto_{TAG}"
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 0
    assert not (part_dir / "acto").exists()

    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", real)
    resumed = acto.main(ARGS + ["--output_dir", str(part_dir), "--resume"])
    assert resumed["history"] == full["history"]
    la = torch.load(full_dir / "checkpoint" / f"acto_{TAG}" / "last.pt", weights_only=True)
    lb = torch.load(run_dir / "last.pt", weights_only=True)
    for part in ("rtm", "ntm"):
        assert all(torch.equal(la[part][k], lb[part][k]) for k in la[part]), part
    assert torch.equal(la["memory"]["counter"], lb["memory"]["counter"])
    assert torch.equal(saved_bank(full_dir / "checkpoint" / f"acto_{TAG}"), saved_bank(run_dir))
    assert "resumed from" in (run_dir / "train.log").read_text()


@pytest.mark.slow
def test_crash_between_the_bank_file_and_last_pt_resumes_the_previous_epoch_exactly(full_run, tmp_path, monkeypatch):
    """Killed after epoch 2's bank file is written, before its last.pt: the resume starts from epoch 1's
    last.pt and bank (not epoch 2's bank), and ends bit-identical to the uninterrupted run."""
    import utils.training.runlog
    full_dir, full = full_run
    part_dir = tmp_path / "part"
    run_dir = part_dir / "checkpoint" / f"acto_{TAG}"
    real = utils.training.runlog.save_torch

    def killed_at_second_save(state, path):
        if state["epoch"] == 1:
            raise Interrupted()
        return real(state, path)

    monkeypatch.setattr(utils.training.runlog, "save_torch", killed_at_second_save)
    with pytest.raises(KeyboardInterrupt):
        acto.main(ARGS + ["--output_dir", str(part_dir)])
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 0
    orphan = {f for f in os.listdir(run_dir) if f.endswith(".npy")} - {bank_file(run_dir)}
    assert len(orphan) == 1  # epoch 2's bank, named by no last.pt

    monkeypatch.setattr(utils.training.runlog, "save_torch", real)
    resumed = acto.main(ARGS + ["--output_dir", str(part_dir), "--resume"])
    assert resumed["history"] == full["history"]
    assert torch.equal(saved_bank(full_dir / "checkpoint" / f"acto_{TAG}"), saved_bank(run_dir))
    assert [f for f in os.listdir(run_dir) if f.endswith(".npy")] == [bank_file(run_dir)]  # orphan removed


def test_resume_refuses_foreign_checkpoint(tmp_path):
    run_dir = tmp_path / "checkpoint" / f"acto_{TAG}"
    run_dir.mkdir(parents=True)
    torch.save({"epoch": 0, "fingerprint": "0" * 64}, run_dir / "last.pt")
    with pytest.raises(DataError, match="other data or noisy labels"):
        acto.main(ARGS + ["--output_dir", str(tmp_path), "--resume"])


@pytest.mark.parametrize("argv, message", [
    (["--set", "bmm=class"], "'bmm'.*not used by acto"),
    (["--set", "eta_min=0.1"], "'eta_min'.*not used by acto"),
    (["--epochs", "3", "--set", "warmup_epochs=3"], "'warmup_epochs'"),
    (["--set", "lr_plan=linear"], "'lr_plan'"),
    (["--set", "ntm_lr_plan=cosine:x"], "'ntm_lr_plan'"),
    (["--set", "selection_rule=both"], "'selection_rule'"),
    (["--set", "tau=high"], "'tau'"),
])
def test_bad_config_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(ConfigError, match=message):
        acto.main(argv + ["--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        run_main(acto.main, argv + ["--output_dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_checkpoint_every_writes_last_pt_every_k_epochs_and_after_the_last(tmp_path, monkeypatch):
    """A checkpoint writes the bank's 4 N C bytes (beside last.pt): checkpoint_every=2 writes it after epochs 2
    and 3 (the last) of 3."""
    from utils.training.run import Run
    saved = []
    real = Run.save_state

    def record(self, state, **kwargs):
        saved.append(state["epoch"] + 1)
        return real(self, state, **kwargs)

    monkeypatch.setattr(Run, "save_state", record)
    acto.main(["--epochs", "3", "--set", "warmup_epochs=1", "--set", "checkpoint_every=2", "--device", "cpu",
               "--set", "export_samples=false", "--output_dir", str(tmp_path)])
    assert saved == [2, 3]
    assert torch.load(tmp_path / "checkpoint" / f"acto_{TAG}" / "last.pt", weights_only=True)["epoch"] == 2
