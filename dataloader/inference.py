"""Image file -> model input tensor for an exported model (``predict.py``): the one route, in one place.

The exported file carries the decoding and the evaluation transform as plain values (``decoding``,
``test_transform``, ``mean``, ``std``; see :mod:`model.export`); :func:`input_decoding` and
:func:`input_transform` rebuild exactly how the run decoded image files and evaluated (PIL image ->
uint8 tensor), :func:`load_input` applies both to one image file, and
:func:`input_normaliser` turns a batch of those into the model's float input on its device, as training did.
"""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image

from dataloader import transforms as tfm
from dataloader.decode import OFFICIAL, Decoding, decode_file
from dataloader.device_normalise import DeviceNormaliser

LARGE_FIELDS = ("resize_ratio", "stage1_resize", "stage2_resize", "test")


def input_transform(exported: dict) -> Callable[[Image.Image], torch.Tensor]:
    """The evaluation transform of an exported model dict (PIL RGB image -> uint8 (3, res, res) tensor)."""
    spec = exported["test_transform"]
    large = tfm.LargeSpec(**{k: spec[k] for k in LARGE_FIELDS}) if spec["family"] == "large" else None
    return tfm.test_transform(family=spec["family"], resolution=spec["resolution"], mean=tuple(exported["mean"]),
                              std=tuple(exported["std"]), large=large)


def input_decoding(exported: dict, *, max_pixels: int | None) -> tuple[Decoding, str | None]:
    """How training decoded its image files, and a note when the exported file does not say (exported
    before the decoding was recorded: the official decoding, as every model of that time was trained)."""
    record = exported.get("decoding")
    if record is None:
        return Decoding(OFFICIAL, max_pixels=max_pixels), (
            "the model file records no image decoding (exported by an older version); decoding as the paper data "
            "sets do (a plain RGB conversion: no EXIF rotation, transparency not composited, 16 bit clipped)")
    return Decoding(record["name"], background=record["background"], max_pixels=max_pixels), None


def input_normaliser(exported: dict) -> DeviceNormaliser:
    """uint8 (B, 3, res, res) batch -> the model's float32 input, with the run's mean / std, on the batch's device."""
    return DeviceNormaliser(exported["mean"], exported["std"])


def load_input(path: str, transform: Callable[[Image.Image], torch.Tensor], decoding: Decoding) -> torch.Tensor:
    """The uint8 (3, res, res) model input of the image file ``path``, decoded as ``decoding`` says.

    Raises :class:`~dataloader.decode.ImageTooLarge`, or OSError / ValueError (PIL's) for a file that is
    not a readable image.
    """
    return transform(decode_file(path, decoding))
