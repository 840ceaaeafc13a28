import pytest
import torch
import torch.nn.functional as F

from slimvision.compress.decompose import fit_conv_to_outputs, separable_from_conv


def _separable(x: torch.Tensor, depthwise: torch.Tensor, pointwise: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.conv2d(x, depthwise, groups=depthwise.shape[0]), pointwise)


def test_separable_weight_is_reproduced_exactly():
    torch.manual_seed(0)
    # A weight that is separable by construction: per input channel, one spatial filter.
    spatial, mixing = torch.randn(6, 1, 3, 3), torch.randn(10, 6, 1, 1)
    weight = mixing * spatial.reshape(1, 6, 3, 3)
    depthwise, pointwise, error = separable_from_conv(weight)
    x = torch.randn(2, 6, 12, 12)
    assert error < 1e-5
    torch.testing.assert_close(_separable(x, depthwise, pointwise), F.conv2d(x, weight), atol=1e-4, rtol=1e-4)


def test_general_weight_gets_the_best_rank1_error():
    torch.manual_seed(1)
    weight = torch.randn(16, 8, 3, 3)
    depthwise, pointwise, error = separable_from_conv(weight)
    assert depthwise.shape == (8, 1, 3, 3) and pointwise.shape == (16, 8, 1, 1)
    # Eckart-Young: the rank-1 residual is the energy of the other singular values.
    s = torch.linalg.svdvals(weight.permute(1, 0, 2, 3).reshape(8, 16, 9))
    expected = (s[:, 1:].pow(2).sum() / s.pow(2).sum()).sqrt()
    assert error == pytest.approx(float(expected), rel=1e-4)


def test_least_squares_recovers_a_smaller_conv():
    torch.manual_seed(2)
    true_weight, true_bias = torch.randn(4, 3, 3, 3), torch.randn(4)
    inputs = torch.rand(3, 3, 20, 20)
    targets = F.conv2d(F.pad(inputs, (1,) * 4, mode="reflect"), true_weight, true_bias)
    weight, bias, r2 = fit_conv_to_outputs(inputs, targets, 3, ridge=0.0)
    torch.testing.assert_close(weight, true_weight, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(bias, true_bias, atol=1e-3, rtol=1e-3)
    assert r2 > 0.9999


def test_least_squares_approximates_a_bigger_kernel_better_than_nothing():
    torch.manual_seed(3)
    big = torch.randn(5, 3, 9, 9) / 9
    inputs = F.avg_pool2d(torch.rand(2, 3, 40, 40), 3, 1, 1)  # smooth images, like photos
    targets = F.conv2d(F.pad(inputs, (4,) * 4, mode="reflect"), big)
    _, _, r2 = fit_conv_to_outputs(inputs, targets, 3)
    assert 0.0 < r2 < 1.0


def test_even_kernel_is_refused():
    with pytest.raises(ValueError, match="odd"):
        fit_conv_to_outputs(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), 2)
