"""Quantization-aware fine-tuning for the static int8 graphs of
:func:`~slimvision.compress.quantize.quantize_int8_static`.

Post-training int8 rounds a network's weights and activations as ONNX Runtime's static QDQ
quantizer does; a network trained in float has never seen that rounding, and a few decisions
move. A short fine-tune with the rounding simulated in the forward pass (Jacob et al. 2018,
"Quantization and training of neural networks for efficient integer-arithmetic-only inference")
lets the weights settle where rounding costs least. The simulation follows what the quantizer
will do to the graph:

* weights: symmetric int8 per output channel, from each channel's largest magnitude; 7-bit
  (-64..64) where the quantizer reduces the range (x86 without VNNI, the default there);
* activations: asymmetric uint8 over a range that contains 0, from the minimum and maximum seen
  on calibration inputs (the quantizer's "minmax");
* gradients pass through the rounding unchanged inside the range (the straight-through estimator).

The input of every ``Conv2d`` and ``Linear`` is rounded. The quantizer also rounds the tensors
between element-wise ops (a residual sum's inputs and output, a pool's output), which this does
not simulate; rounding each layer's output as well was tried on the face student and did no
better (docs/faces.md, "A student in int8"). After the
fine-tune, :func:`strip` gives back the plain float network, whose weights the quantizer then
rounds for real, recalibrating its own ranges on its own inputs.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    >>> layers = prepare(net, weight_levels(reduce_range=False))
    >>> calibrate(net, [torch.rand(8, 3, 8, 8)])
    >>> net(torch.rand(2, 3, 8, 8)).shape                  # rounded as the int8 graph will be
    torch.Size([2, 2])
    >>> isinstance(strip(net)[0], nn.Conv2d)
    True
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimvision.errors import SlimvisionError

#: uint8 activation codes.
ACTIVATION_LEVELS = 255


def weight_levels(reduce_range: bool | None = None) -> int:
    """The largest weight code of the quantizer's symmetric int8 grid: 64 with a reduced range
    (its default on a CPU without VNNI, :func:`~slimvision.compress.quantize.cpu_has_vnni`), else 127."""
    if reduce_range is None:
        from slimvision.compress.quantize import cpu_has_vnni

        reduce_range = not cpu_has_vnni()
    return 64 if reduce_range else 127


def round_weight(weight: torch.Tensor, levels: int) -> torch.Tensor:
    """``weight`` (out, ...) rounded to a symmetric grid of ``levels`` codes each side per output
    channel, as the quantizer stores it; the gradient passes straight through."""
    largest = weight.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12)  # (out,)
    scale = (largest / levels).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -levels, levels)


def round_activation(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to the uint8 grid over [low, high] (widened to contain 0, as the quantizer
    does); values outside clip, and their gradient is zero."""
    low, high = low.clamp(max=0.0), high.clamp(min=0.0)
    scale = ((high - low) / ACTIVATION_LEVELS).clamp_min(1e-12).reshape(())
    zero = torch.round(-low / scale).clamp(0, ACTIVATION_LEVELS).to(torch.int32).reshape(())
    return torch.fake_quantize_per_tensor_affine(x, scale.float(), zero, 0, ACTIVATION_LEVELS)


class RoundedLayer(nn.Module):
    """A ``Conv2d`` or ``Linear`` that rounds its input and weights as the int8 graph will.

    While :attr:`observing`, it runs in float and widens its input range to what it sees
    (:func:`calibrate`); afterwards the range is fixed and every call rounds.
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, levels: int) -> None:
        super().__init__()
        self.layer, self.levels, self.observing = layer, levels, False
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.low.copy_(torch.minimum(self.low, x.detach().min()))
            self.high.copy_(torch.maximum(self.high, x.detach().max()))
            return self.layer(x)
        if not torch.isfinite(self.low):
            raise SlimvisionError("a rounded layer ran before calibration: call calibrate() first")
        x = round_activation(x, self.low, self.high)
        weight = round_weight(self.layer.weight, self.levels)
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return F.linear(x, weight, self.layer.bias)


def prepare(model: nn.Module, levels: int) -> list[RoundedLayer]:
    """Wrap every ``Conv2d`` (ungrouped or grouped) and ``Linear`` of ``model`` in place in a
    :class:`RoundedLayer`; return the wrappers, in the order the modules were registered."""
    wrapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                rounded = RoundedLayer(child, levels)
                setattr(parent, name, rounded)
                wrapped.append(rounded)
    if not wrapped:
        raise SlimvisionError(f"{type(model).__name__} has no Conv2d or Linear layer to quantize")
    return wrapped


@torch.no_grad()
def calibrate(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Set every :class:`RoundedLayer`'s input range to the minimum and maximum it sees over
    ``inputs`` (batches for ``model``), the model in float meanwhile; ranges start afresh."""
    layers = [module for module in model.modules() if isinstance(module, RoundedLayer)]
    if not layers:
        raise SlimvisionError("calibrate() needs a model prepared with prepare()")
    for layer in layers:
        layer.low.fill_(float("inf"))
        layer.high.fill_(float("-inf"))
        layer.observing = True
    was_training = model.training
    model.eval()
    try:
        seen = sum(1 for batch in inputs if model(batch) is not None)
    finally:
        for layer in layers:
            layer.observing = False
        model.train(was_training)
    if not seen:
        raise SlimvisionError("calibrate() was given no input batch")


def strip(model: nn.Module) -> nn.Module:
    """``model`` with every :class:`RoundedLayer` replaced, in place, by the float layer it wraps."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RoundedLayer):
                setattr(parent, name, child.layer)
    return model
