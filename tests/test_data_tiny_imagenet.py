"""Tiny-ImageNet in the official release layout and the reorganised test/<wnid>/images layout (IDO-B7)."""
import os
import shutil

import numpy as np
import pytest
import torch

from dataloader import build_data
from fixtures_data import TINY_WNIDS, make_cfg, run_both_stages, write_image, write_text, write_tiny_imagenet
from utils.core.errors import DataError


def load(root, tmp_path, stage="stage1", **kw):
    cfg = make_cfg("stage2" if stage == "stage2" else "stage1", dataset="tiny_imagenet", data_path=str(root),
                   output_dir=str(tmp_path / "out"), **kw)
    return build_data(cfg, stage=stage, log=lambda m: None)


@pytest.mark.parametrize("layout", ["official", "reorganised"])
def test_layouts_sizes_labels_order(layout, tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    info = write_tiny_imagenet(str(root), layout=layout)
    data = load(root, tmp_path, noise_ratio=0.0)
    assert data.num_classes == 3 and data.raw.extra["classes"] == sorted(TINY_WNIDS)
    assert len(data.train) == 12 and len(data.test) == 6
    # the files were written in reverse order: indices follow the sorted relative paths
    assert data.raw.train_images.keys == info["train_keys"] == sorted(info["train_keys"])
    np.testing.assert_array_equal(data.clean_labels, info["train_labels"])
    np.testing.assert_array_equal(data.noisy_labels, info["train_labels"])  # noise ratio 0
    assert data.raw.test_images.keys == info["test_keys"]
    np.testing.assert_array_equal(data.test.labels, info["test_labels"])
    assert data.raw.mean == (0.48145466, 0.4578275, 0.40821073)  # CLIP constants (docs/fidelity.md#ido-32-tiny-imagenet)
    image, label, index = data.train[4]
    assert image.shape == (3, 32, 32) and label == info["train_labels"][4] and index == 4
    assert data.test[0][0].shape == (3, 32, 32)


def test_stage2_two_views(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    data = load(root, tmp_path, stage="stage2")
    for i in range(3):
        (weak, strong), label, index = data.train[i]
        assert weak.shape == strong.shape == (3, 32, 32) and weak.dtype == strong.dtype
        assert index == i and label == data.noisy_labels[i]
        assert not torch.equal(weak, strong)  # the strong view is augmented further


def test_index_order_and_fingerprint_do_not_depend_on_mount_point(tmp_path):
    a, b = tmp_path / "a" / "tiny", tmp_path / "elsewhere" / "copy"
    write_tiny_imagenet(str(a))
    shutil.copytree(a, b)
    fa, fb = load(a, tmp_path).fingerprint, load(b, tmp_path).fingerprint
    assert fa == fb


def test_symmetric_noise_on_true_labels(tmp_path):
    root = tmp_path / "tiny"
    info = write_tiny_imagenet(str(root))
    data = load(root, tmp_path, noise_mode="sym", noise_ratio=0.5)
    assert data.noisy_labels.min() >= 0 and data.noisy_labels.max() < 3
    np.testing.assert_array_equal(data.clean_labels, info["train_labels"])
    assert data.is_noisy.sum() <= 6  # exactly floor(0.5 * 12) samples drawn; some keep their label


def test_instance_dependent_noise_from_files(tmp_path):
    root = tmp_path / "tiny"
    info = write_tiny_imagenet(str(root))
    a = load(root, tmp_path, noise_mode="idn", noise_ratio=0.4)
    features = a.raw.train_images.flat_features()
    assert features.shape == (12, 16 * 16 * 3) and features.dtype == np.uint8
    os.remove(a.noise_info["path"])  # generated again from the files: same labels
    b = load(root, tmp_path, noise_mode="idn", noise_ratio=0.4)
    np.testing.assert_array_equal(a.noisy_labels, b.noisy_labels)
    np.testing.assert_array_equal(a.clean_labels, info["train_labels"])


def test_non_image_files_are_skipped(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    write_text(str(root / "train" / TINY_WNIDS[0] / "images" / "notes.txt"), ["not an image"])
    write_text(str(root / "train" / TINY_WNIDS[0] / "images" / ".DS_Store"), ["x"])
    messages = []
    cfg = make_cfg(dataset="tiny_imagenet", data_path=str(root), output_dir=str(tmp_path / "out"))
    data = build_data(cfg, stage="stage1", log=messages.append)
    assert len(data.train) == 12
    assert any("skipped 2" in m for m in messages)


def test_undecodable_image_names_the_file(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    bad = root / "train" / TINY_WNIDS[0] / "images" / "broken.JPEG"
    bad.write_bytes(b"this is not a jpeg")
    data = load(root, tmp_path)
    index = data.raw.train_images.keys.index(f"train/{TINY_WNIDS[0]}/images/broken.JPEG")
    with pytest.raises(DataError, match="cannot decode image .*broken.JPEG"):
        data.train[index]


def test_wrong_root_points_at_train_folder(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    with pytest.raises(DataError) as err:
        load(root / "train", tmp_path)
    assert str(root / "train" / "train") in str(err.value)


def test_missing_annotation_file(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    os.remove(root / "val" / "val_annotations.txt")
    with pytest.raises(DataError) as err:
        load(root, tmp_path)
    assert "val_annotations.txt" in str(err.value) and str(root) in str(err.value)


def test_annotation_lists_missing_image(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    os.remove(root / "val" / "images" / "val_3.JPEG")
    with pytest.raises(DataError, match="1 of the 6 images listed .*val_3.JPEG"):
        load(root, tmp_path)


def test_class_folder_without_images_subfolder(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root))
    write_image(str(root / "train" / "n09999999" / "flat.JPEG"))
    with pytest.raises(DataError, match="n09999999/images does not exist"):
        load(root, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["official", "reorganised"])
def test_stage1_and_stage2(layout, tmp_path):
    root = tmp_path / "tiny"
    write_tiny_imagenet(str(root), layout=layout)
    first, second = run_both_stages("tiny_imagenet", str(root), str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_tiny_imagenet_sym_0.2"
    counts = np.load(tmp_path / "out" / "stage1" / f"{first['tag']}_wrongevent.npy")
    assert counts.shape == (12,) and counts.max() <= 1
    assert len(second["test_acc"]) == 1
