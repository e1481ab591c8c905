"""Mini-WebVision: the first 50 classes of the Google list, ImageNet statistics everywhere (IDO-B10),
and the optional ILSVRC12 validation set of the same classes."""
import os

import numpy as np
import pytest
from torchvision import transforms as T

from dataloader import build_data
from dataloader.files import IMAGENET_MEAN, IMAGENET_STD
from fixtures_data import make_cfg, run_both_stages, write_imagenet_val, write_text, write_webvision
from utils.core.errors import DataError


def load(root, tmp_path, stage="stage1", **kw):
    scope = "stage2" if stage == "stage2" else "stage1"
    cfg = make_cfg(scope, dataset="webvision", data_path=str(root), noise_mode="real", noise_ratio=0.2,
                   output_dir=str(tmp_path / "out"), **kw)
    return build_data(cfg, stage=stage, log=lambda m: None)


def last_ops(transform):
    """The last op of every part of a (possibly two-view) transform."""
    return [part.transforms[-1] for part in ([transform.weak, transform.strong] if hasattr(transform, "weak")
                                             else [transform])]


def test_first_50_classes_sizes_labels(tmp_path):
    root = tmp_path / "webvision"
    info = write_webvision(str(root))
    data = load(root, tmp_path)
    assert data.num_classes == 50
    assert data.raw.train_images.keys == info["train_keys"]  # list order, classes 50 and 700 dropped
    np.testing.assert_array_equal(data.noisy_labels, info["train_labels"])
    assert data.clean_labels is None
    assert data.raw.test_images.keys == info["test_keys"]
    np.testing.assert_array_equal(data.test.labels, info["test_labels"])
    assert data.train[0][0].shape == (3, 32, 32) and data.test[0][0].shape == (3, 32, 32)
    assert data.extra_tests == {}


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_imagenet_statistics_in_every_transform(stage, tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    data = load(root, tmp_path, stage=stage)
    # every view ends as uint8; the device normalises with ImageNet's statistics
    for op in last_ops(data.train.transform) + last_ops(data.test.transform):
        assert isinstance(op, T.PILToTensor)
    assert data.mean == IMAGENET_MEAN and data.std == IMAGENET_STD
    assert (data.normalise.mean, data.normalise.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # test: Resize(256, 256) -> CenterCrop(224), scaled to the resolution
    ops = data.test.transform.transforms
    assert isinstance(ops[0], T.Resize) and tuple(ops[0].size) == (37, 37) and isinstance(ops[1], T.CenterCrop)


@pytest.mark.parametrize("layout", ["index", "wnid"])
def test_imagenet_val_same_50_classes(layout, tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    val = tmp_path / "imagenet" / "val"
    expected = write_imagenet_val(str(val), layout=layout)
    data = load(root, tmp_path, imagenet_val_path=str(val))
    extra = data.extra_tests["imagenet_val"]
    np.testing.assert_array_equal(extra.labels, expected["labels"])  # class 60 left out
    assert extra.transform is data.test.transform
    assert extra[0][0].shape == (3, 32, 32)


def test_imagenet_val_path_missing(tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    with pytest.raises(DataError, match=f"imagenet_val_path {tmp_path}/nowhere does not exist"):
        load(root, tmp_path, imagenet_val_path=str(tmp_path / "nowhere"))


def test_missing_val_list(tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    os.remove(root / "info" / "val_filelist.txt")
    with pytest.raises(DataError, match=f"{root}/info/val_filelist.txt does not exist"):
        load(root, tmp_path)


def test_listed_image_missing(tmp_path):
    root = tmp_path / "webvision"
    info = write_webvision(str(root))
    os.remove(root / info["train_keys"][2])
    with pytest.raises(DataError, match=f"1 of the 12 images listed in .*train_filelist_google.txt are missing, "
                                        f"e.g. {root}/{info['train_keys'][2]}"):
        load(root, tmp_path)


def test_malformed_list_line(tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    write_text(str(root / "info" / "val_filelist.txt"), ["val000001.jpg"])
    with pytest.raises(DataError, match="val_filelist.txt line 1: expected 'relative/path label'"):
        load(root, tmp_path)


@pytest.mark.slow
def test_stage1_and_stage2(tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    first, second = run_both_stages("webvision", str(root), str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_webvision_real_0.2"
    assert len(second["test_acc"]) == 1


@pytest.mark.slow
def test_imagenet_val_accuracy_reported_beside_webvision(tmp_path):
    root = tmp_path / "webvision"
    write_webvision(str(root))
    val = tmp_path / "imagenet" / "val"
    expected = write_imagenet_val(str(val), layout="index")
    first, second = run_both_stages("webvision", str(root), str(tmp_path / "out"),
                                    "--set", f"imagenet_val_path={val}")
    n_val = len(expected["labels"])
    for row in first["history"]:
        assert {"test_acc", "imagenet_val_acc"} <= set(row)
        # accuracy over the n_val images: a multiple of 100 / n_val
        assert row["imagenet_val_acc"] * n_val / 100 == pytest.approx(round(row["imagenet_val_acc"] * n_val / 100),
                                                                       abs=1e-3)
    assert len(second["imagenet_val_acc"]) == len(second["test_acc"]) == 1
    assert second["imagenet_val_last_acc"] == second["imagenet_val_acc"][-1]
    assert "imagenet_val_base_acc" in second
    metrics = (tmp_path / "out" / "checkpoint" / "stage2_test_resnet_scratch_webvision_real_0.2_global"
               / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "imagenet_val_acc" in metrics
