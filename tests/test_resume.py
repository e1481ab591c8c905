"""Resume, interruption, atomic checkpoints, the non-finite guard and mixed precision (CPU)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import stage_1
import utils.core.io
from dataloader import build_data
from model import create_model
from utils.training.config import parse_config
from utils.core.distributed import Runtime
from utils.training.engine import NonFiniteLoss, Precision, evaluate, make_loaders

from fixtures_data import SUBPROCESS_ENV
from run_control import start_parked, wait_until_parked

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "test_resnet_scratch_digits_sym_0.4"
FAST = ["--set", "batch_size=128"]


def _cmd(out, *extra):
    return [sys.executable, "stage_1.py", "--epochs", "5", "--output_dir", str(out), *FAST, *extra]


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_run(tmp_path):
    """Stage 1's exact resume (the one test of it): a run killed with SIGKILL right after epoch 2 of 3 (it parks
    there: tests/run_control.py), continued with --resume, ends exactly as the run that was never stopped:
    history, base-model epoch, wrong events, metrics.csv, the .json, the base model and the last weights."""
    args = ["--epochs", "3", "--batch_size", "128", "--set", "resolution=16", "--device", "cpu"]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full = stage_1.main(args + ["--output_dir", str(full_dir)])
    tag = full["tag"]
    run_dir = part_dir / "checkpoint" / f"stage1_{tag}"

    marker = str(tmp_path / "parked")
    proc = start_parked("stage_1.py", args + ["--output_dir", str(part_dir)], epochs=2, marker=marker,
                        env=SUBPROCESS_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until_parked(proc, marker)
    proc.kill()
    proc.wait()
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 2  # killed after epoch 2 of 3, on any machine
    assert not (part_dir / "stage1" / f"{tag}_wrongevent.npy").exists()

    resumed = stage_1.main(args + ["--output_dir", str(part_dir), "--resume"])

    assert resumed["history"] == full["history"] and len(full["history"]) == 3
    assert resumed["base_model_epoch"] == full["base_model_epoch"]
    a = np.load(full_dir / "stage1" / f"{tag}_wrongevent.npy")
    b = np.load(part_dir / "stage1" / f"{tag}_wrongevent.npy")
    assert np.array_equal(a, b) and a.sum() > 0
    assert (full_dir / "checkpoint" / f"stage1_{tag}" / "metrics.csv").read_text() == \
        (run_dir / "metrics.csv").read_text()
    ja = json.loads((full_dir / "stage1" / f"{tag}_wrongevent.json").read_text())
    jb = json.loads((part_dir / "stage1" / f"{tag}_wrongevent.json").read_text())
    assert ja == jb
    for name in (f"base_model/{tag}.pt", f"checkpoint/stage1_{tag}/last.pt"):
        sa, sb = (torch.load(d / name, weights_only=True) for d in (full_dir, part_dir))
        if "model" in sa:  # last.pt: the weights inside the state
            sa, sb = sa["model"], sb["model"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name
    # the log of the resumed run says so, and kept the first part
    log = (run_dir / "train.log").read_text()
    assert "resumed from" in log and "epoch 1/3" in log


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    """Ctrl-C after epoch 1 of 40 (parked there): exit 130, a hint to --resume, last.pt holds exactly epoch 1."""
    marker = str(tmp_path / "parked")
    proc = start_parked("stage_1.py", _cmd(tmp_path, "--epochs", "40")[2:], epochs=1, marker=marker,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until_parked(proc, marker)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    state = torch.load(tmp_path / "checkpoint" / f"stage1_{TAG}" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    utils.core.io.save_torch({"epoch": 1, "w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(utils.core.io.torch, "save", broken_save)
    with pytest.raises(OSError):
        utils.core.io.save_torch({"epoch": 2, "w": torch.zeros(3)}, path)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]


def test_saving_the_same_state_twice_gives_the_same_bytes(tmp_path):
    """The temporary name of the atomic write must not leak into the file (torch names the archive's
    folder after the path it is given)."""
    state = {"epoch": 3, "w": torch.arange(5.0)}
    first, second = utils.core.io.save_torch(state, str(tmp_path / "a.pt")), utils.core.io.save_torch(state, str(tmp_path / "b.pt"))
    with open(first, "rb") as f, open(second, "rb") as g:
        assert f.read() == g.read()
    assert torch.equal(torch.load(second, weights_only=True)["w"], state["w"])


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_files_get_the_mode_of_a_plain_open(tmp_path, umask):
    """Not mkstemp's 0600: 0666 less the umask, like any file the user's tools write."""
    old = os.umask(umask)
    try:
        paths = [utils.core.io.save_json({"a": 1}, str(tmp_path / "r.json")),
                 utils.core.io.save_torch({"w": torch.zeros(2)}, str(tmp_path / "m.pt"))]
    finally:
        os.umask(old)
    assert [os.stat(p).st_mode & 0o777 for p in paths] == [0o666 & ~umask] * 2


@pytest.mark.slow
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


MIXED = ["--epochs", "1", *FAST, "--set", "channels_last=true"]


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    return stage_1.main(MIXED + ["--output_dir", str(tmp_path_factory.mktemp("fp32"))])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_runs_on_cpu(tmp_path, precision, fp32_run):
    """One epoch under autocast (channels_last): the logged test accuracy is the base model's, recomputed here
    under the same autocast, and the training loss is not fp32's (the precision reached the training step)."""
    argv = MIXED + ["--output_dir", str(tmp_path)]
    result = stage_1.main(argv + ["--set", f"precision={precision}"])
    counts = np.load(tmp_path / "stage1" / f"{TAG}_wrongevent.npy")
    assert counts.shape == (1257,) and set(np.unique(counts)) <= {0, 1}
    [row] = result["history"]
    assert np.isfinite(row["train_loss"]) and result["base_model_epoch"] == 1

    cfg = parse_config(argv, prog="stage_1.py", scope="stage1")
    data = build_data(cfg, stage="stage1", log=lambda _: None)
    model = create_model(cfg.backbone, num_classes=data.num_classes, pretrained=False, img_size=cfg.resolution)
    model.load_state_dict(torch.load(tmp_path / "base_model" / f"{TAG}.pt", weights_only=True))
    model.to(memory_format=torch.channels_last)
    runtime = Runtime(device=torch.device("cpu"))
    _, test_loaders = make_loaders(data.train, data.test_sets, cfg, runtime)
    acc = evaluate(model, test_loaders["test"], precision=Precision.create(precision, runtime.device),
                   runtime=runtime, channels_last=True, normalise=data.normalise)
    assert row["test_acc"] == round(acc, 4)
    assert fp32_run["history"][0]["train_loss"] != row["train_loss"]
