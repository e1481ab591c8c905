"""ACTO's two models: the robust (RTM) and the non-robust (NTM) model under one module."""
from __future__ import annotations

import copy

from torch import nn

from model.classifier import create_model


class ModelPair(nn.Module):
    """RTM and NTM under one module, so ``.train()`` / ``.eval()`` reach both (they share no parameters)."""

    def __init__(self, rtm: nn.Module, ntm: nn.Module):
        super().__init__()
        self.rtm, self.ntm = rtm, ntm


def build_models(cfg, num_classes: int, resolution: int, *, log=None) -> tuple[nn.Module, nn.Module]:
    """RTM and NTM with the same backbone and separately initialised linear heads.

    Pretrained: one backbone load, deep-copied, the NTM's head re-initialised (both start from the
    same weights, as ACT's ResNet-50 runs).  From scratch: two independent initialisations, as
    ACT's two ``CNN()`` in main.py.
    """
    kwargs = dict(num_classes=num_classes, pretrained=cfg.pretrained, pretrained_path=cfg.pretrained_path,
                  img_size=resolution)
    rtm = create_model(cfg.backbone, log=log, **kwargs)
    if cfg.pretrained or cfg.pretrained_path:
        ntm = copy.deepcopy(rtm)
        ntm.head.reset_parameters()
    else:
        ntm = create_model(cfg.backbone, **kwargs)
    return rtm, ntm
