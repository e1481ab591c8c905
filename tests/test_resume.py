"""Resume, interruption, atomic checkpoints, the non-finite guard and mixed precision (CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import stage_1
import utils.io
from utils.engine import NonFiniteLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "test_resnet_scratch_digits_sym_0.4"
FAST = ["--set", "batch_size=128"]


def _cmd(out, *extra):
    return [sys.executable, "stage_1.py", "--epochs", "5", "--output_dir", str(out), *FAST, *extra]


def _wait_for_rows(path, rows, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and len(open(path).read().strip().splitlines()) >= rows + 1:
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended before {rows} epochs: {proc.stderr.read()[-1000:]}")
        time.sleep(0.05)
    pytest.fail("timed out waiting for epochs")


def test_killed_run_resumes_to_identical_wrong_events(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    subprocess.run(_cmd(full), cwd=REPO, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(cut), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(cut / "checkpoint" / f"stage1_{TAG}" / "metrics.csv", 2, proc)
    proc.kill()
    proc.wait()
    assert not (cut / "stage1" / f"{TAG}_wrongevent.npy").exists(), "the run finished before it was killed"
    resumed = subprocess.run(_cmd(cut, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in (cut / "checkpoint" / f"stage1_{TAG}" / "train.log").read_text()

    a = np.load(full / "stage1" / f"{TAG}_wrongevent.npy")
    b = np.load(cut / "stage1" / f"{TAG}_wrongevent.npy")
    np.testing.assert_array_equal(a, b)
    metrics = [(d / "checkpoint" / f"stage1_{TAG}" / "metrics.csv").read_text() for d in (full, cut)]
    assert metrics[0] == metrics[1]
    base = [torch.load(d / "base_model" / f"{TAG}.pt", weights_only=True) for d in (full, cut)]
    assert all(torch.equal(base[0][k], base[1][k]) for k in base[0])


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, "--epochs", "40"), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_rows(tmp_path / "checkpoint" / f"stage1_{TAG}" / "metrics.csv", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "--resume" in err and "Traceback" not in err
    state = torch.load(tmp_path / "checkpoint" / f"stage1_{TAG}" / "last.pt", weights_only=True)
    assert state["epoch"] >= 0 and len(state["history"]) == state["epoch"] + 1


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    utils.io.save_torch({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(utils.io.torch, "save", broken_save)
    with pytest.raises(OSError):
        utils.io.save_torch({"epoch": 2, "w": torch.zeros(3)}, path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]


def test_saving_the_same_state_twice_gives_the_same_bytes(tmp_path):
    """The temporary name of the atomic write must not leak into the file (torch names the archive's
    folder after the path it is given)."""
    state = {"epoch": 3, "w": torch.arange(5.0)}
    first, second = utils.io.save_torch(state, str(tmp_path / "a.pt")), utils.io.save_torch(state, str(tmp_path / "b.pt"))
    with open(first, "rb") as f, open(second, "rb") as g:
        assert f.read() == g.read()
    assert torch.equal(torch.load(second, weights_only=True)["w"], state["w"])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    """Not mkstemp's 0600: 0666 less the umask, like any file the user's tools write."""
    old = os.umask(umask)
    try:
        paths = [utils.io.save_json({"a": 1}, str(tmp_path / "r.json")),
                 utils.io.save_torch({"w": torch.zeros(2)}, str(tmp_path / "m.pt"))]
    finally:
        os.umask(old)
    assert [os.stat(p).st_mode & 0o777 for p in paths] == [0o666 & ~umask] * 2


def test_non_finite_loss_names_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = stage_1.stage1_step
    calls = {"n": 0}

    def poisoned(wrong_events, predictions):
        step = real_step(wrong_events, predictions)

        def wrapped(model, batch):
            calls["n"] += 1
            loss = step(model, batch)
            return loss * float("nan") if calls["n"] == 10 + 3 else loss  # 10 steps per epoch at batch 128
        return wrapped

    monkeypatch.setattr(stage_1, "stage1_step", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 3"):
        stage_1.main(["--epochs", "3", "--output_dir", str(tmp_path), *FAST])
    state = torch.load(tmp_path / "checkpoint" / f"stage1_{TAG}" / "last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, precision):
    result = stage_1.main(["--epochs", "1", "--output_dir", str(tmp_path), *FAST, "--set", f"precision={precision}",
                           "--set", "channels_last=true"])
    counts = np.load(tmp_path / "stage1" / f"{TAG}_wrongevent.npy")
    assert counts.shape == (1257,) and set(np.unique(counts)) <= {0, 1}
    assert 0.0 <= result["history"][0]["test_acc"] <= 100.0
    assert np.isfinite(result["history"][0]["train_loss"])
