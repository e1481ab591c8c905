"""Every data-set config pointed at an empty folder: one line naming where the files were expected and how
the release lays them out, exit status 2 (no traceback)."""
import os
import subprocess
import sys

import pytest

import stage_1
from fixtures_data import stage_argv
from utils.training.config import REPO_ROOT
from utils.core.entry import run_main

# config name -> words the one-line error must contain besides the path
EXPECTED = {
    "cifar100n": ["train", "test", "cifar.html"],
    "cifar10n": ["data_batch_1", "test_batch"],
    "cifar80": ["train", "test"],
    "tiny_imagenet": ["train/<wnid>/images", "val_annotations.txt", "test/<wnid>/images", "tiny-imagenet-200.zip"],
    "clothing1m": ["noisy_label_kv.txt", "annotations", "images/"],
    "webvision": ["info/train_filelist_google.txt", "val_images_256"],
    "web-aircraft": ["train/<class>", "val/<class>", "weblyFG"],
    "web-bird": ["train/<class>", "val/<class>"],
    "web-car": ["train/<class>", "val/<class>"],
    "food101n": ["meta/classes.txt", "meta/imagelist.tsv", "meta/test.txt"],
}


def run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_main(main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_empty_directory_names_expected_layout(name, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(stage_1.main, stage_argv("stage1", name, str(empty), str(tmp_path / "out")), capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert str(empty) in err
    for word in EXPECTED[name]:
        assert word in err, (word, err)


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_every_dataset_has_configs(stage):
    for name in EXPECTED:
        assert os.path.isfile(os.path.join(REPO_ROOT, "config", stage, f"{name}.yaml"))


@pytest.mark.slow
def test_command_line_exit_status_2(tmp_path):
    """The real command line, as a user types it."""
    proc = subprocess.run(
        [sys.executable, "stage_1.py", "--config", "config/stage1/tiny_imagenet.yaml", "--set",
         f"data_path={tmp_path}", "--backbone", "test_resnet", "--set", "resolution=32", "--epochs", "1",
         "--output_dir", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{tmp_path}/train does not exist" in proc.stderr
