"""TF "SAME" padding and MobileNetV2 blocks."""

from __future__ import annotations

import pytest

from tests.models.conftest import torch

from slimvision.models.layers import InvertedResidual, SamePadConv2d, make_divisible
from slimvision.models.layers.mobilenet import _same_pad


@pytest.mark.parametrize("size, stride, expected", [(256, 2, (0, 1)), (255, 2, (1, 1)), (17, 1, (1, 1)), (1, 2, (1, 1))])
def test_same_padding_is_tensorflows(size, stride, expected):
    assert _same_pad(size, 3, stride) == expected


@pytest.mark.parametrize("height, width", [(32, 32), (33, 17), (1, 2)])
def test_same_pad_conv_output_is_ceil_of_size_over_stride(height, width):
    conv = SamePadConv2d(3, 4, 3, stride=2)
    assert conv(torch.zeros(1, 3, height, width)).shape[-2:] == (-(-height // 2), -(-width // 2))


def test_inverted_residual_skip_only_when_shape_is_kept():
    assert InvertedResidual(16, 16, stride=1, expand_ratio=6).use_residual
    assert not InvertedResidual(16, 24, stride=1, expand_ratio=6).use_residual
    assert not InvertedResidual(16, 16, stride=2, expand_ratio=6).use_residual
    assert InvertedResidual(16, 16, stride=1, expand_ratio=1).expand is None


def test_make_divisible_rounds_like_tf_slim():
    assert [make_divisible(32 * w) for w in (0.35, 0.5, 0.75, 1.0)] == [16, 16, 24, 32]
    assert make_divisible(1280 * 1.4) == 1792
