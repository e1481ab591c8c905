"""Two-component beta mixture model (BMM) on integer wrong-event counts (docs/fidelity.md#ido-15-beta-mixture, #ido-18-class-wise-bmm).

One :class:`BetaMixture` object holds ``G`` independent mixtures ("groups"): ``G = 1`` is the global
BMM of ``stage_2.py``; ``G = C`` with one group per *noisy* class is the class-wise BMM of
``stage_2_class.py``.  Component 0 is "clean" (mass near u = 0), component 1 is "noisy" (mass near
u = 1).

Units and shapes
----------------
* counts ``w``: non-negative integers (number of wrong events of a sample), shape ``(N,)``.
* groups: integers in ``[0, G)``, shape ``(N,)`` (``None`` means every sample is in group 0).
* u: min-max normalised wrong event in ``[eps, 1 - eps]`` (dimensionless).
* parameters ``alpha``, ``beta``, ``pi``: float64 arrays of shape ``(G, 2)``; ``min``/``max``: int64
  arrays of shape ``(G,)`` (the count range seen at the last fit of that group).

Fit rules (faithful to the official code, with the fixes IDO-B5 and IDO-B8):
* normalisation at every fit: ``u = (w - m_g) / (M_g - m_g)``, then ``u * (1 - 2 eps) + eps``;
  if ``M_g == m_g`` (all-zero, all-equal or single-sample group) ``u = 0.5`` (IDO-B8);
  a group without samples keeps its parameters and gets ``m_g = M_g = 0``.
* E-step: ``lik_k = pi_k Beta(u; a_k, b_k)`` floored at eps; ``r_k = lik_k / (sum_k lik_k + eps)``.
* M-step: weighted method of moments (variance floored at eps, alpha/beta floored at eps), shape
  clamps ``beta_clean < 1.02 -> 1.1`` and ``alpha_noisy < 1.02 -> 1.1``, ``pi_k = sum r_k / sum r``.
* Warm start: parameters persist across :meth:`BetaMixture.fit` calls.

Because u only depends on (group, count), EM runs on the histogram of unique (group, count) pairs
with their multiplicities as weights; this is the same computation as per-sample EM (only the
floating-point summation order differs).

Prediction (:meth:`BetaMixture.normalise`, :meth:`BetaMixture.evaluate`) reuses the stored
``m``/``M`` and clips u to ``[eps, 1 - eps]`` (fix IDO-B5: counts above the fitted maximum behave like the
maximum instead of falling outside the beta support).  :class:`BmmLookup` serves the same values on
a torch device from a precomputed table, without host synchronisation.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["BetaMixture", "BmmLookup", "em_steps"]

# Dense bincount over (group, count) keys is used when the key space is at most this large;
# otherwise np.unique (sorting) is used.
_DENSE_KEY_LIMIT = 1 << 22

_INIT_ALPHA = (1.0, 2.0)
_INIT_BETA = (2.0, 1.0)
_INIT_PI = (0.5, 0.5)
_CLAMP_THRESHOLD = 1.02
_CLAMP_VALUE = 1.1


# ---------------------------------------------------------------------------------------------
# EM core (continuous u with weights) -- exposed for tests
# ---------------------------------------------------------------------------------------------
def em_steps(
    u: np.ndarray,
    weights: np.ndarray,
    group_index: np.ndarray,
    *,
    alpha: np.ndarray,
    beta: np.ndarray,
    pi: np.ndarray,
    max_iter: int,
    eps: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``max_iter`` EM iterations of the IDO beta mixture on weighted points.

    Args:
        u: float array ``(P,)`` of normalised values in ``(0, 1)``.
        weights: float array ``(P,)`` of non-negative multiplicities (number of samples at ``u``).
        group_index: int array ``(P,)`` in ``[0, G)``: which mixture each point belongs to.
        alpha, beta, pi: float arrays ``(G, 2)``, starting parameters (not modified in place).
        max_iter: number of EM iterations (``>= 0``).
        eps: the BMM epsilon (1e-6 in IDO).

    Returns:
        ``(alpha, beta, pi)``: new float64 arrays ``(G, 2)``.  Groups with zero total weight keep
        their parameters.  If an update of a group would give a non-finite parameter (never observed
        in practice), that group keeps its previous parameters for this iteration.
    """
    u = np.asarray(u, dtype=np.float64)
    n = np.asarray(weights, dtype=np.float64)
    gi = np.asarray(group_index, dtype=np.int64)
    alpha = np.array(alpha, dtype=np.float64, copy=True)
    beta = np.array(beta, dtype=np.float64, copy=True)
    pi = np.array(pi, dtype=np.float64, copy=True)
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    if not (u.shape == n.shape == gi.shape) or u.ndim != 1:
        raise ValueError(
            f"u, weights and group_index must be 1-D with equal shapes, got {u.shape}, {n.shape}, "
            f"{gi.shape}")
    num_groups = alpha.shape[0]
    if alpha.shape != (num_groups, 2) or beta.shape != (num_groups, 2) or pi.shape != (num_groups, 2):
        raise ValueError("alpha, beta and pi must all have shape (G, 2)")
    if u.size == 0 or max_iter == 0:
        return alpha, beta, pi
    if gi.min() < 0 or gi.max() >= num_groups:
        raise ValueError(f"group_index must lie in [0, {num_groups})")

    active = np.bincount(gi, weights=n, minlength=num_groups) > 0  # (G,)
    u2 = u[:, None]  # (P, 1)
    for _ in range(max_iter):
        # E-step (per point, gathered parameters of its group)
        lik = pi[gi] * stats.beta.pdf(u2, alpha[gi], beta[gi])  # (P, 2)
        lik = np.maximum(lik, eps)
        r = lik / (lik.sum(axis=1, keepdims=True) + eps)  # (P, 2)
        wr = r * n[:, None]  # responsibilities times multiplicities
        # M-step, per group and component
        s = np.stack([np.bincount(gi, weights=wr[:, k], minlength=num_groups) for k in (0, 1)],
                     axis=1)  # (G, 2) = sum_i r_ki
        su = np.stack([np.bincount(gi, weights=wr[:, k] * u, minlength=num_groups) for k in (0, 1)],
                      axis=1)
        mu = su / (s + eps)  # (G, 2)
        dev2 = (u2 - mu[gi]) ** 2  # (P, 2)
        sv = np.stack([np.bincount(gi, weights=wr[:, k] * dev2[:, k], minlength=num_groups)
                       for k in (0, 1)], axis=1)
        var = np.maximum(sv / (s + eps), eps)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            new_alpha = mu * (mu * (1.0 - mu) / var - 1.0)
            new_beta = new_alpha * (1.0 - mu) / mu
            new_pi = s / s.sum(axis=1, keepdims=True)
        new_alpha = np.maximum(new_alpha, eps)  # np.maximum keeps NaN -> caught below
        new_beta = np.maximum(new_beta, eps)
        new_beta[:, 0] = np.where(new_beta[:, 0] < _CLAMP_THRESHOLD, _CLAMP_VALUE, new_beta[:, 0])
        new_alpha[:, 1] = np.where(new_alpha[:, 1] < _CLAMP_THRESHOLD, _CLAMP_VALUE, new_alpha[:, 1])
        ok = active & np.isfinite(new_alpha).all(1) & np.isfinite(new_beta).all(1) \
            & np.isfinite(new_pi).all(1)
        alpha = np.where(ok[:, None], new_alpha, alpha)
        beta = np.where(ok[:, None], new_beta, beta)
        pi = np.where(ok[:, None], new_pi, pi)
    return alpha, beta, pi


# ---------------------------------------------------------------------------------------------
# Input validation helpers
# ---------------------------------------------------------------------------------------------
def _as_counts(counts: Any) -> np.ndarray:
    arr = np.asarray(counts)
    if arr.ndim != 1:
        raise ValueError(f"counts must be a 1-D array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (not np.isfinite(arr).all() or np.any(arr != np.round(arr))):
            raise ValueError("counts must be integer-valued")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"counts must be an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"counts must be >= 0, got minimum {int(arr.min())}")
    return arr


def _as_groups(groups: Any, n: int, num_groups: int) -> np.ndarray:
    if groups is None:
        if num_groups != 1:
            raise ValueError(f"groups is required when num_groups = {num_groups} > 1")
        return np.zeros(n, dtype=np.int64)
    arr = np.asarray(groups)
    if arr.ndim != 1:
        raise ValueError(f"groups must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"groups has {arr.shape[0]} entries but counts has {n}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"groups must be an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= num_groups):
        raise ValueError(
            f"groups must lie in [0, {num_groups}), got range [{int(arr.min())}, {int(arr.max())}]")
    return arr


def _unique_pairs(counts: np.ndarray, groups: np.ndarray, num_groups: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histogram of (group, count) pairs: returns (group (P,), count (P,), multiplicity (P,) float64),
    sorted by group then count."""
    if counts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float64)
    span = int(counts.max()) + 1
    if span * num_groups <= _DENSE_KEY_LIMIT:
        key = groups * span + counts
        hist = np.bincount(key, minlength=span * num_groups)
        keys = np.flatnonzero(hist)
        mult = hist[keys]
    else:
        order = np.lexsort((counts, groups))
        g_s, c_s = groups[order], counts[order]
        first = np.ones(g_s.size, dtype=bool)
        first[1:] = (g_s[1:] != g_s[:-1]) | (c_s[1:] != c_s[:-1])
        starts = np.flatnonzero(first)
        mult = np.diff(np.append(starts, g_s.size))
        return g_s[starts], c_s[starts], mult.astype(np.float64)
    return keys // span, keys % span, mult.astype(np.float64)


def pair_histogram(counts: Any, groups: Any = None, *, num_groups: int = 1, marked: Any = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The distinct (group, count) pairs of the samples, sorted by group then count, in O(N).

    Returns ``(group (P,), count (P,), samples (P,) int64, marked (P,) int64 or None)``: how many
    samples have each pair, and how many of them are ``marked`` (bool (N,), e.g. the noisy ones).
    Everything per sample that depends only on the pair (a mixture's posterior) can be computed on
    the P pairs and weighted by these counts instead of on N samples.
    """
    c = _as_counts(counts)
    g = _as_groups(groups, c.shape[0], num_groups)
    pg, pc, mult = _unique_pairs(c, g, num_groups)
    if marked is None:
        return pg, pc, mult.astype(np.int64), None
    m = np.asarray(marked, dtype=bool)
    span = int(c.max(initial=0)) + 1
    position = np.searchsorted(pg * span + pc, g[m] * span + c[m])  # every marked pair is among the pairs
    return pg, pc, mult.astype(np.int64), np.bincount(position, minlength=pg.size).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# BetaMixture
# ---------------------------------------------------------------------------------------------
class BetaMixture:
    """``G`` independent two-component beta mixtures on integer wrong-event counts.

    Component 0 = clean (initial Beta(1, 2)), component 1 = noisy (initial Beta(2, 1)), initial
    ``pi = (0.5, 0.5)``.  Attributes ``alpha``, ``beta``, ``pi``: float64 ``(G, 2)``; ``min_count``,
    ``max_count``: int64 ``(G,)`` (range of the counts at the last fit; 0/0 before any fit, which makes
    every u = 0.5).
    """

    def __init__(self, *, num_groups: int = 1, eps: float = 1e-6) -> None:
        if int(num_groups) != num_groups or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups}")
        if not (0.0 < eps < 0.5):
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        self.num_groups = int(num_groups)
        self.eps = float(eps)
        g = self.num_groups
        self.alpha = np.tile(np.array(_INIT_ALPHA, dtype=np.float64), (g, 1))
        self.beta = np.tile(np.array(_INIT_BETA, dtype=np.float64), (g, 1))
        self.pi = np.tile(np.array(_INIT_PI, dtype=np.float64), (g, 1))
        self.min_count = np.zeros(g, dtype=np.int64)
        self.max_count = np.zeros(g, dtype=np.int64)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, counts: Any, *, groups: Any = None, max_iter: int) -> "BetaMixture":
        """Normalise ``counts`` per group and run ``max_iter`` warm-started EM iterations.

        Args:
            counts: int array ``(N,)`` of wrong-event counts (``>= 0``).
            groups: int array ``(N,)`` in ``[0, G)`` (e.g. noisy labels) or ``None`` (all group 0;
                only allowed when ``G == 1``).
            max_iter: EM iterations (IDO: 20 initially, then 1 per epoch global / 2 class-wise).

        Returns:
            ``self`` (parameters and the per-group min/max are updated in place).
        """
        if int(max_iter) != max_iter or max_iter < 0:
            raise ValueError(f"max_iter must be an integer >= 0, got {max_iter}")
        c = _as_counts(counts)
        g = _as_groups(groups, c.shape[0], self.num_groups)
        pg, pc, pn = _unique_pairs(c, g, self.num_groups)

        mins = np.zeros(self.num_groups, dtype=np.int64)
        maxs = np.zeros(self.num_groups, dtype=np.int64)
        if pg.size:
            # pairs are sorted by (group, count): first pair of a group = min, last = max
            last = np.ones(pg.size, dtype=bool)
            last[:-1] = pg[1:] != pg[:-1]
            first = np.ones(pg.size, dtype=bool)
            first[1:] = pg[1:] != pg[:-1]
            mins[pg[first]] = pc[first]
            maxs[pg[last]] = pc[last]
        self.min_count, self.max_count = mins, maxs

        u = self._normalise_pairs(pc, pg, clip=False)
        self.alpha, self.beta, self.pi = em_steps(
            u, pn, pg, alpha=self.alpha, beta=self.beta, pi=self.pi, max_iter=int(max_iter),
            eps=self.eps)
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _normalise_pairs(self, c: np.ndarray, g: np.ndarray, *, clip: bool) -> np.ndarray:
        eps = self.eps
        m = self.min_count[g]
        rng = (self.max_count[g] - m).astype(np.float64)
        degenerate = rng <= 0
        with np.errstate(divide="ignore", invalid="ignore"):
            u = (c - m) / np.where(degenerate, 1.0, rng)
        u = u * (1.0 - 2.0 * eps) + eps
        if clip:
            u = np.clip(u, eps, 1.0 - eps)
        return np.where(degenerate, 0.5, u)

    def normalise(self, counts: Any, groups: Any = None) -> np.ndarray:
        """Normalised wrong events with the min/max of the last fit.

        Args:
            counts: int array ``(N,)``; groups: int array ``(N,)`` or ``None``.

        Returns:
            float64 ``(N,)`` in ``[eps, 1 - eps]`` (clipped, fix IDO-B5); 0.5 for degenerate groups
            (``max == min``, fix IDO-B8).
        """
        c = _as_counts(counts)
        g = _as_groups(groups, c.shape[0], self.num_groups)
        return self._normalise_pairs(c, g, clip=True)

    def _evaluate_u(self, u: np.ndarray, g: np.ndarray) -> dict[str, np.ndarray]:
        a, b, p = self.alpha[g], self.beta[g], self.pi[g]  # (K, 2)
        u2 = u[:, None]
        weighted = p * stats.beta.pdf(u2, a, b)  # (K, 2)
        post = weighted / (weighted.sum(axis=1, keepdims=True) + self.eps)
        cdf = stats.beta.cdf(u2, a, b)
        return {
            "clean_posterior": post[:, 0].astype(np.float64),
            "noisy_posterior": post[:, 1].astype(np.float64),
            "clean_cdf": cdf[:, 0].astype(np.float64),
            "noisy_cdf": cdf[:, 1].astype(np.float64),
        }

    def evaluate(self, counts: Any, groups: Any = None) -> dict[str, np.ndarray]:
        """Posteriors and CDFs with scipy.stats.beta (the reference used by tests and plots).

        ``tau_k = pi_k pdf_k(u) / (sum_k pi_k pdf_k(u) + eps)`` (no flooring) and
        ``F_k = BetaCDF(u; alpha_k, beta_k)``, with u from :meth:`normalise` (clipped).

        Returns:
            dict of float64 ``(N,)`` arrays ``clean_posterior`` (tau1), ``noisy_posterior`` (tau2),
            ``clean_cdf`` (F1), ``noisy_cdf`` (F2).
        """
        c = _as_counts(counts)
        g = _as_groups(groups, c.shape[0], self.num_groups)
        if c.size == 0:
            z = np.zeros(0, dtype=np.float64)
            return {"clean_posterior": z, "noisy_posterior": z.copy(), "clean_cdf": z.copy(),
                    "noisy_cdf": z.copy()}
        # evaluate once per unique (group, count) pair and scatter back (exact, much faster)
        span = int(c.max()) + 1
        if span * self.num_groups <= _DENSE_KEY_LIMIT:
            key = g * span + c
            uniq, inv = np.unique(key, return_inverse=True)
            ug, uc = uniq // span, uniq % span
        else:
            pairs, inv = np.unique(np.stack([g, c], axis=1), axis=0, return_inverse=True)
            ug, uc = pairs[:, 0], pairs[:, 1]
        inv = inv.reshape(-1)
        res = self._evaluate_u(self._normalise_pairs(uc, ug, clip=True), ug)
        return {k: v[inv] for k, v in res.items()}

    def lookup_table(self, max_count: int) -> np.ndarray:
        """Table of (tau1, tau2, F1, F2) for every group and every count ``0..max_count``.

        Returns:
            float32 array ``(G, max_count + 1, 4)``; ``table[g, w]`` equals :meth:`evaluate` at
            count ``w`` in group ``g``.
        """
        if int(max_count) != max_count or max_count < 0:
            raise ValueError(f"max_count must be an integer >= 0, got {max_count}")
        k = int(max_count) + 1
        g = np.repeat(np.arange(self.num_groups, dtype=np.int64), k)
        c = np.tile(np.arange(k, dtype=np.int64), self.num_groups)
        res = self._evaluate_u(self._normalise_pairs(c, g, clip=True), g)
        table = np.stack([res["clean_posterior"], res["noisy_posterior"], res["clean_cdf"],
                          res["noisy_cdf"]], axis=1)
        return table.reshape(self.num_groups, k, 4).astype(np.float32)

    # -- (de)serialisation --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (lists and floats)."""
        return {
            "num_groups": self.num_groups,
            "eps": self.eps,
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "pi": self.pi.tolist(),
            "min": self.min_count.tolist(),
            "max": self.max_count.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (``num_groups`` must match)."""
        g = int(state["num_groups"])
        if g != self.num_groups:
            raise ValueError(f"state has num_groups={g}, this BetaMixture has {self.num_groups}")
        alpha = np.asarray(state["alpha"], dtype=np.float64)
        beta = np.asarray(state["beta"], dtype=np.float64)
        pi = np.asarray(state["pi"], dtype=np.float64)
        mins = np.asarray(state["min"], dtype=np.int64)
        maxs = np.asarray(state["max"], dtype=np.int64)
        for name, arr, shape in (("alpha", alpha, (g, 2)), ("beta", beta, (g, 2)), ("pi", pi, (g, 2)),
                                 ("min", mins, (g,)), ("max", maxs, (g,))):
            if arr.shape != shape:
                raise ValueError(f"state[{name!r}] has shape {arr.shape}, expected {shape}")
        self.eps = float(state.get("eps", self.eps))
        self.alpha, self.beta, self.pi = alpha, beta, pi
        self.min_count, self.max_count = mins, maxs

    def describe(self) -> list[dict[str, Any]]:
        """One dict per group: ``{"pi": [2], "alpha": [2], "beta": [2], "min": int, "max": int}``."""
        return [
            {"pi": self.pi[i].tolist(), "alpha": self.alpha[i].tolist(), "beta": self.beta[i].tolist(),
             "min": int(self.min_count[i]), "max": int(self.max_count[i])}
            for i in range(self.num_groups)
        ]

    def __repr__(self) -> str:
        return f"BetaMixture(num_groups={self.num_groups}, eps={self.eps})"


# ---------------------------------------------------------------------------------------------
# Torch lookup
# ---------------------------------------------------------------------------------------------
class BmmLookup:
    """Device-side lookup of per-count values from a precomputed table.

    Args:
        table: float array ``(G, K, R)``: ``R`` values for each group and count ``0..K - 1``, e.g. the
            (tau1, tau2, F1, F2) of :meth:`BetaMixture.lookup_table` (``K = max_count + 1``), or the
            loss weights that stage 2 derives from them.
        device: torch device for the stored float32 table.
        clamp: counts above ``K - 1`` behave like ``K - 1`` (the default).  ``False`` skips that op for a
            caller that guarantees ``0 <= counts <= K - 1`` (a larger count would read another group's
            row or fail to index): a training step calls this once per batch, and on the CPU the clamp
            costs as much as the gather itself.

    Calling with ``counts`` (integer tensor ``(B,)``) and ``groups`` (integer tensor ``(B,)`` or ``None``
    when ``G == 1``) returns one float32 tensor ``(R, B)`` on the table's device (counts are never
    negative); unpack it as ``tau1, tau2, f1, f2 = lookup(counts)``.  Pure tensor indexing, no host
    synchronisation; the table is stored as ``(R, G * K)`` so that one ``index_select`` gathers all
    ``R`` values.
    """

    def __init__(self, table: np.ndarray, *, device: Any = "cpu", clamp: bool = True) -> None:
        import torch

        arr = np.asarray(table)
        if arr.ndim != 3 or min(arr.shape) < 1:
            raise ValueError(f"table must have shape (G, K, R) with G, K, R >= 1, got {arr.shape}")
        self.num_groups = int(arr.shape[0])
        self.max_count = int(arr.shape[1]) - 1
        self.clamp = clamp
        flat = arr.reshape(-1, arr.shape[2]).T  # (R, G * K): column g * K + count
        self.table = torch.as_tensor(np.ascontiguousarray(flat), dtype=torch.float32).to(device)

    @property
    def device(self):
        return self.table.device

    def __call__(self, counts, groups=None):
        if counts.dim() != 1:
            raise ValueError(f"counts must be 1-D, got shape {tuple(counts.shape)}")
        if counts.device != self.table.device:
            counts = counts.to(self.table.device, non_blocking=True)
        column = counts.clamp_max(self.max_count) if self.clamp else counts
        if groups is None:
            if self.num_groups != 1:
                raise ValueError(f"groups is required when the table has {self.num_groups} groups")
        else:
            if groups.shape != counts.shape:
                raise ValueError(
                    f"groups shape {tuple(groups.shape)} != counts shape {tuple(counts.shape)}")
            column = column + groups.to(self.table.device, non_blocking=True) * (self.max_count + 1)
        return self.table.index_select(1, column)
