"""Tests for utils/method/bmm.py (beta mixture on wrong-event counts, docs/fidelity.md#ido-15-beta-mixture, #ido-18-class-wise-bmm, fixes IDO-B5, IDO-B8)."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

from utils.method.bmm import BetaMixture, BmmLookup, em_steps
from utils.method.losses import loss_weights

EPS = 1e-6

# Histogram of the shipped stage-1 wrong-event file (docs/fidelity.md#ido-6-shipped-wrong-events).
SHIPPED_HIST = {0: 9963, 1: 9469, 2: 6097, 3: 4579, 4: 5578, 5: 14314}


def shipped_counts():
    return np.concatenate([np.full(n, w, dtype=np.int32) for w, n in SHIPPED_HIST.items()])


def sample_mixture(rng, n, pi_clean, clean_ab, noisy_ab):
    is_clean = rng.random(n) < pi_clean
    u = np.where(is_clean, rng.beta(*clean_ab, size=n), rng.beta(*noisy_ab, size=n))
    return np.clip(u, EPS, 1 - EPS)


def naive_em(counts, max_iter, alpha=None, beta=None, pi=None):
    """Straight per-sample transcription of docs/fidelity.md#ido-15-beta-mixture (no histogram), one group."""
    w = counts.astype(np.float64)
    m, mx = w.min(), w.max()
    u = np.full_like(w, 0.5) if mx == m else (w - m) / (mx - m) * (1 - 2 * EPS) + EPS
    alpha = np.array([1.0, 2.0]) if alpha is None else alpha.copy()
    beta = np.array([2.0, 1.0]) if beta is None else beta.copy()
    pi = np.array([0.5, 0.5]) if pi is None else pi.copy()
    for _ in range(max_iter):
        lik = np.stack([pi[k] * stats.beta.pdf(u, alpha[k], beta[k]) for k in range(2)])  # (2, N)
        lik[lik <= EPS] = EPS
        r = lik / (lik.sum(0) + EPS)
        for k in range(2):
            mu = np.sum(r[k] * u) / (np.sum(r[k]) + EPS)
            var = max(np.sum(r[k] * (u - mu) ** 2) / (np.sum(r[k]) + EPS), EPS)
            a = mu * (mu * (1 - mu) / var - 1)
            b = a * (1 - mu) / mu
            alpha[k], beta[k] = max(a, EPS), max(b, EPS)
        if beta[0] < 1.02:
            beta[0] = 1.1
        if alpha[1] < 1.02:
            alpha[1] = 1.1
        pi = r.sum(1) / r.sum()
    return alpha, beta, pi


def scipy_reference(bmm, counts, groups):
    """Evaluate posteriors/CDFs directly from the stored parameters with scipy (clipped u)."""
    counts = np.asarray(counts)
    groups = np.asarray(groups)
    m = bmm.min_count[groups].astype(float)
    mx = bmm.max_count[groups].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (counts - m) / (mx - m) * (1 - 2 * EPS) + EPS
    u = np.where(mx == m, 0.5, np.clip(u, EPS, 1 - EPS))
    a, b, p = bmm.alpha[groups], bmm.beta[groups], bmm.pi[groups]
    num = np.stack([p[:, k] * stats.beta.pdf(u, a[:, k], b[:, k]) for k in range(2)], 1)
    post = num / (num.sum(1, keepdims=True) + EPS)
    cdf = np.stack([stats.beta.cdf(u, a[:, k], b[:, k]) for k in range(2)], 1)
    return np.stack([post[:, 0], post[:, 1], cdf[:, 0], cdf[:, 1]], 1)


# ------------------------------------------------------------------------------------------------
# parameter recovery
# ------------------------------------------------------------------------------------------------
def test_em_core_recovers_continuous_mixture():
    rng = np.random.default_rng(0)
    u = sample_mixture(rng, 20000, 0.65, (1.5, 6.0), (6.0, 1.5))
    alpha, beta, pi = em_steps(u, np.ones_like(u), np.zeros(u.size, dtype=np.int64),
                               alpha=np.array([[1.0, 2.0]]), beta=np.array([[2.0, 1.0]]),
                               pi=np.array([[0.5, 0.5]]), max_iter=100)
    np.testing.assert_allclose(pi[0], [0.65, 0.35], atol=0.02)
    np.testing.assert_allclose(alpha[0], [1.5, 6.0], rtol=0.1)
    np.testing.assert_allclose(beta[0], [6.0, 1.5], rtol=0.1)


@pytest.mark.parametrize("pi_clean,clean_ab,noisy_ab", [
    (0.65, (1.5, 6.0), (6.0, 1.5)),
    (0.6, (0.8, 4.0), (5.0, 1.2)),
])
def test_fit_recovers_finely_quantised_mixture(pi_clean, clean_ab, noisy_ab):
    rng = np.random.default_rng(1)
    u = sample_mixture(rng, 100000, pi_clean, clean_ab, noisy_ab)
    counts = np.round(u * 1000).astype(np.int64)
    bmm = BetaMixture().fit(counts, max_iter=200)
    np.testing.assert_allclose(bmm.pi[0], [pi_clean, 1 - pi_clean], atol=0.02)
    np.testing.assert_allclose(bmm.alpha[0], [clean_ab[0], noisy_ab[0]], rtol=0.1)
    np.testing.assert_allclose(bmm.beta[0], [clean_ab[1], noisy_ab[1]], rtol=0.1)
    # component 0 is the clean (low) one
    mean = bmm.alpha[0] / (bmm.alpha[0] + bmm.beta[0])
    assert mean[0] < 0.3 < 0.7 < mean[1]
    out = bmm.evaluate([0, 1000])
    assert out["clean_posterior"][0] > 0.99 and out["noisy_posterior"][1] > 0.99


def test_shipped_histogram_regression():
    """docs/fidelity.md#ido-15-beta-mixture fitted example (20 EM iterations on the shipped stage-1 histogram)."""
    bmm = BetaMixture().fit(shipped_counts(), max_iter=20)
    np.testing.assert_allclose(bmm.pi[0], [0.610, 0.390], atol=2e-3)
    np.testing.assert_allclose(bmm.alpha[0], [0.531, 1.203], atol=2e-3)
    np.testing.assert_allclose(bmm.beta[0], [1.430, 0.130], atol=2e-3)
    assert (bmm.min_count[0], bmm.max_count[0]) == (0, 5)
    out = bmm.evaluate(np.arange(6))
    np.testing.assert_allclose(out["clean_posterior"][:5], [1.000, 0.945, 0.881, 0.768, 0.526],
                               atol=2e-3)
    np.testing.assert_allclose(out["clean_cdf"], [0.001, 0.516, 0.720, 0.857, 0.951, 1.000], atol=2e-3)
    np.testing.assert_allclose(out["noisy_cdf"], [0.000, 0.018, 0.047, 0.090, 0.164, 0.828], atol=2e-3)
    # w = 5 is the fitted maximum: u = 1*(1-2eps)+eps = 1-eps, which is exactly the IDO-B5 clip bound, so
    # clipping changes nothing here and tau1 ~ 0 (noisy pdf with beta2 = 0.13 dominates at u -> 1);
    # unlike the unclipped official code, tau1 + tau2 = 1 there (tau2 ~ 1), not 0 + 0.
    assert out["clean_posterior"][5] < 1e-3
    assert out["noisy_posterior"][5] > 0.999
    sim = out["clean_posterior"] * out["clean_cdf"] + (1 - out["noisy_posterior"]) * (1 - out["noisy_cdf"])
    np.testing.assert_allclose(sim, [1.00, 1.41, 1.47, 1.36, 0.94, 0.00], atol=6e-3)
    frac = (bmm.evaluate(shipped_counts())["clean_posterior"] > 0.5).mean()
    assert abs(frac - 0.71) < 0.01


# ------------------------------------------------------------------------------------------------
# exactness of the vectorised / histogram implementation
# ------------------------------------------------------------------------------------------------
def test_histogram_em_equals_naive_per_sample_em():
    rng = np.random.default_rng(2)
    counts = np.concatenate([rng.binomial(12, 0.15, 3000), rng.binomial(12, 0.8, 1500)])
    rng.shuffle(counts)
    bmm = BetaMixture().fit(counts, max_iter=10)
    alpha, beta, pi = naive_em(counts, 10)
    np.testing.assert_allclose(bmm.alpha[0], alpha, rtol=1e-9)
    np.testing.assert_allclose(bmm.beta[0], beta, rtol=1e-9)
    np.testing.assert_allclose(bmm.pi[0], pi, rtol=1e-9)
    # warm-started second fit on shifted counts (new min/max) also matches
    counts2 = counts + rng.integers(0, 3, counts.size)
    bmm.fit(counts2, max_iter=3)
    alpha, beta, pi = naive_em(counts2, 3, alpha, beta, pi)
    np.testing.assert_allclose(bmm.alpha[0], alpha, rtol=1e-9)
    np.testing.assert_allclose(bmm.beta[0], beta, rtol=1e-9)
    np.testing.assert_allclose(bmm.pi[0], pi, rtol=1e-9)


def test_classwise_fit_equals_separate_fits():
    rng = np.random.default_rng(3)
    num_classes = 7
    groups = rng.integers(0, num_classes, 6000)
    p = rng.uniform(0.1, 0.6, num_classes)
    counts = rng.binomial(10 + groups, p[groups])  # different range and shape per class
    bump = rng.random(counts.size) < 0.3
    joint = BetaMixture(num_groups=num_classes).fit(counts, groups=groups, max_iter=20)
    joint.fit(counts + bump, groups=groups, max_iter=2)
    table = joint.lookup_table(30)
    for c in range(num_classes):
        sel = groups == c
        alone = BetaMixture().fit(counts[sel], max_iter=20)
        alone.fit(counts[sel] + bump[sel], max_iter=2)
        np.testing.assert_allclose(joint.alpha[c], alone.alpha[0], rtol=1e-10)
        np.testing.assert_allclose(joint.beta[c], alone.beta[0], rtol=1e-10)
        np.testing.assert_allclose(joint.pi[c], alone.pi[0], rtol=1e-10)
        assert joint.min_count[c] == alone.min_count[0] and joint.max_count[c] == alone.max_count[0]
        np.testing.assert_allclose(table[c], alone.lookup_table(30)[0], rtol=1e-6, atol=1e-7)


def test_warm_start_two_single_iterations_equal_one_double():
    counts = shipped_counts()
    a = BetaMixture().fit(counts, max_iter=1).fit(counts, max_iter=1)
    b = BetaMixture().fit(counts, max_iter=2)
    np.testing.assert_allclose(a.alpha, b.alpha, rtol=1e-12)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-12)
    np.testing.assert_allclose(a.pi, b.pi, rtol=1e-12)
    # and the parameters did move away from the initialisation
    assert not np.allclose(b.alpha, [[1.0, 2.0]])


def test_max_iter_zero_only_updates_normalisation():
    bmm = BetaMixture().fit([3, 4, 9], max_iter=0)
    np.testing.assert_array_equal(bmm.alpha, [[1.0, 2.0]])
    np.testing.assert_array_equal(bmm.beta, [[2.0, 1.0]])
    assert (bmm.min_count[0], bmm.max_count[0]) == (3, 9)


# ------------------------------------------------------------------------------------------------
# evaluation, clipping, lookup table
# ------------------------------------------------------------------------------------------------
def test_posteriors_in_unit_interval_and_sum_to_one():
    bmm = BetaMixture().fit(shipped_counts(), max_iter=20)
    out = bmm.evaluate(np.arange(0, 6))
    for key in ("clean_posterior", "noisy_posterior", "clean_cdf", "noisy_cdf"):
        assert out[key].dtype == np.float64
        assert np.all((out[key] >= 0) & (out[key] <= 1)), key
    np.testing.assert_allclose(out["clean_posterior"] + out["noisy_posterior"], 1.0, atol=1e-5)
    assert np.all(np.diff(out["clean_posterior"]) < 0)  # monotone: more wrong events, less clean


def test_counts_above_fitted_max_are_clipped():
    bmm = BetaMixture().fit(shipped_counts(), max_iter=20)
    u = bmm.normalise([0, 5, 6, 7, 100])
    np.testing.assert_allclose(u, [EPS, 1 - EPS, 1 - EPS, 1 - EPS, 1 - EPS])
    out = bmm.evaluate([5, 6, 7, 100])
    for key, val in out.items():
        np.testing.assert_array_equal(val, np.full(4, val[0]), err_msg=key)
    # not the official out-of-support behaviour (tau1 = tau2 = 0, F = 1)
    assert out["noisy_posterior"][1] > 0.99
    assert out["noisy_cdf"][1] < 0.9


def test_lookup_table_equals_scipy():
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 3, 3000)
    counts = rng.binomial(8 + 2 * groups, 0.3 + 0.1 * groups)
    bmm = BetaMixture(num_groups=3).fit(counts, groups=groups, max_iter=20)
    max_count = 40  # beyond every fitted max -> exercises clipping
    table = bmm.lookup_table(max_count)
    assert table.shape == (3, max_count + 1, 4) and table.dtype == np.float32
    g = np.repeat(np.arange(3), max_count + 1)
    w = np.tile(np.arange(max_count + 1), 3)
    ref = scipy_reference(bmm, w, g).reshape(3, max_count + 1, 4)
    np.testing.assert_allclose(table, ref, rtol=1e-5, atol=1e-6)
    ev = bmm.evaluate(w, g)
    ev = np.stack([ev["clean_posterior"], ev["noisy_posterior"], ev["clean_cdf"], ev["noisy_cdf"]], 1)
    np.testing.assert_allclose(ev, ref.reshape(-1, 4), rtol=1e-12, atol=1e-15)


def test_degenerate_and_empty_groups_no_nan():
    # group 0: all zero, 1: all equal (4), 2: single sample, 3: empty, 4: normal
    counts = np.array([0] * 50 + [4] * 30 + [2] + [0, 1, 2, 3, 5, 5, 5, 1, 0, 2])
    groups = np.array([0] * 50 + [1] * 30 + [2] + [4] * 10)
    bmm = BetaMixture(num_groups=5).fit(counts, groups=groups, max_iter=20)
    bmm.fit(counts, groups=groups, max_iter=2)
    for arr in (bmm.alpha, bmm.beta, bmm.pi):
        assert np.all(np.isfinite(arr))
    # empty group keeps its initial parameters and gets min = max = 0
    np.testing.assert_array_equal(bmm.alpha[3], [1.0, 2.0])
    np.testing.assert_array_equal(bmm.beta[3], [2.0, 1.0])
    np.testing.assert_array_equal(bmm.pi[3], [0.5, 0.5])
    assert bmm.min_count[3] == 0 and bmm.max_count[3] == 0
    np.testing.assert_array_equal(bmm.min_count, [0, 4, 2, 0, 0])
    np.testing.assert_array_equal(bmm.max_count, [0, 4, 2, 0, 5])
    # degenerate groups still run the faithful EM on u = 0.5 (variance floored at eps -> very large,
    # equal alpha/beta), identical to the per-sample transcription (20 + 2 warm-started iterations)
    for grp in (0, 1, 2, 4):
        alpha, beta, pi = naive_em(counts[groups == grp], 22)
        np.testing.assert_allclose(bmm.alpha[grp], alpha, rtol=1e-9)
        np.testing.assert_allclose(bmm.beta[grp], beta, rtol=1e-9)
        np.testing.assert_allclose(bmm.pi[grp], pi, rtol=1e-9)
    # degenerate groups map every count to u = 0.5
    np.testing.assert_array_equal(bmm.normalise([0, 7, 4, 9, 2, 0, 3], [0, 0, 1, 1, 2, 3, 3]), 0.5)
    w = np.arange(12)
    for grp in range(5):
        out = bmm.evaluate(w, np.full(w.size, grp))
        for key, val in out.items():
            assert np.all(np.isfinite(val)), (grp, key)
            assert np.all((val >= 0) & (val <= 1)), (grp, key)
    assert np.all(np.isfinite(bmm.lookup_table(20)))
    # global BMM on all-zero counts (M = 0): u = 0.5, no NaN
    z = BetaMixture().fit(np.zeros(100, dtype=np.int64), max_iter=20)
    assert np.all(np.isfinite(z.lookup_table(5)))


def test_state_dict_round_trip_and_describe():
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 4, 2000)
    counts = rng.binomial(10, 0.2 + 0.15 * groups)
    bmm = BetaMixture(num_groups=4).fit(counts, groups=groups, max_iter=20)
    state = json.loads(json.dumps(bmm.state_dict()))
    other = BetaMixture(num_groups=4)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.alpha, bmm.alpha)
    np.testing.assert_array_equal(other.beta, bmm.beta)
    np.testing.assert_array_equal(other.pi, bmm.pi)
    np.testing.assert_array_equal(other.min_count, bmm.min_count)
    np.testing.assert_array_equal(other.max_count, bmm.max_count)
    np.testing.assert_array_equal(other.lookup_table(15), bmm.lookup_table(15))
    # warm start continues identically after a round trip
    bmm.fit(counts + 1, groups=groups, max_iter=2)
    other.fit(counts + 1, groups=groups, max_iter=2)
    np.testing.assert_array_equal(other.alpha, bmm.alpha)
    with pytest.raises(ValueError, match="num_groups"):
        BetaMixture(num_groups=3).load_state_dict(state)
    desc = bmm.describe()
    assert len(desc) == 4 and set(desc[0]) == {"pi", "alpha", "beta", "min", "max"}
    json.dumps(desc)
    assert desc[2]["alpha"] == bmm.alpha[2].tolist() and isinstance(desc[2]["max"], int)


def test_input_validation():
    bmm = BetaMixture(num_groups=3)
    with pytest.raises(ValueError, match=">= 0"):
        bmm.fit(np.array([1, -1, 2]), groups=np.array([0, 1, 2]), max_iter=1)
    with pytest.raises(ValueError, match=r"groups must lie in \[0, 3\)"):
        bmm.fit(np.array([1, 1, 2]), groups=np.array([0, 1, 3]), max_iter=1)
    with pytest.raises(ValueError, match="entries but counts has"):
        bmm.fit(np.array([1, 1, 2]), groups=np.array([0, 1]), max_iter=1)
    with pytest.raises(ValueError, match="max_iter"):
        bmm.fit(np.array([1, 1, 2]), groups=np.array([0, 1, 2]), max_iter=-1)
    with pytest.raises(ValueError, match="groups is required"):
        bmm.fit(np.array([1, 1, 2]), max_iter=1)
    with pytest.raises(ValueError, match="1-D"):
        BetaMixture().fit(np.zeros((2, 2), dtype=int), max_iter=1)
    with pytest.raises(ValueError, match="integer"):
        BetaMixture().fit(np.array([0.5, 1.0]), max_iter=1)
    with pytest.raises(ValueError, match=">= 0"):
        BetaMixture().evaluate([-3])
    with pytest.raises(ValueError, match="num_groups"):
        BetaMixture(num_groups=0)


# ------------------------------------------------------------------------------------------------
# torch lookup
# ------------------------------------------------------------------------------------------------
def _lookup_fixture():
    rng = np.random.default_rng(6)
    groups = rng.integers(0, 3, 3000)
    counts = rng.binomial(6 + 2 * groups, 0.4)
    bmm = BetaMixture(num_groups=3).fit(counts, groups=groups, max_iter=20)
    return bmm, bmm.lookup_table(20)


def test_bmm_lookup_matches_table_and_clamps():
    bmm, table = _lookup_fixture()
    lookup = BmmLookup(table, device="cpu")
    counts = torch.tensor([0, 3, 7, 20, 21, 500, 2, 5])
    groups = torch.tensor([0, 1, 2, 2, 2, 1, 2, 0])
    out = lookup(counts, groups)
    assert out.shape == (4, 8)
    for col, t in enumerate(out):
        assert t.shape == (8,) and t.dtype == torch.float32
        expected = table[groups.numpy(), np.minimum(counts.numpy(), 20), col]
        np.testing.assert_array_equal(t.numpy(), expected)
    # beyond the last row == last row, and group indexing picks that group's row
    for t in out:
        assert t[4] == t[3]
    assert out[0][5].item() == table[1, 20, 0]
    assert out[0][6].item() == table[2, 2, 0] and table[2, 2, 0] != table[0, 2, 0]
    # and equal to the float64 reference
    ev = bmm.evaluate(np.minimum(counts.numpy(), 20), groups.numpy())
    np.testing.assert_allclose(out[0].numpy(), ev["clean_posterior"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out[3].numpy(), ev["noisy_cdf"], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="groups is required"):
        lookup(counts)
    with pytest.raises(ValueError, match=r"table must have shape \(G, K, R\) with G, K, R >= 1, got \(5, 4\)"):
        BmmLookup(np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"got \(1, 5, 0\)"):
        BmmLookup(np.zeros((1, 5, 0)))


def test_lookup_of_a_global_mixture_needs_no_groups():
    bmm = BetaMixture().fit(shipped_counts(), max_iter=20)
    lookup = BmmLookup(bmm.lookup_table(7), device="cpu")
    tau1, tau2, f1, f2 = lookup(torch.arange(10))
    ev = bmm.evaluate(np.minimum(np.arange(10), 7))
    np.testing.assert_allclose(tau1.numpy(), ev["clean_posterior"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(f2.numpy(), ev["noisy_cdf"], rtol=1e-6, atol=1e-7)
    assert torch.equal(tau2[7:], tau2[5].expand(3))  # 5 = fitted max, 6..9 clipped to it


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bmm_lookup_on_cuda():
    _, table = _lookup_fixture()
    lookup = BmmLookup(table, device="cuda")
    counts = torch.tensor([0, 3, 30], device="cuda")
    groups = torch.tensor([2, 1, 0], device="cuda")
    out = lookup(counts, groups)
    assert out[0].device.type == "cuda"
    np.testing.assert_array_equal(out[2].cpu().numpy(), table[[2, 1, 0], [0, 3, 20], 2])


def test_bmm_lookup_without_clamp_reads_the_same_rows():
    _, table = _lookup_fixture()
    counts = torch.tensor([0, 3, 7, 20, 19, 2])
    groups = torch.tensor([0, 1, 2, 2, 1, 0])
    clamped = BmmLookup(table, device="cpu")(counts, groups)
    unclamped = BmmLookup(table, device="cpu", clamp=False)(counts, groups)
    for a, b in zip(clamped, unclamped):
        assert torch.equal(a, b)


@pytest.mark.parametrize("class_wise, noisy_weight", [(False, "one_minus_clean"), (True, "one_minus_clean"),
                                                     (True, "noisy_posterior")])
def test_stage2_weights_cover_every_live_count_of_an_epoch(class_wise, noisy_weight):
    """The lookup has no clamp: every count WrongEvents.record can return before the next refit
    (the fitted counts + one event per view, even for a sample seen twice) must have its own row."""
    from utils.method.sample_weights import SampleWeights
    from utils.method.steps import VIEWS
    from utils.method.wrong_events import WrongEvents

    rng = np.random.default_rng(3)
    n, classes = 600, 3
    labels = rng.integers(0, classes, n)
    counts = rng.binomial(8, 0.3, n)
    weights = SampleWeights(class_wise=class_wise, noisy_labels=labels, num_classes=classes, device="cpu",
                            new_events=VIEWS, noisy_weight=noisy_weight)
    weights.fit(counts, iterations=10)
    assert weights.lookup.max_count == counts.max() + VIEWS and not weights.lookup.clamp

    wrong_events = WrongEvents(n, device="cpu", initial=torch.as_tensor(counts))
    index = torch.arange(n)
    label_t = torch.as_tensor(labels)
    wrong = (label_t + 1) % classes
    for _ in range(2):  # the same samples twice in one epoch (a padded distributed sampler)
        live = wrong_events.record(index, *([wrong] * VIEWS), labels=label_t)
    assert torch.equal(live, torch.as_tensor(counts + VIEWS, dtype=live.dtype))
    got = weights(live, index)
    assert got.shape == (3, n) and got.dtype == torch.float32
    bmm_outputs = {k: torch.as_tensor(v) for k, v in weights.bmm.evaluate(live.numpy(), labels if class_wise
                                                                             else None).items()}
    expected = loss_weights(**bmm_outputs, noisy_weight=noisy_weight)  # float64 reference, per sample
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="new_events must be >= 0"):
        SampleWeights(class_wise=False, noisy_labels=labels, num_classes=classes, device="cpu", new_events=-1)


@pytest.mark.parametrize("class_wise", [False, True])
@pytest.mark.parametrize("truth", ["mixed", "none", "all_noisy"])
def test_stage2_detection_from_pairs_equals_the_per_sample_metrics(class_wise, truth):
    # the per-epoch detection() works on the distinct (class, count) pairs: it must give exactly the
    # numbers of roc_auc_score and split_quality over the N samples
    from sklearn.metrics import roc_auc_score

    from utils.method.sample_weights import SampleWeights
    from utils.method.metrics import split_quality

    rng = np.random.default_rng(4)
    n, c = 3000, 7
    labels = rng.integers(0, c, n)
    is_noisy = {"mixed": rng.random(n) < 0.3, "none": None, "all_noisy": np.ones(n, bool)}[truth]
    counts = rng.integers(0, 12, n) + (8 * is_noisy if truth == "mixed" else 0)
    weights = SampleWeights(class_wise=class_wise, noisy_labels=labels, num_classes=c, device=torch.device("cpu"),
                            new_events=2)
    weights.fit(counts, iterations=3)
    got = weights.detection(counts, is_noisy)
    posterior = weights.clean_posterior(counts)
    split = split_quality(posterior >= 0.5, None if is_noisy is None else ~is_noisy)
    auc = roc_auc_score(~is_noisy, posterior) if truth == "mixed" else None
    rnd = (lambda v: None if v is None else round(v, 6))
    assert got == {"auc": rnd(auc), "clean_size": split["size"], "clean_precision": rnd(split["precision"]),
                   "clean_recall": rnd(split["recall"])}
    if truth == "mixed":  # exactly, before rounding too
        from utils.method.bmm import pair_histogram
        from utils.method.metrics import grouped_detection_auc
        group, count, samples, noisy = pair_histogram(counts, labels if class_wise else None,
                                                      num_groups=c if class_wise else 1, marked=is_noisy)
        pair_posterior = weights.bmm.evaluate(count, group if class_wise else None)["clean_posterior"]
        assert grouped_detection_auc(pair_posterior, samples - noisy, noisy) == auc
        assert samples.sum() == n and noisy.sum() == is_noisy.sum()
