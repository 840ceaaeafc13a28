"""dlib's face-recognition ResNet as a torch module: a 150 px face chip -> a 128-d descriptor.

The network of dlib's ``dnn_face_recognition_ex.cpp`` (``anet_type``), with each conv's
``affine`` layer (dlib's batch norm at inference) folded into the conv as the weights are read
(:mod:`slimvision.models.faces.dlib_port`). dlib pads stride-2 convs and pools by nothing, so
odd sizes floor; where a block and its pooled shortcut then differ (3x3 vs 4x4 at the
256-channel level) dlib adds them with zero padding, and so does this module.

Example:
    >>> import torch
    >>> net = DlibResNet()
    >>> net(torch.rand(2, 3, 150, 150)).shape
    torch.Size([2, 128])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimvision.models.faces.config import DlibResNetConfig
from slimvision.registry import register_model


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b for (B, C, H, W) tensors that may differ in C, H and W: each is zero-padded after
    its last channel, row and column up to the larger size (dlib's ``add_prev``)."""
    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape[1:], b.shape[1:])]
    return _pad_to(a, size) + _pad_to(b, size)


def _pad_to(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    channels, height, width = size
    return F.pad(x, (0, width - x.shape[3], 0, height - x.shape[2], 0, channels - x.shape[1]))


class DlibResidualBlock(nn.Module):
    """conv 3x3 -> ReLU -> conv 3x3, plus the shortcut, then ReLU. A downsampling block's first
    conv has stride 2 and no padding; its shortcut is a 2x2 stride-2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H', W')
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu(add_zero_padded(out, shortcut))


@register_model("face-embedder-dlib-resnet")
class DlibResNet(nn.Module):
    """Face chip (B, 3, S, S), RGB in [0, 1] -> descriptor (B, embedding_dim), not normalised
    (dlib's descriptors have a norm near 1; compare them by Euclidean distance)."""

    config_class = DlibResNetConfig

    def __init__(self, config: DlibResNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DlibResNetConfig()
        self.stem = nn.Conv2d(3, config.stem_channels, 7, stride=2)
        blocks, channels = [], config.stem_channels
        for level, (width, count) in enumerate(config.levels):
            for index in range(count):
                blocks.append(DlibResidualBlock(channels, width, downsample=level > 0 and index == 0))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.embedding = nn.Linear(channels, config.embedding_dim, bias=False)
        scale = 255.0 / config.pixel_scale
        self.register_buffer("input_scale", torch.tensor(scale), persistent=False)
        self.register_buffer("input_shift", torch.tensor(config.pixel_mean).view(1, 3, 1, 1) / -config.pixel_scale,
                             persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) in [0, 1] -> (B, D)
        x = image * self.input_scale + self.input_shift
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        features = self.blocks(x)  # (B, 256, 2, 2) at 150 px
        return self.embedding(features.mean(dim=(2, 3)))
