"""A run that finishes destroys its torchrun process group (utils.core.entry.run_main -> end_process_group)."""
from __future__ import annotations

import os

import pytest
import torch.distributed as dist

from utils.core.errors import ConfigError

from utils.core.entry import run_main


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group, as setup_runtime joins under torchrun (a file store: no network port)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_finished_run_destroys_its_process_group(process_group):
    seen = []
    run_main(lambda argv: seen.append(dist.is_initialized()))
    assert seen == [True] and not dist.is_initialized()


def test_a_refused_run_exits_2_and_leaves_the_group_to_the_exit(process_group, capsys):
    def main(argv):
        raise ConfigError("config key 'lr' must be > 0, got -1")

    with pytest.raises(SystemExit) as stop:
        run_main(main)
    assert stop.value.code == 2 and dist.is_initialized()
    assert capsys.readouterr().err.endswith("error: config key 'lr' must be > 0, got -1\n")


def test_without_a_process_group_run_main_only_runs_main():
    assert not dist.is_initialized() and os.environ.get("WORLD_SIZE", "1") == "1"
    seen = []
    run_main(lambda argv: seen.append(argv), ["--x"])
    assert seen == [["--x"]] and not dist.is_initialized()
