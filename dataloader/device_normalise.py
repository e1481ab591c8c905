"""Normalisation on the training device: workers send uint8 images, the device makes them floats.

The transforms end with ``PILToTensor`` (``dataloader.transforms._finish``), so a batch leaves the
DataLoader workers as uint8 ``(B, 3, H, W)`` tensors: a quarter of the bytes through shared memory and
the host-to-device copy, and no per-pixel float work on the CPU (ToTensor + Normalize cost about a
quarter of a view's CPU time).  :func:`normalise` then computes, on whatever device the images are,
exactly what torchvision's ``ToTensor`` + ``Normalize`` computed on the CPU (``x / 255``, minus mean,
divided by std, in float32), the way timm's prefetching loader does.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch


def normalise(images: torch.Tensor, *, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` in 0-255 -> float32 ``(x / 255 - mean) / std`` on the same device.

    ``mean`` and ``std`` are float32 tensors of shape ``(3, 1, 1)`` on that device.  The operations are
    ToTensor's division and Normalize's subtraction and division, in that order (same float32 result).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images from the data loader, got {images.dtype}")
    return images.float().div_(255).sub_(mean).div_(std)


class DeviceNormaliser:
    """:func:`normalise` with the data set's ``mean`` / ``std`` (3 floats each), kept on each device once.

    Called on one image tensor or on a tuple/list of them (a stage-2 item's ``(weak, strong)`` views); a view
    that is None (one the training step does not read: utils/training/engine.py ``train_one_epoch``) stays None.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            self._stats[device] = (torch.tensor(self.mean, device=device).view(-1, 1, 1),
                                   torch.tensor(self.std, device=device).view(-1, 1, 1))
        return self._stats[device]

    def __call__(self, images: Any) -> Any:
        if isinstance(images, (tuple, list)):
            return type(images)(None if view is None else self(view) for view in images)
        mean, std = self._on(images.device)
        return normalise(images, mean=mean, std=std)

    def __repr__(self) -> str:
        return f"DeviceNormaliser(mean={self.mean}, std={self.std})"
