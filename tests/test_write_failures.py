"""A full disk and a read-only output folder: one line naming the path and the cause, no traceback, nothing
half-written (utils/core/io.py, utils/core/entry.py, utils/training/run.py: check_writable).

A full disk is simulated in this process by a file object whose writes fail with ENOSPC part-way, under the
real writers (torch.save's own error included); the slow tests mount a real tiny tmpfs (full, then read-only)
in a private mount namespace where the machine allows it (root, or unprivileged user namespaces)."""
from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import stage_1
import utils.core.io
from fixtures_data import SUBPROCESS_ENV
from test_own_data_e2e import own_argv, write_small
from utils.core.entry import run_main
from utils.core.errors import WriteFailed
from utils.core.io import append_text, atomic_path, save_json, save_npy, save_text, save_torch, unwritable
from utils.training.config import REPO_ROOT

TAG = "test_resnet_scratch_imagefolder_real_0"


class FillsUp(io.FileIO):
    """A real file that takes ``room`` bytes, then fails as a full disk does (ENOSPC, no file name)."""

    def __init__(self, path, mode, room: int):
        super().__init__(path, mode.replace("b", "").replace("t", "") or "r")
        self.room = room

    def write(self, data) -> int:
        if self.room < len(data):  # what fits is written, then the disk is full
            super().write(bytes(data)[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return super().write(data)


def full_disk(monkeypatch, room: int, *, only=None) -> None:
    """The writers of utils/core/io.py open files that take ``room`` more bytes (``only``: files whose name
    holds it; the others are written as usual)."""
    real_open = open

    def opener(path, mode="r", *args, encoding=None, **kwargs):
        if "r" in mode or (only is not None and only not in os.path.basename(str(path))):
            return real_open(path, mode, *args, encoding=encoding, **kwargs)
        raw = FillsUp(path, "w" if "w" in mode else "a", room)
        buffered = io.BufferedWriter(raw)
        return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding=encoding or "utf-8")

    monkeypatch.setattr(utils.core.io, "open", opener, raising=False)


def listing(folder) -> dict[str, bytes]:
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))}


@pytest.mark.parametrize("room", [0, 100, 3000])
def test_torch_save_on_a_full_disk_is_one_error_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, room):
    """torch.save itself reports the full disk as RuntimeError "unexpected pos" over the OSError."""
    path = str(tmp_path / "last.pt")
    save_torch({"epoch": 1, "w": torch.ones(3)}, path)
    before = listing(tmp_path)
    full_disk(monkeypatch, room)
    with pytest.raises(WriteFailed) as err:
        save_torch({"epoch": 2, "w": torch.zeros(10_000)}, path)
    assert str(err.value) == f"cannot write {path}: disk full"
    assert err.value.errno == errno.ENOSPC and err.value.filename == path
    assert listing(tmp_path) == before  # the temporary file removed, the previous last.pt as it was


@pytest.mark.parametrize("writer", ["json", "text", "npy", "csv_rows"])
def test_every_atomic_writer_reports_a_full_disk_the_same_way(tmp_path, monkeypatch, writer):
    path = str(tmp_path / f"out.{writer}")
    full_disk(monkeypatch, 10)
    with pytest.raises(WriteFailed, match=re.escape(f"cannot write {path}: disk full")):
        if writer == "json":
            save_json({"x": list(range(1000))}, path)
        elif writer == "text":
            save_text("x" * 100_000, path)  # fails when the buffer is flushed, at close
        elif writer == "npy":
            save_npy(np.zeros(1000), path)
        else:  # a writer of its own inside atomic_path (the samples CSV, the noise cache, the bank)
            with atomic_path(path) as tmp, utils.core.io.open(tmp, "w", encoding="utf-8") as f:
                for i in range(10_000):
                    f.write(f"{i},row\n")
    assert os.listdir(tmp_path) == []


def test_a_read_only_folder_met_by_a_write_names_the_file_and_the_cause(tmp_path, monkeypatch):
    """EROFS/EACCES raised where the folder or the temporary file is created (a folder that became read-only
    after the start check; root ignores permission bits, so the error is raised here)."""
    path = str(tmp_path / "sub" / "a.json")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "sub" / ".a.json.x.tmp"))

    monkeypatch.setattr(utils.core.io.tempfile, "mkstemp", read_only)
    with pytest.raises(WriteFailed) as err:
        save_json({}, path)
    assert str(err.value) == f"cannot write {path}: read-only file system" and err.value.errno == errno.EROFS


def test_an_unreadable_file_read_inside_a_write_stays_its_own_error(tmp_path):
    """Only the write's own failures become WriteFailed: a permission error that names another file (an image
    a report reads) propagates as it is."""
    image = str(tmp_path / "image.png")
    with pytest.raises(PermissionError) as err:
        with atomic_path(str(tmp_path / "page.html")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), image)
    assert not isinstance(err.value, WriteFailed) and err.value.filename == image
    assert os.listdir(tmp_path) == []


def test_a_failed_append_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    log = tmp_path / "train.log"
    append_text("epoch 1\n", str(log))
    full_disk(monkeypatch, 5)
    with pytest.raises(WriteFailed, match=re.escape(f"cannot write {log}: disk full")):
        append_text("epoch 2 loss 0.1234\n" * 1000, str(log))
    assert log.read_text() == "epoch 1\n"  # no half line
    with pytest.raises(WriteFailed):
        append_text("x" * 100_000, str(tmp_path / "new.log"))
    assert sorted(os.listdir(tmp_path)) == ["train.log"]


def test_unwritable_names_the_folder_a_file_would_go_to_and_why(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert unwritable(str(tmp_path / "a" / "b")) is None and not (tmp_path / "a").exists()  # nothing created
    assert unwritable(str(tmp_path / "file" / "sub")) == (str(tmp_path / "file"), "a file, not a folder")
    assert os.listdir(tmp_path) == ["file"]  # the probe left nothing

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, ".write_probe.x.tmp"))

    monkeypatch.setattr(utils.core.io.tempfile, "mkstemp", read_only)
    assert unwritable(str(tmp_path / "a" / "b")) == (str(tmp_path), "read-only file system")


def run_entry(main, argv, capsys) -> tuple[int, list[str]]:
    """``main`` through run_main in this process: (exit status, stderr lines)."""
    with pytest.raises(SystemExit) as exc:
        run_main(main, argv)
    return exc.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a 0o555 folder; the EROFS tests below cover root")
def test_a_folder_without_write_permission_is_refused_before_the_run_starts(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, err = run_entry(stage_1.main, ["--output_dir", str(locked / "out")], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and err == [f"stage_1.py: error: output_dir {locked / 'out'}: cannot write in {locked} "
                                 "(permission denied); choose a writable --output_dir"]
    assert os.listdir(locked) == []


@pytest.mark.parametrize("case", ["read_only", "below_a_file", "read_only_subfolder"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_run_starts(tmp_path, capsys, monkeypatch,
                                                                                   case):
    """One line naming the folder and the cause, exit 2, before any data is read (nothing created).  The
    read-only file system is raised by the probe's mkstemp (root ignores permission bits; the slow test
    below mounts a real one)."""
    out, probed = tmp_path / "out", tmp_path
    (tmp_path / "file").write_text("x")
    if case == "below_a_file":
        out, probed = tmp_path / "file" / "out", tmp_path / "file"
    if case == "read_only_subfolder":  # the output folder is fine, the run folder below it is not
        probed = out / "checkpoint"
        probed.mkdir(parents=True)
    cause = "a file, not a folder" if case == "below_a_file" else "read-only file system"
    real_mkstemp = utils.core.io.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir == str(probed):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, ".write_probe.x.tmp"))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(utils.core.io.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(sys, "argv", ["stage_1.py"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, err = run_entry(stage_1.main, ["--output_dir", str(out)], capsys)
    assert code == 2 and err == [f"stage_1.py: error: output_dir {out}: cannot write in {probed} ({cause}); "
                                 "choose a writable --output_dir"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_run_ends_with_one_line_and_resumes_once_there_is_space(tmp_path, capsys,
                                                                                        monkeypatch):
    """The second last.pt does not fit: exit 1, one line naming it, "disk full" and how to go on; the first
    epoch's last.pt is intact and no temporary file is left; with space again, --resume finishes the run."""
    root, out = tmp_path / "data", tmp_path / "out"
    write_small(root, "imagefolder")
    argv = own_argv("stage1", "imagefolder", root, out, "--epochs", "2", "--batch_size", "6")
    last = out / "checkpoint" / f"stage1_{TAG}" / "last.pt"
    saves = []
    real_save = utils.core.io.save_torch

    def second_last_pt_fills_the_disk(obj, path):
        if os.path.basename(path) == "last.pt":
            saves.append(path)
            if len(saves) == 2:
                with monkeypatch.context() as patch:
                    full_disk(patch, 4096)
                    return real_save(obj, path)
        return real_save(obj, path)

    monkeypatch.setattr("utils.training.runlog.save_torch", second_last_pt_fills_the_disk)
    monkeypatch.setattr(sys, "argv", ["stage_1.py"])
    monkeypatch.setenv("TQDM_DISABLE", "1")
    code, err = run_entry(stage_1.main, argv, capsys)
    assert code == 1 and err[-1:] == [f"stage_1.py: error: cannot write {last}: disk full; every finished epoch is saved "
                                 f"in {last} (free space, then continue with --resume)"]
    assert not any("Traceback" in line or line.startswith("stage_1.py") for line in err[:-1])
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))
    monkeypatch.undo()
    result = stage_1.main(argv + ["--resume"])
    assert [row["epoch"] for row in result["history"]] == [1, 2]


def _private_mount() -> list[str] | None:
    """The command prefix that runs a command in a mount namespace of its own (where it may mount a tmpfs
    without touching the machine's mounts), or None where this machine does not allow one."""
    if shutil.which("unshare") is None:
        return None
    prefix = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return prefix if probe.returncode == 0 else None


PRIVATE_MOUNT = None if sys.platform != "linux" else _private_mount()


def _on_tmpfs(mount: str, options: str, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` (cwd: the repository) with a tmpfs of ``options`` mounted at ``mount``, seen by it alone."""
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && shift && exec "$@"'
    return subprocess.run([*PRIVATE_MOUNT, "sh", "-c", script, "sh", mount, *command], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(SUBPROCESS_ENV, TQDM_DISABLE="1"))


@pytest.mark.slow
@pytest.mark.skipif(PRIVATE_MOUNT is None, reason="no private mount namespace here (needs root or user namespaces)")
def test_a_real_full_disk_and_a_real_read_only_file_system(tmp_path):
    """A tmpfs of 8 MiB holds the first epoch (base model 1.5 MB, last.pt 4.6 MB), not a second last.pt beside
    it: exit 1, one line, no temporary file, last.pt of epoch 1 readable.  A read-only tmpfs as output_dir:
    exit 2 before training; as noise_dir (the cache not there yet): exit 2 naming the cache folder."""
    root, mount = tmp_path / "data", tmp_path / "mnt"
    write_small(root, "imagefolder")
    mount.mkdir()
    out = mount / "out"
    last = out / "checkpoint" / f"stage1_{TAG}" / "last.pt"
    keep = tmp_path / "kept"
    argv = [sys.executable, "stage_1.py", *own_argv("stage1", "imagefolder", root, out, "--epochs", "3",
                                                    "--batch_size", "6")]
    # copy what the full disk left to a folder that outlives the mount
    proc = _on_tmpfs(str(mount), "size=8m", ["sh", "-c", f'"$@"; code=$?; cp -a "{out}" "{keep}"; exit $code',
                                             "sh", *argv])
    assert proc.returncode == 1, proc.stderr[-3000:]
    [line] = proc.stderr.strip().splitlines()
    match = re.fullmatch(r"stage_1\.py: error: cannot write (.+): disk full; every finished epoch is saved in "
                         r"(.+) \(free space, then continue with --resume\)", line)
    assert match and match.group(2) == str(last), line
    kept_last = keep / "checkpoint" / f"stage1_{TAG}" / "last.pt"
    assert torch.load(kept_last, weights_only=True)["epoch"] in (0, 1)
    assert not list(keep.rglob("*.tmp"))

    proc = _on_tmpfs(str(mount), "ro", argv)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"stage_1.py: error: output_dir {out}: cannot write in {mount} (read-only file system); choose a writable "
        "--output_dir"], proc.stderr[-3000:]

    noise = mount / "noise"
    proc = _on_tmpfs(str(mount), "ro", [sys.executable, "stage_1.py", "--epochs", "1", "--output_dir",
                                        str(tmp_path / "out2"), "--set", f"noise_dir={noise}"])
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f"stage_1.py: error: cannot write the noisy-label cache in {noise}: read-only file system (set noise_dir "
        "to a writable folder)"), proc.stderr[-3000:]


def test_the_line_says_how_to_go_on_for_a_stage_command_and_for_clean_labels(tmp_path, monkeypatch):
    """stage_1.py & co.: --resume once this run saved a last.pt; clean_labels.py: the same command (which keeps
    the finished stages); a full disk: free space first."""
    from utils.core import entry

    last = tmp_path / "last.pt"
    monkeypatch.setattr(entry, "_checkpoint", {"path": None})
    monkeypatch.setattr(entry, "_rerun", {"command": None})
    full = WriteFailed(errno.ENOSPC, "disk full", str(tmp_path / "a.json"))
    read_only = WriteFailed(errno.EROFS, "read-only file system", str(tmp_path / "a.json"))
    assert entry.stopped_line("stage_1.py", "interrupted") == \
        "stage_1.py: interrupted before an epoch finished; nothing to resume (start again)"
    assert entry.failed_write_line("stage_1.py", full) == f"stage_1.py: error: cannot write {tmp_path / 'a.json'}: disk full"
    entry.remember_checkpoint(str(last))
    assert entry.stopped_line("stage_1.py", "interrupted").endswith("nothing to resume (start again)")  # not saved yet
    last.write_bytes(b"x")
    assert entry.stopped_line("stage_1.py", "stopped by SIGTERM") == \
        f"stage_1.py: stopped by SIGTERM; every finished epoch is saved in {last} (continue with --resume)"
    assert entry.failed_write_line("stage_1.py", read_only) == (
        f"stage_1.py: error: cannot write {tmp_path / 'a.json'}: read-only file system; every finished epoch is saved "
        f"in {last} (make it writable, then continue with --resume)")
    entry.remember_rerun("python clean_labels.py 'my images' --output_dir runs/mine")
    assert entry.failed_write_line("clean_labels.py", full) == (
        f"clean_labels.py: error: cannot write {tmp_path / 'a.json'}: disk full; every finished epoch is saved in "
        f"{last}; free space, then run the same command to continue: python clean_labels.py 'my images' "
        "--output_dir runs/mine")
    entry.remember_checkpoint(None)
    assert entry.stopped_line("clean_labels.py", "interrupted") == (
        "clean_labels.py: interrupted; finished stages are kept; run the same command to continue: python "
        "clean_labels.py 'my images' --output_dir runs/mine")
