"""CIFAR-10N / CIFAR-100N: human labels from the release's .pt files, read without arbitrary unpickling."""
import os

import numpy as np
import pytest
import torch

from dataloader import build_data
from dataloader.cifar_n import safe_load_label_file
from fixtures_data import make_cfg, run_both_stages, write_cifar, write_cifar_n
from utils.core.errors import DataError

N_TRAIN, N_TEST = 24, 10
CIFAR10N_KEYS = ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3")


@pytest.fixture
def cifar100n(tmp_path):
    root = str(tmp_path / "cifar-100")
    info = write_cifar(root, "cifar100", train_labels=[(7 * i) % 100 for i in range(N_TRAIN)],
                       test_labels=[(3 * i) % 100 for i in range(N_TEST)])
    noisy = info["train_labels"].copy()
    noisy[::3] = (noisy[::3] + 1) % 100
    write_cifar_n(os.path.join(root, "CIFAR-100_human.pt"),
                  {"clean_label": info["train_labels"], "noisy_label": noisy,
                   "clean_coarse_label": info["train_labels"] // 5, "noisy_coarse_label": noisy // 5})
    return root, info, noisy


@pytest.fixture
def cifar10n(tmp_path):
    root = str(tmp_path / "cifar-10")
    info = write_cifar(root, "cifar10", train_labels=[i % 10 for i in range(N_TRAIN)],
                       test_labels=[i % 10 for i in range(N_TEST)])
    labels = {"clean_label": info["train_labels"]}
    for shift, key in enumerate(CIFAR10N_KEYS):
        noisy = info["train_labels"].copy()
        noisy[shift::5] = (noisy[shift::5] + shift + 1) % 10
        labels[key] = noisy
    write_cifar_n(os.path.join(root, "CIFAR-10_human.pt"), labels)
    return root, info, labels


def test_cifar100n_human_labels(cifar100n, tmp_path):
    root, info, noisy = cifar100n
    data = build_data(make_cfg(dataset="cifar100", data_path=root, noise_mode="real", output_dir=str(tmp_path)),
                      stage="stage1", log=lambda m: None)
    assert len(data.train) == N_TRAIN and len(data.test) == N_TEST and data.num_classes == 100
    np.testing.assert_array_equal(data.noisy_labels, noisy)
    np.testing.assert_array_equal(data.clean_labels, info["train_labels"])
    np.testing.assert_array_equal(data.is_noisy, noisy != info["train_labels"])
    assert data.noise_info["realised_noise_rate"] == pytest.approx(np.mean(noisy != info["train_labels"]))
    _, label, index = data.train[5]
    assert (label, index) == (noisy[5], 5)


@pytest.mark.parametrize("key", CIFAR10N_KEYS)
def test_cifar10n_label_sets(cifar10n, key, tmp_path):
    root, info, labels = cifar10n
    cfg = make_cfg(dataset="cifar10", data_path=root, noise_mode="real", cifar10n_label=key,
                   output_dir=str(tmp_path))
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    np.testing.assert_array_equal(data.noisy_labels, labels[key])


def test_cifar10n_default_is_worse_label(cifar10n, tmp_path):
    root, _, labels = cifar10n
    data = build_data(make_cfg(dataset="cifar10", data_path=root, noise_mode="real", output_dir=str(tmp_path)),
                      stage="stage1", log=lambda m: None)
    np.testing.assert_array_equal(data.noisy_labels, labels["worse_label"])


def test_numpy2_written_file_also_loads(tmp_path):
    path = write_cifar_n(str(tmp_path / "h.pt"), {"noisy_label": np.arange(5)}, numpy1_names=False)
    np.testing.assert_array_equal(safe_load_label_file(path)["noisy_label"], np.arange(5))


class _Payload:
    """Pickles to a call of os.makedirs: an unsafe loader would create the marker folder."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_code_in_label_file_is_refused_not_run(tmp_path):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "CIFAR-100_human.pt")
    torch.save({"noisy_label": _Payload(marker)}, path)
    with pytest.raises(DataError, match="read safely"):
        safe_load_label_file(path)
    assert not os.path.exists(marker)


def test_missing_file_names_path_and_release(cifar100n, tmp_path):
    root, _, _ = cifar100n
    os.remove(os.path.join(root, "CIFAR-100_human.pt"))
    cfg = make_cfg(dataset="cifar100", data_path=root, noise_mode="real", output_dir=str(tmp_path))
    with pytest.raises(DataError) as err:
        build_data(cfg, stage="stage1", log=lambda m: None)
    assert os.path.join(root, "CIFAR-100_human.pt") in str(err.value)
    assert "cifar-10-100n" in str(err.value)


def test_label_file_of_other_length(cifar100n, tmp_path):
    root, _, _ = cifar100n
    write_cifar_n(os.path.join(root, "CIFAR-100_human.pt"), {"noisy_label": np.zeros(N_TRAIN + 3)})
    cfg = make_cfg(dataset="cifar100", data_path=root, noise_mode="real", output_dir=str(tmp_path))
    with pytest.raises(DataError, match=f"{N_TRAIN + 3} labels but cifar100 has {N_TRAIN}"):
        build_data(cfg, stage="stage1", log=lambda m: None)


def test_cifar10_file_given_to_cifar100(cifar100n, cifar10n, tmp_path):
    root100, _, _ = cifar100n
    root10, _, _ = cifar10n
    cfg = make_cfg(dataset="cifar100", data_path=root100, noise_mode="real", output_dir=str(tmp_path),
                   noisy_label_file=os.path.join(root10, "CIFAR-10_human.pt"))
    with pytest.raises(DataError, match="no key 'noisy_label'"):
        build_data(cfg, stage="stage1", log=lambda m: None)


def test_clean_labels_of_another_order_are_refused(cifar100n, tmp_path):
    root, info, noisy = cifar100n
    write_cifar_n(os.path.join(root, "CIFAR-100_human.pt"),
                  {"noisy_label": noisy, "clean_label": info["train_labels"][::-1]})
    cfg = make_cfg(dataset="cifar100", data_path=root, noise_mode="real", output_dir=str(tmp_path))
    with pytest.raises(DataError, match="clean_label"):
        build_data(cfg, stage="stage1", log=lambda m: None)


def test_synthetic_noise_does_not_need_the_file(cifar100n, tmp_path):
    root, _, _ = cifar100n
    os.remove(os.path.join(root, "CIFAR-100_human.pt"))
    data = build_data(make_cfg(dataset="cifar100", data_path=root, noise_mode="sym", output_dir=str(tmp_path)),
                      stage="stage1", log=lambda m: None)
    assert len(data.train) == N_TRAIN


@pytest.mark.slow
def test_stage1_and_stage2_cifar100n(cifar100n, tmp_path):
    root, _, _ = cifar100n
    first, second = run_both_stages("cifar100n", root, str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_cifar100_real_0.4"
    assert len(second["test_acc"]) == 1


@pytest.mark.slow
def test_stage1_and_stage2_cifar10n(cifar10n, tmp_path):
    root, _, _ = cifar10n
    first, second = run_both_stages("cifar10n", root, str(tmp_path / "out"), "--set", "cifar10n_label=aggre_label")
    assert first["tag"] == "test_resnet_scratch_cifar10_real_0.4"
    assert len(second["test_acc"]) == 1
