"""Clothing1M: release list files, the persisted class-balanced subset shared by both stages (IDO-B9)."""
import json
import os

import numpy as np
import pytest

from dataloader import build_data
from dataloader.clothing1m import draw_balanced_subset, subset_path
from dataloader.transforms import LargeSpec
from fixtures_data import make_cfg, run_both_stages, stage_argv, write_clothing1m, write_text
from utils.core.errors import DataError


def cfg_for(root, tmp_path, scope="stage1", **kw):
    values = dict(dataset="clothing1m", data_path=str(root), noise_mode="real", noise_ratio=0.385,
                  output_dir=str(tmp_path / "out"))
    values.update(kw)
    return make_cfg(scope, **values)


@pytest.mark.parametrize("annotations_dir", [True, False])
def test_sizes_labels_and_subset(annotations_dir, tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root), annotations_dir=annotations_dir)
    cfg = cfg_for(root, tmp_path, clothing1m_samples=28)
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    keys = data.raw.train_images.keys
    assert data.num_classes == 14 and len(data.train) == 28 and len(set(keys)) == 28
    np.testing.assert_array_equal(data.noisy_labels, [info["noisy"][k] for k in keys])
    assert data.clean_labels is None and data.is_noisy is None
    assert np.bincount(data.noisy_labels, minlength=14).tolist() == [2] * 14  # class-balanced
    assert data.raw.test_images.keys == info["test_keys"]
    np.testing.assert_array_equal(data.test.labels, [info["clean"][k] for k in info["test_keys"]])
    assert data.raw.mean == (0.6959, 0.6537, 0.6371)
    assert data.raw.extra["large"] == LargeSpec(stage1_resize="shorter", stage2_resize="square",
                                                test="shorter_center")
    # persisted with relative keys, in dataset order
    path = subset_path(cfg)
    assert path == str(tmp_path / "out" / "noise_file" / "clothing1m_subset_28_seed0.txt")
    assert open(path).read().split() == keys
    assert data.train[0][0].shape == (3, 32, 32) and data.test[0][0].shape == (3, 32, 32)


def test_subset_is_reused_and_seeded(tmp_path):
    root = tmp_path / "clothing1m"
    write_clothing1m(str(root))
    first = build_data(cfg_for(root, tmp_path, clothing1m_samples=20), stage="stage1", log=lambda m: None)
    # stage 2 (other batch size) indexes exactly the same images
    second = build_data(cfg_for(root, tmp_path, "stage2", clothing1m_samples=20, batch_size=2), stage="stage2",
                        log=lambda m: None)
    assert first.raw.train_images.keys == second.raw.train_images.keys
    assert first.fingerprint == second.fingerprint
    other = build_data(cfg_for(root, tmp_path, clothing1m_samples=20, seed=1), stage="stage1", log=lambda m: None)
    assert other.raw.train_images.keys != first.raw.train_images.keys


def test_a_hand_written_subset_file_is_used(tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root))
    cfg = cfg_for(root, tmp_path, clothing1m_samples=5)
    chosen = info["train_keys"][7:12]
    write_text(subset_path(cfg), chosen)
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    assert data.raw.train_images.keys == chosen


def test_subset_file_from_another_copy_is_refused(tmp_path):
    root = tmp_path / "clothing1m"
    write_clothing1m(str(root))
    cfg = cfg_for(root, tmp_path, clothing1m_samples=5)
    write_text(subset_path(cfg), ["images/9/99/not_there.jpg"])
    with pytest.raises(DataError, match="clothing1m_subset_5_seed0.txt.*not_there.jpg"):
        build_data(cfg, stage="stage1", log=lambda m: None)


def test_draw_balanced_subset():
    labels = np.repeat(np.arange(14), [100] * 13 + [3])  # class 13 is rare
    chosen = draw_balanced_subset(labels, 140, seed=0)
    counts = np.bincount(labels[chosen], minlength=14)
    assert len(chosen) == len(set(chosen.tolist())) and counts[13] == 3 and counts[:13].max() == 10
    np.testing.assert_array_equal(chosen, draw_balanced_subset(labels, 140, seed=0))


def test_missing_annotation_file_names_it(tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root))
    os.remove(os.path.join(info["annotations"], "clean_test_key_list.txt"))
    with pytest.raises(DataError) as err:
        build_data(cfg_for(root, tmp_path), stage="stage1", log=lambda m: None)
    assert os.path.join(info["annotations"], "clean_test_key_list.txt") in str(err.value)


def test_wrong_root_lists_missing_images(tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root))
    # lists copied elsewhere, data_path not the folder the keys are relative to
    other = tmp_path / "lists_only"
    for name in os.listdir(info["annotations"]):
        write_text(str(other / "annotations" / name), open(os.path.join(info["annotations"], name)).read().split("\n"))
    with pytest.raises(DataError, match=r"images listed in .*noisy_train_key_list.txt are missing, e.g. "
                                        + str(other)):
        build_data(cfg_for(other, tmp_path), stage="stage1", log=lambda m: None)


def test_key_without_label(tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root))
    path = os.path.join(info["annotations"], "noisy_train_key_list.txt")
    write_text(path, info["train_keys"] + ["images/0/00/extra.jpg"])
    with pytest.raises(DataError, match="extra.jpg which has no label in .*noisy_label_kv.txt"):
        build_data(cfg_for(root, tmp_path), stage="stage1", log=lambda m: None)


def test_label_out_of_range(tmp_path):
    root = tmp_path / "clothing1m"
    info = write_clothing1m(str(root))
    path = os.path.join(info["annotations"], "clean_label_kv.txt")
    lines = open(path).read().split("\n")
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 14"
    write_text(path, [line for line in lines if line])
    with pytest.raises(DataError, match="clean_label_kv.txt line 1: label 14 outside 0..13"):
        build_data(cfg_for(root, tmp_path), stage="stage1", log=lambda m: None)


@pytest.mark.slow
def test_stage1_and_stage2_share_the_subset(tmp_path):
    root = tmp_path / "clothing1m"
    write_clothing1m(str(root))
    out = tmp_path / "out"
    first, second = run_both_stages("clothing1m", str(root), str(out))
    assert first["tag"] == "test_resnet_scratch_clothing1m_real_0.385"
    meta = json.load(open(out / "stage1" / f"{first['tag']}_wrongevent.json"))
    assert meta["num_samples"] == 56  # all 14 x 4 images (fewer than clothing1m_samples)
    assert len(second["test_acc"]) == 1
    # another subset under the same name: stage 2 refuses the wrong events instead of mis-indexing them
    subset = out / "noise_file" / "clothing1m_subset_128000_seed0.txt"
    keys = subset.read_text().split()
    subset.write_text("\n".join(keys[1:] + keys[:1]) + "\n")
    import stage_2
    with pytest.raises(DataError, match="fingerprint"):
        stage_2.main(stage_argv("stage2", "clothing1m", str(root), str(out)))
