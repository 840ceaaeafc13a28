"""The conditional-instance-norm style transformer (Ghiasi et al. 2017, Magenta's arbitrary stylization).

A content image passes a few strided convolutions (contract), residual blocks and upsampling
convolutions (expand). Every instance norm after the contract part takes its per-channel scale
and offset from the 100-d style vector through its own linear map, so one network paints any
style the predictor can describe.

Example:
    >>> import torch
    >>> net = StyleTransformer(StyleTransformerConfig())
    >>> net(torch.rand(1, 3, 64, 48), torch.randn(1, 100)).shape
    torch.Size([1, 3, 64, 48])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimvision.models.style.config import StyleTransformerConfig
from slimvision.registry import register_model


class ReflectConv(nn.Module):
    """Reflect-pad by k // 2, then an unpadded convolution (TF's MirrorPad + VALID conv).

    ``separable``: a k x k depthwise conv (one filter per input channel) then a 1x1 pointwise
    conv, which costs about 1/out_channels + 1/k^2 of the full conv's multiply-adds.
    ``padding="zeros"`` pads inside the convolution instead: no separate Pad pass over the
    feature map (a quarter of a separable student's ONNX Runtime time at 512 px), at the price
    of a one-pixel border the student learns to paint like the teacher's mirrored one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 separable: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        self.pad = kernel_size // 2
        self.separable = separable
        self.reflect = padding == "reflect"
        inner = 0 if self.reflect else self.pad
        if separable:
            self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, groups=in_channels,
                                       bias=False, padding=inner)
            self.pointwise = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        if self.pad and self.reflect:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return self.pointwise(self.depthwise(x)) if self.separable else self.conv(x)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale (``gamma``) and offset (``beta``) are linear in the style vector."""

    def __init__(self, channels: int, style_dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.gamma = nn.Linear(style_dim, channels)
        self.beta = nn.Linear(style_dim, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (B, D)
        scale = self.gamma(style)[:, :, None, None]  # (B, C, 1, 1)
        offset = self.beta(style)[:, :, None, None]
        # TF's moments spelled out (biased variance, like F.instance_norm): exported, they are
        # the GlobalAveragePool pair that tiling feeds whole-image statistics into
        # (``graph.rewrite.split_norm_statistics``); F.instance_norm would hide them in one op.
        mean = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        centred = x - mean
        variance = F.adaptive_avg_pool2d(centred * centred, 1)
        # The per-channel factor first: one full-size multiply, not a divide and two multiplies.
        return centred * (torch.rsqrt(variance + self.eps) * scale) + offset


class NormConv(nn.Module):
    """[nearest upsample] -> reflect conv -> conditional instance norm (activation left to the caller)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, eps: float,
                 upsample: int = 1, separable: bool = False, padding: str = "reflect") -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = ReflectConv(in_channels, out_channels, kernel_size, separable=separable, padding=padding)
        self.norm = ConditionalInstanceNorm(out_channels, style_dim, eps)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=float(self.upsample), mode="nearest")
        return self.norm(self.conv(x), style)


class ResidualBlock(nn.Module):
    """x + norm(conv(relu(norm(conv(x))))): no activation after the sum, as in the teacher."""

    def __init__(self, channels: int, kernel_size: int, style_dim: int, eps: float, separable: bool = False,
                 padding: str = "reflect") -> None:
        super().__init__()
        self.conv1 = NormConv(channels, channels, kernel_size, style_dim, eps, separable=separable, padding=padding)
        self.conv2 = NormConv(channels, channels, kernel_size, style_dim, eps, separable=separable, padding=padding)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x, style)), style)


@register_model("style-transformer")
class StyleTransformer(nn.Module):
    """Content image (B, 3, H, W) in [0, 1] + style vector (B, D) -> stylized image in [0, 1].

    The output has the input's size when H and W are multiples of the total stride (4 for the
    teacher); otherwise each stride-2 layer rounds up, exactly as the shipped graph does. With
    ``space_to_depth`` f > 1, H and W must be multiples of ``config.size_multiple`` (the pipeline pads to 4).
    """

    config_class = StyleTransformerConfig

    def __init__(self, config: StyleTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or StyleTransformerConfig()
        eps, dim = config.norm_eps, config.style_dim
        split = set(config.separable)
        widths = (config.in_channels * config.space_to_depth ** 2, *config.contract_channels)
        self.contract = nn.ModuleList(
            ReflectConv(c_in, c_out, k, s, separable=("contract" if index > 0 else "first") in split,
                        padding=config.padding)
            for index, (c_in, c_out, k, s) in enumerate(zip(widths, widths[1:], config.contract_kernels,
                                                            config.contract_strides))
        )
        width = widths[-1]
        self.residual = nn.ModuleList(
            ResidualBlock(width, config.residual_kernel, dim, eps, separable="residual" in split,
                          padding=config.padding)
            for _ in range(config.residual_blocks)
        )
        widths = (width, *config.expand_channels)
        last = len(config.expand_channels) - 1
        self.expand = nn.ModuleList(
            NormConv(c_in, c_out, k, dim, eps, upsample=up, separable=("expand" if index < last else "last") in split,
                     padding=config.padding)
            for index, (c_in, c_out, k, up) in enumerate(zip(widths, widths[1:], config.expand_kernels,
                                                             config.expand_upsample))
        )

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """content (B, C_in, H, W) in [0, 1]; style (B, style_dim) -> (B, C_out, H', W') in [0, 1]."""
        factor = self.config.space_to_depth
        if factor == 1:
            return self.body(content, style)
        first = self.contract[0]
        if first.separable or first.reflect:
            x = F.relu(first(F.pixel_unshuffle(content, factor)))
        else:
            x = F.relu(_strided_phase_conv(first.conv, content, factor))
        return F.pixel_shuffle(self.body(x, style, first_layer=1), factor)

    def body(self, x: torch.Tensor, style: torch.Tensor, first_layer: int = 0) -> torch.Tensor:
        """Everything between the phase shuffles (all of it when ``space_to_depth`` is 1),
        from contract layer ``first_layer`` on."""
        for layer in self.contract[first_layer:]:
            x = F.relu(layer(x))
        for block in self.residual:
            x = block(x, style)
        for index, layer in enumerate(self.expand):
            x = layer(x, style)
            x = torch.sigmoid(x) if index == len(self.expand) - 1 else F.relu(x)
        return x

    def main_convs(self) -> list[nn.Conv2d]:
        """Image-path convolutions in the order they run (contract, residual, expand); the
        teacher's layout only (the port fills these), so not for separable configs."""
        if self.config.separable:
            raise ValueError("main_convs() lists the teacher's full convolutions; this config has separable ones")
        convs = [layer.conv for layer in self.contract]
        convs += [conv.conv.conv for block in self.residual for conv in (block.conv1, block.conv2)]
        return convs + [layer.conv.conv for layer in self.expand]

    def norms(self) -> list[ConditionalInstanceNorm]:
        """Style-conditioned norms in the order they run."""
        norms = [conv.norm for block in self.residual for conv in (block.conv1, block.conv2)]
        return norms + [layer.norm for layer in self.expand]


def _strided_phase_conv(conv: nn.Conv2d, image: torch.Tensor, factor: int) -> torch.Tensor:
    """``conv(pixel_unshuffle(image, factor))`` as one stride-``factor`` convolution of the image
    itself, its k x k kernel over phase planes spread into a (k * factor)-wide one. Same numbers;
    in ONNX Runtime it saves the shuffle, a 6-D transpose over the full-resolution image. (The
    weight rearrangement is constant-folded on export.)"""
    out_channels, planes, k, _ = conv.weight.shape
    channels = planes // (factor * factor)
    weight = conv.weight.reshape(out_channels, channels, factor, factor, k, k)  # (o, c, p, q, a, b)
    weight = weight.permute(0, 1, 4, 2, 5, 3).reshape(out_channels, channels, k * factor, k * factor)
    return F.conv2d(image, weight, conv.bias, stride=factor, padding=factor * (k // 2))


class NHWCStyleTransformer(nn.Module):
    """The shipped graph's interface around a :class:`StyleTransformer`.

    NHWC content (B, H, W, 3) and a (B, 1, 1, D) style vector in, NHWC image out, so an export
    is a drop-in replacement for ``arbitrary_transform.onnx`` in the inference pipeline.
    """

    def __init__(self, transformer: StyleTransformer) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # (A single 6-D transpose from NHWC to phase planes measured slower in ONNX Runtime
        # than this permute followed by the phase-plane model's strided first conv.)
        out = self.transformer(content.permute(0, 3, 1, 2), style.flatten(1))  # (B, C, H, W)
        return out.permute(0, 2, 3, 1)
