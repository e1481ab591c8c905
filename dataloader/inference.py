"""Image file -> model input tensor for an exported model (``predict.py``): the one route, in one place.

The exported file carries the evaluation transform as plain values (``test_transform``, ``mean``,
``std``; see :mod:`model.export`); :func:`input_transform` rebuilds exactly the transform the run
evaluated with (PIL image -> uint8 tensor), :func:`load_input` applies it to one image file, and
:func:`input_normaliser` turns a batch of those into the model's float input on its device, as training did.
"""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image

from dataloader import transforms as tfm
from dataloader.device_normalise import DeviceNormaliser

LARGE_FIELDS = ("resize_ratio", "stage1_resize", "stage2_resize", "test")


def input_transform(exported: dict) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform of an exported model dict (PIL RGB image -> uint8 (3, res, res) tensor)."""
    spec = exported["test_transform"]
    large = tfm.LargeSpec(**{k: spec[k] for k in LARGE_FIELDS}) if spec["family"] == "large" else None
    return tfm.test_transform(family=spec["family"], resolution=spec["resolution"], mean=tuple(exported["mean"]),
                              std=tuple(exported["std"]), large=large)


def input_normaliser(exported: dict) -> DeviceNormaliser:
    """uint8 (B, 3, res, res) batch -> the model's float32 input, with the run's mean / std, on the batch's device."""
    return DeviceNormaliser(exported["mean"], exported["std"])


def load_input(path: str, transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """The uint8 (3, res, res) model input of the image file ``path`` (any mode, converted to RGB).

    Raises OSError / ValueError (PIL's) for a file that is not a readable image.
    """
    with Image.open(path) as img:
        return transform(img.convert("RGB"))
