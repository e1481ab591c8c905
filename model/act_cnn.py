"""ACT's 7-layer CNN (``model/SevenCNN.py`` of the ACT code, docs/fidelity.md#act-110-backbones), trained from scratch at 32 px.

Three blocks of [conv3x3 -> BN -> ReLU, conv3x3 -> BN -> ReLU, maxpool 2] with channels
3 -> 64 -> 64, 64 -> 128 -> 128, 128 -> 196 -> 16; a 32x32 input leaves 16 x 4 x 4 = 256 features.
Convolutions and BatchNorm keep PyTorch's default initialisation (BN momentum 0.1, as ACT's).
ACT's classifier is an MLP, Linear(256, 512) -> BatchNorm1d(512) -> ReLU -> Linear(512, C) with
``kaiming_normal_`` weights (fan-in, gain sqrt 2) and zero biases: :meth:`ActCNN.make_head` builds it,
and :class:`model.classifier.Classifier` asks a backbone for its head through that method.
ACT's projection head ``g`` never enters a loss and is left out (ACT-B14).

Parameter count: 515,580 in the backbone, 132,608 + 513 C in the head (699,488 for C = 100,
653,318 for C = 10).
"""
from __future__ import annotations

import torch
from torch import nn

INPUT_SIZE = 32
CHANNELS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 196), (196, 16))
HIDDEN = 512


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(c_out, momentum=0.1),
            nn.ReLU(inplace=True)]


class ActCNN(nn.Module):
    """``forward(x (B, 3, 32, 32)) -> features (B, 256)``; ``num_features`` as timm backbones."""

    num_features = 16 * (INPUT_SIZE // 8) ** 2  # 256

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(CHANNELS):
            layers += _conv_bn_relu(c_in, c_out)
            if i % 2 == 1:  # a 2x2 max-pool closes each of the three blocks
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"act_cnn takes {INPUT_SIZE}x{INPUT_SIZE} images, got {tuple(x.shape[-2:])}")
        return torch.flatten(self.features(x), 1)

    @staticmethod
    def make_head(num_classes: int) -> nn.Sequential:
        """ACT's MLP classifier: Linear(256, 512) -> BN1d(512) -> ReLU -> Linear(512, C)."""
        head = nn.Sequential(nn.Linear(ActCNN.num_features, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True),
                             nn.Linear(HIDDEN, num_classes))
        for layer in head:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight)  # fan_in, gain sqrt(2), as ACT's init
                nn.init.zeros_(layer.bias)
        return head
