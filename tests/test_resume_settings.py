"""--resume compares the checkpoint's training settings with this run's (utils.training.run.Run.load_state)."""
import pytest
import torch

from utils.training.config import parse_config
from utils.core.distributed import Runtime
from utils.core.errors import DataError
from utils.training.outputs import Stage1Outputs
from utils.training.run import Run


class _Log:
    last_path = "checkpoint/run/last.pt"

    def __init__(self, state):
        self.state, self.lines = state, []

    def load_state(self):
        return self.state

    def info(self, line):
        self.lines.append(line)


def _run(argv, state):
    cfg = parse_config(argv, prog="stage_1.py", scope="stage1")
    return Run(cfg, Runtime(device=torch.device("cpu"), rank=0, world_size=1), _Log(state), None, Stage1Outputs.of(cfg))


def test_a_key_the_checkpoint_predates_counts_as_its_default():
    probe = _run([], {})
    saved = probe.training_settings()
    del saved["decode_background"]                  # written before the key existed
    state = {"epoch": 2, "fingerprint": "f", "settings": saved}
    assert _run([], state).load_state(fingerprint="f")["epoch"] == 2
    with pytest.raises(DataError, match=r"other settings \(decode_background: 'white' there, 'black' here\)"):
        _run(["--set", "decode_background=black"], state).load_state(fingerprint="f")


def test_a_changed_setting_is_still_refused():
    saved = _run([], {}).training_settings()
    state = {"epoch": 0, "fingerprint": "f", "settings": saved}
    with pytest.raises(DataError, match=r"other settings \(lr: 0.003 there, 0.01 here\)"):
        _run(["--set", "lr=0.01"], state).load_state(fingerprint="f")


def _world(argv, state, world_size):
    run = _run(argv, state)
    run.runtime = Runtime(device=torch.device("cpu"), rank=0, world_size=world_size)
    return run


def test_another_number_of_processes_is_refused_naming_both_global_batches():
    """batch_size is per process: resumed on 4 processes, a run of 2 would double its batch at the same lr."""
    state = {"epoch": 1, "fingerprint": "f", "settings": _run([], {}).training_settings(), "world_size": 2}
    assert _world([], state, 2).load_state(fingerprint="f")["epoch"] == 1
    with pytest.raises(DataError) as err:
        _world([], state, 4).load_state(fingerprint="f")
    assert str(err.value) == ("--resume: checkpoint/run/last.pt was trained by 2 processes (global batch 128), this "
                              "run has 4 processes (global batch 256); resume with 2 processes (torchrun, nodes x "
                              "nproc_per_node = 2), or start without --resume")
    with pytest.raises(DataError, match=r"resume with one process \(without torchrun\)"):
        _world([], dict(state, world_size=1), 2).load_state(fingerprint="f")


def test_a_checkpoint_from_before_the_world_size_was_recorded_resumes():
    state = {"epoch": 1, "fingerprint": "f", "settings": _run([], {}).training_settings()}
    assert _world([], state, 3).load_state(fingerprint="f")["epoch"] == 1


def test_the_checkpoint_records_the_number_of_processes():
    saved = {}

    class _Saving(_Log):
        def save_state(self, state, arrays):
            saved.update(state)

    run = _world([], {}, 3)
    run.log = _Saving({})
    run.save_state({"epoch": 0}, fingerprint="f")
    assert saved["world_size"] == 3 and saved["fingerprint"] == "f"
