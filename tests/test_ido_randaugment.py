"""The strong view's RandAugment against docs/fidelity.md#ido-16-stage-2-views, pixel by pixel and over 2,000 seeded draws."""
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from dataloader import ido_randaugment as ra
from dataloader import transforms as tfm


def _image(side=40, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _px(img):
    return np.asarray(img).astype(np.int32)


def test_pool_is_the_16_ops_of_the_spec():
    assert len(ra.OPS) == len(set(ra.OPS)) == 16
    assert set(ra.OPS) == {"AutoContrast", "Equalize", "Invert", "Brightness", "Color", "Contrast", "Sharpness",
                           "Posterize", "Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Solarize",
                           "SolarizeAdd", "Cutout"}


def test_invert_autocontrast_equalize():
    img = _image()
    assert (_px(ra.apply_op(img, "Invert", 5)) == 255 - _px(img)).all()
    # a channel holding only 50, 100, 150 is stretched to 0, 127/128, 255
    levels = np.array([50, 100, 150], dtype=np.uint8)[np.arange(30) % 3].reshape(5, 6)
    low = Image.fromarray(np.stack([levels] * 3, axis=-1))
    out = _px(ra.apply_op(low, "AutoContrast", 5))
    assert set(np.unique(out[..., 0])) == {0, 127, 255} or set(np.unique(out[..., 0])) == {0, 128, 255}
    assert (_px(ra.apply_op(img, "Equalize", 3)) == _px(ImageOps.equalize(img))).all()


@pytest.mark.parametrize("v, factor", [(1, 0.28), (5, 1.0), (9, 1.72)])
def test_enhance_factor(v, factor):
    assert ra.enhance_factor(v) == pytest.approx(factor)
    img = _image()
    # Brightness blends with black: value * factor, clipped (PIL rounds: within 1)
    expected = np.clip(_px(img) * factor, 0, 255)
    assert np.abs(_px(ra.apply_op(img, "Brightness", v)) - expected).max() <= 1
    for name, enhancer in (("Color", ImageEnhance.Color), ("Contrast", ImageEnhance.Contrast),
                           ("Sharpness", ImageEnhance.Sharpness)):
        assert (_px(ra.apply_op(img, name, v)) == _px(enhancer(img).enhance(factor))).all(), name


@pytest.mark.parametrize("v, mask", [(1, 0xF0), (4, 0xF8), (9, 0xFE)])
def test_posterize_keeps_4_to_7_bits(v, mask):
    img = _image()
    assert (_px(ra.apply_op(img, "Posterize", v)) == (_px(img) & mask)).all()


@pytest.mark.parametrize("sign", [1, -1])
def test_rotate_nearest_black_corners(sign):
    white = Image.new("RGB", (41, 41), (255, 255, 255))
    out = _px(ra.apply_op(white, "Rotate", 9, sign=sign))  # 27 degrees
    assert (out[0, 0] == 0).all() and (out[20, 20] == 255).all()
    assert set(np.unique(out)) == {0, 255}  # nearest neighbour: no blended values
    img = _image()
    assert (_px(ra.apply_op(img, "Rotate", 3, sign=sign)) == _px(img.rotate(sign * 9))).all()


@pytest.mark.parametrize("name, sign", [("ShearX", 1), ("ShearX", -1), ("ShearY", 1), ("ShearY", -1)])
def test_shear_by_0_09_nearest_black(name, sign):
    img = _image()
    a, out = _px(img), _px(ra.apply_op(img, name, 9, sign=sign))
    s = sign * 0.09
    side = a.shape[0]
    expected = np.zeros_like(a)
    for y in range(side):
        for x in range(side):
            # PIL samples the input at the output pixel's centre
            if name == "ShearX":
                xi, yi = int(np.floor(x + 0.5 + s * (y + 0.5))), y
            else:
                xi, yi = x, int(np.floor(y + 0.5 + s * (x + 0.5)))
            if 0 <= xi < side and 0 <= yi < side:
                expected[y, x] = a[yi, xi]
    assert (out == expected).all()


@pytest.mark.parametrize("name, sign", [("TranslateX", 1), ("TranslateX", -1), ("TranslateY", 1), ("TranslateY", -1)])
def test_translate_10px_at_224(name, sign):
    assert ra.translate_pixels(9, 224) == 10 and ra.translate_pixels(1, 224) == 1
    img = _image(224)
    a, out = _px(img), _px(ra.apply_op(img, name, 9, sign=sign))
    axis = 1 if name == "TranslateX" else 0
    a, out = np.moveaxis(a, axis, 0), np.moveaxis(out, axis, 0)
    if sign > 0:    # content moves by -10 px: output column x shows input column x + 10
        assert (out[:214] == a[10:]).all() and (out[214:] == 0).all()
    else:
        assert (out[10:] == a[:214]).all() and (out[:10] == 0).all()


@pytest.mark.parametrize("v, threshold", [(1, 231), (5, 128), (9, 26)])
def test_solarize_threshold(v, threshold):
    img = _image()
    a = _px(img)
    assert ra.solarize_threshold(v) == threshold
    assert (_px(ra.apply_op(img, "Solarize", v)) == np.where(a >= threshold, 255 - a, a)).all()


def _one_pixel(rgb):
    return Image.fromarray(np.array([[rgb]], dtype=np.uint8))


def test_solarize_add():
    assert tuple(_px(ra.apply_op(_one_pixel((10, 100, 200)), "SolarizeAdd", 1))[0, 0]) == (21, 111, 44)
    # -99, clipped at 0, nothing reaches 128
    assert tuple(_px(ra.apply_op(_one_pixel((10, 100, 200)), "SolarizeAdd", 9, sign=-1))[0, 0]) == (0, 1, 101)
    # +99: 200 clips to 255, then solarizes to 0; 30 -> 129 -> 126
    assert tuple(_px(ra.apply_op(_one_pixel((200, 30, 0)), "SolarizeAdd", 9))[0, 0]) == (0, 126, 99)


def test_cutout_op_square_of_9_percent():
    black = Image.new("RGB", (100, 100))
    for seed in range(20):
        out = _px(ra.apply_op(black, "Cutout", 9, rng=random.Random(seed)))
        grey = (out == 127).all(axis=2)
        ys, xs = np.nonzero(grey)
        # side floor(0.09 * 100) = 9, PIL's rectangle includes both corners: at most 10 x 10
        assert grey.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) <= 100
        assert (out[~grey] == 0).all()


def test_final_cutout_area_range_and_border_behaviour():
    """c = floor(0.15 * 224) = 33: a full square covers 34 x 34 px (2.30 %); cut at the right/bottom edge
    down to 17 x 17 (0.58 % in the corner); never cut at the left/top edge."""
    black = Image.new("RGB", (224, 224))
    policy = ra.IdoRandAugment(n=0, m=10, cutout=0.15, rng=random.Random(1))
    areas, left_edge_widths = [], []
    for _ in range(200):
        grey = (_px(policy(black)) == 127).all(axis=2)
        ys, xs = np.nonzero(grey)
        areas.append(grey.sum())
        assert grey.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # one solid rectangle
        if xs.min() == 0:
            left_edge_widths.append(xs.max() + 1)
    assert 17 * 17 <= min(areas) and max(areas) == 34 * 34
    assert set(left_edge_widths) == {34}  # a square at the left edge is shifted inside, not cut
    assert ra.cutout_box(223.9, 223.9, 33, 224, 224) == (207, 207, 224, 224)  # the corner: 17 x 17 px
    assert ra.cutout_box(0.5, 0.5, 33, 224, 224) == (0, 0, 33, 33)


def test_2000_draws_frequencies_and_levels():
    draws = []
    policy = ra.IdoRandAugment(n=2, m=10, cutout=0.15, rng=random.Random(123),
                               on_op=lambda name, v, applied, sign: draws.append((name, v, applied, sign)))
    img = _image(16)
    for _ in range(2000):
        policy(img)
    assert len(draws) == 4000
    counts = Counter(name for name, *_ in draws)
    assert set(counts) == set(ra.OPS)
    sd = (4000 * (1 / 16) * (15 / 16)) ** 0.5   # about 15.3
    assert all(abs(c - 250) < 4.5 * sd for c in counts.values()), counts
    applied = sum(a for _, _, a, _ in draws)
    assert abs(applied - 2000) < 4.5 * (4000 * 0.25) ** 0.5
    assert {v for _, v, _, _ in draws} == set(range(1, 10))
    signs = [s for name, _, a, s in draws if a and name in ra.SIGNED]
    assert abs(signs.count(-1) - len(signs) / 2) < 4.5 * (len(signs) / 4) ** 0.5
    moves = [ra.translate_pixels(v, 224) for name, v, a, _ in draws if a and name.startswith("Translate")]
    assert moves and max(moves) <= 0.045 * 224


def test_cifar10_magnitude_draws_levels_1_to_4():
    levels = set()
    policy = ra.IdoRandAugment(n=2, m=5, cutout=0.0, rng=random.Random(0),
                               on_op=lambda name, v, applied, sign: levels.add(v))
    img = _image(8)
    for _ in range(200):
        policy(img)
    assert levels == {1, 2, 3, 4}
    # no op drawn at all when no level exists, and no final square when cutout is 0
    assert (_px(ra.IdoRandAugment(n=2, m=1, cutout=0.0)(img)) == _px(img)).all()


def test_stage2_strong_view_uses_the_official_policy():
    """Both families: weak geometric ops, then IdoRandAugment with the config's n/m/cutout, then _finish."""
    for family in ("small", "large"):
        views = tfm.stage2_transform(family=family, resolution=32, mean=(0.5,) * 3, std=(0.25,) * 3,
                                     randaug_n=2, randaug_m=5, cutout=0.2)
        names = [type(op).__name__ for op in views.strong.transforms]
        assert "IdoRandAugment" in names and "RandomErasing" not in names and "RandAugment" not in names
        policy = next(op for op in views.strong.transforms if isinstance(op, ra.IdoRandAugment))
        assert (policy.n, policy.m, policy.cutout) == (2, 5, 0.2)
        weak_names = [type(op).__name__ for op in views.weak.transforms]
        assert names[:names.index("IdoRandAugment")] == weak_names[:names.index("IdoRandAugment")]
