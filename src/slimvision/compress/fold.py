"""Batch norms for training, folded away for inference.

A network shipped with its batch norms folded into the conv biases (like the Magenta predictor)
trains badly once pruned or narrowed: nothing keeps its activations in range. A student gets
its batch norms back for training, and loses them again before export:

* :func:`calibrate_identity_batch_norms` sets freshly inserted batch norms so that, on the
  calibration data, they pass their input through unchanged (running statistics = the data's,
  scale and shift undo the normalisation): a warm-started student keeps the function it started
  with, and training can then move the norms;
* :func:`fold_batch_norms` merges every ``Conv2d -> BatchNorm2d`` pair inside an
  ``nn.Sequential`` into the conv (``w' = w * g / s``, ``b' = (b - mean) * g / s + beta`` with
  ``s = sqrt(var + eps)``) and puts an ``nn.Identity`` in the norm's place, so the state dict
  loads into the same network built without norms.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    >>> x = torch.randn(1, 3, 8, 8)
    >>> before = net(x)
    >>> fold_batch_norms(net)
    1
    >>> bool(torch.allclose(net(x), before, atol=1e-5)), type(net[1]).__name__
    (True, 'Identity')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def fold_batch_norms(model: nn.Module) -> int:
    """Fold each ``Conv2d -> BatchNorm2d`` pair of every ``nn.Sequential`` in ``model``; returns how many."""
    folded = 0
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for index in range(len(sequence) - 1):
            conv, norm = sequence[index], sequence[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                _fold_into(conv, norm)
                sequence[index + 1] = nn.Identity()
                folded += 1
    return folded


def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = norm.bias if norm.affine else torch.zeros_like(scale)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    new_bias = (bias - norm.running_mean) * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


@torch.no_grad()
def calibrate_identity_batch_norms(model: nn.Module, batches: Iterable[Any], max_batches: int = 8) -> int:
    """Make every batch norm of ``model`` an identity map on ``batches``; returns how many were set.

    The model runs in eval mode with each norm first reset to (mean 0, var 1, scale 1, shift 0,
    eps 0), i.e. a true identity, so the statistics seen by later norms are those of the
    network without norms. Each norm then gets running mean/var = its input's per-channel
    mean/variance over the batches, and scale = sqrt(var + eps), shift = mean: identity in eval
    mode, and close to it in train mode where batch statistics stand in for the running ones.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    eps = {norm: norm.eps for norm in norms}
    sums: dict[nn.Module, list[torch.Tensor]] = {}

    def record(norm: nn.Module, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
        x = inputs[0].transpose(0, 1).flatten(1).double()  # (C, B*H*W)
        count = torch.tensor(float(x.shape[1]), dtype=torch.float64)
        totals = (count, x.sum(1), (x * x).sum(1))
        sums[norm] = [a + b for a, b in zip(sums[norm], totals)] if norm in sums else list(totals)

    was_training = model.training
    model.eval()
    hooks = []
    for norm in norms:
        norm.reset_parameters()  # running mean 0, var 1, weight 1, bias 0
        norm.eps = 0.0
        hooks.append(norm.register_forward_hook(record))
    try:
        for index, batch in enumerate(batches):
            if index >= max_batches:
                break
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for norm in norms:
        norm.eps = eps[norm]
        if norm not in sums:
            continue
        count, total, squares = sums[norm]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        norm.running_mean.copy_(mean.float())
        norm.running_var.copy_(var.float())
        if norm.affine:
            norm.weight.copy_(torch.sqrt(var + norm.eps).float())
            norm.bias.copy_(mean.float())
    return len(sums)
