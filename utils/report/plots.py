"""Figures: integer-binned wrong-event histogram (IDO-B13 fixed) and the fitted beta mixture."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.core.io import save_figure  # noqa: E402


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


def bmm_fit_plot(counts: np.ndarray, bmm, path: str, *, groups: np.ndarray | None = None,
                 is_noisy: np.ndarray | None = None, title: str = "", max_panels: int = 4) -> str:
    """Histogram of the normalised wrong events with the two fitted beta densities.

    One panel for a global mixture; for a class-wise one, the first ``max_panels`` classes.
    Bars are scaled as densities (count / (N * spacing)) so they compare with the curves.
    """
    from scipy import stats

    counts = np.asarray(counts, dtype=np.int64)
    shown = [0] if groups is None else list(range(min(bmm.num_groups, max_panels)))
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    x = np.linspace(1e-3, 1 - 1e-3, 400)
    for ax, g in zip(axes[0], shown):
        member = np.ones(len(counts), bool) if groups is None else np.asarray(groups) == g
        span = max(int(bmm.max_count[g] - bmm.min_count[g]), 1)
        u = bmm.normalise(counts[member], None if groups is None else np.full(member.sum(), g))
        levels = np.round(u * span).astype(int)
        width = 1.0 / span
        parts = [("all", np.ones(member.sum(), bool), "0.6")] if is_noisy is None else [
            ("clean label", ~is_noisy[member], "tab:blue"), ("noisy label", is_noisy[member], "tab:red")]
        bottom = np.zeros(span + 1)
        for name, mask, colour in parts:
            height = np.bincount(levels[mask], minlength=span + 1)[: span + 1] / max(member.sum() * width, 1e-12)
            ax.bar(np.arange(span + 1) * width, height, width=0.8 * width, bottom=bottom, color=colour,
                   alpha=0.5, label=name)
            bottom += height
        for k, (name, colour) in enumerate((("clean", "tab:blue"), ("noisy", "tab:red"))):
            a, b, w = bmm.alpha[g, k], bmm.beta[g, k], bmm.pi[g, k]
            ax.plot(x, w * stats.beta.pdf(x, a, b), color=colour,
                    label=f"{name} pi={w:.2f} a={a:.2f} b={b:.2f}")
        ax.set_ylim(0, 1.2 * max(bottom.max(), 1.0))
        ax.set_xlabel("normalised wrong events")
        ax.set_title(("global" if groups is None else f"class {g}"), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def suspects_grid(images: list, captions: list[str], path: str, *, title: str = "", columns: int = 8) -> str:
    """The images (PIL, any size) in a grid, each captioned; small images are enlarged without blur
    (nearest neighbour), so 8-px digits stay as readable as 224-px photos."""
    n = max(len(images), 1)
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 2.1 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(np.asarray(images[k].convert("RGB")), interpolation="nearest")
            ax.set_title(captions[k], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
