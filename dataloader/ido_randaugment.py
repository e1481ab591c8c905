"""The strong view's RandAugment as the official IDO code draws it (docs/fidelity.md#ido-16-stage-2-views, table and three steps).

A library RandAugment (timm's) differs op by op: it translates up to 30 % of the side instead of 4.5 %,
shears up to 0.3 instead of 0.09, solarize-adds differently, has no Cutout op and fills grey with
bilinear resampling.  This module reproduces the official "wogeo" policy with the DISC 16-op pool:

1. draw ``n`` ops uniformly with replacement from :data:`OPS`;
2. per drawn op an integer ``v`` uniform in ``{1, ..., m-1}``, then with probability 0.5 apply the op at
   ``v`` (``f = v / 10``; "±" = the sign flips with probability 0.5);
3. always a final grey cutout of side ``floor(cutout * S)`` (:func:`cutout_box`: cut at the right and
   bottom edges, never at the left and top ones; PIL's rectangle includes both corners).

Images are PIL RGB images of any size; ``S`` is ``min(W, H)``.  Every random number comes from one
``random.Random``-like object (the module ``random`` by default, which DataLoader seeds per worker).
Parameters are computed in integers where the spec floors a product, so no float rounding moves them.
"""
from __future__ import annotations

import random as _random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

GREY = (127, 127, 127)

OPS = ("AutoContrast", "Equalize", "Invert", "Brightness", "Color", "Contrast", "Sharpness", "Posterize",
       "Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Solarize", "SolarizeAdd", "Cutout")

# ops whose parameter takes a random sign ("±" in the table)
SIGNED = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "SolarizeAdd"})

_ENHANCE = {"Brightness": ImageEnhance.Brightness, "Color": ImageEnhance.Color,
            "Contrast": ImageEnhance.Contrast, "Sharpness": ImageEnhance.Sharpness}


def enhance_factor(v: int) -> float:
    """Brightness/Color/Contrast/Sharpness factor ``0.1 + 1.8 f`` (0.28-1.72 for v = 1..9)."""
    return 0.1 + 1.8 * v / 10


def posterize_bits(v: int) -> int:
    """Bits kept by Posterize: ``floor(4 f) + 4`` (4-7)."""
    return 4 * v // 10 + 4


def rotate_degrees(v: int) -> int:
    """``floor(30 f)`` degrees (3-27) before the sign."""
    return 30 * v // 10


def shear_factor(v: int) -> float:
    """``0.1 f`` (0.01-0.09) before the sign."""
    return v / 100


def translate_pixels(v: int, side: int) -> int:
    """``floor(0.05 f * side)`` pixels before the sign (<= 4.5 % of the side: 10 px at 224)."""
    return v * side // 200


def solarize_threshold(v: int) -> int:
    """Solarize inverts values >= ``256 - floor(256 f)`` (231 ... 26)."""
    return 256 - 256 * v // 10


def solarize_add_amount(v: int) -> int:
    """SolarizeAdd adds ``floor(110 f)`` (11-99) before the sign."""
    return 11 * v


def cutout_op_side(v: int, width: int, height: int) -> int:
    """Side of the Cutout op's square: ``floor(0.1 f * min(W, H))`` (<= 9 % of the side)."""
    return v * min(width, height) // 100


def cutout_box(x: float, y: float, side: int, width: int, height: int) -> tuple[int, int, int, int]:
    """PIL box (x0, y0, x1, y1), corners inclusive, of a square of ``side`` centred at real (x, y).

    x0 = floor(max(0, x - side/2)); x1 = floor(min(W, x0 + side)); likewise in y.  So a square near the
    right or bottom edge is cut, one near the left or top edge is shifted inside.
    """
    x0 = int(max(0.0, x - side / 2.0))
    y0 = int(max(0.0, y - side / 2.0))
    return x0, y0, int(min(width, x0 + side)), int(min(height, y0 + side))


def grey_cutout(img: Image.Image, side: int, rng=_random) -> Image.Image:
    """A (127, 127, 127) square of ``side`` at a uniformly drawn real-valued centre (a copy of ``img``)."""
    width, height = img.size
    x = rng.uniform(0, width)
    y = rng.uniform(0, height)
    out = img.copy()
    ImageDraw.Draw(out).rectangle(cutout_box(x, y, side, width, height), fill=GREY)
    return out


def _affine(img: Image.Image, coeffs: tuple) -> Image.Image:
    # PIL maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f); nearest, black outside
    return img.transform(img.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.NEAREST,
                         fillcolor=(0, 0, 0))


def _solarize_add(img: Image.Image, amount: int) -> Image.Image:
    arr = np.asarray(img, dtype=np.int32) + amount
    return ImageOps.solarize(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), 128)


def apply_op(img: Image.Image, name: str, v: int, *, sign: int = 1, rng=_random) -> Image.Image:
    """Apply op ``name`` at integer level ``v`` with ``sign`` (+1/-1, used by the ops in :data:`SIGNED`).

    ``rng`` places the square of the Cutout op.  Returns a new image of the same size and mode.
    """
    width, height = img.size
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name in _ENHANCE:
        return _ENHANCE[name](img).enhance(enhance_factor(v))
    if name == "Posterize":
        return ImageOps.posterize(img, posterize_bits(v))
    if name == "Rotate":
        return img.rotate(sign * rotate_degrees(v))  # PIL defaults: nearest, same size, black corners
    if name == "ShearX":
        return _affine(img, (1, sign * shear_factor(v), 0, 0, 1, 0))
    if name == "ShearY":
        return _affine(img, (1, 0, 0, sign * shear_factor(v), 1, 0))
    if name == "TranslateX":
        return _affine(img, (1, 0, sign * translate_pixels(v, width), 0, 1, 0))
    if name == "TranslateY":
        return _affine(img, (1, 0, 0, 0, 1, sign * translate_pixels(v, height)))
    if name == "Solarize":
        return ImageOps.solarize(img, solarize_threshold(v))
    if name == "SolarizeAdd":
        return _solarize_add(img, sign * solarize_add_amount(v))
    if name == "Cutout":
        return grey_cutout(img, cutout_op_side(v, width, height), rng)
    raise ValueError(f"unknown RandAugment op {name!r}; expected one of {', '.join(OPS)}")


class IdoRandAugment:
    """The official strong-view policy on a PIL image: ``n`` ops at levels in {1..m-1}, then the cutout.

    ``n = 0`` or ``m < 2`` draws no op (no level exists); ``cutout = 0`` skips the final square.
    ``on_op(name, v, applied, sign)`` (tests only) sees every draw.
    """

    def __init__(self, *, n: int, m: int, cutout: float, rng=None,
                 on_op: Callable[[str, int, bool, int], None] | None = None):
        self.n, self.m, self.cutout = n, m, cutout
        self.rng, self.on_op = rng, on_op

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = self.rng or _random
        if self.n > 0 and self.m >= 2:
            for name in rng.choices(OPS, k=self.n):
                v = rng.randint(1, self.m - 1)
                applied = rng.random() < 0.5
                sign = 1
                if applied:
                    if name in SIGNED and rng.random() < 0.5:
                        sign = -1
                    img = apply_op(img, name, v, sign=sign, rng=rng)
                if self.on_op is not None:
                    self.on_op(name, v, applied, sign)
        side = int(self.cutout * min(img.size))
        if self.cutout > 0:
            img = grey_cutout(img, side, rng)
        return img

    def __repr__(self) -> str:
        return f"IdoRandAugment(n={self.n}, m={self.m}, cutout={self.cutout})"
