"""Quantization-aware rounding: the grids the int8 quantizer uses, gradients through them, calibrate, strip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimvision.compress.qat import (
    RoundedLayer, calibrate, prepare, round_activation, round_weight, strip, weight_levels,
)
from slimvision.errors import SlimvisionError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 2))


def test_weights_round_to_a_symmetric_grid_per_output_channel():
    weight = torch.tensor([[0.5, -0.25, 0.1], [2.0, 1.0, -0.03]])
    rounded = round_weight(weight, 64)
    steps = weight.abs().amax(dim=1, keepdim=True) / 64  # one step per row, from its largest magnitude
    codes = rounded / steps
    assert torch.allclose(codes, codes.round(), atol=1e-4) and codes.abs().max() <= 64
    assert torch.allclose(rounded[:, 0], weight[:, 0])  # each row's largest value is on the grid
    assert (rounded - weight).abs().max() <= steps.max() / 2 + 1e-6
    assert weight_levels(reduce_range=True) == 64 and weight_levels(reduce_range=False) == 127


def test_activations_round_to_255_steps_over_a_range_that_holds_zero():
    x = torch.linspace(0.2, 3.0, 50)
    rounded = round_activation(x, torch.tensor(0.2), torch.tensor(3.0))  # the range is widened to [0, 3]
    step = 3.0 / 255
    assert torch.allclose(rounded / step, (rounded / step).round(), atol=1e-3)
    assert (rounded - x).abs().max() <= step / 2 + 1e-6
    clipped = round_activation(torch.tensor([-1.0, 5.0]), torch.tensor(0.0), torch.tensor(3.0))
    assert clipped.tolist() == pytest.approx([0.0, 3.0])


def test_gradients_pass_straight_through_the_rounding_inside_the_range():
    weight = torch.randn(3, 5, requires_grad=True)
    round_weight(weight, 127).sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))
    x = torch.tensor([0.5, 1.5, 4.0], requires_grad=True)
    round_activation(x, torch.tensor(0.0), torch.tensor(2.0)).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]  # clipped: no gradient


def test_a_prepared_network_rounds_after_calibration_and_strips_back_to_float():
    net, inputs = _net(), torch.rand(8, 3, 8, 8)
    with torch.no_grad():
        reference = net(inputs)
    layers = prepare(net, weight_levels(reduce_range=False))
    assert len(layers) == 3 and all(isinstance(layer, RoundedLayer) for layer in layers)
    with pytest.raises(SlimvisionError, match="calibrat"):
        net(inputs)
    calibrate(net, [inputs[:4], inputs[4:]])
    assert layers[0].low == pytest.approx(float(inputs.min())) and layers[0].high == pytest.approx(float(inputs.max()))
    with torch.no_grad():
        rounded = net(inputs)
    assert not torch.equal(rounded, reference) and torch.allclose(rounded, reference, atol=0.05)
    net.train()
    net(inputs).pow(2).sum().backward()  # gradients reach every wrapped weight
    assert all(layer.layer.weight.grad is not None for layer in layers)
    stripped = strip(net)
    assert stripped is net and not any(isinstance(module, RoundedLayer) for module in net.modules())
    with torch.no_grad():
        assert torch.allclose(net(inputs), reference)  # the same weights, in float


def test_misuse_is_refused_in_one_line():
    with pytest.raises(SlimvisionError, match="no Conv2d or Linear"):
        prepare(nn.Sequential(nn.ReLU()), 127)
    with pytest.raises(SlimvisionError, match="prepare"):
        calibrate(_net(), [torch.rand(1, 3, 8, 8)])
    net = _net()
    prepare(net, 127)
    with pytest.raises(SlimvisionError, match="no input batch"):
        calibrate(net, [])
