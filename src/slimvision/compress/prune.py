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
    """(parameters, multiply-accumulates of one forward pass on ``example_inputs``)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(params), int(macs)


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
