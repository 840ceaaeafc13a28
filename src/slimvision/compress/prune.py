"""Structured channel pruning: remove whole filters, so the pruned model is really smaller and faster.

Unstructured (weight-by-weight) sparsity saves nothing on a CPU without sparse kernels; removing
whole output channels shrinks every tensor that touches them. Which layers must lose the *same*
channels (a conv, its batch norm, the next conv's inputs, both sides of a residual add, the
conditional-norm scales computed from a style vector) is found by tracing the model once with
``torch-pruning``'s dependency graph (Fang et al., "DepGraph", CVPR 2023), which works without
torchvision.

Importance of a channel group:

* ``"l1"``: the L1 norm of its filters (Li et al., "Pruning Filters for Efficient ConvNets", 2017);
* ``"bn_scale"``: the magnitude of its batch-norm scale (Liu et al., "Network Slimming", 2017),
  for networks trained with BN.

Pruning costs accuracy; follow it with distillation from the unpruned model
(``slimvision.compress.distill``) to win most of it back.

Example:
    >>> report = prune_channels(model, torch.randn(1, 3, 64, 64), ratio=0.3,     # doctest: +SKIP
    ...                         ignored_layers=[model.head])
    >>> print(report.summary())                                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from slimvision.errors import SlimvisionError

Importance = Literal["l1", "bn_scale"]


@dataclass(frozen=True)
class PruneReport:
    """Parameters and multiply-accumulates of one forward pass, before and after."""

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    importance: str
    ratio: float

    def summary(self) -> str:
        return (f"pruned {100 * self.ratio:.0f}% of channels by {self.importance}: params "
                f"{self.params_before:,} -> {self.params_after:,} (x{self.params_after / self.params_before:.2f}), "
                f"MACs {self.macs_before:,} -> {self.macs_after:,} (x{self.macs_after / self.macs_before:.2f})")


def _importance(kind: Importance) -> Any:
    import torch_pruning as tp

    if kind == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if kind == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise SlimvisionError(f"importance must be 'l1' or 'bn_scale', got {kind!r}")


def count_params_and_macs(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    """(parameters, multiply-accumulates of the convs and linear layers in one forward pass).

    Our own hooks rather than torch-pruning's counter, which matches layer types exactly and so
    counts nothing for subclasses of ``nn.Conv2d`` (TF-style padded convs, for one).
    """
    macs = 0

    def count(layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(layer, nn.Conv2d):
            per_output = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        else:
            per_output = layer.in_features
        macs += output.numel() * per_output

    hooks = [layer.register_forward_hook(count) for layer in model.modules()
             if isinstance(layer, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            _call(model, example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return sum(p.numel() for p in model.parameters()), macs


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def prune_channels(model: nn.Module, example_inputs: Any, ratio: float, *,
                   importance: Importance = "l1", ignored_layers: Sequence[nn.Module] = (),
                   round_to: int | None = None, iterative_steps: int = 1) -> PruneReport:
    """Remove ``ratio`` of the output channels of every prunable layer, in place.

    Args:
        model: a torch module (put in eval mode for tracing; training mode is restored).
        example_inputs: a tensor, or a tuple/dict of them, that ``model`` accepts.
        ratio: fraction of channels to remove from each layer group, in [0, 1).
        importance: how to rank channels (see the module docstring).
        ignored_layers: layers whose *output* channels must stay (a model's output layer,
            a fixed-size embedding or style head); their inputs may still shrink.
        round_to: keep channel counts multiples of this (SIMD-friendly: 4 or 8 on CPUs).
        iterative_steps: prune in this many equal steps, re-ranking between them.
    """
    import torch_pruning as tp

    if not 0.0 <= ratio < 1.0:
        raise SlimvisionError(f"pruning ratio must be in [0, 1), got {ratio}")
    if iterative_steps < 1:
        raise SlimvisionError(f"iterative_steps must be at least 1, got {iterative_steps}")
    was_training = model.training
    model.eval()
    try:
        params_before, macs_before = count_params_and_macs(model, example_inputs)
        pruner = tp.pruner.MetaPruner(model, example_inputs, importance=_importance(importance),
                                      pruning_ratio=ratio, ignored_layers=list(ignored_layers),
                                      round_to=round_to, iterative_steps=iterative_steps)
        for _ in range(iterative_steps):
            pruner.step()
        params_after, macs_after = count_params_and_macs(model, example_inputs)
    finally:
        model.train(was_training)
    return PruneReport(params_before, params_after, macs_before, macs_after, importance, ratio)


@torch.no_grad()
def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d and Linear, by module name (to see what pruning did)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            counts[name] = module.out_channels
        elif isinstance(module, nn.Linear):
            counts[name] = module.out_features
    return counts


def prune_to_match(model: nn.Module, target: nn.Module, example_inputs: Any, *,
                   importance: Importance = "l1") -> PruneReport:
    """Prune ``model`` in place until each conv and linear layer has as many output channels as the
    same-named layer of ``target``, then copy the surviving weights into ``target``.

    This is how a narrow student (e.g. MobileNetV2 at width 0.5) starts from a wide teacher of the
    same family instead of from random weights: the channels kept are the most important ones of
    each coupled group (a residual stream keeps the same channels in every block it passes).
    Layers the target keeps at full width are left alone; a target layer that is *wider* than
    the model's, or a name the model lacks, is an error.

    Returns the params/MACs report of ``model`` (before -> after).
    """
    import torch_pruning as tp

    target_layers = dict(target.named_modules())
    was_training = model.training
    model.eval()
    try:
        params_before, macs_before = count_params_and_macs(model, example_inputs)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        rank = _importance(importance)
        for name, layer in model.named_modules():
            if not isinstance(layer, (nn.Conv2d, nn.Linear)) or _is_depthwise(layer):
                continue  # a depthwise conv's channels follow its input's
            if name not in target_layers:
                raise SlimvisionError(f"prune_to_match: the target has no layer named {name!r}")
            have, want = _out_channels(layer), _out_channels(target_layers[name])
            if want > have:
                raise SlimvisionError(f"prune_to_match: {name} has {have} output channels, the target wants {want}")
            if want < have:
                _prune_layer(graph, rank, layer, have - want)
        _copy_matching(model, target)
        params_after, macs_after = count_params_and_macs(model, example_inputs)
    finally:
        model.train(was_training)
    return PruneReport(params_before, params_after, macs_before, macs_after, importance,
                       1.0 - params_after / params_before)


def _is_depthwise(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels


def _out_channels(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def _prune_layer(graph: Any, rank: Any, layer: nn.Module, count: int) -> None:
    """Remove the ``count`` least important output channels of ``layer`` and of everything coupled to it."""
    import torch_pruning as tp

    prune_out = tp.prune_conv_out_channels if isinstance(layer, nn.Conv2d) else tp.prune_linear_out_channels
    everything = graph.get_pruning_group(layer, prune_out, idxs=list(range(_out_channels(layer))))
    scores = rank(everything)  # one score per output channel of the group
    weakest = torch.argsort(scores)[:count].tolist()
    graph.get_pruning_group(layer, prune_out, idxs=sorted(weakest)).prune()


@torch.no_grad()
def _copy_matching(model: nn.Module, target: nn.Module) -> None:
    source, wanted = model.state_dict(), target.state_dict()
    wrong = [f"{name}: {tuple(source[name].shape) if name in source else 'missing'} vs {tuple(value.shape)}"
             for name, value in wanted.items() if name not in source or source[name].shape != value.shape]
    if wrong:
        raise SlimvisionError("prune_to_match: the pruned model does not fit the target: " + "; ".join(wrong[:5]))
    target.load_state_dict(source)
