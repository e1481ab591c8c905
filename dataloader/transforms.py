"""Training and test transforms of IDO (docs/fidelity.md#ido-16-stage-2-views, #ido-3-data-handling) built from torchvision and timm.

Two families:

* ``small``: in-memory low-resolution images (CIFAR, digits) up-sampled to ``resolution``.
  Stage 1: RandomCrop(native, pad native/8) -> Resize -> HFlip. Stage 2 weak: Resize -> HFlip ->
  RandomCrop(resolution, pad 12.5 %, reflect).
* ``large``: images from files. Stage 1: Resize(1.14 x res, square) -> RandomCrop -> HFlip. Stage 2 weak:
  the same; test: Resize(res).  A data set changes the resize ratio, square vs shorter-side resizing
  and the test crop with a :class:`LargeSpec` (Clothing1M, WebVision, ACTO's web and food sets).

Stage-2 strong view = weak view (drawn anew) + the official RandAugment and its final grey cutout,
:class:`dataloader.ido_randaugment.IdoRandAugment` (docs/fidelity.md#ido-16-stage-2-views; not timm's policy, which differs op by op).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torchvision import transforms as T

from dataloader.ido_randaugment import IdoRandAugment


@dataclass(frozen=True)
class LargeSpec:
    """Per-data-set resize/crop of the ``large`` family (``s = round(resize_ratio * resolution)``).

    ``stage1_resize`` / ``stage2_resize``: ``"square"`` = Resize((s, s)), ``"shorter"`` = shorter side to s,
    both followed by RandomCrop(resolution).  ``test``: ``"resize"`` = Resize((res, res));
    ``"square_center"`` = Resize((s, s)) -> CenterCrop(res); ``"shorter_center"`` = Resize(s) -> CenterCrop(res).
    """

    resize_ratio: float = 256 / 224
    stage1_resize: str = "square"
    stage2_resize: str = "square"
    test: str = "resize"

    def resize(self, resolution: int, mode: str) -> T.Resize:
        side = round(resolution * self.resize_ratio)
        size = (side, side) if mode == "square" else side
        return T.Resize(size, interpolation=T.InterpolationMode.BILINEAR, antialias=True)


class TwoViews:
    """Return ``(weak(shared(img)), strong(shared(img)))`` for one PIL image.

    ``shared`` is the deterministic start both views have in common (the resize): computed once per
    sample instead of once per view, with the same pixels (a resize is a pure function of the image).
    """

    def __init__(self, weak: Callable, strong: Callable, shared: Callable | None = None):
        self.weak, self.strong, self.shared = weak, strong, shared

    def __call__(self, img):
        if self.shared is not None:
            img = self.shared(img)
        return self.weak(img), self.strong(img)

    def __repr__(self):
        return f"TwoViews(shared={self.shared}, weak={self.weak}, strong={self.strong})"


def _finish(mean, std) -> list:
    """The last op of every transform: a uint8 CHW tensor.  ``mean`` / ``std`` are applied on the training
    device by :class:`dataloader.device_normalise.DeviceNormaliser` (``Data.normalise``), not here."""
    return [T.PILToTensor()]


def _maybe_flip(hflip: bool) -> list:
    return [T.RandomHorizontalFlip()] if hflip else []


def _resize(resolution: int) -> T.Resize:
    return T.Resize((resolution, resolution), interpolation=T.InterpolationMode.BILINEAR, antialias=True)


def stage1_transform(*, family: str, resolution: int, native_size: int, mean, std, hflip: bool = True,
                     large: LargeSpec | None = None):
    """Stage-1 training transform (one view)."""
    if family == "small":
        ops = [T.RandomCrop(native_size, padding=max(1, native_size // 8))]
        if resolution != native_size:
            ops.append(_resize(resolution))
        ops += _maybe_flip(hflip)
    else:
        large = large or LargeSpec()
        ops = [large.resize(resolution, large.stage1_resize), T.RandomCrop(resolution)] + _maybe_flip(hflip)
    return T.Compose(ops + _finish(mean, std))


def _weak_ops(*, family: str, resolution: int, hflip: bool, large: LargeSpec | None = None) -> list:
    """The weak view's PIL ops; the first is the deterministic resize (shared by the two views)."""
    if family == "small":
        pad = round(0.125 * resolution)
        return [_resize(resolution)] + _maybe_flip(hflip) + [
            T.RandomCrop(resolution, padding=pad, padding_mode="reflect")]
    large = large or LargeSpec()
    return [large.resize(resolution, large.stage2_resize)] + _maybe_flip(hflip) + [T.RandomCrop(resolution)]


def stage2_transform(*, family: str, resolution: int, mean, std, hflip: bool = True,
                     randaug_n: int = 2, randaug_m: int = 10, cutout: float = 0.15,
                     large: LargeSpec | None = None) -> TwoViews:
    """Stage-2 (and ACTO) training transform: ``(weak, strong)`` views of one image."""
    resize, *random_ops = _weak_ops(family=family, resolution=resolution, hflip=hflip, large=large)
    weak = T.Compose(random_ops + _finish(mean, std))
    strong = T.Compose(random_ops + [IdoRandAugment(n=randaug_n, m=randaug_m, cutout=cutout)] + _finish(mean, std))
    return TwoViews(weak, strong, shared=resize)


def test_transform(*, family: str, resolution: int, mean, std, large: LargeSpec | None = None):
    """Evaluation transform."""
    if family == "small" or large is None or large.test == "resize":
        return T.Compose([_resize(resolution)] + _finish(mean, std))
    mode = "square" if large.test == "square_center" else "shorter"
    return T.Compose([large.resize(resolution, mode), T.CenterCrop(resolution)] + _finish(mean, std))
