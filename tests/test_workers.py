"""num_workers: auto = the CPU cores of this process / processes on the node, at most 16, logged."""
import glob
import os

import pytest
import yaml

from fixtures_data import make_cfg
from utils.training.config import REPO_ROOT
from utils.core.errors import ConfigError
from utils.core.workers import auto_workers, resolve_num_workers


@pytest.mark.parametrize("cores, processes, expected", [(16, 1, 16), (64, 1, 16), (64, 8, 8), (16, 8, 2),
                                                        (2, 1, 2), (4, 8, 1), (1, 1, 1)])
def test_auto_workers(cores, processes, expected):
    assert auto_workers(cores=cores, processes=processes) == expected


def test_resolve_reads_local_world_size_and_says_so():
    n, note = resolve_num_workers("auto", environ={"LOCAL_WORLD_SIZE": "4"}, cores=24)
    assert n == 6 and note == "num_workers auto: 6 (24 CPU cores available / 4 processes on this node, at most 16)"
    n, note = resolve_num_workers("auto", environ={}, cores=len(os.sched_getaffinity(0)))
    assert n == min(16, len(os.sched_getaffinity(0))) and "1 process on this node" in note
    assert resolve_num_workers(3) == (3, None)


def test_config_accepts_auto_and_integers_only():
    assert make_cfg(num_workers="auto").num_workers == "auto"
    assert make_cfg(num_workers=2).num_workers == 2
    with pytest.raises(ConfigError, match="'num_workers'.*must be an integer or auto, got 'many'"):
        make_cfg(num_workers="many")
    with pytest.raises(ConfigError, match=">= 0"):
        make_cfg(num_workers=-1)


def test_shipped_configs_use_auto_except_in_memory_digits():
    for path in glob.glob(os.path.join(REPO_ROOT, "config", "*", "*.yaml")):
        with open(path) as f:
            value = yaml.safe_load(f).get("num_workers")
        assert value == (0 if os.path.basename(path).startswith("digits") else "auto"), path


def test_start_run_logs_and_resolves_auto(tmp_path, monkeypatch):
    from utils.training.outputs import Stage1Outputs
    from utils.training.run import start_run

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    run = start_run(["--output_dir", str(tmp_path), "--device", "cpu", "--set", "num_workers=auto", "--set", "run_name=w"],
                    prog="stage_1.py", scope="stage1", outputs=Stage1Outputs.of)
    cores = len(os.sched_getaffinity(0))
    assert run.cfg.num_workers == min(16, cores)
    with open(tmp_path / "checkpoint" / "w" / "train.log") as f:
        assert f"num_workers auto: {min(16, cores)} ({cores} CPU cores available / 1 process" in f.read()
    with open(tmp_path / "checkpoint" / "w" / "config.yaml") as f:
        assert yaml.safe_load(f)["num_workers"] == "auto"  # the file keeps the setting, not this machine's count
