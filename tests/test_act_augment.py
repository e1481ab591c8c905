"""ACT's views (dataloader/act_augment.py, docs/fidelity.md#act-19a-views), pinned on pixels and over seeded draws."""
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from dataloader import act_augment as aa
from dataloader.device_normalise import DeviceNormaliser
from dataloader.transforms import LargeSpec, TwoViews

# AutoAugment's CIFAR-10 policy as ACT's pip ``randaugment`` 1.0.2 lists it (SubPolicy(p1, op1, bin1,
# p2, op2, bin2)); the bins of AutoContrast / Equalize / Invert there select nothing (None here).
ACT_CIFAR10 = [
    (0.1, "Invert", 7, 0.2, "Contrast", 6), (0.7, "Rotate", 2, 0.3, "TranslateX", 9),
    (0.8, "Sharpness", 1, 0.9, "Sharpness", 3), (0.5, "ShearY", 8, 0.7, "TranslateY", 9),
    (0.5, "AutoContrast", 8, 0.9, "Equalize", 2), (0.2, "ShearY", 7, 0.3, "Posterize", 7),
    (0.4, "Color", 3, 0.6, "Brightness", 7), (0.3, "Sharpness", 9, 0.7, "Brightness", 9),
    (0.6, "Equalize", 5, 0.5, "Equalize", 1), (0.6, "Contrast", 7, 0.6, "Sharpness", 5),
    (0.7, "Color", 7, 0.5, "TranslateX", 8), (0.3, "Equalize", 7, 0.4, "AutoContrast", 8),
    (0.4, "TranslateY", 3, 0.2, "Sharpness", 6), (0.9, "Brightness", 6, 0.2, "Color", 8),
    (0.5, "Solarize", 2, 0.0, "Invert", 3), (0.2, "Equalize", 0, 0.6, "AutoContrast", 0),
    (0.2, "Equalize", 8, 0.6, "Equalize", 4), (0.9, "Color", 9, 0.6, "Equalize", 6),
    (0.8, "AutoContrast", 4, 0.2, "Solarize", 8), (0.1, "Brightness", 3, 0.7, "Color", 0),
    (0.4, "Solarize", 5, 0.9, "AutoContrast", 3), (0.9, "TranslateY", 9, 0.7, "TranslateY", 9),
    (0.9, "AutoContrast", 2, 0.8, "Solarize", 3), (0.8, "Equalize", 8, 0.1, "Invert", 3),
    (0.7, "TranslateY", 9, 0.9, "AutoContrast", 1),
]
NO_MAGNITUDE = {"AutoContrast", "Equalize", "Invert"}


def uniform(value, size=32) -> Image.Image:
    return Image.new("RGB", (size, size), (value,) * 3)


def random_image(seed=0, size=32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int64)


def test_cifar10_subpolicies_are_acts_table():
    expected = [((o1, p1, None if o1 in NO_MAGNITUDE else b1), (o2, p2, None if o2 in NO_MAGNITUDE else b2))
                for p1, o1, b1, p2, o2, b2 in ACT_CIFAR10]
    assert aa.cifar10_subpolicies() == expected


def test_magnitude_table():
    m = aa.MAGNITUDES
    assert m["Posterize"] == (8, 8, 7, 7, 6, 6, 5, 5, 4, 4)
    assert m["Cutout"] == (0, 2, 4, 7, 9, 11, 13, 16, 18, 20)
    assert m["Solarize"][0] == 256 and m["Solarize"][-1] == 0 and m["Solarize"][3] == pytest.approx(170.667, 1e-4)
    assert m["Rotate"][9] == 30 and m["ShearX"][9] == pytest.approx(0.3) and m["TranslateY"][9] == 150 / 331
    assert m["Brightness"][1] == pytest.approx(0.1) and set(aa.RANDAUG_OPS) <= set(m) and len(aa.RANDAUG_OPS) == 15


def test_rotate_is_always_counter_clockwise_with_grey_corners():
    img = np.zeros((32, 32, 3), np.uint8)
    img[14:18, 24:28] = 255  # a marker 10 px right of the centre
    img = Image.fromarray(img)
    outs = {px(aa.apply_op(img, "Rotate", 9, random.Random(s))).tobytes() for s in range(20)}
    assert len(outs) == 1  # no random sign
    out = px(aa.apply_op(img, "Rotate", 9, random.Random(0)))
    # +30 degrees counter-clockwise moves the marker up to about (x 24.7, y 11); -30 would put it at y 21
    assert out[11, 24].min() == 255 and out[21, 24].max() < 128
    assert tuple(out[0, 0]) == (128, 128, 128) and tuple(out[31, 31]) == (128, 128, 128)


def test_shear_is_bicubic_with_both_signs():
    img = random_image(1)
    m = aa.MAGNITUDES["ShearX"][9]
    bicubic = {s: px(img.transform(img.size, Image.Transform.AFFINE, (1, s * m, 0, 0, 1, 0),
                                   Image.Resampling.BICUBIC, fillcolor=(128,) * 3)).tobytes() for s in (-1, 1)}
    nearest = px(img.transform(img.size, Image.Transform.AFFINE, (1, m, 0, 0, 1, 0), Image.Resampling.NEAREST,
                               fillcolor=(128,) * 3)).tobytes()
    seen = Counter()
    for seed in range(40):
        out = px(aa.apply_op(img, "ShearX", 9, random.Random(seed))).tobytes()
        assert out in bicubic.values() and out != nearest
        seen[out == bicubic[1]] += 1
    assert seen[True] > 5 and seen[False] > 5
    # ShearY: a vertical shear of 0.3 moves the bottom row's content by about 0.3 * 31 rows
    out_y = px(aa.apply_op(img, "ShearY", 9, random.Random(0)))
    assert (out_y == 128).all(axis=-1).sum() > 100


def test_solarize_scale_256_differs_from_torchvision():
    # bin 3: threshold 256 * 6 / 9 = 170.67, so 170 stays (torchvision's 255 scale: threshold 170, inverted)
    assert px(aa.apply_op(uniform(170), "Solarize", 3))[0, 0, 0] == 170
    assert px(TF.solarize(uniform(170), 170.0))[0, 0, 0] == 85
    assert px(aa.apply_op(uniform(171), "Solarize", 3))[0, 0, 0] == 84
    assert px(aa.apply_op(uniform(255), "Solarize", 0))[0, 0, 0] == 255  # bin 0 never inverts
    assert px(aa.apply_op(uniform(0), "Solarize", 9))[0, 0, 0] == 255


def test_translate_magnitude_in_pixels():
    cols = np.tile(np.arange(32, dtype=np.uint8) * 4 + 1, (32, 1))
    img = Image.fromarray(np.repeat(cols[..., None], 3, axis=-1))
    shifts = set()
    for seed in range(20):
        out = px(aa.apply_op(img, "TranslateX", 9, random.Random(seed)))[0, :, 0]
        grey = out == 128
        assert grey.sum() in (14, 15)  # 150/331 of 32 px = 14.5 px uncovered
        kept = out[~grey]
        shifts.add(int((kept[0] - 1) // 4) if grey[-1] else -int(np.flatnonzero(~grey)[0]))
    assert len(shifts) == 2  # both directions
    assert (px(aa.apply_op(img, "TranslateX", 3, random.Random(0)))[0, :, 0] == 128).sum() in (5, 6)  # 5.2 px


def test_colour_ops_at_their_bins():
    assert px(aa.apply_op(uniform(100), "Brightness", 9, random.Random(0)))[0, 0, 0] in (190, 10)
    assert {px(aa.apply_op(uniform(100), "Brightness", 9, random.Random(s)))[0, 0, 0] for s in range(20)} == {190, 10}
    assert px(aa.apply_op(uniform(255), "Posterize", 2))[0, 0, 0] == 254   # 7 bits
    assert px(aa.apply_op(uniform(255), "Posterize", 9))[0, 0, 0] == 240   # 4 bits
    assert px(aa.apply_op(uniform(10), "Invert", None))[0, 0, 0] == 245
    img = random_image(2)
    assert np.array_equal(px(aa.apply_op(img, "Color", 0, random.Random(0))), px(img))  # factor 1


def recorded_ops(monkeypatch, augment, n: int) -> list:
    """The (op, bin) of every op ``augment`` applies over ``n`` images (the ops themselves replaced)."""
    calls = []
    monkeypatch.setattr(aa, "apply_op", lambda img, name, b, rng=None: calls.append((name, b)) or img)
    img = uniform(0, 4)
    for _ in range(n):
        augment(img)
    return calls


def test_cifar10_policy_frequencies(monkeypatch):
    """Sub-policies drawn uniformly, each op applied with its own probability: counts match the table."""
    n = 5000
    calls = recorded_ops(monkeypatch, aa.Cifar10Policy(rng=random.Random(0)), n)
    expected = Counter()
    for p1, o1, b1, p2, o2, b2 in ACT_CIFAR10:
        expected[(o1, None if o1 in NO_MAGNITUDE else b1)] += n * p1 / 25
        expected[(o2, None if o2 in NO_MAGNITUDE else b2)] += n * p2 / 25
    seen = Counter(calls)
    assert set(seen) <= set(expected)
    for key, mean in expected.items():
        assert abs(seen[key] - mean) < 5 * math.sqrt(mean) + 1, key


def test_randaugment_frequencies(monkeypatch):
    """Two ops per image, each of the 15 ops and bins 1..9 uniform, each applied with probability 0.5."""
    n = 6000
    calls = recorded_ops(monkeypatch, aa.ActRandAugment(rng=random.Random(0)), n)
    assert abs(len(calls) - n) < 5 * math.sqrt(n * 0.5)  # 2 n draws, half applied
    ops, bins = Counter(c[0] for c in calls), Counter(c[1] for c in calls)
    assert set(ops) == set(aa.RANDAUG_OPS) and set(bins) == set(range(1, 10))
    for count in ops.values():
        assert abs(count - len(calls) / 15) < 5 * math.sqrt(len(calls) / 15)
    for count in bins.values():
        assert abs(count - len(calls) / 9) < 5 * math.sqrt(len(calls) / 9)


class FixedCentre:
    def __init__(self, x, y):
        self.values = [x, y]

    def randrange(self, _):
        return self.values.pop(0)


@pytest.mark.parametrize("side, centre, box", [(20, (16, 16), (6, 6, 26, 26)), (7, (16, 16), (13, 13, 19, 19)),
                                               (20, (0, 31), (0, 21, 10, 32)), (0, (5, 5), None)])
def test_cutout_colour_size_and_clipping(side, centre, box):
    img = uniform(0)
    out = px(aa.cutout(img, side, FixedCentre(*centre)))
    filled = (out == np.array(aa.CUTOUT_FILL)).all(axis=-1)
    assert aa.CUTOUT_FILL == (125, 122, 113)
    if box is None:
        assert not filled.any()
        return
    x0, y0, x1, y1 = box
    assert filled[y0:y1, x0:x1].all() and filled.sum() == (x1 - x0) * (y1 - y0)
    assert (out[~filled] == 0).all()


def test_cutout_centre_uniform_over_seeded_draws():
    img = uniform(0, 8)
    hits = np.zeros((8, 8))
    for seed in range(800):
        hits += (px(aa.apply_op(img, "Cutout", 1, random.Random(seed))) == 125)[..., 0]  # side 2: one 2x2 square
    assert hits.sum() > 0 and hits.min() > 0  # every pixel covered at some draw


def test_pipelines_shapes_and_normalisation():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    small = aa.act_views(family="small", resolution=32, native_size=32, mean=mean, std=std)
    img = random_image(3)
    test = small.test(img)
    assert test.dtype == torch.uint8  # normalised on the device, like every view (dataloader.device_normalise)
    expected = (TF.to_tensor(img) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    assert torch.allclose(DeviceNormaliser(mean, std)(test), expected, atol=1e-6)  # the image as is, ImageNet stats
    assert isinstance(small.pair, TwoViews)
    assert any(isinstance(t, aa.Cifar10Policy) for t in small.pair.strong.transforms)
    crop = [t for t in small.weak.transforms if isinstance(t, T.RandomCrop)][0]
    assert crop.padding == 4 and crop.fill == 0
    digits = aa.act_views(family="small", resolution=32, native_size=8, mean=mean, std=std, hflip=False)
    assert digits.test(random_image(4, 8)).shape == (3, 32, 32)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in digits.weak.transforms)
    food = aa.act_views(family="large", resolution=224, native_size=256, mean=mean, std=std,
                        large=LargeSpec(stage2_resize="shorter", test="shorter_center"))
    wide = Image.new("RGB", (400, 300))
    assert food.test(wide).shape == (3, 224, 224) and food.pair(wide)[1].shape == (3, 224, 224)
    assert [t.size for t in food.test.transforms if isinstance(t, T.Resize)] == [256]
    assert any(isinstance(t, aa.ActRandAugment) for t in food.pair.strong.transforms)
