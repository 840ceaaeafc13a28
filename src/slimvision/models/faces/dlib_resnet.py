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


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    """A training-time batch norm (folded away by :func:`fold_batch_norm`), or nothing."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class DlibResidualBlock(nn.Module):
    """conv 3x3 -> ReLU -> conv 3x3, plus the shortcut, then ReLU. A downsampling block's first
    conv has stride 2 and no padding; its shortcut is a 2x2 stride-2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool, batch_norm: bool = False) -> None:
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.norm1, self.norm2 = (_norm(out_channels, batch_norm) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H', W')
        out = self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x)))))
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
        self.stem_norm = _norm(config.stem_channels, config.batch_norm)
        blocks, channels = [], config.stem_channels
        for level, (width, count) in enumerate(config.levels):
            for index in range(count):
                blocks.append(DlibResidualBlock(channels, width, downsample=level > 0 and index == 0,
                                                batch_norm=config.batch_norm))
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.embedding = nn.Linear(channels, config.embedding_dim, bias=False)
        scale = 255.0 / config.pixel_scale
        self.register_buffer("input_scale", torch.tensor(scale), persistent=False)
        self.register_buffer("input_shift", torch.tensor(config.pixel_mean).view(1, 3, 1, 1) / -config.pixel_scale,
                             persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) in [0, 1] -> (B, D)
        x = image * self.input_scale + self.input_shift
        x = F.max_pool2d(F.relu(self.stem_norm(self.stem(x))), 3, 2)
        features = self.blocks(x)  # (B, 256, 2, 2) at 150 px
        return self.embedding(features.mean(dim=(2, 3)))


def conv_norm_pairs(model: DlibResNet) -> list[tuple[nn.Conv2d, nn.Module]]:
    """Every conv of ``model`` with the norm after it (an ``nn.Identity`` without batch norm), input first."""
    pairs = [(model.stem, model.stem_norm)]
    for block in model.blocks:
        pairs += [(block.conv1, block.norm1), (block.conv2, block.norm2)]
    return pairs


@torch.no_grad()
def fold_batch_norm(model: DlibResNet) -> DlibResNet:
    """``model`` without its batch norms: each folded (running statistics, scale, shift) into the
    conv before it, as dlib folds its own; the same function in eval mode, now dlib's layout.
    A model without batch norm comes back as a copy."""
    from dataclasses import replace

    folded = DlibResNet(replace(model.config, batch_norm=False))
    folded.load_state_dict({key: value for key, value in model.state_dict().items()
                            if "norm" not in key.split(".")[-2]}, strict=True)
    for (conv, norm), (target, _) in zip(conv_norm_pairs(model), conv_norm_pairs(folded)):
        if isinstance(norm, nn.BatchNorm2d):
            gain = norm.weight / (norm.running_var + norm.eps).sqrt()  # (C,)
            target.weight.copy_(conv.weight * gain.view(-1, 1, 1, 1))
            target.bias.copy_((conv.bias - norm.running_mean) * gain + norm.bias)
    return folded.eval()
