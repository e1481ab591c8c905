"""The label wave (prediction change, docs/fidelity.md#ido-13-stage-1-and-the-base-model) and the base model stage 1 keeps."""
from __future__ import annotations

import csv
import json
import os

import pytest
import torch

import stage_1
import utils.workflow.lifecycle
from utils.method.wrong_events import EpochPredictions, LabelWave


def changed(prev: torch.Tensor, positions, value) -> torch.Tensor:
    out = prev.clone()
    out[list(positions)] = value
    return out


# ---------------------------------------------------------------------------------- the rules

def test_first_epoch_change_is_n():
    for n in (1, 7, 100):
        wave = LabelWave()
        step = wave.observe(0, torch.randint(0, 3, (n,)))
        assert step.prediction_change == n and step.is_new_minimum and not step.settled
        assert wave.best_epoch == 0 and wave.history == [n]


def test_decrease_then_increase_keeps_the_minimum_and_settles():
    n = 8
    p0 = torch.zeros(n, dtype=torch.int64)
    p1 = changed(p0, range(5), 1)          # PC 5
    p2 = changed(p1, range(2), 2)          # PC 2  <- first local minimum
    p3 = changed(p2, range(4), 3)          # PC 4 vs p2: increase -> settled
    p4 = changed(p2, [7], 4)               # PC 1 vs p2: lower, but already settled
    p5 = p2.clone()                        # PC 0
    wave = LabelWave()
    steps = [wave.observe(e, p) for e, p in enumerate([p0, p1, p2, p3, p4, p5])]
    assert [s.prediction_change for s in steps] == [8, 5, 2, 4, 1, 0]
    assert [s.is_new_minimum for s in steps] == [True, True, True, False, False, False]
    assert [s.settled for s in steps] == [False, False, False, True, True, True]
    assert wave.best_epoch == 2 and wave.settled
    assert torch.equal(wave.reference, p2)
    assert wave.history == [8, 5, 2, 4, 1, 0]


def test_change_is_measured_against_the_previous_epoch_while_decreasing():
    n = 10
    p0 = torch.zeros(n, dtype=torch.int64)
    p1 = changed(p0, range(6), 1)          # 6 vs p0
    p2 = changed(p1, range(6, 9), 2)       # 3 vs p1 (would be 9 vs p0)
    wave = LabelWave()
    assert [wave.observe(e, p).prediction_change for e, p in enumerate([p0, p1, p2])] == [10, 6, 3]
    assert wave.best_epoch == 2 and not wave.settled


def test_monotone_decrease_keeps_the_last_epoch():
    n = 20
    preds = [torch.zeros(n, dtype=torch.int64)]
    for k, flips in enumerate([12, 7, 4, 2, 1], start=1):
        preds.append(changed(preds[-1], range(flips), k))
    wave = LabelWave()
    steps = [wave.observe(e, p) for e, p in enumerate(preds)]
    assert [s.prediction_change for s in steps] == [20, 12, 7, 4, 2, 1]
    assert all(s.is_new_minimum for s in steps) and not any(s.settled for s in steps)
    assert wave.best_epoch == len(preds) - 1


def test_equal_change_counts_as_not_decreasing():
    n = 6
    p0 = torch.zeros(n, dtype=torch.int64)
    p1 = changed(p0, range(3), 1)   # 3
    p2 = changed(p1, range(3), 2)   # 3 again -> settled at epoch 1
    wave = LabelWave()
    steps = [wave.observe(e, p) for e, p in enumerate([p0, p1, p2])]
    assert [s.is_new_minimum for s in steps] == [True, True, False]
    assert steps[-1].settled and wave.best_epoch == 1


def test_state_dict_roundtrip_continues_identically():
    n = 9
    seq = [torch.zeros(n, dtype=torch.int64)]
    for k, flips in enumerate([5, 2, 4, 1], start=1):
        seq.append(changed(seq[-1], range(flips), k))
    full = LabelWave()
    full_steps = [full.observe(e, p) for e, p in enumerate(seq)]
    part = LabelWave()
    for e, p in enumerate(seq[:2]):
        part.observe(e, p)
    resumed = LabelWave()
    resumed.load_state_dict(part.state_dict())
    rest = [resumed.observe(e, p) for e, p in enumerate(seq[2:], start=2)]
    assert rest == full_steps[2:]
    assert resumed.best_epoch == full.best_epoch == 2 and resumed.history == full.history


# ------------------------------------------------------------------ end to end: the saved base model

# Predictions fed to the label wave, epoch by epoch, are scripted so that the curve is known:
# PC = N, 600, 100 (first local minimum, epoch 3), 500 (rise: settled), 50 (lower, but too late).


def scripted_predictions(n: int) -> list[torch.Tensor]:
    p0 = torch.zeros(n, dtype=torch.int64)
    p1 = changed(p0, range(600), 1)
    p2 = changed(p1, range(100), 2)
    p3 = changed(p2, range(500), 3)
    p4 = changed(p2, range(50), 4)
    return [p0, p1, p2, p3, p4]


class ScriptedEpochPredictions(EpochPredictions):
    """Records the real predictions (the step still runs) but hands the wave a scripted sequence."""

    def __init__(self, num_samples, *, device="cpu"):
        super().__init__(num_samples, device=device)
        self.script = scripted_predictions(num_samples)
        self.epochs_done = 0

    def end_epoch(self, reduce=lambda t: t):
        real = super().end_epoch(reduce)
        assert int((real < 0).sum()) == 0  # every sample was predicted in the training pass
        out = self.script[self.epochs_done].to(real.device)
        self.epochs_done += 1
        return out


@pytest.mark.slow
def test_saved_base_model_is_the_minimum_epoch_not_a_later_one(tmp_path, monkeypatch):
    snapshots: list[dict] = []
    real_train_one_epoch = utils.workflow.lifecycle.train_one_epoch

    def recording_train_one_epoch(**kwargs):
        stats = real_train_one_epoch(**kwargs)
        snapshots.append({k: v.detach().clone() for k, v in kwargs["model"].state_dict().items()})
        return stats

    monkeypatch.setattr(utils.workflow.lifecycle, "train_one_epoch", recording_train_one_epoch)
    monkeypatch.setattr(stage_1, "EpochPredictions", ScriptedEpochPredictions)
    out = tmp_path / "run"
    result = stage_1.main(["--epochs", "5", "--batch_size", "128", "--set", "resolution=16",
                           "--output_dir", str(out), "--device", "cpu"])
    tag = result["tag"]
    n = 1257  # digits training split
    assert len(snapshots) == 5

    # the wave as recorded: metrics.csv, the json and the return value agree on epoch 3
    with open(out / "checkpoint" / f"stage1_{tag}" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["prediction_change"]) for r in rows] == [n, 600, 100, 500, 50]
    assert [int(r["base_model_epoch"]) for r in rows] == [1, 2, 3, 3, 3]
    with open(out / "stage1" / f"{tag}_wrongevent.json") as f:
        meta = json.load(f)
    assert meta["base_model_epoch"] == 3 and result["base_model_epoch"] == 3
    assert meta["prediction_change"] == [n, 600, 100, 500, 50]

    saved = torch.load(out / "base_model" / f"{tag}.pt", weights_only=True, map_location="cpu")
    best, later = snapshots[2], snapshots[3:]
    assert set(saved) == set(best)
    for key in best:
        assert torch.equal(saved[key], best[key]), key
    # the weights moved after epoch 3, so a later model would have been caught above
    for snap in later:
        assert any(not torch.equal(snap[k], best[k]) for k in best if k.endswith("weight"))
    # and the resumable state holds the final weights, not the base model
    last = torch.load(out / "checkpoint" / f"stage1_{tag}" / "last.pt", weights_only=True, map_location="cpu")
    assert last["epoch"] == 4
    for key in best:
        assert torch.equal(last["model"][key], snapshots[-1][key]), key
    assert last["label_wave"]["best_epoch"] == 2 and last["label_wave"]["settled"] is True
    assert os.path.isfile(out / "stage1" / f"{tag}_wrongevent.npy")
