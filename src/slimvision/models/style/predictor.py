"""MobileNetV2 style predictor: a style image -> the style vector the transformer is conditioned on.

Batch norms are folded into the convolution biases (as in the shipped teacher); the ImageNet
classifier is replaced by a linear head onto the ``style_dim``-d style space, applied to the
globally averaged last feature map.

Example:
    >>> import torch
    >>> net = StylePredictor(StylePredictorConfig(width_multiplier=0.35))
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from slimvision.models.layers.mobilenet import ConvAct, InvertedResidual, make_divisible
from slimvision.models.style.config import StylePredictorConfig
from slimvision.registry import register_model


@register_model("style-predictor-mbv2")
class StylePredictor(nn.Module):
    """Style image (B, 3, H, W) in [0, 1] -> style vector (B, style_dim); 256x256 is the teacher's size."""

    config_class = StylePredictorConfig

    def __init__(self, config: StylePredictorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or StylePredictorConfig()
        width = config.width_multiplier
        channels = make_divisible(config.stem_channels * width, config.round_to)
        bn = config.train_batch_norm
        self.stem = ConvAct(config.in_channels, channels, kernel_size=config.stem_kernel_size,
                            stride=config.stem_stride, batch_norm=bn)
        blocks = []
        for expand_ratio, stage_channels, repeats, first_stride in config.stages:
            out_channels = make_divisible(stage_channels * width, config.round_to)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                blocks.append(InvertedResidual(channels, out_channels, stride, expand_ratio, batch_norm=bn))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        # TF-slim keeps the last layer at full width for multipliers below 1 (it carries the head).
        last = make_divisible(config.last_channels * max(width, 1.0), config.round_to)
        self.last = ConvAct(channels, last, batch_norm=bn)
        self.head = nn.Linear(last, config.style_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, style_dim)
        features = self.last(self.blocks(self.stem(image)))  # (B, last, H/32, W/32)
        return self.head(features.mean(dim=(2, 3)))

    def conv_layers(self) -> list[ConvAct]:
        """Every convolution (with its activation) in the order it runs; the head is not included."""
        layers = [self.stem]
        for block in self.blocks:
            layers += block.conv_layers()
        return layers + [self.last]


class NHWCStylePredictor(nn.Module):
    """The shipped predictor's interface around a :class:`StylePredictor`: NHWC image (B, 256, 256, 3)
    in [0, 1] in, (B, 1, 1, style_dim) out, so an export drops into the inference pipeline in
    place of ``arbitrary_predict.onnx``."""

    def __init__(self, predictor: StylePredictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        vector = self.predictor(image.permute(0, 3, 1, 2))  # (B, style_dim)
        return vector[:, None, None, :]


@torch.no_grad()
def shallower_copy(teacher: StylePredictor, config: StylePredictorConfig) -> StylePredictor:
    """``teacher``'s weights in a network with ``config``'s stem and block counts, at ``teacher``'s widths.

    A warm start for a student that is shallower than the teacher (then pruned narrower with
    ``compress.prune.prune_to_match``):
    - each stage keeps its first blocks; the dropped ones are residual blocks (only a stage's
      first block changes shape or stride), so the copy still computes a sensible function;
    - a bigger, strided stem (e.g. 4x4 stride 4 for the teacher's 3x3 stride 2) gets the
      teacher's kernel in its top-left corner. TF pads a stride-2 conv after the image only, so
      the copy's stem computes exactly every other output of the teacher's.
    Strides may differ freely: they do not change a weight's shape.
    """
    copy_config = replace(config, width_multiplier=teacher.config.width_multiplier,
                          last_channels=teacher.config.last_channels, train_batch_norm=False)
    if [stage[:2] for stage in copy_config.stages] != [stage[:2] for stage in teacher.config.stages]:
        raise ValueError("shallower_copy: the stages' expand ratios and channels must match the teacher's")
    copy = StylePredictor(copy_config).eval()
    _embed_kernel(copy.stem.conv, teacher.stem.conv)
    mine, theirs = 0, 0
    for (*_, kept, _), (*_, repeats, _) in zip(copy_config.stages, teacher.config.stages):
        if not 1 <= kept <= repeats:
            raise ValueError(f"shallower_copy: a stage keeps {kept} of the teacher's {repeats} blocks")
        for index in range(kept):
            copy.blocks[mine + index].load_state_dict(teacher.blocks[theirs + index].state_dict())
        mine, theirs = mine + kept, theirs + repeats
    copy.last.load_state_dict(teacher.last.state_dict())
    copy.head.load_state_dict(teacher.head.state_dict())
    return copy


def _embed_kernel(target: nn.Conv2d, source: nn.Conv2d) -> None:
    """Copy ``source``'s weights into the top-left corner of ``target``'s (equal or larger) kernel."""
    height, width = source.weight.shape[-2:]
    if target.weight.shape[:2] != source.weight.shape[:2] or target.weight.shape[-2] < height \
            or target.weight.shape[-1] < width:
        raise ValueError(f"shallower_copy: cannot fit a {tuple(source.weight.shape)} stem into "
                         f"{tuple(target.weight.shape)}")
    target.weight.zero_()
    target.weight[..., :height, :width] = source.weight
    target.bias.copy_(source.bias)
