"""Figures: integer-binned wrong-event histogram (B13 fixed) and the fitted beta mixture."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import save_figure  # noqa: E402


def wrong_event_histogram(counts: np.ndarray, path: str, *, is_noisy: np.ndarray | None = None,
                          title: str = "") -> str:
    """One bar per integer count (0..max); stacked clean/noisy where the truth is known."""
    counts = np.asarray(counts, dtype=np.int64)
    values = np.arange(int(counts.max(initial=0)) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if is_noisy is None:
        ax.bar(values, np.bincount(counts, minlength=len(values)), width=0.8, color="tab:blue", label="samples")
    else:
        clean = np.bincount(counts[~is_noisy], minlength=len(values))
        noisy = np.bincount(counts[is_noisy], minlength=len(values))
        ax.bar(values, clean, width=0.8, color="tab:blue", label="clean label")
        ax.bar(values, noisy, width=0.8, bottom=clean, color="tab:red", label="noisy label")
    ax.set_xticks(values)
    ax.set_xlabel("wrong events")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=9)
    ax.legend()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def bmm_fit_plot(counts: np.ndarray, bmm, path: str, *, group: int = 0, title: str = "") -> str:
    """Histogram of normalised counts with the two fitted beta densities (one group of the mixture)."""
    from scipy import stats

    counts = np.asarray(counts, dtype=np.int64)
    u = bmm.normalise(counts, np.full(len(counts), group) if bmm.num_groups > 1 else None)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    levels = np.unique(u)
    width = 0.8 / max(len(levels), 1)
    ax.hist(u, bins=np.concatenate([levels - width / 2, [levels[-1] + width / 2]]) if len(levels) > 1 else 20,
            density=True, color="0.75", label="normalised wrong events")
    x = np.linspace(1e-3, 1 - 1e-3, 400)
    for k, (name, colour) in enumerate((("clean", "tab:blue"), ("noisy", "tab:red"))):
        a, b, w = bmm.alpha[group, k], bmm.beta[group, k], bmm.pi[group, k]
        ax.plot(x, w * stats.beta.pdf(x, a, b), color=colour, label=f"{name}: pi={w:.2f} a={a:.2f} b={b:.2f}")
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) if len(levels) > 1 else 5)
    ax.set_xlabel("u (normalised wrong events)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
