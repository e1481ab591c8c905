"""Tests for dataloader/noise.py (synthetic label noise + cache)."""

import json
import math
import os

import numpy as np
import pytest

from dataloader.noise import (
    _idn_labels,
    NoiseCacheCorrupt,
    NoiseCacheMismatch,
    asymmetric_map,
    load_or_create_noisy_labels,
    make_noisy_labels,
    realised_noise_rate,
    transition_matrix,
)


def _labels(n, c, seed=123):
    return np.random.default_rng(seed).integers(0, c, size=n)


def _features(n, d, seed=7):
    return np.random.default_rng(seed).integers(0, 256, size=(n, d), dtype=np.uint8)


# ---------------------------------------------------------------------------- asymmetric maps

def test_cifar100_ido_map_blocks_of_five():
    m = asymmetric_map("cifar100", 100, convention="ido")
    assert m.shape == (100,)
    assert m[0] == 1 and m[3] == 4 and m[4] == 0 and m[5] == 6 and m[9] == 5 and m[99] == 95
    y = np.arange(100)
    assert np.all(m // 5 == y // 5)  # stays in its block
    assert np.all(m != y)  # every class moves
    assert sorted(m.tolist()) == list(range(100))  # a permutation
    # applying the map 5 times is the identity (5-cycles)
    z = y.copy()
    for _ in range(5):
        z = m[z]
    assert np.array_equal(z, y)


def test_cifar10_standard_map():
    m = asymmetric_map("cifar10", 10, convention="ido")
    assert m.tolist() == [0, 1, 0, 5, 7, 3, 6, 7, 8, 1]


def test_other_dataset_and_act_maps_are_cyclic():
    assert asymmetric_map("tiny_imagenet", 200, convention="ido").tolist() == \
        [(i + 1) % 200 for i in range(200)]
    for ds, c in [("cifar100", 100), ("cifar10", 10), ("foo", 7)]:
        assert asymmetric_map(ds, c, convention="act").tolist() == [(i + 1) % c for i in range(c)]


# ---------------------------------------------------------------------------- sym

@pytest.mark.parametrize("mode", ["sym", "asym"])
@pytest.mark.parametrize("n,c,r", [(50000, 100, 0.2), (50000, 100, 0.8), (1000, 10, 0.4), (500, 3, 1.0)])
def test_act_flips_each_sample_with_probability_r(mode, n, c, r):
    """ACT draws every label from multinomial(P[y]): the flip count is Binomial(N, r), never keeping the
    true class (sym: uniform over the C-1 others; asym: y -> y+1 mod C)."""
    y = _labels(n, c)
    z = make_noisy_labels(y, mode=mode, ratio=r, num_classes=c, seed=0, convention="act", dataset="cifar100")
    assert z.dtype == np.int64 and z.shape == (n,) and z.min() >= 0 and z.max() < c
    changed = int((z != y).sum())
    assert abs(changed - r * n) <= 5 * math.sqrt(n * r * (1 - r))
    if mode == "asym":
        assert np.array_equal(z[z != y], (y[z != y] + 1) % c)
    if 0 < r < 1 and n >= 50000:
        assert changed != math.floor(r * n)  # not the ido convention's exact count


def test_act_flip_count_varies_like_a_binomial():
    """Over 300 seeds the count of flips of 100 samples at r = 0.4 has variance N r (1 - r) = 24
    (0 for an exact floor(rN) selection)."""
    y = _labels(100, 10)
    counts = np.array([(make_noisy_labels(y, mode="sym", ratio=0.4, num_classes=10, seed=s, convention="act")
                        != y).sum() for s in range(300)])
    assert abs(counts.mean() - 40) < 5 * math.sqrt(24 / 300)
    assert 24 * 0.7 < counts.var() < 24 * 1.35
    ido = {int((make_noisy_labels(y, mode="asym", ratio=0.4, num_classes=10, seed=s, dataset="foo") != y).sum())
           for s in range(20)}
    assert ido == {40}  # the ido convention keeps exactly floor(rN)


def test_act_cache_of_the_exact_rule_is_refused(tmp_path):
    y = _labels(200, 10)
    kw = dict(cache_dir=tmp_path, dataset="cifar10", mode="sym", ratio=0.4, seed=0, num_classes=10)
    _, info = load_or_create_noisy_labels(y, convention="act", **kw)
    with open(info["path"]) as f:
        payload = json.load(f)
    assert payload["selection"] == "per_sample"
    del payload["selection"]  # a file written before the act convention drew per sample
    with open(info["path"], "w") as f:
        json.dump(payload, f)
    with pytest.raises(NoiseCacheMismatch, match="another rule"):
        load_or_create_noisy_labels(y, convention="act", **kw)


@pytest.mark.parametrize("n,c,r", [(20000, 100, 0.4), (20000, 10, 0.2), (20000, 5, 0.6)])
def test_sym_ido_all_classes_never_c(n, c, r):
    y = _labels(n, c)
    z = make_noisy_labels(y, mode="sym", ratio=r, num_classes=c, seed=3, convention="ido")
    assert z.min() >= 0 and z.max() < c  # IDO-B2 fixed: never label C
    k = math.floor(r * n)
    changed = int((z != y).sum())
    assert changed <= k
    expected = k * (c - 1) / c
    sd = math.sqrt(k * (1 / c) * (1 - 1 / c))
    assert abs(changed - expected) < 5 * sd + 1
    # with C=5 a visible fraction keeps its true label: the draw covers all C classes
    if c == 5:
        assert changed < k


def test_sym_ido_selects_exactly_floor_rn():
    # With C=2 the selected set is recoverable only statistically; instead check via a label
    # array where one class is absent: every selected sample is uniform over C classes, so
    # the number of samples that end up in the absent class is ~k/C and never exceeds k.
    n, c, r = 10000, 4, 0.5
    y = np.zeros(n, dtype=np.int64)
    z = make_noisy_labels(y, mode="sym", ratio=r, num_classes=c, seed=11, convention="ido")
    k = math.floor(r * n)
    changed = int((z != 0).sum())
    assert changed <= k
    # changed ~ Binomial(k, 3/4)
    assert abs(changed - 0.75 * k) < 5 * math.sqrt(k * 0.75 * 0.25)
    counts = np.bincount(z[z != 0], minlength=c)[1:]
    assert counts.min() > 0.2 * k  # the three other classes are hit roughly equally (k/4 each)


# ---------------------------------------------------------------------------- asym

@pytest.mark.parametrize("convention", ["ido", "act"])
@pytest.mark.parametrize("dataset,c", [("cifar100", 100), ("cifar10", 10), ("tiny", 200)])
def test_asym_follows_map(dataset, c, convention):
    n, r = 20000, 0.4
    y = _labels(n, c)
    m = asymmetric_map(dataset, c, convention=convention)
    z = make_noisy_labels(y, mode="asym", ratio=r, num_classes=c, seed=5,
                          convention=convention, dataset=dataset)
    changed = z != y
    assert np.array_equal(z[changed], m[y[changed]])
    k = math.floor(r * n)
    if convention == "act":  # each sample flips with probability r
        assert abs(int(changed.sum()) - r * n) <= 5 * math.sqrt(n * r * (1 - r))
    elif np.all(m != np.arange(c)):
        assert int(changed.sum()) == k
    else:
        # cifar10 ido: classes 0,1,6,7,8 map to themselves; selected samples of moving
        # classes all change, so changed = #selected among moving classes.
        moving = m[y] != y
        assert int(changed.sum()) <= k
        frac = moving.mean()
        assert abs(changed.sum() - k * frac) < 5 * math.sqrt(k * frac * (1 - frac))


def test_asym_cifar100_ido_exact_count():
    n, r = 50000, 0.4
    y = np.repeat(np.arange(100), n // 100)
    z = make_noisy_labels(y, mode="asym", ratio=r, num_classes=100, seed=0, dataset="cifar100")
    assert int((z != y).sum()) == 20000
    assert realised_noise_rate(y, z) == pytest.approx(0.4)
    t = transition_matrix(y, z, 100)
    m = asymmetric_map("cifar100", 100, convention="ido")
    # mass only on the diagonal and the mapped class
    off = t.copy()
    off[np.arange(100), np.arange(100)] = 0
    off[np.arange(100), m] = 0
    assert off.max() == 0


# ---------------------------------------------------------------------------- idn

def test_idn_rate_and_range():
    n, c, d, r = 5000, 10, 48, 0.4
    y = _labels(n, c)
    x = _features(n, d)
    z = make_noisy_labels(y, mode="idn", ratio=r, num_classes=c, seed=1, features=x)
    assert z.dtype == np.int64 and z.shape == (n,)
    assert z.min() >= 0 and z.max() < c
    assert abs(realised_noise_rate(y, z) - r) < 0.05
    # instance dependent: the flips concentrate on a few classes per true class
    t = transition_matrix(y, z, c)
    assert np.allclose(np.diag(t), 1 - r, atol=0.1)


@pytest.mark.parametrize("r", [0.2, 0.6])
def test_idn_rate_other_ratios(r):
    n, c, d = 5000, 20, 30
    y = _labels(n, c)
    z = make_noisy_labels(y, mode="idn", ratio=r, num_classes=c, seed=2, features=_features(n, d))
    assert abs(realised_noise_rate(y, z) - r) < 0.05


def test_idn_accepts_float_features_and_huge_scores_stay_finite():
    n, c, d = 2000, 10, 3072
    y = _labels(n, c)
    x = _features(n, d).astype(np.float64)
    z = make_noisy_labels(y, mode="idn", ratio=0.4, num_classes=c, seed=1, features=x)
    assert z.min() >= 0 and z.max() < c
    assert abs(realised_noise_rate(y, z) - 0.4) < 0.05


def test_idn_feature_validation():
    y = _labels(100, 10)
    with pytest.raises(ValueError, match="features"):
        make_noisy_labels(y, mode="idn", ratio=0.4, num_classes=10, seed=0)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        make_noisy_labels(y, mode="idn", ratio=0.4, num_classes=10, seed=0,
                          features=np.zeros((99, 5)))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        make_noisy_labels(y, mode="idn", ratio=0.4, num_classes=10, seed=0,
                          features=np.zeros(100))


# ---------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("mode,conv", [("sym", "ido"), ("sym", "act"), ("asym", "ido"),
                                       ("idn", "ido")])
def test_seed_determinism(mode, conv):
    n, c = 3000, 10
    y = _labels(n, c)
    kw = dict(mode=mode, ratio=0.4, num_classes=c, convention=conv, dataset="cifar10",
              features=_features(n, 16) if mode == "idn" else None)
    a = make_noisy_labels(y, seed=0, **kw)
    b = make_noisy_labels(y, seed=0, **kw)
    other = make_noisy_labels(y, seed=1, **kw)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, other)


def test_global_rng_untouched():
    import random
    np.random.seed(42)
    random.seed(42)
    np_state = np.random.get_state()
    py_state = random.getstate()
    n, c = 2000, 10
    y = _labels(n, c)
    make_noisy_labels(y, mode="sym", ratio=0.5, num_classes=c, seed=0)
    make_noisy_labels(y, mode="sym", ratio=0.5, num_classes=c, seed=0, convention="act")
    make_noisy_labels(y, mode="asym", ratio=0.5, num_classes=c, seed=0, dataset="cifar10")
    make_noisy_labels(y, mode="idn", ratio=0.5, num_classes=c, seed=0, features=_features(n, 8))
    after = np.random.get_state()
    assert after[0] == np_state[0]
    assert np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


# ---------------------------------------------------------------------------- ratio 0 / validation

@pytest.mark.parametrize("mode", ["sym", "asym", "idn"])
def test_ratio_zero_identity(mode):
    y = _labels(500, 10)
    z = make_noisy_labels(y, mode=mode, ratio=0, num_classes=10, seed=0, dataset="cifar10")
    assert np.array_equal(z, y)
    assert z is not y and z.dtype == np.int64
    z[0] = (z[0] + 1) % 10
    assert not np.array_equal(z, y)  # a copy, not a view


def test_bad_arguments():
    y = _labels(100, 10)
    with pytest.raises(ValueError, match="noise mode"):
        make_noisy_labels(y, mode="pair", ratio=0.4, num_classes=10, seed=0)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        make_noisy_labels(y, mode="sym", ratio=1.5, num_classes=10, seed=0)
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        make_noisy_labels(y, mode="sym", ratio=-0.1, num_classes=10, seed=0)
    with pytest.raises(ValueError, match="convention"):
        make_noisy_labels(y, mode="sym", ratio=0.4, num_classes=10, seed=0, convention="x")
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        make_noisy_labels(y, mode="sym", ratio=0.4, num_classes=5, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        make_noisy_labels(np.array([-1, 2]), mode="sym", ratio=0.4, num_classes=10, seed=0)
    with pytest.raises(TypeError):
        make_noisy_labels(y, "sym", 0.4, 10, 0)  # keyword-only


# ---------------------------------------------------------------------------- diagnostics

def test_transition_matrix_rows():
    y = _labels(5000, 10)
    z = make_noisy_labels(y, mode="sym", ratio=0.5, num_classes=10, seed=0)
    t = transition_matrix(y, z, 10)
    assert t.shape == (10, 10) and t.dtype == np.float64
    assert np.allclose(t.sum(axis=1), 1.0)
    # an empty class gives a zero row
    y2 = np.array([0, 0, 1, 1])
    t2 = transition_matrix(y2, np.array([0, 1, 1, 1]), 3)
    assert np.allclose(t2, [[0.5, 0.5, 0], [0, 1, 0], [0, 0, 0]])
    assert realised_noise_rate(y2, np.array([0, 1, 1, 1])) == pytest.approx(0.25)


# ---------------------------------------------------------------------------- cache

def _cache_kw(tmp_path, **over):
    kw = dict(cache_dir=str(tmp_path / "noise_file"), dataset="cifar10", mode="sym", ratio=0.4,
              seed=0, convention="ido", num_classes=10)
    kw.update(over)
    return kw


def test_cache_create_then_reuse(tmp_path):
    y = _labels(2000, 10)
    x = _features(2000, 12)
    calls = []

    def feats():
        calls.append(1)
        return x

    lines = []
    z1, info1 = load_or_create_noisy_labels(y, features=feats, log=lines.append,
                                            **_cache_kw(tmp_path, mode="idn"))
    assert calls == [1] and info1["reused"] is False
    path = info1["path"]
    assert os.path.basename(path) == "cifar10_idn_0.4_seed0_ido.json"
    assert os.path.isfile(path)
    with open(path) as fh:
        data = json.load(fh)
    assert set(data) == {"dataset", "mode", "ratio", "seed", "convention", "selection", "num_samples",
                         "clean_labels_sha256", "realised_noise_rate", "transition_matrix",
                         "noisy_labels"}
    assert data["noisy_labels"] == z1.tolist() and data["num_samples"] == 2000
    assert np.array_equal(
        z1, make_noisy_labels(y, mode="idn", ratio=0.4, num_classes=10, seed=0, features=x))
    assert len(lines) == 1 and "realised noise rate" in lines[0] and "generated" in lines[0]

    # tamper with the labels in the file: a reuse must return the file's content, not regenerate
    data["noisy_labels"][0] = (data["noisy_labels"][0] + 1) % 10
    with open(path, "w") as fh:
        json.dump(data, fh)
    mtime = os.stat(path).st_mtime_ns
    z2, info2 = load_or_create_noisy_labels(y, features=feats, log=lines.append,
                                            **_cache_kw(tmp_path, mode="idn"))
    assert calls == [1]  # features callable not called on reuse
    assert info2["reused"] is True
    assert z2[0] == data["noisy_labels"][0] and np.array_equal(z2[1:], z1[1:])
    assert os.stat(path).st_mtime_ns == mtime  # not rewritten
    assert "reused" in lines[1]
    assert info2["realised_noise_rate"] == pytest.approx(realised_noise_rate(y, z2))
    assert info2["transition_matrix"].shape == (10, 10)


def test_cache_mismatch_raises(tmp_path):
    y = _labels(1000, 10)
    _, info = load_or_create_noisy_labels(y, **_cache_kw(tmp_path))
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 10
    with pytest.raises(NoiseCacheMismatch) as exc:
        load_or_create_noisy_labels(y2, **_cache_kw(tmp_path))
    assert info["path"] in str(exc.value)
    assert "delete" in str(exc.value)
    assert isinstance(exc.value, ValueError)
    with pytest.raises(NoiseCacheMismatch):
        load_or_create_noisy_labels(y[:500], **_cache_kw(tmp_path))


def test_cache_corrupt_file(tmp_path):
    kw = _cache_kw(tmp_path)
    os.makedirs(kw["cache_dir"])
    path = os.path.join(kw["cache_dir"], "cifar10_sym_0.4_seed0_ido.json")
    with open(path, "w") as fh:
        fh.write("{not json")
    with pytest.raises(NoiseCacheCorrupt) as exc:
        load_or_create_noisy_labels(_labels(100, 10), **kw)
    assert path in str(exc.value)


def test_cache_atomic_no_temp_files_and_distinct_names(tmp_path):
    y = _labels(1000, 10)
    for mode in ["sym", "asym"]:
        for conv in ["ido", "act"]:
            for seed in [0, 1]:
                load_or_create_noisy_labels(y, **_cache_kw(tmp_path, mode=mode, convention=conv,
                                                          seed=seed))
    files = sorted(os.listdir(tmp_path / "noise_file"))
    assert len(files) == 8
    assert all(f.endswith(".json") and not f.startswith(".") for f in files)
    for f in files:
        with open(tmp_path / "noise_file" / f) as fh:
            d = json.load(fh)
        t = np.array(d["transition_matrix"])
        assert t.shape == (10, 10)
        assert np.allclose(t.sum(axis=1), 1.0, atol=1e-5)


def test_cache_write_failure_leaves_no_temp(tmp_path, monkeypatch):
    import dataloader.noise as noise_mod

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(noise_mod.os, "replace", boom)
    with pytest.raises(OSError):
        load_or_create_noisy_labels(_labels(100, 10), **_cache_kw(tmp_path))
    assert os.listdir(tmp_path / "noise_file") == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_cache_file_gets_the_mode_of_a_plain_open(tmp_path, umask):
    """Not mkstemp's 0600: colleagues sharing a noise_dir read the file when the umask lets them."""
    old = os.umask(umask)
    try:
        _, info = load_or_create_noisy_labels(_labels(100, 10), **_cache_kw(tmp_path))
    finally:
        os.umask(old)
    assert os.stat(info["path"]).st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------------------- memory of idn

def test_idn_draws_one_class_of_weights_at_a_time():
    """The projection W (C, D, C) of part-dependent noise is drawn class by class: C draws of (D, C), never the
    whole tensor (CIFAR-100, D = 3072, float32: 1.2 MB per draw instead of 123 MB); the labels are those of the
    plain generator.  Time and peak memory at scale: benchmarks/scale.py ("idn noise")."""
    draws = []

    class RecordingGenerator(np.random.Generator):
        def standard_normal(self, size=None, *args, **kwargs):
            draws.append(size)
            return super().standard_normal(size, *args, **kwargs)

    n, d, c = 600, 12, 7
    y = _labels(n, c)
    y[y == 3] = 4  # an absent class draws its weights too: the labels of the others do not depend on it
    x = _features(n, d)
    recorded = _idn_labels(RecordingGenerator(np.random.PCG64(5)), y, 0.4, c, x)
    assert draws == [(d, c)] * c
    np.testing.assert_array_equal(recorded, _idn_labels(np.random.default_rng(5), y, 0.4, c, x))


# sha256 of the cache files the generator wrote before the scale work (commit ca0a234): the benchmark
# documents and every earlier run depend on these exact labels
NOISE_FILE_SHA256 = {
    ("digits", "idn", 0.4, "ido"): "978d553a2d1a19d36c46ac75acdff3c0fe1bb1768a87d39db3c33e8ef16f52ca",
    ("digits", "sym", 0.4, "ido"): "f58e484f079f10e039532b480ba6522bc63765a5fda8c24a3a146f28fd6d4751",
    ("cifar100", "idn", 0.2, "act"): "cb74e17cdfe5b1cde3280be192e9680a85aceeee9feed5f67eb6fd7ed9eec6e5",
    ("cifar100", "asym", 0.4, "ido"): "567afa04da4d5f1c0ccd5e6d1f19447750aa3e6d9a56b36e45365c12a1ff0d26",
    ("cifar100", "sym", 0.2, "act"): "0c6c6f2cdb9f89abbf93dda7014be312985419d1195e4cabd8031f2581c406c8",
}


@pytest.mark.parametrize("key", sorted(NOISE_FILE_SHA256))
def test_noise_files_of_existing_settings_are_byte_identical(tmp_path, key):
    import hashlib

    from sklearn.datasets import load_digits

    name, mode, ratio, convention = key
    if name == "digits":
        d = load_digits()
        labels, feats, c = d.target, (d.images.reshape(len(d.target), -1) * 16).astype(np.uint8), 10
    else:
        rng = np.random.default_rng(0)
        labels, feats, c = rng.integers(0, 100, 5000), rng.integers(0, 256, (5000, 48)).astype(np.uint8), 100
    _, info = load_or_create_noisy_labels(labels, cache_dir=str(tmp_path), dataset=name, mode=mode, ratio=ratio,
                                          seed=1, convention=convention, num_classes=c, features=feats)
    assert hashlib.sha256(open(info["path"], "rb").read()).hexdigest() == NOISE_FILE_SHA256[key]


def test_idn_too_large_is_refused_before_any_pixel_is_read(tmp_path):
    from dataloader.noise import IDN_MAX_SAMPLES_X_CLASSES, IdnTooLarge

    def pixels():
        raise AssertionError("the pixels must not be read")
    n = IDN_MAX_SAMPLES_X_CLASSES // 1000 + 1
    labels = np.arange(n) % 1000
    with pytest.raises(IdnTooLarge) as err:
        load_or_create_noisy_labels(labels, cache_dir=str(tmp_path), dataset="own", mode="idn", ratio=0.2, seed=1,
                                    convention="ido", num_classes=1000, features=pixels)
    msg = str(err.value)
    assert "\n" not in msg and f"{n:,} samples x 1,000 classes" in msg and "use noise_mode sym or asym" in msg
    assert not list(tmp_path.iterdir())  # nothing written
    # sym at the same size is fine (and needs no pixels)
    noisy, _ = load_or_create_noisy_labels(labels, cache_dir=str(tmp_path), dataset="own", mode="sym", ratio=0.2,
                                           seed=1, convention="ido", num_classes=1000, features=pixels)
    assert (noisy != labels).mean() == pytest.approx(0.2 * 0.999, abs=0.01)
