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

    def load_state(self, device):
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
