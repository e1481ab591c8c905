"""The sh/ scripts: which commands they run, with which backbone, and where each log goes.

A stub ``python`` on PATH records every invocation instead of training, so the whole grid of a
script is checked in milliseconds.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from utils.training.config import REPO_ROOT

pytestmark = pytest.mark.slow  # every test runs sh (a subprocess), quick as the stub makes it

STUB = """#!/bin/sh
# where a script asks a command for its output paths (--outputs), the real python answers: the paths the
# scripts then use are the outputs definitions' own
case "$*" in *--outputs*) exec "$REAL_PYTHON" "$@";; esac
echo "$*" >> "$CALLS"
echo "last acc 1.00 (stub)"
echo "RTM last acc 1.00 (stub)"
"""


def run_script(tmp_path, script: str, *args: str, env: dict | None = None, fail: str | None = None):
    """Run ``sh sh/<script>`` with the stub; returns (process, list of argv lists, log dir)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "python"
    body = STUB if fail is None else STUB.replace('echo "$*"', f'case "$*" in *{fail}*) echo boom; exit 3;; esac\necho "$*"')
    stub.write_text(body)
    stub.chmod(0o755)
    calls, logs = tmp_path / "calls.txt", tmp_path / "logs"
    full_env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CALLS=str(calls), LOG_DIR=str(logs),
                    REAL_PYTHON=sys.executable, **(env or {}))
    proc = subprocess.run(["sh", os.path.join("sh", script), *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return proc, [shlex.split(line) for line in lines], logs


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_cifar100_grid_same_backbone_one_log_per_stage(tmp_path):
    proc, calls, logs = run_script(tmp_path, "cifar100.sh", "--output_dir", "runs/x")
    assert proc.returncode == 0, proc.stderr
    cells = [(b, m, r) for b in ("resnet50", "ViT-B")
             for m, r in (("sym", "0.2"), ("sym", "0.4"), ("sym", "0.6"), ("asym", "0.4"), ("idn", "0.4"))]
    assert len(calls) == 2 * len(cells)
    for (backbone, mode, ratio), stage1, stage2 in zip(cells, calls[0::2], calls[1::2]):
        assert stage1[:3] == ["stage_1.py", "--config", "config/stage1/cifar100.yaml"]
        assert stage2[:3] == ["stage_2_class.py", "--config", "config/stage2/cifar100.yaml"]
        for argv in (stage1, stage2):  # IDO-B12: the same backbone and noise in both stages
            assert (option(argv, "--backbone"), option(argv, "--noise_mode"), option(argv, "--noise_ratio")) == \
                (backbone, mode, ratio)
            assert argv[-2:] == ["--output_dir", "runs/x"]
    expected = {f"cifar100_{b}_{m}_{r}_stage{s}.log" for b, m, r in cells for s in (1, 2)}
    assert {p.name for p in logs.iterdir()} == expected  # one log per stage and setting, none overwritten


def test_cifar100_global_bmm_and_data_path(tmp_path):
    proc, calls, _ = run_script(tmp_path, "cifar100.sh",
                                env={"STAGE2": "stage_2.py", "BACKBONES": "ViT-B", "SETTINGS": "sym:0.6",
                                     "CIFAR100_PATH": "/data/c100"})
    assert proc.returncode == 0, proc.stderr
    assert [c[0] for c in calls] == ["stage_1.py", "stage_2.py"]
    assert all(option(c, "--set") == "data_path=/data/c100" for c in calls)


def test_a_failing_stage_stops_the_script_and_shows_its_log(tmp_path):
    proc, calls, logs = run_script(tmp_path, "cifar100.sh", env={"BACKBONES": "resnet50"}, fail="stage_2_class.py")
    assert proc.returncode == 3
    assert len(calls) == 1  # stage 1 of the first cell only; the failing stage 2 was not recorded
    assert "boom" in proc.stderr and "failed (exit status 3)" in proc.stderr


def test_digits_runs_both_stage2_variants(tmp_path):
    proc, calls, logs = run_script(tmp_path, "digits.sh", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert calls == [["stage_1.py", "--seed", "1"], ["stage_2.py", "--seed", "1"], ["stage_2_class.py", "--seed", "1"]]
    assert {p.name for p in logs.iterdir()} == {"digits_stage1.log", "digits_stage2_global.log",
                                                "digits_stage2_class.log"}


@pytest.mark.parametrize("script, configs", [
    ("tiny_imagenet.sh", ["tiny_imagenet"] * 6),
    ("realworld.sh", ["cifar100n", "cifar100n", "clothing1m", "clothing1m", "webvision", "webvision"]),
])
def test_other_grids_pass_the_backbone_to_both_stages(tmp_path, script, configs):
    proc, calls, logs = run_script(tmp_path, script, "ViT-B")
    assert proc.returncode == 0, proc.stderr
    assert [os.path.basename(option(c, "--config")).removesuffix(".yaml") for c in calls] == configs
    assert [c[0] for c in calls] == ["stage_1.py", "stage_2_class.py"] * 3
    assert all(option(c, "--backbone") == "ViT-B" for c in calls)
    assert len(list(logs.iterdir())) == 6


def test_acto_commands(tmp_path):
    """By default ACT's own setting: every cell of ACT's Tables 1-3 with the *_act configs."""
    proc, calls, logs = run_script(tmp_path, "acto.sh", "--output_dir", "runs/a")
    assert proc.returncode == 0, proc.stderr
    cifar_cells = [("sym", "0.2"), ("sym", "0.8"), ("asym", "0.4")]
    expected = [(f"config/acto/{s}_act.yaml", m, r) for s in ("cifar100", "cifar80") for m, r in cifar_cells]
    expected += [(f"config/acto/{s}_act.yaml", None, None) for s in ("web-aircraft", "web-bird", "web-car", "food101n")]
    got = [(option(c, "--config"), option(c, "--noise_mode") if "--noise_mode" in c else None,
            option(c, "--noise_ratio") if "--noise_ratio" in c else None) for c in calls]
    assert got == expected
    assert all(c[0] == "acto.py" and "--backbone" not in c and c[-2:] == ["--output_dir", "runs/a"] for c in calls)
    assert len(list(logs.iterdir())) == len(expected)  # one log per cell
    assert "RTM last acc" in proc.stdout


def test_acto_ido_parity_setting(tmp_path):
    env = {"SETTING": "ido", "BACKBONE": "ViT-B", "SETS": "cifar80 food101n", "FOOD101N_PATH": "/data/f"}
    proc, calls, _ = run_script(tmp_path, "acto.sh", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [option(c, "--config") for c in calls] == ["config/acto/cifar80.yaml"] * 3 + ["config/acto/food101n.yaml"]
    assert all(option(c, "--backbone") == "ViT-B" for c in calls)
    assert "data_path=/data/f" in calls[-1]
    bad, _, _ = run_script(tmp_path, "acto.sh", env={"SETTING": "other"})
    assert bad.returncode == 2 and "SETTING" in bad.stderr


def test_own_data_demo_commands(tmp_path):
    (tmp_path / "d" / "digits" / "train").mkdir(parents=True)  # what the (stubbed) tree writer would make
    proc, calls, logs = run_script(tmp_path, "own_data.sh", "--seed", "1", env={"DEMO_DIR": str(tmp_path / "d")})
    assert proc.returncode == 0, proc.stderr
    tree, out = str(tmp_path / "d" / "digits"), str(tmp_path / "d" / "out")
    assert [c[:3] for c in calls] == [["-m", "dataloader.digits_tree", "write"], ["clean_labels.py", tree,
                                      "--output_dir"], ["-m", "dataloader.digits_tree", "score"],
                                      ["predict.py", "--model",
                                      f"{out}/stage2/test_resnet_scratch_imagefolder_real_0_class_model.pt"]]
    one = calls[1]  # both stages from one command: the tree, the output, the model once; the user's arguments last
    assert option(one, "--output_dir") == out and option(one, "--backbone") == "test_resnet"
    assert option(one, "--epochs") == "20" and option(one, "--stage2_epochs") == "5" and one[-2:] == ["--seed", "1"]
    assert calls[2][3:] == [tree, f"{out}/stage2/test_resnet_scratch_imagefolder_real_0_class_samples.csv"]
    assert calls[3][3:] == [f"{tree}/test", "--out", f"{out}/predictions.csv"]
    assert {p.name for p in logs.iterdir()} == {"own_data_clean_labels.log", "own_data_predict.log"}
    assert f"review: open {out}/stage2/test_resnet_scratch_imagefolder_real_0_class_review.html" in proc.stdout
    assert "retrain: python clean_labels.py corrected_labels.csv --output_dir" in proc.stdout
