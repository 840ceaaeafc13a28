"""GPTQ: 4-bit weights with one-shot error compensation, no training (Frantar et al., 2022).

Rounding each weight to the nearest of 16 levels ruins a MobileNetV2 (the teacher style
predictor's vectors keep R² -0.17 against the float ones). GPTQ quantizes a layer's input
columns one at a time and, after each, moves the rounding error onto the columns not yet
quantized, weighted by the inverse of the layer's input second moments ``H = Σ x xᵀ`` measured
on calibration images. The layer's output on those images then changes far less than its
weights do: R² 0.97 for the same predictor, with 128 calibration images and about two minutes
on 2 CPU cores (docs/compress.md).

What this module does, per quantized layer (every ``nn.Linear`` and every dense 1x1
``nn.Conv2d``; depthwise and k x k convs are left as they are, they hold 3% of a MobileNetV2's
weights):

* weights are split along the input axis into groups of ``group_size``; each (output row,
  group) gets an asymmetric grid, a float16 scale and a 4-bit zero point, taken from the
  *original* weights before any error is moved ("static groups"), so a group is always a run of
  consecutive input channels and stores as ONNX's blocked ``DequantizeLinear``;
* columns are visited in order of decreasing ``H`` diagonal (``act_order``: the inputs that
  carry the most energy are fixed first, while there are still columns left to absorb their
  error); this took the predictor's R² from 0.93 to 0.97;
* layers are done in the order they run, each calibrated on the outputs of the layers already
  quantized, so later layers also absorb their predecessors' error.

The result is the model with its weights replaced by the exact values the 4-bit codes decode
to (float16 rounding included), plus a :class:`GroupQuantized` per layer that
:func:`slimvision.compress.quantize.store_weights_int4` writes into an ONNX graph.

 Mixed precision: :func:`layer_sensitivity` measures, in output space, how much rounding each
layer alone costs; :func:`choose_wide_layers` spends a byte budget on the layers that cost the
most per extra byte, and ``GPTQSettings.layer_bits`` quantizes those at 8 bits. The errors of a
4-bit predictor are spread over many layers (docs/compress.md), so a budget is best spent where a
measurement says, not on the layers that look important.

:func:`tune_scales` can then fine-tune what GPTQ fixed per group, the scales (and every bias),
by gradient descent on a loss of the caller's choosing, with the codes left as they are: a few
hundred steps that see the whole network at once, where GPTQ saw one layer at a time.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 1), torch.nn.ReLU(), torch.nn.Conv2d(32, 8, 1))
    >>> layers = quantize_gptq(net, [torch.rand(4, 3, 8, 8)], GPTQSettings(group_size=16))
    >>> [layer.name for layer in layers], bool(layers[0].codes.max() <= 15)
    (['0', '2'], True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from slimvision.errors import ConfigError

#: How a group's scale and zero point are chosen (:class:`GPTQSettings` ``grid``).
GRIDS = ("minmax", "mse")
#: The range shrink factors the "mse" grid tries (1.0 first: it is kept unless another rounds better).
CLIP_FACTORS = tuple(1.0 - 0.025 * step for step in range(21))


@dataclass(frozen=True)
class GPTQSettings:
    """How :func:`quantize_gptq` quantizes.

    Attributes:
        bits: code width (2-8); 4 is what ships (two codes per byte).
        group_size: input channels sharing one scale and zero point; a layer with fewer inputs
            is one group. Smaller groups fit better and store more scales (16 + 4 bits per group).
        act_order: visit columns by decreasing input energy instead of in order.
        damping: added to ``H``'s diagonal as a fraction of its mean, so the inverse exists
            when some inputs are nearly constant or dead on the calibration set.
        layer_bits: (layer name, bits) pairs that override ``bits`` for those layers (mixed
            precision: :func:`choose_wide_layers` picks which layers get more bits).
        grid: how each group's scale and zero point are chosen: "minmax" (the group's range)
            or "mse" (the range shrunk by the factor, of :data:`CLIP_FACTORS`, that rounds the
            group with the least input-energy-weighted squared error; outliers clip).
    """

    bits: int = 4
    group_size: int = 64
    act_order: bool = True
    damping: float = 0.01
    layer_bits: tuple[tuple[str, int], ...] = ()
    grid: str = "minmax"

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            raise ConfigError(f"GPTQ grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        for bits in (self.bits, *(bits for _, bits in self.layer_bits)):
            if not 2 <= bits <= 8:
                raise ConfigError(f"GPTQ bits must be 2-8, got {bits}")
        if self.group_size < 1:
            raise ConfigError(f"GPTQ group_size must be >= 1, got {self.group_size}")
        if not 0.0 < self.damping < 1.0:
            raise ConfigError(f"GPTQ damping must be in (0, 1), got {self.damping}")

    def bits_for(self, layer: str) -> int:
        """The code width of ``layer``: its ``layer_bits`` entry, else ``bits``."""
        return dict(self.layer_bits).get(layer, self.bits)


@dataclass
class GroupQuantized:
    """One layer's codes: ``weight[o, i] = float16((codes[o, i] - zeros[o, g]) * scales[o, g])``,
    where ``g = i // group_size``.

    ``codes`` is (out, in) uint8; ``scales`` (out, groups) float16; ``zeros`` (out, groups) uint8.
    ``shape`` is the layer's weight shape (a 1x1 conv's trailing 1s included).
    """

    name: str
    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group_size: int
    shape: tuple[int, ...]

    def dequantized(self) -> np.ndarray:
        """The float32 weight the codes decode to, in the layer's shape."""
        return _decode(self.codes, self.scales, self.zeros, self.group_size).reshape(self.shape)

    @property
    def stored_bytes(self) -> int:
        """Bytes of packed codes, float16 scales and packed zero points."""
        packed = -(-self.bits * self.codes.size // 8)
        return packed + 2 * self.scales.size + -(-self.bits * self.zeros.size // 8)


def quantizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers GPTQ handles, in registration order: ``nn.Linear`` and dense 1x1 ``nn.Conv2d``."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear)
            or (isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size == (1, 1))]


class _Collected(Exception):
    """Raised by the Hessian hook to skip the rest of a forward pass once the layer's input is seen."""


def quantize_gptq(model: nn.Module, calibration: Sequence[torch.Tensor], settings: GPTQSettings | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[GroupQuantized]:
    """Quantize ``model``'s :func:`quantizable_layers` in place, one after another; return their codes.

    Args:
        model: a float module; its weights are replaced by their decoded 4-bit values.
        calibration: input batches, each passed as ``model(batch)``; a few hundred images is plenty.
        settings: bits, grouping, order and damping.
        progress: called as ``progress(done, total, layer name)`` after each layer.
    """
    settings = settings or GPTQSettings()
    layers = quantizable_layers(model)
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no Linear or 1x1 Conv2d layer to quantize")
    unknown = sorted(set(dict(settings.layer_bits)) - {name for name, _ in layers})
    if unknown:
        raise ConfigError(f"GPTQ layer_bits names no quantizable layer of {type(model).__name__}: {', '.join(unknown)}")
    if not calibration:
        raise ConfigError("GPTQ needs at least one calibration batch")
    was_training = model.training
    model.eval()
    results = []
    try:
        for done, (name, module) in enumerate(layers, start=1):
            hessian = _input_hessian(model, module, calibration)
            weight = module.weight.detach().reshape(module.weight.shape[0], -1).double()
            own = replace(settings, bits=settings.bits_for(name), layer_bits=())
            codes, scales, zeros = solve_gptq(weight, hessian, own)
            layer = GroupQuantized(name, codes, scales, zeros, own.bits,
                                   min(settings.group_size, weight.shape[1]), tuple(module.weight.shape))
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(layer.dequantized()))
            results.append(layer)
            if progress is not None:
                progress(done, len(layers), name)
    finally:
        model.train(was_training)
    return results


@torch.no_grad()
def layer_sensitivity(model: nn.Module, batches: Sequence[torch.Tensor],
                      loss: Callable[[nn.Module, torch.Tensor], torch.Tensor], bits: int = 4,
                      group_size: int = 64) -> dict[str, float]:
    """How much each quantizable layer alone hurts: the mean ``loss`` with only that layer rounded
    to ``bits`` (plain grouped rounding, every other layer as it is), minus the loss without.

    A perturbation measure in the spirit of HAWQ (Dong et al., 2019) without the Hessian: it asks
    the question mixed precision needs (which layers' rounding the output notices) in output
    space, one forward pass per layer and batch. ``model`` is left as it was.
    """
    was_training = model.training
    model.eval()

    def mean_loss() -> float:
        return float(np.mean([float(loss(model, batch)) for batch in batches]))

    try:
        base = mean_loss()
        result = {}
        for name, module in quantizable_layers(model):
            original = module.weight.detach().clone()
            weight = original.reshape(original.shape[0], -1).double()
            group = min(group_size, weight.shape[1])
            scales, zeros = _group_grids(weight, bits, group)
            spread = scales.repeat_interleave(group, 1)[:, :weight.shape[1]]
            offsets = zeros.repeat_interleave(group, 1)[:, :weight.shape[1]]
            codes = torch.clamp(torch.round(weight / spread) + offsets, 0, 2 ** bits - 1)
            module.weight.copy_(((codes - offsets) * spread).reshape(original.shape).to(original.dtype))
            result[name] = mean_loss() - base
            module.weight.copy_(original)
    finally:
        model.train(was_training)
    return result


def extra_bytes(shape: Sequence[int], group_size: int, bits: int, wide_bits: int) -> int:
    """Bytes a layer of weight ``shape`` gains when stored at ``wide_bits`` instead of ``bits``
    (codes and zero points; the float16 scales stay)."""
    rows, columns = int(shape[0]), int(np.prod(shape[1:]))
    groups = rows * -(-columns // min(group_size, columns))
    return (-(-wide_bits * rows * columns // 8) - -(-bits * rows * columns // 8)
            + -(-wide_bits * groups // 8) - -(-bits * groups // 8))


def choose_wide_layers(sensitivity: Mapping[str, float], costs: Mapping[str, int], budget: int) -> list[str]:
    """The layers to store wider within ``budget`` extra bytes: most sensitivity per extra byte
    first (a greedy knapsack), skipping any layer that no longer fits; layers whose rounding did
    not hurt (sensitivity <= 0) are never chosen. Returned in the order of ``sensitivity``."""
    ranked = sorted((name for name in sensitivity if sensitivity[name] > 0),
                    key=lambda name: sensitivity[name] / max(costs[name], 1), reverse=True)
    chosen, spent = set(), 0
    for name in ranked:
        if spent + costs[name] <= budget:
            chosen.add(name)
            spent += costs[name]
    return [name for name in sensitivity if name in chosen]


@torch.no_grad()
def _input_hessian(model: nn.Module, layer: nn.Module, calibration: Sequence[torch.Tensor]) -> torch.Tensor:
    """``Σ x xᵀ`` over every position of the layer's input on the calibration batches (float64)."""
    columns = layer.weight[0].numel()
    hessian = torch.zeros(columns, columns, dtype=torch.float64)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        x = x.movedim(1, -1).reshape(-1, columns) if x.dim() == 4 else x.reshape(-1, columns)
        hessian.add_(x.double().T @ x.double())
        raise _Collected

    handle = layer.register_forward_pre_hook(hook)
    try:
        for batch in calibration:
            try:
                model(batch)
            except _Collected:
                pass
    finally:
        handle.remove()
    return hessian


def solve_gptq(weight: torch.Tensor, hessian: torch.Tensor, settings: GPTQSettings
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, float16 scales, zero points) of a (out, in) float64 ``weight`` given its input ``hessian``."""
    weight = weight.clone()
    columns = weight.shape[1]
    group = min(settings.group_size, columns)
    if settings.grid == "mse":
        scales, zeros = _clipped_group_grids(weight, torch.diag(hessian), settings.bits, group)
    else:
        scales, zeros = _group_grids(weight, settings.bits, group)
    hessian = hessian.clone()
    dead = torch.diag(hessian) == 0  # inputs never non-zero on the calibration set: their weights cannot matter
    hessian[dead, dead] = 1.0
    weight[:, dead] = 0.0
    hessian += settings.damping * torch.mean(torch.diag(hessian)) * torch.eye(columns, dtype=hessian.dtype)
    order = (torch.argsort(torch.diag(hessian), descending=True) if settings.act_order
             else torch.arange(columns))
    weight, hessian = weight[:, order], hessian[order][:, order]
    # The upper Cholesky factor of H⁻¹ gives each step's error weights without re-inverting H.
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    codes = np.zeros(weight.shape, np.uint8)
    qmax = 2 ** settings.bits - 1
    for step in range(columns):
        column = int(order[step])
        scale, zero = scales[:, column // group], zeros[:, column // group]
        code = torch.clamp(torch.round(weight[:, step] / scale) + zero, 0, qmax)
        decoded = (code - zero) * scale
        codes[:, column] = code.numpy().astype(np.uint8)
        error = (weight[:, step] - decoded.half().double()) / inverse[step, step]
        weight[:, step + 1:] -= error[:, None] * inverse[step, step + 1:][None, :]
    return codes, scales.numpy().astype(np.float16), zeros.numpy().astype(np.uint8)


#: The smallest positive float16 (a subnormal), 2**-24: the least a stored scale can be.
FLOAT16_SMALLEST = 2.0 ** -24


def _group_grids(weight: torch.Tensor, bits: int, group: int, factor: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (row, group): an asymmetric grid that contains 0 (scale rounded to float16, integer zero
    point), over the group's range times ``factor`` (below 1: the extremes clip)."""
    qmax = 2 ** bits - 1
    rows, columns = weight.shape
    groups = -(-columns // group)
    scales = torch.empty(rows, groups, dtype=torch.float64)
    zeros = torch.empty(rows, groups, dtype=torch.float64)
    for index in range(groups):
        part = weight[:, index * group:(index + 1) * group]
        low, high = part.min(1).values.clamp(max=0.0) * factor, part.max(1).values.clamp(min=0.0) * factor
        # Stored as float16. A group of (near-)zero weights (a dead channel) would round to a scale
        # of 0, and its codes to 0 / 0 = NaN, which GPTQ's error feedback then spreads along the
        # row: the smallest float16 above 0 keeps every such weight at its zero point instead.
        scale = ((high - low) / qmax).half().double().clamp(min=FLOAT16_SMALLEST)
        scales[:, index] = scale
        zeros[:, index] = torch.clamp(torch.round(-low / scale), 0, qmax)
    return scales, zeros


def _clipped_group_grids(weight: torch.Tensor, energy: torch.Tensor, bits: int, group: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (row, group): the :func:`_group_grids` grid, over the range times the :data:`CLIP_FACTORS`
    entry, that rounds the group's weights with the least squared error, each input weighted by
    its energy (``H``'s diagonal: an input that is often large costs more when its weight is off)."""
    qmax = 2 ** bits - 1
    which = torch.arange(weight.shape[1]) // group  # each input's group
    weights = energy.clamp(min=0.0)[None, :]
    chosen, best = None, None
    for factor in CLIP_FACTORS:
        scales, zeros = _group_grids(weight, bits, group, factor)
        scale, zero = scales[:, which], zeros[:, which]
        decoded = ((torch.clamp(torch.round(weight / scale) + zero, 0, qmax) - zero) * scale).half().double()
        error = torch.zeros_like(scales).index_add_(1, which, (weight - decoded) ** 2 * weights)
        if chosen is None:
            chosen, best = (scales, zeros), error
            continue
        better = error < best
        best = torch.where(better, error, best)
        chosen[0][better], chosen[1][better] = scales[better], zeros[better]
    return chosen


def _per_input(per_group: np.ndarray, group: int, columns: int) -> np.ndarray:
    """(out, groups) values spread to (out, columns) as float32: each input gets its group's value."""
    return np.repeat(per_group.astype(np.float32), group, axis=1)[:, :columns]


def _decode(codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray, group: int) -> np.ndarray:
    """``float16((codes - zeros) * scales)`` as float32, as ONNX's DequantizeLinear with float16 scales computes it."""
    columns = codes.shape[1]
    products = (codes.astype(np.float32) - _per_input(zeros, group, columns)) * _per_input(scales, group, columns)
    return products.astype(np.float16).astype(np.float32)


class _DecodedWeight(nn.Module):
    """A parametrization: the layer's weight as its fixed codes times trainable per-group scales."""

    def __init__(self, layer: GroupQuantized) -> None:
        super().__init__()
        zeros = _per_input(layer.zeros, layer.group_size, layer.codes.shape[1])
        self.register_buffer("centred", torch.from_numpy(layer.codes.astype(np.float32) - zeros))
        self.scale = nn.Parameter(torch.from_numpy(layer.scales.astype(np.float32)))
        self.group_size, self.shape = layer.group_size, layer.shape

    def forward(self, _weight: torch.Tensor) -> torch.Tensor:
        scales = self.scale.repeat_interleave(self.group_size, dim=1)[:, :self.centred.shape[1]]
        return (self.centred * scales).reshape(self.shape)


def tune_scales(model: nn.Module, layers: Sequence[GroupQuantized], batches: Iterable[torch.Tensor],
                loss: Callable[[nn.Module, torch.Tensor], torch.Tensor], learning_rate: float = 1e-4,
                progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Fine-tune the quantized layers' scales and every bias of ``model`` in place; codes stay fixed.

    Each batch is one Adam step on ``loss(model, batch)``. The scales end rounded to float16
    (written back into ``layers``) and each layer holds its decoded weight again, so
    :func:`~slimvision.compress.quantize.store_weights_int4` stores the tuned model as it is.
    Other weights (depthwise, the stem) stay frozen. Returns the loss of every step.

    Args:
        model: the module :func:`quantize_gptq` quantized.
        layers: what it returned.
        batches: one input batch per step.
        loss: a scalar to minimise, e.g. the distance to a float teacher's outputs.
        learning_rate: Adam's step size (the scales are around 1e-3 to 1e-2).
        progress: called as ``progress(step, loss)`` after each step.
    """
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    missing = [layer.name for layer in layers if layer.name not in modules]
    if missing:
        raise ConfigError(f"tune_scales: {type(model).__name__} has no layer(s) {', '.join(missing)}")
    trainable = [parameter for name, parameter in model.named_parameters() if name.endswith("bias")]
    groups: list[dict[str, Any]] = [{"params": trainable, "lr": learning_rate}]
    for layer in layers:
        parametrize.register_parametrization(modules[layer.name], "weight", _DecodedWeight(layer), unsafe=True)
        scale = modules[layer.name].parametrizations.weight[0].scale
        # Adam moves each parameter by about the step size whatever its gradient, and a layer's
        # scales shrink with its code range (8-bit ones are 17x smaller): scale the step alike.
        groups.append({"params": [scale], "lr": learning_rate * 15 / (2 ** layer.bits - 1)})
    was_training = model.training
    flags = {parameter: parameter.requires_grad for parameter in model.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for group in groups:
        for parameter in group["params"]:
            parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(groups)
    losses = []
    model.eval()  # no batch-norm statistics move: the network computes as it will run
    try:
        for step, batch in enumerate(batches, start=1):
            value = loss(model, batch)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            losses.append(float(value.detach()))
            if progress is not None:
                progress(step, losses[-1])
    finally:
        _bake(model, modules, layers)
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)
        model.train(was_training)
    return losses


@torch.no_grad()
def _bake(model: nn.Module, modules: dict[str, nn.Module], layers: Sequence[GroupQuantized]) -> None:
    """Round the tuned scales to float16 into ``layers`` and give each layer its decoded weight back."""
    from torch.nn.utils import parametrize

    for layer in layers:
        module = modules[layer.name]
        layer.scales = module.parametrizations.weight[0].scale.detach().numpy().astype(np.float16)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        module.weight.copy_(torch.from_numpy(layer.dequantized()))
