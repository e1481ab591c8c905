"""Real files and real clusters fail loudly and early: bf16 on old GPUs, broken images (also inside DataLoader
workers), check_images, and SIGTERM handled like Ctrl-C."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

import stage_1
from dataloader.files import ImageFiles
from dataloader.image_check import find_unreadable
from fixtures_data import SUBPROCESS_ENV, TINY_WNIDS, stage_argv, write_image, write_tiny_imagenet
from utils.config import REPO_ROOT
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
    assert lines[0].endswith("; replace or delete the file")
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
    assert ": error: 3 of 18 images cannot be decoded: " in err
    for path in bad:
        assert str(path) in err
    [run_dir] = (out / "checkpoint").iterdir()
    report = run_dir / "bad_images.txt"
    assert err.endswith(f"full list in {report}; replace or delete the files (and their entries in the list files)")
    assert sorted(report.read_text().splitlines()) == sorted(str(p) for p in bad)


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


def test_find_unreadable_in_index_order_over_a_subset(tmp_path):
    paths = [write_image(str(tmp_path / f"{i}.png"), seed=i) for i in range(6)]
    for i in (1, 4):
        open(paths[i], "wb").close()
    images = ImageFiles(paths)
    assert find_unreadable(images, quiet=True) == [paths[1], paths[4]]
    assert find_unreadable(images, indices=range(0, 6, 2), quiet=True) == [paths[4]]
