"""Real files and real clusters fail loudly and early: bf16 on old GPUs, broken images (also inside DataLoader
workers), check_images, and SIGTERM handled like Ctrl-C."""
from __future__ import annotations

import pytest
import torch

import stage_1
from utils import distributed
from utils.errors import run_main

FAST = ["--epochs", "1", "--set", "batch_size=256"]



def test_bf16_on_a_gpu_without_bf16_stops_before_data_is_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "choose_device", lambda requested, local_rank=0: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(stage_1, "build_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, [*FAST, "--output_dir", str(tmp_path), "--set", "precision=bf16"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "bf16 is not supported by Tesla V100-SXM2-16GB" in err and "precision=fp16" in err
