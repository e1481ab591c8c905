"""timm backbone + a new linear head, returning ``(features, logits)`` (IDO.md §1.2).

``create_model("resnet50" | "ViT-B" | "convnext-B" | <any timm name>, num_classes=C, ...)``.
The backbone is built with ``num_classes=0`` so timm returns its pooled feature vector (global
average pool for CNNs, the CLS token for ViT); the head is a fresh ``nn.Linear`` with PyTorch's
default initialisation, as in the official code.  A backbone with a head of its own exposes
``make_head(num_classes)`` (``act_cnn``, ACT's 7-layer CNN with its MLP head: model/act_cnn.py).
"""
from __future__ import annotations

import os

import timm
import torch
from torch import nn

from model.act_cnn import INPUT_SIZE as ACT_CNN_INPUT, ActCNN
from utils.errors import ConfigError

BACKBONE_ALIASES = {
    "resnet50": "resnet50",
    "ViT-B": "vit_base_patch16_224",
    "convnext-B": "convnext_base",
}


def timm_name(backbone: str) -> str:
    return BACKBONE_ALIASES.get(backbone, backbone)


class Classifier(nn.Module):
    """``forward(x) -> (features (B, D), logits (B, C))``."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        make_head = getattr(backbone, "make_head", None)
        self.head = make_head(num_classes) if make_head else nn.Linear(backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(x)
        return features, self.head(features)


def _create_backbone(name: str, *, pretrained: bool, pretrained_path: str | None, img_size: int) -> nn.Module:
    kwargs: dict = {"num_classes": 0}
    if pretrained_path is not None:
        if not os.path.isfile(pretrained_path):
            raise ConfigError(f"config key 'pretrained_path': weights file {pretrained_path} does not exist")
        # timm loads the local file with its own key filtering (classifier removed, pos-embed resized)
        kwargs["pretrained_cfg_overlay"] = {"file": os.path.abspath(pretrained_path)}
        pretrained = True
    try:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, **kwargs)
        except TypeError:  # CNNs take any input size and have no img_size argument
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err) or "Invalid pretrained tag" in str(err):
            raise ConfigError(f"config key 'backbone': {name!r} is not a timm model "
                              "(see timm.list_models())") from None
        raise ConfigError(f"could not load weights for backbone {name!r}: {err}") from None
    except (OSError, ValueError) as err:
        source = pretrained_path or "timm's hub"
        raise ConfigError(f"could not load pretrained weights for {name!r} from {source}: {err}; offline, set "
                          "pretrained_path to a local weights file or pretrained=false") from None


def _create_act_cnn(*, pretrained: bool, pretrained_path: str | None, img_size: int) -> ActCNN:
    if img_size != ACT_CNN_INPUT:
        raise ConfigError(f"backbone 'act_cnn' takes {ACT_CNN_INPUT} px input (ACT's 7-layer CNN), but resolution "
                          f"is {img_size}; set resolution: {ACT_CNN_INPUT}")
    if pretrained or pretrained_path:
        raise ConfigError("backbone 'act_cnn' has no pretrained weights (ACT trains it from scratch); set "
                          "pretrained: false and pretrained_path: null")
    return ActCNN()


def create_model(backbone: str, *, num_classes: int, pretrained: bool = False,
                 pretrained_path: str | None = None, img_size: int = 224, frozen: bool = False) -> Classifier:
    """Build ``Classifier(timm backbone, Linear(num_features, num_classes))``; ``"act_cnn"``: ACT's CNN and MLP head.

    ``frozen`` freezes the backbone (linear probe); the head always trains.
    """
    if backbone == "act_cnn":
        net = _create_act_cnn(pretrained=pretrained, pretrained_path=pretrained_path, img_size=img_size)
    else:
        net = _create_backbone(timm_name(backbone), pretrained=pretrained, pretrained_path=pretrained_path,
                               img_size=img_size)
    model = Classifier(net, num_classes)
    if frozen:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return model
