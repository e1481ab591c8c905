"""Large checkpoint tensors (ACTO's bank) in .npy files beside last.pt: blockwise, paired, crash-safe."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import utils.training.runlog
from utils.method.acto import ActoMemory
from utils.training.checkpoint_arrays import read_npy_into, write_npy
from utils.core.errors import DataError
from utils.training.runlog import RunLog


def _bank_files(folder) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.endswith(".npy") or f.endswith(".tmp"))


@pytest.mark.parametrize("block_bytes", [1, 3 * 5 * 4, 64 << 20])  # a row a block; 3 rows (last block short); 1
def test_write_and_read_back_bit_for_bit_in_blocks(tmp_path, block_bytes):
    bank = torch.randn(11, 5)
    bank[3, 2] = float("nan")
    path = str(tmp_path / "b.npy")
    write_npy(bank, path, block_bytes=block_bytes)
    assert np.array_equal(np.load(path), bank.numpy(), equal_nan=True)  # a plain .npy
    into = torch.zeros(11, 5)
    read_npy_into(into, path, block_bytes=block_bytes)
    assert torch.equal(into.view(torch.int32), bank.view(torch.int32))  # the same bits, NaN included
    counter = torch.arange(7, dtype=torch.int32)
    write_npy(counter, path, block_bytes=block_bytes)
    back = torch.zeros(7, dtype=torch.int32)
    read_npy_into(back, path, block_bytes=block_bytes)
    assert torch.equal(back, counter)


def test_read_refuses_a_file_that_does_not_fit(tmp_path):
    path = str(tmp_path / "b.npy")
    write_npy(torch.zeros(4, 3), path)
    with pytest.raises(ValueError, match=r"holds a float32 array of shape \(4, 3\), expected float32 \(4, 2\)"):
        read_npy_into(torch.zeros(4, 2), path)
    with pytest.raises(ValueError, match=r"holds a float32 array of shape \(4, 3\), expected float64 \(4, 3\)"):
        read_npy_into(torch.zeros(4, 3, dtype=torch.float64), path)
    with open(path, "r+b") as f:  # cut short
        f.truncate(os.path.getsize(path) - 4)
    with pytest.raises(ValueError, match=r"has 172 bytes, expected 176 \(cut short\?\)"):
        read_npy_into(torch.zeros(4, 3), path)
    (tmp_path / "x.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="is not a .npy file"):
        read_npy_into(torch.zeros(4, 3), str(tmp_path / "x.npy"))


def _memory(seed: int) -> ActoMemory:
    g = torch.Generator().manual_seed(seed)
    mem = ActoMemory(torch.randint(0, 6, (20,), generator=g), 6)
    mem.select(torch.arange(20), torch.rand(20, generator=g) < 0.5)
    mem.update_soft_labels(torch.arange(20), torch.randn(20, 6, generator=g), 0.8)
    mem.end_epoch()
    return mem


def _save(log: RunLog, mem: ActoMemory, epoch: int) -> None:
    log.save_state({"epoch": epoch, "memory": mem.state_dict()}, arrays={"memory.bank": mem.bank})


def _resume(log: RunLog) -> tuple[int, ActoMemory]:
    state = log.load_state()
    mem = ActoMemory(torch.zeros(20, dtype=torch.long), 6)
    mem.load_state_dict(state["memory"])
    log.load_arrays(state, {"memory.bank": mem.bank})
    return state["epoch"], mem


def test_each_save_replaces_the_bank_file_and_resume_restores_it(tmp_path):
    log = RunLog(str(tmp_path))
    first, second = _memory(0), _memory(1)
    _save(log, first, 0)
    files = _bank_files(tmp_path)
    assert len(files) == 1 and files[0].startswith("last.memory.bank.")
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "bank" not in last["memory"] and last["arrays"]["memory.bank"] == {
        "file": files[0], "shape": [20, 6], "dtype": "float32"}
    _save(log, second, 1)
    assert len(_bank_files(tmp_path)) == 1 and _bank_files(tmp_path) != files  # a new file, the old one gone
    epoch, mem = _resume(log)
    assert epoch == 1 and torch.equal(mem.bank, second.bank) and torch.equal(mem.counter, second.counter)


class Crash(Exception):
    pass


def test_crash_after_the_bank_file_before_last_pt_resumes_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    # the window that matters: the new bank file is in place, last.pt is not yet replaced
    log = RunLog(str(tmp_path))
    first, second, third = _memory(0), _memory(1), _memory(2)
    _save(log, first, 0)
    real = utils.training.runlog.save_torch

    def crash(*args):
        raise Crash()
    monkeypatch.setattr(utils.training.runlog, "save_torch", crash)
    with pytest.raises(Crash):
        _save(log, second, 1)
    assert len(_bank_files(tmp_path)) == 2  # the previous checkpoint's file and the orphan
    epoch, mem = _resume(log)
    assert epoch == 0 and torch.equal(mem.bank, first.bank) and torch.equal(mem.counter, first.counter)
    monkeypatch.setattr(utils.training.runlog, "save_torch", real)
    _save(log, third, 1)  # the next save removes the orphan and the previous file
    assert len(_bank_files(tmp_path)) == 1
    epoch, mem = _resume(log)
    assert epoch == 1 and torch.equal(mem.bank, third.bank)


def test_crash_after_last_pt_before_the_old_file_is_removed_resumes_the_new_one(tmp_path, monkeypatch):
    log = RunLog(str(tmp_path))
    first, second = _memory(0), _memory(1)
    _save(log, first, 0)
    with monkeypatch.context() as m:
        m.setattr(utils.training.runlog, "remove_unreferenced", lambda *args: (_ for _ in ()).throw(Crash()))
        with pytest.raises(Crash):
            _save(log, second, 1)
    assert len(_bank_files(tmp_path)) == 2
    epoch, mem = _resume(log)
    assert epoch == 1 and torch.equal(mem.bank, second.bank)


def test_a_crash_while_the_file_is_written_leaves_the_previous_pair_and_the_temporary_is_removed_later(tmp_path):
    log = RunLog(str(tmp_path))
    first = _memory(0)
    _save(log, first, 0)
    left = tmp_path / ".last.memory.bank.0123456789abcdef.npy.k3x_1a.tmp"  # what a killed write leaves
    left.write_bytes(b"\x93NUMPY partial")
    unrelated = tmp_path / "notes.npy"
    unrelated.write_bytes(b"x")
    epoch, mem = _resume(log)
    assert epoch == 0 and torch.equal(mem.bank, first.bank)
    _save(log, _memory(1), 1)
    assert not left.exists() and unrelated.exists()


def test_resume_refuses_a_missing_or_foreign_bank_file_in_one_line(tmp_path):
    log = RunLog(str(tmp_path))
    _save(log, _memory(0), 0)
    state = log.load_state()
    name = state["arrays"]["memory.bank"]["file"]
    with pytest.raises(DataError, match=r"cannot read memory.bank of .*last.pt: .*expected float32 \(20, 7\)"):
        log.load_arrays(state, {"memory.bank": torch.zeros(20, 7)})
    os.remove(tmp_path / name)
    with pytest.raises(DataError, match=rf"cannot read memory.bank of .*last.pt: .*{name}.*start without --resume"):
        _resume(log)
    with pytest.raises(DataError, match="names no file for memory.bank"):
        log.load_arrays({}, {"memory.bank": torch.zeros(20, 6)})


def test_only_the_main_process_writes(tmp_path):
    log = RunLog(str(tmp_path / "run"), enabled=False)
    _save(log, _memory(0), 0)
    assert not (tmp_path / "run").exists()
