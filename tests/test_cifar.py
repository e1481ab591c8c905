"""CIFAR-10/100 from fixtures written in the exact python-pickle format, in both folder layouts."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from dataloader import build_data
from dataloader.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from utils.training.config import REPO_ROOT, parse_config
from utils.core.errors import DataError

from fixtures_data import SUBPROCESS_ENV


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(obj, path):
    # protocol 2 like the python-2 originals; read back with encoding="latin1" as torchvision does
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root, *, per_batch=6, n_test=8, seed=0, nested=False):
    """data_batch_1..5, test_batch and batches.meta; returns (train_data, train_labels, test_data, test_labels)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py") if nested else root
    os.makedirs(folder, exist_ok=True)
    datas, labels = [], []
    for b in range(1, 6):
        data = _images(rng, per_batch)
        lab = rng.integers(0, 10, size=per_batch).tolist()
        _dump({"batch_label": f"training batch {b} of 5", "labels": lab, "data": data,
               "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)]},
              os.path.join(folder, f"data_batch_{b}"))
        datas.append(data)
        labels += lab
    test = _images(rng, n_test)
    test_labels = rng.integers(0, 10, size=n_test).tolist()
    _dump({"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test,
           "filenames": [f"test_{i}.png" for i in range(n_test)]}, os.path.join(folder, "test_batch"))
    _dump({"num_cases_per_batch": per_batch, "label_names": CIFAR10_NAMES, "num_vis": 3072},
          os.path.join(folder, "batches.meta"))
    return np.concatenate(datas), np.array(labels), test, np.array(test_labels)


def write_cifar100(root, *, n_train=40, n_test=10, seed=0, nested=False, label_high=100):
    """train, test and meta (fine and coarse label names)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-100-python") if nested else root
    os.makedirs(folder, exist_ok=True)
    out = []
    for name, n in (("train", n_train), ("test", n_test)):
        data = _images(rng, n)
        fine = rng.integers(0, label_high, size=n).tolist()
        _dump({"filenames": [f"{name}_{i}.png" for i in range(n)], "batch_label": f"{name} batch",
               "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data},
              os.path.join(folder, name))
        out += [data, np.array(fine)]
    _dump({"fine_label_names": [f"class_{i}" for i in range(100)],
           "coarse_label_names": [f"super_{i}" for i in range(20)]}, os.path.join(folder, "meta"))
    return tuple(out)


def cifar_cfg(tmp_path, dataset, data_path, *extra):
    cfg_file = tmp_path / f"{dataset}.yaml"
    cfg_file.write_text(yaml.safe_dump({"dataset": dataset, "backbone": "test_resnet", "pretrained": False,
                                        "resolution": 32, "num_workers": 0, "noise_mode": "sym",
                                        "noise_ratio": 0.4}))
    argv = ["--config", str(cfg_file), "--set", f"data_path={data_path}",
            "--set", f"noise_dir={tmp_path / 'noise'}", "--output_dir", str(tmp_path / "out")] + list(extra)
    return parse_config(argv, prog="test", scope="stage1")


def quiet(_msg):
    pass


def chw_to_hwc(flat):
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "torchvision-layout"])
def test_cifar10_loads_exactly_what_was_written(tmp_path, nested):
    train, train_labels, test, test_labels = write_cifar10(tmp_path / "c10", nested=nested)
    cfg = cifar_cfg(tmp_path, "cifar10", tmp_path / "c10")
    data = build_data(cfg, stage="stage1", log=quiet)

    assert len(data.train) == 30 and len(data.test) == 8
    assert data.num_classes == 10 and data.resolution == 32
    assert np.array_equal(data.clean_labels, train_labels)            # batch 1..5 in order
    assert np.array_equal(data.test.labels, test_labels)
    assert data.noisy_labels.dtype == np.int64
    assert data.noisy_labels.min() >= 0 and data.noisy_labels.max() <= 9
    # exactly floor(0.4 * 30) = 12 samples were re-drawn, so at most 12 labels differ
    assert int((data.noisy_labels != train_labels).sum()) <= 12
    assert np.array_equal(data.train.labels, data.noisy_labels)

    # pixels: the stored (N, 3072) rows are CHW planes; the loader must give HWC images
    expected = chw_to_hwc(train)
    for i in (0, 7, 29):
        img = np.asarray(data.train.images.load(i))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert np.array_equal(img, expected[i])
        # the red plane is the first 1024 bytes, row-major
        assert img[0, 1, 0] == train[i, 1] and img[1, 0, 0] == train[i, 32] and img[0, 0, 2] == train[i, 2048]
    # the test item after the test transform (32 px: no resize) is the uint8 pixels, which the device
    # normalises with CIFAR-10's statistics
    x, y, index = data.test[3]
    assert index == 3 and y == test_labels[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert torch.equal(x, torch.from_numpy(test[3].reshape(3, 32, 32)))
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    pixels = torch.from_numpy(test[3].reshape(3, 32, 32).astype(np.float32) / 255.0)
    assert torch.allclose(data.normalise(x[None])[0] * std + mean, pixels, atol=1e-5)
    # a training item is (tensor, noisy label, index)
    x, y, index = data.train[5]
    assert x.shape == (3, 32, 32) and y == data.noisy_labels[5] and index == 5


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "torchvision-layout"])
def test_cifar100_fine_labels(tmp_path, nested):
    train, train_labels, test, test_labels = write_cifar100(tmp_path / "c100", nested=nested)
    cfg = cifar_cfg(tmp_path, "cifar100", tmp_path / "c100")
    data = build_data(cfg, stage="stage1", log=quiet)
    assert len(data.train) == 40 and len(data.test) == 10 and data.num_classes == 100
    assert np.array_equal(data.clean_labels, train_labels)
    assert np.array_equal(data.test.labels, test_labels)
    assert 0 <= data.noisy_labels.min() and data.noisy_labels.max() < 100
    assert np.array_equal(np.asarray(data.test.images.load(9)), chw_to_hwc(test)[9])
    assert np.array_equal(np.asarray(data.train.images.load(0)), chw_to_hwc(train)[0])
    assert data.raw.mean == CIFAR100_MEAN and data.raw.std == CIFAR100_STD


def test_noise_cache_and_fingerprint(tmp_path):
    write_cifar10(tmp_path / "flat")
    write_cifar10(tmp_path / "nested", nested=True)   # same seed: the same pixels and labels
    cfg = cifar_cfg(tmp_path, "cifar10", tmp_path / "flat")
    first = build_data(cfg, stage="stage1", log=quiet)

    cache = tmp_path / "noise" / "cifar10_sym_0.4_seed0_ido.json"
    assert cache.is_file()
    with open(cache) as f:
        cached = json.load(f)
    assert cached["noisy_labels"] == first.noisy_labels.tolist() and cached["num_samples"] == 30
    assert first.noise_info["reused"] is False

    second = build_data(cfg, stage="stage1", log=quiet)
    assert second.noise_info["reused"] is True
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.noisy_labels, first.noisy_labels)
    assert len(first.fingerprint) == 64 and int(first.fingerprint, 16) >= 0

    # the layout does not matter: same samples, same labels, same noise
    nested = build_data(cifar_cfg(tmp_path, "cifar10", tmp_path / "nested"), stage="stage1", log=quiet)
    assert nested.fingerprint == first.fingerprint

    # another noise seed: other noisy labels, another cache file, another fingerprint
    other = build_data(cifar_cfg(tmp_path, "cifar10", tmp_path / "flat", "--set", "noise_seed=1"),
                       stage="stage1", log=quiet)
    assert (tmp_path / "noise" / "cifar10_sym_0.4_seed1_ido.json").is_file()
    assert not np.array_equal(other.noisy_labels, first.noisy_labels)
    assert other.fingerprint != first.fingerprint

    # other pixels with the same labels and noise: another fingerprint (sample order is part of it)
    write_cifar10(tmp_path / "shuffled", seed=0)
    path = tmp_path / "shuffled" / "data_batch_1"
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry["data"] = entry["data"][::-1].copy()
    _dump(entry, path)
    moved = build_data(cifar_cfg(tmp_path, "cifar10", tmp_path / "shuffled", "--set",
                                 f"noise_dir={tmp_path / 'noise_b'}"), stage="stage1", log=quiet)
    assert np.array_equal(moved.noisy_labels, first.noisy_labels)
    assert moved.fingerprint != first.fingerprint


def test_missing_or_broken_cifar_raises_data_error(tmp_path):
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(DataError) as info:
        build_data(cifar_cfg(tmp_path, "cifar100", missing), stage="stage1", log=quiet)
    message = str(info.value)
    assert str(missing) in message and "\n" not in message
    assert os.path.join(str(missing), "cifar-100-python") in message

    # one training batch missing: not found either
    write_cifar10(tmp_path / "partial")
    os.remove(tmp_path / "partial" / "data_batch_3")
    with pytest.raises(DataError, match="partial"):
        build_data(cifar_cfg(tmp_path, "cifar10", tmp_path / "partial"), stage="stage1", log=quiet)

    # a CIFAR-100 folder read as CIFAR-10 (labels up to 99)
    write_cifar10(tmp_path / "wrong_range")
    entry = {"labels": [55] * 4, "data": np.zeros((4, 3072), np.uint8)}
    _dump(entry, tmp_path / "wrong_range" / "test_batch")
    with pytest.raises(DataError, match="0..9"):
        build_data(cifar_cfg(tmp_path, "cifar10", tmp_path / "wrong_range"), stage="stage1", log=quiet)

    # not a pickle
    write_cifar100(tmp_path / "garbage")
    (tmp_path / "garbage" / "test").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test"):
        build_data(cifar_cfg(tmp_path, "cifar100", tmp_path / "garbage"), stage="stage1", log=quiet)

    # wrong row length
    write_cifar100(tmp_path / "short")
    _dump({"fine_labels": [1, 2], "data": np.zeros((2, 100), np.uint8)}, tmp_path / "short" / "test")
    with pytest.raises(DataError, match="3072"):
        build_data(cifar_cfg(tmp_path, "cifar100", tmp_path / "short"), stage="stage1", log=quiet)


def test_stage2_views_of_cifar(tmp_path):
    write_cifar100(tmp_path / "c100")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"dataset": "cifar100", "pretrained": False, "resolution": 32,
                                        "backbone": "test_resnet"}))
    cfg = parse_config(["--config", str(cfg_file), "--set", f"data_path={tmp_path / 'c100'}",
                        "--output_dir", str(tmp_path)], prog="test", scope="stage2")
    data = build_data(cfg, stage="stage2", log=quiet)
    (weak, strong), y, index = data.train[4]
    assert weak.shape == strong.shape == (3, 32, 32)
    assert y == data.noisy_labels[4] and index == 4
    # the same data set and noise as stage 1 gives the same fingerprint (stage 2 checks it)
    s1 = build_data(cifar_cfg(tmp_path, "cifar100", tmp_path / "c100", "--set", f"noise_dir={tmp_path / 'noise_file'}"),
                    stage="stage1", log=quiet)
    assert s1.fingerprint == data.fingerprint


# --------------------------------------------------------------------- the acceptance command

@pytest.mark.slow
def test_stage1_cli_on_a_cifar100_fixture(tmp_path):
    data_dir = tmp_path / "data"
    write_cifar100(data_dir, n_train=200, n_test=100, nested=True)
    cfg_path = os.path.join(REPO_ROOT, "config", "stage1", "cifar100.yaml")
    if not os.path.isfile(cfg_path):   # the shipped file may not exist yet: an equivalent one
        cfg_path = str(tmp_path / "cifar100.yaml")
        with open(cfg_path, "w") as f:
            yaml.safe_dump({"dataset": "cifar100", "data_path": "./data/cifar100", "noise_mode": "sym",
                            "noise_ratio": 0.4, "backbone": "resnet50", "pretrained": True, "epochs": 5,
                            "batch_size": 128, "num_workers": 4}, f)
    out = tmp_path / "out"
    # pretrained=false: offline there are no timm weights for test_resnet
    argv = ["--config", cfg_path, "--set", f"data_path={data_dir}", "--backbone", "test_resnet",
            "--set", "resolution=32", "--epochs", "1", "--output_dir", str(out), "--set", "num_workers=0",
            "--set", "pretrained=false", "--device", "cpu"]
    proc = subprocess.run([sys.executable, "stage_1.py"] + argv, cwd=REPO_ROOT, env=SUBPROCESS_ENV,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    cfg = parse_config(argv, prog="stage_1.py", scope="stage1")
    tag = cfg.tag
    assert tag == f"test_resnet_scratch_cifar100_{cfg.noise_mode}_{cfg.noise_ratio:g}"
    counts = np.load(out / "stage1" / f"{tag}_wrongevent.npy")
    assert counts.dtype == np.int32 and counts.shape == (200,)
    assert counts.min() >= 0 and counts.max() <= 1
    with open(out / "stage1" / f"{tag}_wrongevent.json") as f:
        meta = json.load(f)
    assert meta["dataset"] == "cifar100" and meta["num_samples"] == 200 and meta["epochs"] == 1
    assert meta["num_classes"] == 100
    assert (out / "stage1" / f"{tag}_wrongevent.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(out / "base_model" / f"{tag}.pt", weights_only=True)
    assert state["head.weight"].shape[0] == 100
    assert (out / "checkpoint" / f"stage1_{tag}" / "last.pt").is_file()
