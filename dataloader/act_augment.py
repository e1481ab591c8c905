"""ACT's own training and test views (``views: act``; docs/fidelity.md#act-19a-views), re-created on PIL images.

ACT's code takes its strong policies from the pip package ``randaugment`` 1.0.2, which no longer
imports on numpy >= 1.24; this module re-creates both policies exactly:

* CIFAR family (``small``): AutoAugment's CIFAR-10 policy, :class:`Cifar10Policy`.  The 25
  sub-policies are torchvision's table (``AutoAugmentPolicy.CIFAR10``, the same list); the ops are
  ACT's, which differ from torchvision's in three details: Rotate always turns by +m degrees
  (counter-clockwise; torchvision draws a sign), ShearX/Y resample bicubically (torchvision:
  nearest) and Solarize's thresholds are ``linspace(256, 0)`` (torchvision: ``linspace(255, 0)``).
* Web and food sets (``large``): the UDA-style RandAugment, :class:`ActRandAugment`: two (op, bin)
  pairs drawn uniformly from 15 ops x bins 1..9, each applied with probability 0.5, with its own Cutout.

Every op draws from Python's ``random`` (seeded per epoch and per DataLoader worker by the
engine), unless a ``random.Random`` is given (tests).  Views end with ``transforms._finish(mean,
std)``; ACT normalises with ImageNet statistics everywhere, which ``build_data`` passes in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from torchvision import transforms as T

from dataloader.transforms import LargeSpec, TwoViews, _finish, _maybe_flip, _resize

NUM_BINS = 10
FILL = (128, 128, 128)            # shear / translate / rotate fill of ACT's policies
CUTOUT_FILL = (125, 122, 113)     # the RandAugment Cutout's colour
CIFAR_PADDING_FRACTION = 1 / 8    # ACT: RandomCrop(32, padding=4), zero fill

# magnitude of every op at bin 0..9 (docs/fidelity.md#act-19a-views); Translate is a fraction of the image side,
# Cutout a side in pixels (not scaled with the image), Color/Contrast/Sharpness/Brightness 1 +- m
MAGNITUDES: dict[str, tuple] = {
    "ShearX": tuple(np.linspace(0, 0.3, NUM_BINS).tolist()),
    "ShearY": tuple(np.linspace(0, 0.3, NUM_BINS).tolist()),
    "TranslateX": tuple(np.linspace(0, 150 / 331, NUM_BINS).tolist()),
    "TranslateY": tuple(np.linspace(0, 150 / 331, NUM_BINS).tolist()),
    "Rotate": tuple(np.linspace(0, 30, NUM_BINS).tolist()),
    "Color": tuple(np.linspace(0.0, 0.9, NUM_BINS).tolist()),
    "Contrast": tuple(np.linspace(0.0, 0.9, NUM_BINS).tolist()),
    "Sharpness": tuple(np.linspace(0.0, 0.9, NUM_BINS).tolist()),
    "Brightness": tuple(np.linspace(0.0, 0.9, NUM_BINS).tolist()),
    "Posterize": tuple(int(b) for b in np.round(np.linspace(8, 4, NUM_BINS))),
    "Solarize": tuple(np.linspace(256, 0, NUM_BINS).tolist()),
    "Cutout": tuple(int(s) for s in np.round(np.linspace(0, 20, NUM_BINS))),
    "AutoContrast": (0,) * NUM_BINS,
    "Equalize": (0,) * NUM_BINS,
    "Invert": (0,) * NUM_BINS,
}

# the UDA RandAugment's 15 ops, in the order of the pip package's list
RANDAUG_OPS = ("Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX", "TranslateY",
               "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness")
RANDAUG_BINS = (1, 9)   # inclusive range of the magnitude bin
RANDAUG_NUM_OPS = 2
RANDAUG_PROB = 0.5


def _sign(rng) -> int:
    return rng.choice((-1, 1))


def _affine(img: Image.Image, coeffs: tuple, resample) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample, fillcolor=FILL)


def _rotate(img: Image.Image, degrees: float) -> Image.Image:
    # rotated as RGBA (nearest) and composited on grey, so the uncovered corners are (128, 128, 128)
    rot = img.convert("RGBA").rotate(degrees)
    return Image.composite(rot, Image.new("RGBA", rot.size, (128,) * 4), rot).convert(img.mode)


def cutout(img: Image.Image, side: int, rng) -> Image.Image:
    """A square of side ``2 * (side // 2)`` px around an integer centre uniform over the image, clipped
    at the borders, filled with (125, 122, 113)."""
    w, h = img.size
    cx, cy = rng.randrange(w), rng.randrange(h)
    half = side // 2
    x0, y0, x1, y1 = max(0, cx - half), max(0, cy - half), min(w, cx + half), min(h, cy + half)
    img = img.copy()
    if x1 > x0 and y1 > y0:
        ImageDraw.Draw(img).rectangle((x0, y0, x1 - 1, y1 - 1), fill=CUTOUT_FILL)
    return img


_OPS: dict[str, Callable] = {
    "ShearX": lambda img, m, rng: _affine(img, (1, m * _sign(rng), 0, 0, 1, 0), Image.Resampling.BICUBIC),
    "ShearY": lambda img, m, rng: _affine(img, (1, 0, 0, m * _sign(rng), 1, 0), Image.Resampling.BICUBIC),
    "TranslateX": lambda img, m, rng: _affine(img, (1, 0, m * img.size[0] * _sign(rng), 0, 1, 0),
                                              Image.Resampling.NEAREST),
    "TranslateY": lambda img, m, rng: _affine(img, (1, 0, 0, 0, 1, m * img.size[1] * _sign(rng)),
                                              Image.Resampling.NEAREST),
    "Rotate": lambda img, m, rng: _rotate(img, m),  # never a negative angle (ACT)
    "Color": lambda img, m, rng: ImageEnhance.Color(img).enhance(1 + m * _sign(rng)),
    "Contrast": lambda img, m, rng: ImageEnhance.Contrast(img).enhance(1 + m * _sign(rng)),
    "Sharpness": lambda img, m, rng: ImageEnhance.Sharpness(img).enhance(1 + m * _sign(rng)),
    "Brightness": lambda img, m, rng: ImageEnhance.Brightness(img).enhance(1 + m * _sign(rng)),
    "Posterize": lambda img, m, rng: ImageOps.posterize(img, m),
    "Solarize": lambda img, m, rng: ImageOps.solarize(img, m),   # inverts pixels >= m
    "AutoContrast": lambda img, m, rng: ImageOps.autocontrast(img),
    "Equalize": lambda img, m, rng: ImageOps.equalize(img),
    "Invert": lambda img, m, rng: ImageOps.invert(img),
    "Cutout": lambda img, m, rng: cutout(img, m, rng),
}


def apply_op(img: Image.Image, name: str, bin_index: int | None, rng=random) -> Image.Image:
    """ACT's op ``name`` at magnitude bin ``bin_index`` (0..9; None for the ops without a magnitude)."""
    return _OPS[name](img, MAGNITUDES[name][bin_index or 0], rng)


def cifar10_subpolicies() -> list[tuple[tuple[str, float, int | None], tuple[str, float, int | None]]]:
    """AutoAugment's 25 CIFAR-10 sub-policies ``((op, p, bin), (op, p, bin))`` (torchvision's table)."""
    return list(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10).policies)


class Cifar10Policy:
    """One of the 25 sub-policies, uniformly; each of its two ops applied with its own probability."""

    def __init__(self, rng: random.Random | None = None):
        self.policies = cifar10_subpolicies()
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = self.rng or random
        for name, prob, bin_index in self.policies[rng.randrange(len(self.policies))]:
            if rng.random() < prob:
                img = apply_op(img, name, bin_index, rng)
        return img

    def __repr__(self):
        return "Cifar10Policy(ACT: rotate +m, bicubic shear, solarize linspace(256, 0))"


class ActRandAugment:
    """UDA-style RandAugment: ``num_ops`` (op, bin) pairs, op uniform over the 15, bin uniform in 1..9,
    each applied with probability ``prob``, in order."""

    def __init__(self, rng: random.Random | None = None, num_ops: int = RANDAUG_NUM_OPS, prob: float = RANDAUG_PROB):
        self.rng, self.num_ops, self.prob = rng, num_ops, prob

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = self.rng or random
        for _ in range(self.num_ops):
            name, bin_index = rng.choice(RANDAUG_OPS), rng.randint(*RANDAUG_BINS)
            if rng.random() < self.prob:
                img = apply_op(img, name, bin_index, rng)
        return img

    def __repr__(self):
        return f"ActRandAugment(n={self.num_ops}, p={self.prob}, bins {RANDAUG_BINS[0]}-{RANDAUG_BINS[1]})"


@dataclass(frozen=True)
class ActViews:
    """ACT's transforms of one data set: ``weak`` (one view; stage 1), ``pair`` ((weak, strong); stage 2
    and ACTO) and ``test``."""

    weak: Callable
    pair: TwoViews
    test: Callable


def act_views(*, family: str, resolution: int, native_size: int, mean, std, hflip: bool = True,
              large: LargeSpec | None = None) -> ActViews:
    """docs/fidelity.md#act-19a-views pipelines.

    ``small`` (CIFAR; digits): [Resize to ``resolution`` if the images are smaller] -> RandomCrop(pad
    1/8 side, zero fill) -> HFlip; strong adds :class:`Cifar10Policy`; test = the image as is.
    ``large`` (web, food): Resize(shorter side to round(ratio x resolution)) -> HFlip -> RandomCrop;
    strong adds :class:`ActRandAugment`; test = Resize -> CenterCrop (web 448/448, food 256/224).
    """
    if family == "small":
        pre = [] if resolution == native_size else [_resize(resolution)]
        weak_ops = pre + [T.RandomCrop(resolution, padding=round(resolution * CIFAR_PADDING_FRACTION))]
        weak_ops += _maybe_flip(hflip)
        strong_ops, test_ops = weak_ops + [Cifar10Policy()], pre
    else:
        large = large or LargeSpec()
        resize = large.resize(resolution, "shorter")
        weak_ops = [resize] + _maybe_flip(hflip) + [T.RandomCrop(resolution)]
        strong_ops, test_ops = weak_ops + [ActRandAugment()], [resize, T.CenterCrop(resolution)]
    weak = T.Compose(weak_ops + _finish(mean, std))
    return ActViews(weak=weak, pair=TwoViews(weak, T.Compose(strong_ops + _finish(mean, std))),
                    test=T.Compose(test_ops + _finish(mean, std)))
