"""ACTO's CIFAR-80N: closed-set noise on classes 0-79, classes 80-99 as open-set noise, test on 0-79."""
import numpy as np
import pytest

from dataloader import build_data
from dataloader.cifar80 import open_set_labels
from dataloader.noise import make_noisy_labels
from fixtures_data import make_cfg, run_both_stages, write_cifar
from utils.core.errors import ConfigError
from utils.report.plots import wrong_event_histogram

N_TRAIN = 40


@pytest.fixture
def cifar100(tmp_path):
    root = str(tmp_path / "cifar-100")
    # 30 images of classes 0..79 and 10 of the open-set classes 80..99
    train = [(7 * i) % 80 for i in range(30)] + [80 + 2 * i for i in range(10)]
    test = [0, 5, 79, 80, 99, 42, 85, 1]
    info = write_cifar(root, "cifar100", train_labels=train, test_labels=test)
    return root, info


def load(root, tmp_path, **kw):
    values = dict(dataset="cifar80", data_path=root, noise_mode="sym", noise_ratio=0.4, noise_convention="act",
                  output_dir=str(tmp_path / "out"))
    values.update(kw)
    return build_data(make_cfg(**values), stage="stage1", log=lambda m: None)


def test_open_and_closed_set_noise(cifar100, tmp_path):
    root, info = cifar100
    data = load(root, tmp_path)
    fine = info["train_labels"]
    closed = fine < 80
    assert data.num_classes == 80 and len(data.train) == N_TRAIN
    # test set: only classes 0..79
    np.testing.assert_array_equal(data.test.labels, [0, 5, 79, 42, 1])
    # open-set images: true label -1, a noisy label in 0..79, always counted as noisy
    assert (data.clean_labels[~closed] == -1).all()
    np.testing.assert_array_equal(data.clean_labels[closed], fine[closed])
    assert data.noisy_labels.min() >= 0 and data.noisy_labels.max() < 80
    assert data.is_noisy[~closed].all()
    # ACT sym noise: each closed-set image flipped with probability 0.4 (here 10 of 30), never to its own class
    np.testing.assert_array_equal(data.noisy_labels[closed], make_noisy_labels(
        fine[closed], mode="sym", ratio=0.4, num_classes=80, seed=0, convention="act"))
    assert int(data.is_noisy[closed].sum()) == 10
    np.testing.assert_array_equal(data.noisy_labels[~closed], open_set_labels(10, 0))
    assert data.noise_info["realised_noise_rate"] == pytest.approx(20 / 40)
    assert data.noise_info["closed_set_noise_rate"] == pytest.approx(10 / 30)
    assert data.noise_info["transition_matrix"].shape == (80, 80)


def test_deterministic_and_seeded(cifar100, tmp_path):
    root, _ = cifar100
    a = load(root, tmp_path)
    b = load(root, tmp_path)
    c = load(root, tmp_path, seed=3)
    np.testing.assert_array_equal(a.noisy_labels, b.noisy_labels)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_asymmetric_closed_set(cifar100, tmp_path):
    root, info = cifar100
    data = load(root, tmp_path, noise_mode="asym", noise_ratio=1.0)
    closed = info["train_labels"] < 80
    np.testing.assert_array_equal(data.noisy_labels[closed], (info["train_labels"][closed] + 1) % 80)


def test_real_noise_is_refused(cifar100, tmp_path):
    root, _ = cifar100
    with pytest.raises(ConfigError, match="cifar80"):
        load(root, tmp_path, noise_mode="real")


def test_wrong_event_histogram_with_open_set(cifar100, tmp_path, monkeypatch):
    """Every sample is in one bar, the 10 open-set images among the noisy ones (their true label is -1)."""
    import utils.report.plots

    root, _ = cifar100
    data = load(root, tmp_path)
    counts = np.arange(N_TRAIN) % 3
    drawn = {}

    def keep_bars(fig, path):
        drawn.update({c.get_label(): [round(bar.get_height()) for bar in c] for c in fig.axes[0].containers})
        return path

    monkeypatch.setattr(utils.report.plots, "save_figure", keep_bars)
    path = wrong_event_histogram(counts, str(tmp_path / "h.png"), is_noisy=data.is_noisy)
    assert path.endswith("h.png") and data.is_noisy[30:].all()
    noisy = data.is_noisy
    assert drawn == {"clean label": np.bincount(counts[~noisy], minlength=3).tolist(),
                     "noisy label": np.bincount(counts[noisy], minlength=3).tolist()}
    assert sum(drawn["clean label"]) + sum(drawn["noisy label"]) == N_TRAIN


@pytest.mark.slow
def test_stage1_and_stage2(cifar100, tmp_path):
    root, _ = cifar100
    first, second = run_both_stages("cifar80", root, str(tmp_path / "out"))
    assert first["tag"] == "test_resnet_scratch_cifar80_sym_0.2"
    assert len(second["test_acc"]) == 1 and second["auc"][0] is not None
