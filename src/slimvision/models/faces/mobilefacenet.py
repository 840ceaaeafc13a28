"""MobileFaceNet: a 112 px ArcFace chip -> a 128-d descriptor, about 1M parameters.

Chen, Liu, Gao, Han, "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on
Mobile Devices" (2018): MobileNetV2's inverted residuals with PReLU, and a global depthwise conv
instead of global average pooling, since a face chip's corners matter less than its centre and
the network can learn that weighting. It is the mobile student of the face system
(``slimvision train face-student --student mobilefacenet``); configuration in
:class:`~slimvision.models.faces.config.MobileFaceNetConfig`.

Example:
    >>> import torch
    >>> net = MobileFaceNet()
    >>> net(torch.rand(2, 3, 112, 112)).shape
    torch.Size([2, 128])
    >>> 0.9e6 < sum(p.numel() for p in net.parameters()) < 1.3e6
    True
"""

from __future__ import annotations

import torch
from torch import nn

from slimvision.models.faces.config import MobileFaceNetConfig
from slimvision.registry import register_model


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
            activation: bool = True, padding: int | None = None) -> nn.Sequential:
    """conv (no bias) -> batch norm -> PReLU (per channel), or no activation for a linear layer."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2 if padding is None else padding,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_channels)]
    if activation:
        layers.append(nn.PReLU(out_channels))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise 3x3 (stride) -> linear 1x1 project, plus the
    input where the shape allows."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(conv_bn(in_channels, hidden, 1),
                                  conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, out_channels, 1, activation=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


@register_model("face-embedder-mobilefacenet")
class MobileFaceNet(nn.Module):
    """Face chip (B, 3, S, S), RGB in [0, 1] -> descriptor (B, embedding_dim), not normalised."""

    config_class = MobileFaceNetConfig

    def __init__(self, config: MobileFaceNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MobileFaceNetConfig()
        config.validate()
        stem = config.stem_channels
        blocks: list[nn.Module] = [conv_bn(3, stem, 3, 2), conv_bn(stem, stem, 3, groups=stem)]
        channels = stem
        for expansion, width, repeats, stride in config.bottlenecks:
            for index in range(repeats):
                blocks.append(Bottleneck(channels, width, expansion, stride if index == 0 else 1))
                channels = width
        blocks.append(conv_bn(channels, config.feature_channels, 1))
        self.blocks = nn.Sequential(*blocks)
        side = config.input_size // (2 * 2 ** sum(1 for b in config.bottlenecks if b[3] == 2))
        self.head = nn.Sequential(
            conv_bn(config.feature_channels, config.feature_channels, side, groups=config.feature_channels,
                    activation=False, padding=0),  # the global depthwise conv
            conv_bn(config.feature_channels, config.embedding_dim, 1, activation=False))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) in [0, 1] -> (B, D)
        return self.head(self.blocks(image * 2.0 - 1.0)).flatten(1)
