"""timm backbone + a new linear head, returning ``(features, logits)`` (docs/fidelity.md#ido-12-backbones-and-optimisers).

``create_model("resnet50" | "ViT-B" | "convnext-B" | <any timm name>, num_classes=C, ...)``.
The backbone is built with ``num_classes=0`` so timm returns its pooled feature vector (global
average pool for CNNs, the CLS token for ViT); the head is a fresh ``nn.Linear`` with PyTorch's
default initialisation, as in the official code.  A backbone with a head of its own exposes
``make_head(num_classes)`` (``act_cnn``, ACT's 7-layer CNN with its MLP head: model/act_cnn.py).
"""
from __future__ import annotations

from typing import Callable

import timm
import torch
from torch import nn

from model.act_cnn import INPUT_SIZE as ACT_CNN_INPUT, ActCNN
from model.hub_weights import resolve_pretrained
from model.weights import load_backbone_weights, required_keys
from utils.core.errors import ConfigError

# The official code ran timm 0.9.7; these were its default pretrained tags for the three names (pinned,
# so a newer timm with other defaults loads the same weights).  Any explicit "name.tag" is used as given.
BACKBONE_ALIASES = {
    "resnet50": "resnet50.a1_in1k",
    "ViT-B": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "convnext-B": "convnext_base.fb_in22k_ft_in1k",
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


def _build(name: str, *, pretrained: bool, img_size: int, cache_dir: str | None = None) -> nn.Module:
    hub = {"cache_dir": cache_dir} if cache_dir else {}
    try:
        try:
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, num_classes=0, **hub)
        except TypeError:  # CNNs take any input size and have no img_size argument
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **hub)
    except RuntimeError as err:
        if "Unknown model" in str(err) or "Invalid pretrained tag" in str(err):
            raise ConfigError(f"config key 'backbone': {name!r} is not a timm model "
                              "(see timm.list_models())") from None
        raise ConfigError(f"could not load weights for backbone {name!r}: {err}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"could not load pretrained weights for {name!r} from timm's hub: {err}; offline, set "
                          "pretrained_path to a local weights file or pretrained=false") from None


def _create_backbone(name: str, *, pretrained: bool, pretrained_path: str | None, img_size: int,
                     log: Callable[[str], None] | None = None) -> nn.Module:
    """The timm backbone without classifier; with ``pretrained_path`` every backbone tensor comes
    from that file or a one-line error is raised (:mod:`model.weights`)."""
    if pretrained_path is not None:
        net = _build(name, pretrained=False, img_size=img_size)
        message = load_backbone_weights(net, pretrained_path, name=name)
    elif not pretrained:
        return _build(name, pretrained=False, img_size=img_size)
    else:
        source = resolve_pretrained(name)  # the cache first; one line at once if neither it nor the hub has them
        hub_cache = source.cache_dir if source.files is not None and source.files.repo_id else None
        net = _build(name, pretrained=True, img_size=img_size, cache_dir=hub_cache)
        cfg = getattr(net, "pretrained_cfg", None) or {}
        loaded = f"{cfg['architecture']}.{cfg['tag']}" if cfg.get("architecture") and cfg.get("tag") else name
        count = len(required_keys(net.state_dict()))  # timm's hub load is strict: all came from the hub file
        message = f"backbone {loaded}: {count}/{count} tensors from {source.describe()}"
    if log is not None:
        log(message)
    return net


def _create_act_cnn(*, pretrained: bool, pretrained_path: str | None, img_size: int) -> ActCNN:
    if img_size != ACT_CNN_INPUT:
        raise ConfigError(f"backbone 'act_cnn' takes {ACT_CNN_INPUT} px input (ACT's 7-layer CNN), but resolution "
                          f"is {img_size}; set resolution: {ACT_CNN_INPUT}")
    if pretrained or pretrained_path:
        raise ConfigError("backbone 'act_cnn' has no pretrained weights (ACT trains it from scratch); set "
                          "pretrained: false and pretrained_path: null")
    return ActCNN()


def resolve_weights(backbone: str, *, pretrained: bool, pretrained_path: str | None) -> str:
    """Resolve, before any model is built, where ``create_model``'s backbone weights will come from; return it in
    words for the run's summary.

    For ``pretrained: true`` without ``pretrained_path`` this looks in timm's hub cache and, when the file is not
    there, probes the hub once (:func:`model.hub_weights.resolve_pretrained`).  Side effect: a cached file, or a
    hub that cannot be reached, switches the hub client of this process (and those it starts) to offline mode.
    A run whose hub weights are neither cached nor downloadable stops here at once, with one line."""
    if pretrained_path is not None:
        return f"weights from pretrained_path {pretrained_path}"
    if not pretrained or backbone == "act_cnn":
        return "random init (pretrained: false)"
    source = resolve_pretrained(timm_name(backbone))
    if source.files is None:  # timm knows no weights for this name: the same line as create_model's, now
        _build(timm_name(backbone), pretrained=True, img_size=224)
    return f"pretrained, from {source.describe()}"


def create_model(backbone: str, *, num_classes: int, pretrained: bool = False,
                 pretrained_path: str | None = None, img_size: int = 224, frozen: bool = False,
                 log: Callable[[str], None] | None = None) -> Classifier:
    """Build ``Classifier(timm backbone, Linear(num_features, num_classes))``; ``"act_cnn"``: ACT's CNN and MLP head.

    ``frozen`` freezes the backbone (linear probe); the head always trains.  ``log`` receives one line
    saying where the backbone's weights came from and how many tensors loaded.
    """
    if backbone == "act_cnn":
        net = _create_act_cnn(pretrained=pretrained, pretrained_path=pretrained_path, img_size=img_size)
    else:
        net = _create_backbone(timm_name(backbone), pretrained=pretrained, pretrained_path=pretrained_path,
                               img_size=img_size, log=log)
    model = Classifier(net, num_classes)
    if frozen:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    return model
