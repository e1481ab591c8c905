"""What a GPU can do fast, decided once for training and prediction alike: the half type of ``precision: auto``,
``channels_last: auto``, and the TF32 / cuDNN switches (docs/scale.md#gpu-settings).

One rule for bf16: the GPU has bf16 units, i.e. compute capability 8.0 or later (A100, H100, RTX 30xx, ...).
``torch.cuda.is_bf16_supported()`` is not that rule: it also answers True where bf16 is only emulated (V100,
T4), several times slower than fp16 there.
"""
from __future__ import annotations

import torch

BF16_CAPABILITY = (8, 0)  # Ampere: the first GPUs with bf16 tensor cores


def has_bf16_units(device: torch.device) -> bool:
    """True for a CUDA ``device`` of compute capability >= 8.0; False for every other device and older GPU."""
    return device.type == "cuda" and tuple(torch.cuda.get_device_capability(device)) >= BF16_CAPABILITY


def auto_precision(device: torch.device) -> str:
    """``precision: auto`` on ``device``: ``"bf16"`` on a GPU with bf16 units, ``"fp16"`` (with a gradient scaler)
    on an older GPU, ``"fp32"`` elsewhere (the CPU: half types there are slower, and results stay those of
    the documented CPU runs)."""
    if device.type != "cuda":
        return "fp32"
    return "bf16" if has_bf16_units(device) else "fp16"


def resolve_precision(value: str, device: torch.device) -> str:
    """``value`` (``fp32``, ``bf16``, ``fp16`` or ``auto``) with ``auto`` decided for ``device``."""
    return auto_precision(device) if value == "auto" else value


def resolve_channels_last(value: bool | str, device: torch.device) -> bool:
    """``channels_last`` (true, false or ``auto``: on for CUDA, where cuDNN's convolutions prefer it under
    bf16/fp16; off on the CPU, whose results then stay those of the documented runs)."""
    return device.type == "cuda" if value == "auto" else bool(value)


def set_backends(*, tf32: bool, cudnn_benchmark: bool) -> None:
    """Set the process-wide CUDA switches of a run (both are ignored on the CPU).

    ``tf32``: fp32 matrix multiplications (linear layers, attention) in TF32 on GPUs from Ampere on, as
    cuDNN's convolutions are by torch's default already; off, torch's default, keeps them in full fp32
    (several times slower for a ViT on an H100).  ``cudnn_benchmark``: cuDNN times its algorithms for each
    new input shape once and keeps the fastest (fixed-size images: every batch but the last has one shape).
    Both are set either way, so a process running several stages (clean_labels.py) gives each its own.
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
