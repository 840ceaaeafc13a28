"""Full-resolution convolutions rewritten on 2x2 phase planes: exact away from the border."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from slimvision.compress.space_to_depth import crop_kernel, phase_conv_weight, phase_kernel_size  # noqa: E402


def _inside(a: torch.Tensor, b: torch.Tensor, border: int) -> float:
    return float((a - b)[..., border:-border, border:-border].abs().max())


@pytest.mark.parametrize("kernel", [1, 3, 5, 9])
def test_a_stride_1_conv_on_phase_planes_equals_the_full_resolution_conv(kernel):
    torch.manual_seed(kernel)
    weight, bias, x = torch.randn(4, 3, kernel, kernel), torch.randn(4), torch.randn(2, 3, 40, 36)
    full = F.conv2d(x, weight, bias, padding=kernel // 2)
    phase_weight, phase_bias = phase_conv_weight(weight, bias)
    size = phase_kernel_size(kernel)
    assert phase_weight.shape == (16, 12, size, size) and phase_bias.shape == (16,)
    half = F.conv2d(F.pixel_unshuffle(x, 2), phase_weight, phase_bias, padding=size // 2)
    assert _inside(F.pixel_shuffle(half, 2), full, 2 * size) < 1e-4


def test_a_stride_2_conv_keeps_the_even_phase():
    torch.manual_seed(0)
    weight, bias, x = torch.randn(5, 2, 3, 3), torch.randn(5), torch.randn(1, 2, 16, 16)
    full = F.conv2d(x, weight, bias, padding=1, stride=2)  # windows centred on the even pixels
    phase_weight, phase_bias = phase_conv_weight(weight, bias, outputs="even")
    assert phase_weight.shape == (5, 8, 3, 3)
    half = F.conv2d(F.pixel_unshuffle(x, 2), phase_weight, phase_bias, padding=1)
    assert _inside(half, full, 1) < 1e-4


def test_upsample_then_conv_becomes_one_sub_pixel_conv():
    torch.manual_seed(1)
    weight, bias, x = torch.randn(3, 4, 3, 3), torch.randn(3), torch.randn(1, 4, 10, 12)
    full = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), weight, bias, padding=1)
    phase_weight, phase_bias = phase_conv_weight(weight, bias, inputs="repeated")
    assert phase_weight.shape == (12, 4, 3, 3)
    half = F.conv2d(x, phase_weight, phase_bias, padding=1)
    assert _inside(F.pixel_shuffle(half, 2), full, 2) < 1e-4


def test_kernel_sizes_and_crops():
    assert [phase_kernel_size(k) for k in (1, 3, 5, 7, 9)] == [1, 3, 3, 5, 5]
    weight = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert crop_kernel(weight, 3).flatten().tolist() == [6, 7, 8, 11, 12, 13, 16, 17, 18]
    with pytest.raises(ValueError, match="odd"):
        phase_kernel_size(4)
    with pytest.raises(ValueError, match="cannot crop"):
        crop_kernel(weight, 7)
