"""Web-Aircraft / Web-Bird / Web-Car (WebFG-496): train/<class>/ and val/<class>/ image folders."""
import os

import numpy as np
import pytest

from dataloader import build_data
from dataloader.files import IMAGENET_MEAN
from dataloader.transforms import LargeSpec
from fixtures_data import make_cfg, run_both_stages, write_image, write_webfg
from utils.core.errors import DataError


def load(name, root, tmp_path, **kw):
    cfg = make_cfg(dataset=name, data_path=str(root), noise_mode="real", noise_ratio=0.0,
                   output_dir=str(tmp_path / "out"), **kw)
    return build_data(cfg, stage="stage1", log=lambda m: None)


@pytest.mark.parametrize("name", ["web-aircraft", "web-bird", "web-car"])
def test_folders_sizes_labels(name, tmp_path):
    root = tmp_path / name
    info = write_webfg(str(root))
    data = load(name, root, tmp_path)
    assert data.num_classes == 3 and len(data.train) == 12 and len(data.test) == 3
    assert data.raw.train_images.keys == info["train_keys"]  # sorted; Thumbs.db and .DS_Store skipped
    np.testing.assert_array_equal(data.noisy_labels, info["train_labels"])
    np.testing.assert_array_equal(data.test.labels, info["test_labels"])
    assert data.clean_labels is None and data.raw.mean == IMAGENET_MEAN
    assert data.raw.extra["large"] == LargeSpec(resize_ratio=1.0, stage1_resize="shorter",
                                                stage2_resize="shorter", test="shorter_center")
    assert data.train[0][0].shape == (3, 32, 32) and data.test[0][0].shape == (3, 32, 32)


def test_non_square_images_are_cropped(tmp_path):
    root = tmp_path / "web-car"
    write_webfg(str(root))
    from PIL import Image
    Image.new("RGB", (40, 20)).save(root / "train" / "A300B4" / "wide.png")
    data = load("web-car", root, tmp_path)
    index = data.raw.train_images.keys.index("train/A300B4/wide.png")
    assert data.train[index][0].shape == (3, 32, 32)


def test_val_class_unknown_to_train(tmp_path):
    root = tmp_path / "web-bird"
    write_webfg(str(root))
    write_image(str(root / "val" / "Zebra_finch" / "x.jpg"))
    with pytest.raises(DataError, match="Zebra_finch has no training folder"):
        load("web-bird", root, tmp_path)


def test_missing_val_folder(tmp_path):
    root = tmp_path / "web-aircraft"
    write_webfg(str(root))
    os.rename(root / "val", root / "test")
    with pytest.raises(DataError, match=f"{root}/val does not exist"):
        load("web-aircraft", root, tmp_path)


def test_class_folder_with_no_image(tmp_path):
    root = tmp_path / "web-aircraft"
    write_webfg(str(root))
    os.makedirs(root / "train" / "Empty_class")
    with pytest.raises(DataError, match="Empty_class holds no images"):
        load("web-aircraft", root, tmp_path)


@pytest.mark.slow
def test_stage1_and_stage2(tmp_path):
    root = tmp_path / "web-aircraft"
    write_webfg(str(root))
    first, second = run_both_stages("web-aircraft", str(root), str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_web-aircraft_real_0"
    assert len(second["test_acc"]) == 1
