"""Tests for utils/method/losses.py (IDO dynamic loss, docs/fidelity.md#ido-17-dynamic-loss, fix IDO-B4), through
tests/reference.py's dynamic_loss: loss_weights and weighted_dynamic_loss of one batch."""
import math

import numpy as np
import pytest
import torch

from reference import dynamic_loss
from utils.method.losses import loss_weights, weighted_dynamic_loss

# 3 samples, 3 classes
ZW = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 3.0, 0.0]]
ZS = [[1.5, 1.0, -0.5], [0.4, -0.2, 0.1], [0.0, 2.0, 1.0]]
Y = [0, 2, 1]
TAU1 = [0.9, 0.3, 0.0]
TAU2 = [0.1, 0.6, 0.95]  # sample 1: tau1 + tau2 != 1 on purpose
F1 = [0.2, 0.7, 1.0]
F2 = [0.01, 0.3, 0.8]


def _softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def expected_loss(zw, zs, y, tau1, tau2, f1, f2, entropy_weight, noisy_weight):
    """Plain-python transcription of docs/fidelity.md#ido-17-dynamic-loss (per sample)."""
    n = len(y)
    lc = ls = ln = 0.0
    for i in range(n):
        pw, ps = _softmax(zw[i]), _softmax(zs[i])
        ce = -math.log(pw[y[i]]) - math.log(ps[y[i]])
        lc += tau1[i] * ce
        eps_i = tau1[i] * f1[i] + (1 - tau2[i]) * (1 - f2[i])
        ls += eps_i * sum((a - b) ** 2 for a, b in zip(zw[i], zs[i])) / len(zw[i])
        clip = lambda p: min(max(p, 1e-4), 1 - 1e-4)  # noqa: E731
        pbar = [0.5 * (clip(a) + clip(b)) for a, b in zip(pw, ps)]
        h = -sum(p * math.log(p) for p in pbar)
        nw = (1 - tau1[i]) if noisy_weight == "one_minus_clean" else tau2[i]
        ln += nw * (max(pbar) if entropy_weight == "confidence" else 1.0) * h
    return lc / n, ls / n, ln / n


def call(zw=ZW, zs=ZS, y=Y, tau1=TAU1, tau2=TAU2, f1=F1, f2=F2, dtype=torch.float32, **kw):
    zw_t = torch.tensor(zw, dtype=dtype, requires_grad=True)
    zs_t = torch.tensor(zs, dtype=dtype, requires_grad=True)
    total, parts = dynamic_loss(
        zw_t, zs_t, torch.tensor(y), clean_posterior=torch.tensor(tau1),
        noisy_posterior=torch.tensor(tau2), clean_cdf=torch.tensor(f1), noisy_cdf=torch.tensor(f2), **kw)
    return total, parts, zw_t, zs_t


@pytest.mark.parametrize("entropy_weight", ["confidence", "plain"])
@pytest.mark.parametrize("noisy_weight", ["one_minus_clean", "noisy_posterior"])
def test_matches_hand_computed_value(entropy_weight, noisy_weight):
    total, parts, _, _ = call(entropy_weight=entropy_weight, noisy_weight=noisy_weight)
    lc, ls, ln = expected_loss(ZW, ZS, Y, TAU1, TAU2, F1, F2, entropy_weight, noisy_weight)
    assert total.dtype == torch.float32 and total.dim() == 0
    assert parts["clean"].item() == pytest.approx(lc, rel=1e-5)
    assert parts["sim"].item() == pytest.approx(ls, rel=1e-5)
    assert parts["noisy"].item() == pytest.approx(ln, rel=1e-5)
    assert total.item() == pytest.approx(lc + ls + ln, rel=1e-5)


def test_defaults_are_confidence_and_one_minus_clean():
    total, _, _, _ = call()
    lc, ls, ln = expected_loss(ZW, ZS, Y, TAU1, TAU2, F1, F2, "confidence", "one_minus_clean")
    assert total.item() == pytest.approx(lc + ls + ln, rel=1e-5)
    # the two noisy weights really differ for sample 1 (tau1 + tau2 = 0.9)
    other = expected_loss(ZW, ZS, Y, TAU1, TAU2, F1, F2, "confidence", "noisy_posterior")
    assert abs(other[2] - ln) > 1e-3


def test_parts_are_detached_tensors_summing_to_total():
    total, parts, _, _ = call()
    assert set(parts) == {"clean", "sim", "noisy"}
    for v in parts.values():
        assert isinstance(v, torch.Tensor) and not v.requires_grad and v.dim() == 0
    assert torch.allclose(parts["clean"] + parts["sim"] + parts["noisy"], total.detach())
    assert total.requires_grad


def _random_batch(b=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    zw = (torch.randn(b, c, generator=g) * 2).tolist()
    zs = (torch.randn(b, c, generator=g) * 2).tolist()
    y = torch.randint(0, c, (b,), generator=g).tolist()
    tau1 = torch.rand(b, generator=g)
    tau2 = (1 - tau1).tolist()
    return zw, zs, y, tau1.tolist(), tau2, torch.rand(b, generator=g).tolist(), \
        torch.rand(b, generator=g).tolist()


@pytest.mark.parametrize("entropy_weight", ["confidence", "plain"])
def test_loss_is_mean_of_per_sample_losses(entropy_weight):
    zw, zs, y, tau1, tau2, f1, f2 = _random_batch()
    total, _, _, _ = call(zw, zs, y, tau1, tau2, f1, f2, entropy_weight=entropy_weight)
    singles = [call([zw[i]], [zs[i]], [y[i]], [tau1[i]], [tau2[i]], [f1[i]], [f2[i]],
                    entropy_weight=entropy_weight)[0].item() for i in range(len(y))]
    assert total.item() == pytest.approx(sum(singles) / len(y), rel=1e-5)


def test_changing_one_samples_weights_changes_only_its_contribution():
    zw, zs, y, tau1, tau2, f1, f2 = _random_batch(seed=1)
    b, j = len(y), 2
    base, _, _, _ = call(zw, zs, y, tau1, tau2, f1, f2)
    t1b, t2b, f1b, f2b = list(tau1), list(tau2), list(f1), list(f2)
    t1b[j], t2b[j], f1b[j], f2b[j] = 0.05, 0.9, 0.95, 0.4
    changed, _, _, _ = call(zw, zs, y, t1b, t2b, f1b, f2b)
    single_old = call([zw[j]], [zs[j]], [y[j]], [tau1[j]], [tau2[j]], [f1[j]], [f2[j]])[0].item()
    single_new = call([zw[j]], [zs[j]], [y[j]], [t1b[j]], [t2b[j]], [f1b[j]], [f2b[j]])[0].item()
    assert changed.item() - base.item() == pytest.approx((single_new - single_old) / b, rel=1e-4)
    assert abs(single_new - single_old) > 1e-2


def test_confidence_term_is_per_sample_not_broadcast():
    """IDO-B4: mean_i nw_i kappa_i H_i, not mean(kappa) * mean(nw H)."""
    zw, zs, y, tau1, tau2, f1, f2 = _random_batch(b=5, seed=2)
    tau1 = [0.0, 0.1, 0.5, 0.8, 0.3]
    tau2 = [1 - t for t in tau1]
    _, parts, _, _ = call(zw, zs, y, tau1, tau2, f1, f2, entropy_weight="confidence")
    zw_t, zs_t = torch.tensor(zw), torch.tensor(zs)
    pbar = 0.5 * (zw_t.softmax(1).clamp(1e-4, 1 - 1e-4) + zs_t.softmax(1).clamp(1e-4, 1 - 1e-4))
    h = -(pbar * pbar.log()).sum(1)
    kappa = pbar.max(1).values
    nw = 1 - torch.tensor(tau1)
    assert len(set(kappa.tolist())) == 5  # distinct confidences
    per_sample = (nw * kappa * h).mean().item()
    broadcast = (kappa.mean() * (nw * h).mean()).item()
    assert parts["noisy"].item() == pytest.approx(per_sample, rel=1e-5)
    assert abs(per_sample - broadcast) > 1e-3 * abs(per_sample)
    assert parts["noisy"].item() != pytest.approx(broadcast, rel=1e-4)


@pytest.mark.parametrize("entropy_weight", ["confidence", "plain"])
def test_zero_clean_posterior_gives_no_cross_entropy_gradient(entropy_weight):
    zw, zs, y, tau1, tau2, f1, f2 = _random_batch(b=4, c=5, seed=3)
    j = 1
    tau1[j], tau2[j] = 0.0, 0.7
    y_alt = list(y)
    y_alt[j] = (y[j] + 2) % 5
    grads = []
    for labels in (y, y_alt):
        total, _, a, b = call(zw, zs, labels, tau1, tau2, f1, f2, entropy_weight=entropy_weight)
        total.backward()
        grads.append((a.grad.clone(), b.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert grads[0][0][j].abs().sum() > 0  # the other terms still give sample j a gradient
    # control: with tau1 > 0 the label does matter
    tau1[j] = 0.5
    g = []
    for labels in (y, y_alt):
        total, _, a, _ = call(zw, zs, labels, tau1, tau2, f1, f2, entropy_weight=entropy_weight)
        total.backward()
        g.append(a.grad.clone())
    assert not torch.allclose(g[0][j], g[1][j])
    assert torch.equal(g[0][:j], g[1][:j]) and torch.equal(g[0][j + 1:], g[1][j + 1:])


def test_plain_vs_confidence():
    _, p_conf, _, _ = call(entropy_weight="confidence")
    _, p_plain, _, _ = call(entropy_weight="plain")
    assert p_conf["clean"] == p_plain["clean"] and p_conf["sim"] == p_plain["sim"]
    assert p_conf["noisy"] < p_plain["noisy"]  # kappa < 1 shrinks every entropy term


def test_weights_are_constants_and_kappa_has_gradient():
    tau1 = torch.tensor(TAU1, requires_grad=True)
    zw = torch.tensor(ZW, requires_grad=True)
    total, _ = dynamic_loss(zw, torch.tensor(ZS), torch.tensor(Y), clean_posterior=tau1,
                            noisy_posterior=torch.tensor(TAU2), clean_cdf=torch.tensor(F1),
                            noisy_cdf=torch.tensor(F2))
    total.backward()
    assert tau1.grad is None
    # kappa is not detached: the gradient equals that of a manual formula with kappa attached
    # and differs from one where kappa is treated as a constant
    def manual(detach_kappa):
        z = torch.tensor(ZW, requires_grad=True)
        zs = torch.tensor(ZS)
        t1, t2 = torch.tensor(TAU1), torch.tensor(TAU2)
        ce = torch.nn.functional.cross_entropy(z, torch.tensor(Y), reduction="none") \
            + torch.nn.functional.cross_entropy(zs, torch.tensor(Y), reduction="none")
        sim = (t1 * torch.tensor(F1) + (1 - t2) * (1 - torch.tensor(F2))) * (z - zs).pow(2).mean(1)
        pbar = 0.5 * (z.softmax(1).clamp(1e-4, 1 - 1e-4) + zs.softmax(1).clamp(1e-4, 1 - 1e-4))
        h = -(pbar * pbar.log()).sum(1)
        kappa = pbar.max(1).values
        kappa = kappa.detach() if detach_kappa else kappa
        (t1 * ce + sim + (1 - t1) * kappa * h).mean().backward()
        return z.grad

    assert torch.allclose(zw.grad, manual(False), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(zw.grad, manual(True), rtol=1e-5, atol=1e-7)


def test_low_precision_logits_and_numpy_weights():
    total, parts, a, _ = call(dtype=torch.bfloat16)
    assert total.dtype == torch.float32
    zw_bf = torch.tensor(ZW, dtype=torch.bfloat16).float().tolist()
    zs_bf = torch.tensor(ZS, dtype=torch.bfloat16).float().tolist()
    lc, ls, ln = expected_loss(zw_bf, zs_bf, Y, TAU1, TAU2, F1, F2, "confidence", "one_minus_clean")
    assert total.item() == pytest.approx(lc + ls + ln, rel=1e-5)
    total.backward()
    assert a.grad.dtype == torch.bfloat16
    total_np, _ = dynamic_loss(torch.tensor(ZW), torch.tensor(ZS), torch.tensor(Y),
                               clean_posterior=np.array(TAU1), noisy_posterior=np.array(TAU2),
                               clean_cdf=np.array(F1), noisy_cdf=np.array(F2))
    assert total_np.dtype == torch.float32
    assert total_np.item() == pytest.approx(call()[0].item(), rel=1e-6)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="unknown entropy_weight 'kappa'"):
        call(entropy_weight="kappa")
    with pytest.raises(ValueError, match="unknown noisy_weight 'tau2'"):
        call(noisy_weight="tau2")
    with pytest.raises(ValueError, match="logits_weak and logits_strong"):
        call(zs=[r[:2] for r in ZS])
    with pytest.raises(ValueError, match="labels"):
        call(y=[0, 1])
    # BMM outputs of the wrong length: test_weighted_loss_rejects_weights_of_the_wrong_shape


def _per_term_reference(zw, zs, y, tau1, tau2, f1, f2, entropy_weight):
    """The loss as three separate weighted means: the form stage 2 computed before the weights
    were precomputed per count (the committed benchmark tables were trained with it)."""
    ce = torch.nn.functional.cross_entropy(zw, y, reduction="none") \
        + torch.nn.functional.cross_entropy(zs, y, reduction="none")
    sim = (tau1 * f1 + (1.0 - tau2) * (1.0 - f2)) * (zw - zs).pow(2).mean(dim=1)
    pbar = 0.5 * (zw.softmax(1).clamp(1e-4, 1 - 1e-4) + zs.softmax(1).clamp(1e-4, 1 - 1e-4))
    h = -(pbar * pbar.log()).sum(dim=1)
    noisy = (1.0 - tau1) * pbar.max(dim=1).values * h if entropy_weight == "confidence" else (1.0 - tau1) * h
    return (tau1 * ce).mean() + sim.mean() + noisy.mean()


@pytest.mark.parametrize("entropy_weight", ["confidence", "plain"])
@pytest.mark.parametrize("batch", [1, 5, 48, 64, 129])
def test_weighted_loss_is_bit_identical_to_the_per_term_form(entropy_weight, batch):
    g = torch.Generator().manual_seed(batch)
    zw = (torch.randn(batch, 10, generator=g) * 3).requires_grad_()
    zs = (torch.randn(batch, 10, generator=g) * 3).requires_grad_()
    y = torch.randint(0, 10, (batch,), generator=g)
    tau1, tau2, f1, f2 = torch.rand(4, batch, generator=g)
    weights = loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2)
    total, parts = weighted_dynamic_loss(zw, zs, y, weights=weights, entropy_weight=entropy_weight)
    reference = _per_term_reference(zw, zs, y, tau1, tau2, f1, f2, entropy_weight)
    assert torch.equal(total, reference)
    assert parts.shape == (3,) and not parts.requires_grad
    assert torch.equal(torch.autograd.grad(total, (zw, zs))[0], torch.autograd.grad(reference, (zw, zs))[0])


def test_loss_weights_of_a_table_equal_the_per_sample_weights():
    g = torch.Generator().manual_seed(0)
    tau1, tau2, f1, f2 = torch.rand(4, 3, 7, generator=g)  # a (G, K) table of each output
    for noisy_weight, noisy in (("one_minus_clean", 1 - tau1), ("noisy_posterior", tau2)):
        w = loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2,
                         noisy_weight=noisy_weight)
        assert w.shape == (3, 3, 7)
        assert torch.equal(w[0], tau1) and torch.equal(w[2], noisy)
        assert torch.allclose(w[1], tau1 * f1 + (1 - tau2) * (1 - f2))
        # a batch gathered from the table has the weights computed from the gathered outputs
        column = torch.tensor([[0, 3], [2, 6], [1, 0]])  # (group, count) of three samples
        picked = [t[column[:, 0], column[:, 1]] for t in (tau1, tau2, f1, f2)]
        per_batch = loss_weights(**dict(zip(("clean_posterior", "noisy_posterior", "clean_cdf", "noisy_cdf"),
                                            picked)), noisy_weight=noisy_weight)
        assert torch.equal(w[:, column[:, 0], column[:, 1]], per_batch)
    with pytest.raises(ValueError, match="unknown noisy_weight 'tau2'"):
        loss_weights(clean_posterior=tau1, noisy_posterior=tau2, clean_cdf=f1, noisy_cdf=f2, noisy_weight="tau2")


def test_weighted_loss_rejects_weights_of_the_wrong_shape():
    zw, zs, y = torch.tensor(ZW), torch.tensor(ZS), torch.tensor(Y)
    with pytest.raises(ValueError, match=r"weights must have shape \(3, 3\), got \(4, 3\)"):
        weighted_dynamic_loss(zw, zs, y, weights=torch.rand(4, 3))
    with pytest.raises(ValueError, match="unknown entropy_weight 'kappa'"):
        weighted_dynamic_loss(zw, zs, y, weights=torch.rand(3, 3), entropy_weight="kappa")
