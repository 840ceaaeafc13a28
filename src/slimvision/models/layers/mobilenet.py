"""MobileNetV2 pieces with TensorFlow's "SAME" padding, so ported TF weights compute the same thing.

TensorFlow pads a stride-2 convolution asymmetrically (nothing before, one pixel after on an even
input); torch's symmetric ``padding=`` would shift every feature map by half a pixel and the
port would drift from the teacher. :class:`SamePadConv2d` computes TF's padding from the input
size at run time, so it matches at any resolution in torch. The TorchScript ONNX exporter
freezes that padding at the traced size (the export's resized parity check refuses a free H/W),
so export these networks at a fixed size with a free batch; the teacher predictor is fixed at
256x256 anyway.

Example:
    >>> import torch
    >>> block = InvertedResidual(16, 24, stride=2, expand_ratio=6)
    >>> block(torch.zeros(1, 16, 32, 32)).shape
    torch.Size([1, 24, 16, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` the way TF-slim MobileNet does.

    Never rounds down by more than 10%, so a narrow network keeps most of the width it asked for.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class SamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        # At stride 1 an odd kernel's SAME padding is k // 2 on each side whatever the input size,
        # so the conv pads itself: an export then has one Conv with static pads instead of a
        # shape-computed Pad before it (3x slower in ONNX Runtime for a whole MobileNetV2).
        self.static_padding = stride == 1 and kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if self.static_padding else 0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if self.static_padding:
            return super().forward(x)
        pad_h = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        pad_w = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if any(pad_h) or any(pad_w):
            x = F.pad(x, (*pad_w, *pad_h))
        return super().forward(x)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME": the output has ceil(size / stride) positions."""
    # -(-a // b) is ceil(a / b) and stays a traceable integer expression under ONNX export.
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvAct(nn.Sequential):
    """SamePadConv2d, an optional batch norm, then ReLU6 or nothing.

    Shipped weights have the batch norm folded into the conv's bias (``batch_norm=False``); a
    student trains with ``batch_norm=True`` (a deep MobileNetV2 without normalisation barely
    trains) and has it folded away before export (``compress.fold.fold_batch_norms``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, relu6: bool = True, batch_norm: bool = False) -> None:
        layers: list[nn.Module] = [SamePadConv2d(in_channels, out_channels, kernel_size, stride, groups)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if relu6:
            layers.append(nn.ReLU6())
        super().__init__(*layers)

    @property
    def conv(self) -> SamePadConv2d:
        return self[0]

    @property
    def has_relu6(self) -> bool:
        return isinstance(self[-1], nn.ReLU6)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (skipped at ratio 1) -> 3x3 depthwise -> 1x1 linear project.

    The skip connection exists when the block keeps both the resolution and the channel count.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 batch_norm: bool = False) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvAct(in_channels, hidden, batch_norm=batch_norm) if expand_ratio != 1 else None
        self.depthwise = ConvAct(hidden, hidden, kernel_size=3, stride=stride, groups=hidden, batch_norm=batch_norm)
        self.project = ConvAct(hidden, out_channels, relu6=False, batch_norm=batch_norm)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        out = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out

    def conv_layers(self) -> list[ConvAct]:
        """The block's convolutions in the order they run (what weight porting walks)."""
        return [layer for layer in (self.expand, self.depthwise, self.project) if layer is not None]
