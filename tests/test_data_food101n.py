"""Food-101N (meta/ lists of the release) tested on the Food-101 test set."""
import os

import numpy as np
import pytest

from dataloader import build_data
from fixtures_data import make_cfg, run_both_stages, write_food101n, write_text
from utils.core.errors import DataError


def load(root, tmp_path, **kw):
    cfg = make_cfg(dataset="food101n", data_path=str(root), noise_mode="real", noise_ratio=0.2,
                   output_dir=str(tmp_path / "out"), **kw)
    return build_data(cfg, stage="stage1", log=lambda m: None)


def test_lists_sizes_labels(tmp_path):
    root = tmp_path / "Food-101N_release"
    info = write_food101n(str(root))
    data = load(root, tmp_path)
    assert data.num_classes == 3 and data.raw.extra["classes"] == ["apple_pie", "baby_back_ribs", "baklava"]
    assert data.raw.train_images.keys == info["train_keys"]  # header line 'class_name/key' dropped
    np.testing.assert_array_equal(data.noisy_labels, info["train_labels"])
    np.testing.assert_array_equal(data.test.labels, info["test_labels"])
    assert data.train[0][0].shape == (3, 32, 32) and data.test[0][0].shape == (3, 32, 32)


def test_food101_elsewhere(tmp_path):
    root = tmp_path / "Food-101N_release"
    info = write_food101n(str(root), test_root=str(tmp_path / "food-101"))
    with pytest.raises(DataError, match=f"{root}/food-101/meta/test.txt does not exist.*food101_path"):
        load(root, tmp_path)
    data = load(root, tmp_path, food101_path=str(tmp_path / "food-101"))
    np.testing.assert_array_equal(data.test.labels, info["test_labels"])


def test_unknown_class_in_list(tmp_path):
    root = tmp_path / "Food-101N_release"
    info = write_food101n(str(root))
    lines = ["class_name/key"] + [k[len("images/"):] for k in info["train_keys"]] + ["sushi/abc.jpg"]
    write_text(str(root / "meta" / "imagelist.tsv"), lines)
    with pytest.raises(DataError, match="imagelist.tsv line 14: 'sushi/abc.jpg'"):
        load(root, tmp_path)


def test_missing_image(tmp_path):
    root = tmp_path / "Food-101N_release"
    info = write_food101n(str(root))
    os.remove(root / info["train_keys"][0])
    with pytest.raises(DataError, match=f"e.g. {root}/{info['train_keys'][0]}"):
        load(root, tmp_path)


@pytest.mark.slow
def test_stage1_and_stage2(tmp_path):
    root = tmp_path / "Food-101N_release"
    write_food101n(str(root))
    first, second = run_both_stages("food101n", str(root), str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_food101n_real_0.2"
    assert len(second["test_acc"]) == 1
