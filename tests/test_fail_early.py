"""Real files and real clusters fail loudly and early: bf16 on old GPUs, broken images (also inside DataLoader
workers), check_images, and SIGTERM handled like Ctrl-C."""
from __future__ import annotations

import gc
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch.utils.data._utils import signal_handling

import stage_1
from dataloader.files import FileImagesWithDecoding
from dataloader.image_check import find_unreadable
from fixtures_data import SUBPROCESS_ENV, TINY_WNIDS, stage_argv, write_image, write_tiny_imagenet
from gloo_ranks import free_port
from run_control import parking_launcher, start_parked, wait_until_parked
from utils.core import distributed
from utils.training.config import REPO_ROOT
from utils.core.entry import run_main
from utils.core.io import save_torch
from utils.core.signals import DataLoader, Terminated, deferred_interrupt, stop_signals_raise

FAST = ["--epochs", "1", "--set", "batch_size=256"]
TAG = "test_resnet_scratch_digits_sym_0.4"


def test_bf16_on_a_gpu_without_bf16_stops_before_data_is_loaded(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distributed, "choose_device", lambda requested, local_rank=0: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(stage_1, "build_data", lambda *a, **k: pytest.fail("data loaded before the check"))
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, [*FAST, "--output_dir", str(tmp_path), "--set", "precision=bf16"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "bf16 is not supported by Tesla V100-SXM2-16GB" in err and "precision=fp16" in err


@pytest.mark.slow
def test_corrupt_image_inside_a_worker_gives_one_line(tmp_path):
    """num_workers 2 (as every shipped config): the worker's DataError reaches the user as its one line."""
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    bad = root / "train" / TINY_WNIDS[1] / "images" / f"{TINY_WNIDS[1]}_2.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated JPEG header")
    out = tmp_path / "out"
    argv = stage_argv("stage1", "tiny_imagenet", str(root), str(out), "--set", "num_workers=2", "--epochs", "2")
    proc = subprocess.run([sys.executable, "stage_1.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(SUBPROCESS_ENV, TQDM_DISABLE="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"stage_1.py: error: cannot decode image {bad} (")
    assert lines[0].endswith("; replace or delete the file (--set check_images=true lists every unreadable file "
                             "before training)")
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("last.pt"))


def test_check_images_lists_every_unreadable_file_before_training(tmp_path, capsys, monkeypatch):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    bad = [root / "train" / TINY_WNIDS[0] / "images" / f"{TINY_WNIDS[0]}_1.JPEG",
           root / "train" / TINY_WNIDS[2] / "images" / f"{TINY_WNIDS[2]}_3.JPEG",
           root / "val" / "images" / "val_4.JPEG"]
    bad[0].write_bytes(b"not an image at all")
    bad[1].write_bytes(bad[1].read_bytes()[:60])  # truncated JPEG: the header reads, the pixels do not
    bad[2].write_bytes(b"")
    monkeypatch.setattr(stage_1, "create_model", lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "out"
    argv = stage_argv("stage1", "tiny_imagenet", str(root), str(out), "--set", "num_workers=2",
                      "--set", "check_images=true")
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: 3 of 18 images cannot be read: " in err
    for path in bad:
        assert f"{path} (cannot be decoded: " in err
    [run_dir] = (out / "checkpoint").iterdir()
    report = run_dir / "bad_images.txt"
    assert err.endswith(f"full list (path, tab, reason) in {report}; replace or delete the files (and their entries "
                        "in the list files), or raise max_image_pixels for those too large")
    listed = [line.split("\t") for line in report.read_text().splitlines()]
    assert sorted(path for path, _ in listed) == sorted(str(p) for p in bad)
    assert all(reason.startswith("cannot be decoded: ") for _, reason in listed)


@pytest.mark.slow
def test_check_images_passes_a_clean_set_and_logs_its_speed(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    out = tmp_path / "out"
    stage_1.main(stage_argv("stage1", "tiny_imagenet", str(root), str(out), "--set", "check_images=true"))
    [run_dir] = (out / "checkpoint").iterdir()
    log = (run_dir / "train.log").read_text()
    assert re.search(r"check_images: decoded 18 images in [\d.]+ s \(\d+ images/s, 1 process\(es\) per rank\), "
                     r"0 unreadable", log)
    assert not list(out.rglob("bad_images.txt"))


@pytest.mark.slow
def test_image_above_the_pixel_limit_inside_a_worker_gives_one_line(tmp_path):
    """imagefolder, num_workers 2, max_image_pixels 1000: the 40x40 image (1600 pixels) stops the run with one
    line naming it, its size and the key (exit 2); the 12x12 ones (144 pixels) are read."""
    root = tmp_path / "data"
    for c in ("ant", "bee"):
        for i in range(4):
            write_image(str(root / "train" / c / f"{i}.png"), size=12, seed=i)
    big = root / "train" / "bee" / "2.png"
    write_image(str(big), size=40)
    out = tmp_path / "out"
    argv = stage_argv("stage1", "imagefolder", str(root), str(out), "--set", "num_workers=2", "--set",
                      "max_image_pixels=1000")
    proc = subprocess.run([sys.executable, "stage_1.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env=dict(SUBPROCESS_ENV, TQDM_DISABLE="1"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"stage_1.py: error: image {big} is too large: 40x40 pixels, above the limit of 1,000 (config key "
        "max_image_pixels: --set max_image_pixels=1600 reads it, 0 reads any size; --set check_images=true lists "
        "every unreadable file before training)"]
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("last.pt"))


def test_find_unreadable_in_index_order_over_a_subset(tmp_path):
    paths = [write_image(str(tmp_path / f"{i}.png"), seed=i) for i in range(6)]
    for i in (1, 4):
        open(paths[i], "wb").close()
    images = FileImagesWithDecoding(paths)
    assert [path for path, _ in find_unreadable(images, quiet=True)] == [paths[1], paths[4]]
    assert [path for path, _ in find_unreadable(images, indices=range(0, 6, 2), quiet=True)] == [paths[4]]


def _stage1(out, *extra):
    # num_workers 2: the scheduler's SIGTERM reaches the DataLoader workers too (whole process group)
    return [sys.executable, "stage_1.py", "--epochs", "2", "--output_dir", str(out), "--set", "batch_size=128",
            "--set", "num_workers=2", *extra]


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    """SIGTERM to the run's process group right after epoch 1 of 2 (the run parks there: tests/run_control.py):
    exit 143, one line naming last.pt, which holds exactly epoch 1, nothing half-written; --resume finishes the
    run (that it ends as the uninterrupted run: tests/test_resume.py::test_killed_run_resumes_to_the_uninterrupted_run)."""
    env = dict(SUBPROCESS_ENV, TQDM_DISABLE="1")
    run_dir = tmp_path / "checkpoint" / f"stage1_{TAG}"
    marker = str(tmp_path / "parked")
    proc = start_parked("stage_1.py", _stage1(tmp_path)[2:], epochs=1, marker=marker, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    wait_until_parked(proc, marker)
    os.killpg(proc.pid, signal.SIGTERM)  # as a scheduler does: the run and its DataLoader workers
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [f"stage_1.py: stopped by SIGTERM; every finished epoch is saved in "
                                        f"{run_dir / 'last.pt'} (continue with --resume)"]
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1  # stopped after epoch 1 of 2, on any machine
    assert not (tmp_path / "stage1" / f"{TAG}_wrongevent.npy").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    resumed = subprocess.run(_stage1(tmp_path, "--resume"), cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [line.split(",")[0] for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert np.load(tmp_path / "stage1" / f"{TAG}_wrongevent.npy").shape == (1257,)


def test_sigterm_during_a_checkpoint_write_waits_for_it(tmp_path):
    """The save finishes (a complete last.pt), then the stop is raised as Terminated."""
    path = tmp_path / "last.pt"
    with stop_signals_raise():
        with pytest.raises(Terminated):
            with deferred_interrupt():
                os.kill(os.getpid(), signal.SIGTERM)
                save_torch({"epoch": 4, "w": torch.ones(2)}, str(path))
    assert torch.load(path, weights_only=True)["epoch"] == 4


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs gloo")
def test_sigterm_under_torchrun_stops_every_rank_without_a_hang(tmp_path):
    """As a scheduler stops a job: SIGTERM to torchrun's process group right after epoch 1 of 20 (the ranks park
    there: tests/run_control.py); torchrun forwards it to both ranks (and their DataLoader workers).  Every
    process ends promptly, rank 0 names last.pt once, and last.pt holds exactly epoch 1."""
    port = free_port()
    marker = str(tmp_path / "parked")
    park = parking_launcher(str(tmp_path / "park.py"), epochs=1, marker=marker)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(port), *park,
           *_stage1(tmp_path, "--epochs", "20", "--device", "cpu")[1:]]
    run_dir = tmp_path / "checkpoint" / f"stage1_{TAG}"
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(SUBPROCESS_ENV, TQDM_DISABLE="1"), start_new_session=True)
    wait_until_parked(proc, marker)
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=90)  # a guard against a hung rank, no speed limit
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("a rank hung after SIGTERM")
    assert err.count("stage_1.py: stopped by SIGTERM; every finished epoch is saved in") == 1, err[-3000:]
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_image_broken_in_epoch_two_keeps_epoch_one_checkpoint(tmp_path, monkeypatch, capsys):
    """A file that goes bad mid-run (read in a worker) stops the run; last.pt still holds epoch 1, whole."""
    from utils.training.runlog import RunLog

    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    bad = root / "train" / TINY_WNIDS[0] / "images" / f"{TINY_WNIDS[0]}_0.JPEG"
    real_write = RunLog.write_metrics

    def write_then_break(self, history):  # called once per finished epoch, after last.pt is saved
        real_write(self, history)
        bad.write_bytes(b"broken after epoch 1")

    monkeypatch.setattr(RunLog, "write_metrics", write_then_break)
    out = tmp_path / "out"
    argv = stage_argv("stage1", "tiny_imagenet", str(root), str(out), "--set", "num_workers=2", "--epochs", "3")
    with pytest.raises(SystemExit) as exc:
        run_main(stage_1.main, argv)
    assert exc.value.code == 2
    assert f"cannot decode image {bad} (" in capsys.readouterr().err.strip().splitlines()[-1]
    [last] = out.rglob("last.pt")
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert not list(out.rglob("*.tmp"))


class _Squares(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return i * i


def test_a_stop_while_workers_start_is_raised_once_every_worker_is_tracked(monkeypatch):
    """SIGTERM arrives inside torch's iterator set-up, after the workers are forked and before the iterator is
    complete (where the CI hang of 2026-12-03 began): it is raised from ``iter`` once the iterator is whole,
    which then stops its workers; no worker outlives it and nothing is reported as ignored in ``__del__``."""
    original = signal_handling._set_SIGCHLD_handler

    def signal_midway():
        os.kill(os.getpid(), signal.SIGTERM)
        original()

    monkeypatch.setattr(signal_handling, "_set_SIGCHLD_handler", signal_midway)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    loader = DataLoader(_Squares(), batch_size=2, num_workers=2)
    with stop_signals_raise():
        with pytest.raises(Terminated):
            iter(loader)
    gc.collect()
    deadline = time.time() + 30
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.1)
    assert multiprocessing.active_children() == []
    assert unraisable == []
