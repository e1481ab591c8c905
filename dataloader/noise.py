"""Synthetic label noise (sym / asym / idn) and a small on-disk cache.

Pure functions on numpy arrays, CPU only and vectorised. Every call that draws random numbers
builds its own ``np.random.Generator`` from ``seed``; the global ``numpy``/``random``/``torch``
RNGs are never read or changed.

Conventions (docs/fidelity.md#noise-conventions):

* ``convention="ido"`` (default)
    - ``sym``: exactly ``floor(ratio*N)`` samples are chosen uniformly without replacement and
      get a label drawn uniformly from all ``C`` classes ``{0..C-1}`` (may equal the true label,
      so the realised flip rate is about ``ratio*(C-1)/C``; IDO-B2 fixed: never ``C``).
    - ``asym``: exactly ``floor(ratio*N)`` samples are chosen and mapped deterministically with
      :func:`asymmetric_map` (CIFAR-100: next class within consecutive blocks of 5, IDO-B3 fixed;
      CIFAR-10: the standard truck->automobile, bird->airplane, deer->horse, cat<->dog map;
      other datasets: ``(y+1) mod C``).
* ``convention="act"`` (ACT's multinomial draw, docs/fidelity.md#act-21-cifar-100n-noise)
    - ``sym``: each sample is chosen independently with probability ``ratio`` (so the realised rate
      is binomial around ``ratio``, not exactly ``floor(ratio*N)/N``) and gets a label drawn uniformly
      from the ``C-1`` other classes (the true class is never kept).
    - ``asym``: each sample is chosen independently with probability ``ratio`` and mapped
      ``y -> (y+1) mod C``.
* ``idn`` (both conventions): the part-dependent (PTD, Xia et al. 2020) generator used by IDO:
  per-sample flip rate ``q_i ~ TruncNormal(ratio, 0.1, [0, 1])``; ``W ~ N(0, 1)`` of shape
  ``(C, D, C)``; scores ``s_i = x_i @ W[y_i]`` on raw (0-255) CHW-flattened pixels;
  ``s_i[y_i] = -inf``; label distribution ``q_i * softmax(s_i)`` plus ``1 - q_i`` on ``y_i``;
  one label drawn per sample. The realised rate is stochastic (close to ``ratio``).
  Random draws happen in the order q, W (class by class), uniforms, all from one generator.

``ratio == 0`` returns a copy of the clean labels for every mode.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from typing import Callable, Optional, Union

import numpy as np

from utils.core.io import atomic_path

__all__ = [
    "MODES",
    "CONVENTIONS",
    "NoiseCacheError",
    "NoiseCacheMismatch",
    "NoiseCacheCorrupt",
    "asymmetric_map",
    "make_noisy_labels",
    "transition_matrix",
    "realised_noise_rate",
    "clean_labels_sha256",
    "noise_cache_path",
    "load_or_create_noisy_labels", "check_idn_size", "IdnTooLarge",
]

MODES = ("sym", "asym", "idn")
CONVENTIONS = ("ido", "act")

#: Standard CIFAR-10 asymmetric map: truck(9)->automobile(1), bird(2)->airplane(0),
#: deer(4)->horse(7), cat(3)<->dog(5); other classes unchanged.
_CIFAR10_ASYM = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

#: Standard deviation of the per-sample flip rate of the idn generator (docs/fidelity.md#ido-31-cifar).
IDN_RATE_STD = 0.1


class IdnTooLarge(ValueError):
    """idn noise asked for a set too large for its dense generator (see :func:`check_idn_size`)."""


#: Largest N x C of the idn generator: it holds N x C float64 scores (and their cdf) and all N x D raw
#: pixels, and draws C x D x C normals; 1e8 is 0.8 GB per matrix (Tiny-ImageNet is 2e7, CIFAR-100 5e6).
IDN_MAX_SAMPLES_X_CLASSES = 10 ** 8


def check_idn_size(n: int, num_classes: int) -> None:
    """Raise :class:`IdnTooLarge` (one line: why and what instead) where N x C exceeds the limit, before
    any pixel is read."""
    if n * num_classes > IDN_MAX_SAMPLES_X_CLASSES:
        gb = 2 * n * num_classes * 8 / 1e9
        raise IdnTooLarge(
            f"idn noise for {n:,} samples x {num_classes:,} classes is refused: its generator holds N x C float64 "
            f"scores and cdf ({gb:.1f} GB) and every raw pixel in memory, made for CIFAR / Tiny-ImageNet sizes "
            f"(N x C at most {IDN_MAX_SAMPLES_X_CLASSES:.0e}); use noise_mode sym or asym, or bring your own noisy "
            "labels (a csv, noise_mode real)")


class NoiseCacheError(ValueError):
    """Base class for problems with a noisy-label cache file."""


class NoiseCacheMismatch(NoiseCacheError):
    """A cache file exists but was made for different clean labels / settings."""


class NoiseCacheCorrupt(NoiseCacheError):
    """A cache file exists but cannot be read or parsed."""


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------

def _check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    return num_classes


def _check_convention(convention) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"unknown noise convention {convention!r}; expected one of {list(CONVENTIONS)}")
    return convention


def _check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown noise mode {mode!r}; expected one of {list(MODES)} "
                         "('real' noise is loaded from files, not generated here)")
    return mode


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise ValueError(f"noise ratio must be a number in [0, 1], got {ratio!r}")
    ratio = float(ratio)
    if not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"noise ratio must be in [0, 1], got {ratio!r}")
    return ratio


def _check_labels(labels, num_classes: int, name: str = "clean_labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of shape (N,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) \
                and np.all(arr == np.round(arr)):
            pass  # integral floats are accepted
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------------------------
# noise generators
# ----------------------------------------------------------------------------------------------

def asymmetric_map(dataset: str, num_classes: int, *, convention: str) -> np.ndarray:
    """Deterministic class map used by ``asym`` noise.

    Returns an int64 array ``m`` of shape ``(C,)`` with ``m[y]`` = the flipped label of class ``y``.

    * ``convention="ido"``: ``cifar100`` -> next class within consecutive blocks of 5 fine-label
      indices (``y -> y+1``, ``y -> y-4`` when ``(y+1) % 5 == 0``; needs ``C % 5 == 0``);
      ``cifar10`` -> truck(9)->automobile(1), bird(2)->airplane(0), deer(4)->horse(7),
      cat(3)<->dog(5), other classes unchanged (needs ``C == 10``); any other dataset ->
      ``(y+1) mod C``.
    * ``convention="act"``: ``(y+1) mod C`` for every dataset.
    """
    num_classes = _check_num_classes(num_classes)
    convention = _check_convention(convention)
    y = np.arange(num_classes, dtype=np.int64)
    ds = (dataset or "").lower()
    if convention == "act":
        return (y + 1) % num_classes
    if ds == "cifar100":
        if num_classes % 5 != 0:
            raise ValueError("cifar100 block-of-5 asymmetric map needs num_classes divisible "
                             f"by 5, got {num_classes}")
        return np.where((y + 1) % 5 == 0, y - 4, y + 1)
    if ds == "cifar10":
        if num_classes != 10:
            raise ValueError(f"cifar10 asymmetric map needs num_classes == 10, got {num_classes}")
        m = y.copy()
        for src, dst in _CIFAR10_ASYM.items():
            m[src] = dst
        return m
    return (y + 1) % num_classes


def _select(rng: np.random.Generator, n: int, ratio: float) -> np.ndarray:
    """Exactly floor(ratio*n) distinct indices, uniformly at random. Shape (k,)."""
    k = int(math.floor(ratio * n + 1e-9))  # guard against 0.3*10 = 2.9999999999999996
    k = min(k, n)
    return rng.permutation(n)[:k]


def _select_each(rng: np.random.Generator, n: int, ratio: float) -> np.ndarray:
    """Indices of the samples chosen independently with probability ``ratio`` each (ACT). Shape (k,)."""
    return np.flatnonzero(rng.random(n) < ratio)


# how each convention chooses the flipped samples of sym/asym (stored in the cache file)
SELECTION = {"ido": "exact", "act": "per_sample"}
_SELECT = {"exact": _select, "per_sample": _select_each}


def _idn_labels(rng: np.random.Generator, clean: np.ndarray, ratio: float,
                num_classes: int, features: np.ndarray) -> np.ndarray:
    """Part-dependent instance noise (docs/fidelity.md#ido-31-cifar). clean: (N,), features: (N, D) -> (N,)."""
    from scipy.stats import truncnorm

    n, d = features.shape
    c = num_classes
    std = IDN_RATE_STD
    a, b = (0.0 - ratio) / std, (1.0 - ratio) / std
    q = np.asarray(truncnorm.rvs(a, b, loc=ratio, scale=std, size=n, random_state=rng),
                   dtype=np.float64).reshape(n)
    q = np.clip(q, 0.0, 1.0)

    # Scores s_i = x_i @ W[y_i], one matmul per class; W[c] of shape (D, C) is drawn class by
    # class (the full (C, D, C) tensor is never held in memory).
    order = np.argsort(clean, kind="stable")
    counts = np.bincount(clean, minlength=c)
    starts = np.concatenate(([0], np.cumsum(counts)))
    scores = np.empty((n, c), dtype=np.float64)
    for k in range(c):
        w_k = rng.standard_normal((d, c), dtype=np.float32)
        if counts[k] == 0:
            continue
        idx = order[starts[k]:starts[k + 1]]
        x_k = np.asarray(features[idx], dtype=np.float32)
        scores[idx] = x_k @ w_k

    rows = np.arange(n)
    scores[rows, clean] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)  # stable softmax (finite: C >= 2)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=1, keepdims=True)
    probs = scores
    probs *= q[:, None]
    probs[rows, clean] += 1.0 - q

    cdf = np.cumsum(probs, axis=1)
    u = rng.random(n) * cdf[:, -1]
    noisy = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(noisy, c - 1).astype(np.int64)


def make_noisy_labels(clean_labels, *, mode: str, ratio: float, num_classes: int, seed: int,
                      convention: str = "ido", dataset: str = "",
                      features: Optional[np.ndarray] = None) -> np.ndarray:
    """Corrupt ``clean_labels`` with synthetic noise.

    Args:
        clean_labels: integer array of shape ``(N,)`` with values in ``[0, C)``.
        mode: ``"sym"``, ``"asym"`` or ``"idn"``.
        ratio: noise ratio in ``[0, 1]``; sym/asym change exactly ``floor(ratio*N)`` selected
            samples (``ido``) or each sample with probability ``ratio`` (``act``); idn uses it as the
            mean per-sample flip rate.
        num_classes: ``C``.
        seed: seed of the private ``np.random.Generator`` used for this call.
        convention: ``"ido"`` (default) or ``"act"`` (see the module docstring).
        dataset: dataset name, selects the ``asym`` map (``"cifar10"``, ``"cifar100"``, ...).
        features: ``(N, D)`` array of raw pixel values (CHW-flattened, 0-255), required for
            ``idn`` only.

    Returns:
        int64 array of shape ``(N,)`` with the noisy labels.
    """
    num_classes = _check_num_classes(num_classes)
    mode = _check_mode(mode)
    ratio = _check_ratio(ratio)
    convention = _check_convention(convention)
    seed = _check_seed(seed)
    clean = _check_labels(clean_labels, num_classes)
    n = clean.shape[0]

    feats = None
    if mode == "idn" and (ratio > 0.0 or features is not None):
        if features is None:
            raise ValueError("idn noise needs features: an (N, D) array of raw pixel values")
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[0] != n or feats.shape[1] < 1:
            raise ValueError(f"idn features must have shape (N, D) = ({n}, D>=1), "
                             f"got {feats.shape}")
        if not (np.issubdtype(feats.dtype, np.integer) or np.issubdtype(feats.dtype, np.floating)):
            raise ValueError(f"idn features must be numeric, got dtype {feats.dtype}")

    noisy = clean.copy()
    if ratio == 0.0 or n == 0:
        return noisy

    rng = np.random.default_rng(seed)
    select = _SELECT[SELECTION[convention]]
    if mode == "sym":
        idx = select(rng, n, ratio)
        if convention == "ido":
            noisy[idx] = rng.integers(0, num_classes, size=idx.size, dtype=np.int64)
        else:  # act: uniform over the C-1 other classes
            offset = rng.integers(1, num_classes, size=idx.size, dtype=np.int64)
            noisy[idx] = (clean[idx] + offset) % num_classes
    elif mode == "asym":
        idx = select(rng, n, ratio)
        amap = asymmetric_map(dataset, num_classes, convention=convention)
        noisy[idx] = amap[clean[idx]]
    else:
        check_idn_size(n, num_classes)
        noisy = _idn_labels(rng, clean, ratio, num_classes, feats)
    return noisy


# ----------------------------------------------------------------------------------------------
# diagnostics
# ----------------------------------------------------------------------------------------------

def _pair(clean, noisy):
    clean = np.asarray(clean).astype(np.int64, copy=False).reshape(-1)
    noisy = np.asarray(noisy).astype(np.int64, copy=False).reshape(-1)
    if clean.shape != noisy.shape:
        raise ValueError(f"clean and noisy labels differ in shape: {clean.shape} vs {noisy.shape}")
    return clean, noisy


def transition_matrix(clean, noisy, num_classes: int) -> np.ndarray:
    """Empirical transition matrix ``T[i, j] = P(noisy = j | clean = i)``.

    clean, noisy: ``(N,)`` integer arrays in ``[0, C)``. Returns a float64 ``(C, C)`` array whose
    rows sum to 1 (rows of classes without samples are all zeros).
    """
    num_classes = _check_num_classes(num_classes)
    clean, noisy = _pair(clean, noisy)
    _check_labels(clean, num_classes, "clean labels")
    _check_labels(noisy, num_classes, "noisy labels")
    counts = np.bincount(clean * num_classes + noisy, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def realised_noise_rate(clean, noisy) -> float:
    """Fraction of samples whose noisy label differs from the clean one (0.0 for N == 0)."""
    clean, noisy = _pair(clean, noisy)
    if clean.size == 0:
        return 0.0
    return float(np.mean(clean != noisy))


# ----------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------

def clean_labels_sha256(clean_labels) -> str:
    """sha256 hex digest of the clean labels as contiguous little-endian int64, shape (N,)."""
    arr = np.ascontiguousarray(np.asarray(clean_labels).reshape(-1), dtype="<i8")
    return hashlib.sha256(arr.tobytes()).hexdigest()


def cache_dir(cfg) -> str:
    """The folder of the data caches of a run: ``noise_dir``, else ``{output_dir}/noise_file`` (the noisy-label
    files of :func:`noise_cache_path`, Clothing1M's subset list)."""
    return cfg.noise_dir or os.path.join(cfg.output_dir, "noise_file")


def noise_cache_path(cache_dir: Union[str, os.PathLike], *, dataset: str, mode: str,
                     ratio: float, seed: int, convention: str) -> str:
    """``{cache_dir}/{dataset}_{mode}_{ratio}_seed{seed}_{convention}.json`` (ratio as float)."""
    ratio = _check_ratio(ratio)
    name = f"{dataset}_{mode}_{ratio}_seed{int(seed)}_{convention}.json"
    return os.path.join(os.fspath(cache_dir), name)


def _write_cache(path: str, payload: dict) -> None:
    # the project's atomic writer (0666 less the umask, as every other output: colleagues sharing a
    # noise_dir read each other's files); compact JSON, not save_json's indented form, which would give
    # each of a million labels a line of its own and change the bytes earlier runs wrote
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())


def _read_cache(path: str) -> dict:
    try:
        with open(path, "r") as fh:
            data = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NoiseCacheCorrupt(
            f"noisy-label cache file {path} is unreadable or not valid JSON ({exc}); "
            "delete it to regenerate the noise") from exc
    required = ("num_samples", "clean_labels_sha256", "noisy_labels")
    if not isinstance(data, dict) or any(k not in data for k in required):
        raise NoiseCacheCorrupt(
            f"noisy-label cache file {path} lacks the fields {list(required)}; "
            "delete it to regenerate the noise")
    return data


def load_or_create_noisy_labels(
        clean_labels, *, cache_dir: Union[str, os.PathLike], dataset: str, mode: str,
        ratio: float, seed: int, convention: str, num_classes: int,
        features: Union[None, np.ndarray, Callable[[], np.ndarray]] = None,
        log: Optional[Callable[[str], None]] = None) -> tuple[np.ndarray, dict]:
    """Load the cached noisy labels for these settings, or generate and cache them.

    The cache file is ``{cache_dir}/{dataset}_{mode}_{ratio}_seed{seed}_{convention}.json`` with
    keys dataset, mode, ratio, seed, convention, selection ("exact" or "per_sample"), num_samples,
    clean_labels_sha256, realised_noise_rate, transition_matrix (C x C list, 6 decimals) and noisy_labels (N ints).
    An existing file is reused when its sample count and clean-label sha256 match; otherwise
    :class:`NoiseCacheMismatch` is raised (a corrupt file raises :class:`NoiseCacheCorrupt`).
    New files are written atomically (temp file in the same directory + ``os.replace``).

    Args:
        clean_labels: ``(N,)`` integer labels in ``[0, C)``.
        features: for ``idn`` only, the ``(N, D)`` raw-pixel array or a zero-argument callable
            returning it (called only when the labels must be generated).
        log: optional ``callable(str)`` receiving one summary line.

    Returns:
        ``(noisy_labels, info)``: noisy labels int64 ``(N,)``; ``info`` has
        ``realised_noise_rate`` (float), ``transition_matrix`` (float64 ``(C, C)``),
        ``path`` (str) and ``reused`` (bool).
    """
    num_classes = _check_num_classes(num_classes)
    mode = _check_mode(mode)
    ratio = _check_ratio(ratio)
    convention = _check_convention(convention)
    seed = _check_seed(seed)
    clean = _check_labels(clean_labels, num_classes)
    n = int(clean.shape[0])
    digest = clean_labels_sha256(clean)
    path = noise_cache_path(cache_dir, dataset=dataset, mode=mode, ratio=ratio, seed=seed,
                            convention=convention)

    reused = os.path.exists(path)
    if reused:
        data = _read_cache(path)
        if data.get("num_samples") != n or data.get("clean_labels_sha256") != digest:
            raise NoiseCacheMismatch(
                f"noisy-label cache file {path} does not match the current clean labels "
                f"(cached num_samples={data.get('num_samples')}, current {n}; sha256 "
                f"{'matches' if data.get('clean_labels_sha256') == digest else 'differs'}); "
                "delete the file or use another cache dir")
        if mode != "idn" and data.get("selection", "exact") != SELECTION[convention]:
            raise NoiseCacheMismatch(
                f"noisy-label cache file {path} chose its noisy samples by another rule "
                f"({data.get('selection', 'exact')}, the {convention} convention now uses "
                f"{SELECTION[convention]}); delete the file or use another cache dir")
        try:
            noisy = np.asarray(data["noisy_labels"], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise NoiseCacheCorrupt(f"noisy-label cache file {path} has malformed noisy_labels "
                                    f"({exc}); delete it to regenerate the noise") from exc
        if noisy.shape != (n,) or (n and (noisy.min() < 0 or noisy.max() >= num_classes)):
            raise NoiseCacheMismatch(
                f"noisy-label cache file {path} holds {noisy.shape} labels outside [0, "
                f"{num_classes}) or of the wrong length (expected {n}); delete the file or use "
                "another cache dir")
    else:
        feats = None
        if mode == "idn" and ratio > 0.0:
            check_idn_size(n, num_classes)  # before the pixels are read
            feats = features() if callable(features) else features
        noisy = make_noisy_labels(clean, mode=mode, ratio=ratio, num_classes=num_classes,
                                  seed=seed, convention=convention, dataset=dataset,
                                  features=feats)

    rate = realised_noise_rate(clean, noisy)
    tmat = transition_matrix(clean, noisy, num_classes)
    if not reused:
        payload = {
            "dataset": dataset,
            "mode": mode,
            "ratio": ratio,
            "seed": seed,
            "convention": convention,
            "selection": SELECTION[convention],
            "num_samples": n,
            "clean_labels_sha256": digest,
            "realised_noise_rate": rate,
            "transition_matrix": np.round(tmat, 6).tolist(),
            "noisy_labels": noisy.tolist(),
        }
        _write_cache(path, payload)

    if log is not None:
        log(f"noisy labels {dataset} {mode} ratio={ratio} seed={seed} convention={convention}: "
            f"realised noise rate {rate:.4f} ({'reused cache' if reused else 'generated'} "
            f"{path})")
    info = {"realised_noise_rate": rate, "transition_matrix": tmat, "path": path,
            "reused": reused}
    return noisy, info
