"""The console of a run: a short summary first (the full config only with --print_config), epoch lines with
time per epoch and time left."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
import yaml

from utils.training.config import parse_config
from utils.training.epoch_clock import EpochClock, format_duration
from utils.training.outputs import Stage1Outputs
from utils.training.run import start_run
from utils.training.run_summary import MAX_LINES, run_summary


def _fake_run(tmp_path, **cfg):
    values = dict(backbone="resnet50", precision="bf16", num_workers=8, dataset="cifar100", noise_mode="sym",
                  noise_ratio=0.4, noise_convention="ido", epochs=5, batch_size=64, output_dir=str(tmp_path))
    values.update(cfg)
    return SimpleNamespace(cfg=SimpleNamespace(**values), prog="stage_1.py",
                           runtime=SimpleNamespace(device=torch.device("cuda", 0), world_size=4),
                           log=SimpleNamespace(run_dir=str(tmp_path / "checkpoint" / "stage1_x")))


def _fake_data(test_sets=None):
    return SimpleNamespace(train=range(50000), test_sets={"test": range(10000)} if test_sets is None else test_sets,
                           num_classes=100, resolution=224, noise_info={"realised_noise_rate": 0.39852})


def test_summary_says_what_runs_in_at_most_nine_lines(tmp_path):
    lines = run_summary(_fake_run(tmp_path), _fake_data(), model="pretrained, from timm's hub cache /c/m.safetensors",
                        optimiser="sgd lr 0.02 weight decay 0.0005, schedule constant", lr=0.02,
                        method="global BMM", outputs=[str(tmp_path / "stage1" / "x_*"), "/elsewhere/base.pt"])
    assert lines == [
        f"stage_1.py: run stage1_x on cuda:0 (world size 4), bf16, 8 data workers per process, torch {torch.__version__}",
        "data       cifar100: 50000 training images (10000 test), 100 classes, 224 px",
        "noise      sym 0.4 (ido convention), realised noise rate 0.3985",
        "model      resnet50 (resnet50.a1_in1k), pretrained, from timm's hub cache /c/m.safetensors",
        "optimiser  sgd lr 0.02 weight decay 0.0005, schedule constant; 5 epochs, batch 64",
        "scale      global batch 256 = 4 processes x batch_size 64 (per process), learning rate 0.02 as configured "
        "(not scaled with the number of processes)",
        "method     global BMM",
        f"outputs    in {tmp_path}: stage1/x_*, /elsewhere/base.pt",
        f"run dir    {tmp_path}/checkpoint/stage1_x: train.log, metrics.csv, last.pt, config.yaml (the full config; "
        "--print_config shows it here)",
    ]
    assert len(lines) <= MAX_LINES <= 12


def test_summary_without_evaluation_set_or_known_noise(tmp_path):
    data = _fake_data(test_sets={})
    data.noise_info = {}
    run = _fake_run(tmp_path, backbone="test_resnet", dataset="imagefolder", noise_mode="real", noise_ratio=0.0)
    run.runtime.world_size = 1  # one process: batch_size is the whole batch, no scale line
    lines = run_summary(run, data, model="random init (pretrained: false)", optimiser="adamw", lr=0.001)
    assert lines[1:4] == ["data       imagefolder: 50000 training images (no evaluation set), 100 classes, 224 px",
                          "noise      real 0 (ido convention), realised noise rate n/a",
                          "model      test_resnet, random init (pretrained: false)"]
    assert len(lines) == 6  # no method, no outputs besides the run directory


@pytest.mark.parametrize("seconds, text", [(0, "0.0s"), (2.44, "2.4s"), (42.4, "42s"), (59.6, "1m00s"),
                                           (245, "4m05s"), (3599.6, "1h00m"), (7500, "2h05m"), (-1, "0.0s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_epoch_clock_time_per_epoch_and_time_left():
    ticks = iter([100.0, 160.0, 250.0, 330.0])  # creation, then epochs of 60 s, 90 s and 80 s
    clock = EpochClock(10, clock=lambda: next(ticks))
    assert clock.lap(2) == "1m00s/epoch, 7m00s left"   # resumed at epoch 3 of 10: 7 left x 60 s
    assert clock.lap(3) == "1m30s/epoch, 7m30s left"   # mean 75 s x 6
    assert clock.lap(9) == "1m20s/epoch, 0s left"


def test_full_config_on_the_console_only_with_print_config(tmp_path, capsys):
    run = start_run(["--output_dir", str(tmp_path), "--device", "cpu"], prog="stage_1.py", scope="stage1",
                    outputs=Stage1Outputs.of)
    assert capsys.readouterr().out == ""
    log = open(os.path.join(run.log.run_dir, "train.log"), encoding="utf-8").read()
    assert "config:\n" + run.cfg.to_yaml() in log  # the whole config stays in the log file
    assert yaml.safe_load(open(os.path.join(run.log.run_dir, "config.yaml"))) == run.cfg.to_dict()

    run = start_run(["--output_dir", str(tmp_path / "b"), "--device", "cpu", "--print_config"], prog="stage_1.py",
                    scope="stage1", outputs=Stage1Outputs.of)
    assert capsys.readouterr().out == "config:\n" + run.cfg.to_yaml()
    assert run.cfg.print_config is True
    assert parse_config(["--print_config"], prog="p", scope="acto").print_config is True
