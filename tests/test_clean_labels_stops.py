"""clean_labels.py stopped (Ctrl-C, SIGTERM) in stage 1, stage 2 or ACTO: the stop line names the same command,
and that command, run again, says in one line what it continues and ends exactly as a run never stopped;
run once more, it keeps every finished stage (utils/workflow/continuation.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch

import clean_labels
from fixtures_data import SUBPROCESS_ENV
from run_control import start_parked, wait_until_parked
from test_own_data_e2e import FAST, write_small
from utils.core.shell import command

TAG = "test_resnet_scratch_imagefolder_real_0"
TINY = [*FAST, "--batch_size", "6", "--epochs", "2", "--acto", "--set", "warmup_epochs=1"]
RUNS = {"stage 1": f"stage1_{TAG}", "stage 2": f"stage2_{TAG}_class", "ACTO": f"acto_{TAG}"}
# what each stage leaves, compared file by file with the run that was never stopped
JSONS = [f"stage1/{TAG}_wrongevent.json", f"stage2/{TAG}_class.json", f"acto/{TAG}.json"]
TEXTS = [f"stage1/{TAG}_samples.csv", f"stage2/{TAG}_class_samples.csv", f"acto/{TAG}_samples.csv",
         *(f"checkpoint/{run}/metrics.csv" for run in RUNS.values())]
MODELS = [f"base_model/{TAG}.pt", f"stage2/{TAG}_class_model.pt", f"acto/{TAG}_model.pt"]


def argv(root, out) -> list[str]:
    return [str(root), "--output_dir", str(out), *TINY]


@pytest.fixture(scope="module")
def data_and_uninterrupted(tmp_path_factory):
    root, out = tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("never_stopped")
    write_small(root, "imagefolder")
    clean_labels.main(argv(root, out))
    return root, out


def tensors(path) -> dict:
    state = torch.load(path, weights_only=True)
    return state.get("model", state)


def assert_same_results(out, reference) -> None:
    for name in JSONS:
        assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name
    for name in TEXTS:
        assert (out / name).read_text() == (reference / name).read_text(), name
    assert np.array_equal(np.load(out / f"stage1/{TAG}_wrongevent.npy"),
                          np.load(reference / f"stage1/{TAG}_wrongevent.npy"))
    for name in MODELS:
        a, b = tensors(out / name), tensors(reference / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow
@pytest.mark.parametrize("stage, saves, stop", [("stage 1", 1, signal.SIGINT), ("stage 2", 3, signal.SIGTERM),
                                                ("ACTO", 5, signal.SIGTERM)])
def test_the_same_command_continues_a_stopped_run_to_the_uninterrupted_result(data_and_uninterrupted, tmp_path,
                                                                              capsys, stage, saves, stop):
    """Stopped right after epoch 1 of 2 of ``stage`` (it parks there: tests/run_control.py; stage 1 and stage 2
    save two epochs each, ACTO comes third)."""
    root, reference = data_and_uninterrupted
    out = tmp_path / "out"
    marker = str(tmp_path / "parked")
    proc = start_parked("clean_labels.py", argv(root, out), epochs=saves, marker=marker, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=dict(SUBPROCESS_ENV, TQDM_DISABLE="1"))
    wait_until_parked(proc, marker)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=300)
    last = out / "checkpoint" / RUNS[stage] / "last.pt"
    why = "interrupted" if stop == signal.SIGINT else "stopped by SIGTERM"
    assert proc.returncode == (130 if stop == signal.SIGINT else 143), err[-3000:]
    assert err.strip().splitlines() == [f"clean_labels.py: {why}; every finished epoch is saved in {last}; run the "
                                        f"same command to continue: {command(['python', 'clean_labels.py', *argv(root, out)])}"]
    assert torch.load(last, weights_only=True)["epoch"] == 0

    clean_labels.main(argv(root, out))
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("clean_labels.py: ")]
    done = {"stage 1": f"stage1/{TAG}_wrongevent.json", "stage 2": f"stage2/{TAG}_class.json"}
    kept = [f"clean_labels.py: {name} of this data and these settings is complete ({out / done[name]}); kept"
            for name in list(RUNS)[:list(RUNS).index(stage)]]
    assert said == kept + [f"clean_labels.py: {stage} was stopped after epoch 1 of 2; continuing it from {last}"]
    assert_same_results(out, reference)

    if stage == "ACTO":  # once more: every stage is finished, nothing is trained or written again
        written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
        clean_labels.main(argv(root, out))
        said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("clean_labels.py: ")]
        assert len(said) == 3 and all(line.endswith("; kept") for line in said)
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written
