"""Building blocks shared by several model families (MobileNetV2 blocks, TF-style padding)."""

from slimvision.models.layers.mobilenet import InvertedResidual, SamePadConv2d, make_divisible

__all__ = ["InvertedResidual", "SamePadConv2d", "make_divisible"]
