"""Channel pruning of dlib's face ResNet: a narrower copy of the teacher, warm-started from its weights.

The generic pruner (:mod:`slimvision.compress.prune`, torch-pruning's dependency graph) cannot
follow dlib's residual adds: where a level widens (32 -> 64 channels), dlib zero-pads the
shortcut after its last channel, so teacher channel ``t`` of the new level receives input
channel ``t`` for ``t`` below the old width and nothing above it. A pruned student keeps that
rule only if each level's kept channels *start with* the previous level's kept channels, in the
same order, followed by channels chosen from the new ones (those above the old width). This
module chooses them so, and every weight the student keeps is the teacher's.

Channel importance is the L1 norm of what writes a channel plus the L1 norm of what reads it,
each normalised by its layer's mean (Li et al. 2017 rank filters by their L1 norm; the readers'
side counts how much the next layers use a channel). A residual stream is ranked over every
conv that writes it (the stem, each block's second conv) and every layer that reads it.

The thesis behind the faces system compares exactly this student, dlib's ResNet at half the
channels, against the teacher (its tables 16-18); here it is the warm start that distillation
(``slimvision train face-student``) then trains.

Example:
    >>> from slimvision.models.faces.dlib_resnet import DlibResNet
    >>> student, report = narrow_dlib_resnet(DlibResNet(), width=0.5)
    >>> student.config.levels, report["params_after"] < report["params_before"] / 3
    (((16, 3), (32, 4), (64, 3), (128, 3), (128, 1)), True)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from slimvision.errors import ConfigError
from slimvision.models.faces.config import DlibResNetConfig
from slimvision.models.faces.dlib_resnet import DlibResNet


def narrower_config(config: DlibResNetConfig, width: float) -> DlibResNetConfig:
    """``config`` with every channel count times ``width`` (rounded, at least 1); depths kept."""
    if not 0 < width <= 1:
        raise ConfigError(f"width must be in (0, 1], got {width}")
    return replace(config, stem_channels=max(1, round(config.stem_channels * width)),
                   levels=tuple((max(1, round(channels * width)), blocks) for channels, blocks in config.levels))


def _norms(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """L1 norm of each slice along ``dim`` (0: output channels, 1: input channels), over its mean."""
    other = [d for d in range(weight.dim()) if d != dim]
    norms = weight.abs().sum(dim=other)
    return norms / norms.mean().clamp_min(1e-12)


def _levels(model: DlibResNet) -> list[list[nn.Module]]:
    """The model's blocks grouped by residual level."""
    groups, index = [], 0
    for _, count in model.config.levels:
        groups.append(list(model.blocks[index:index + count]))
        index += count
    return groups


def _stream_scores(model: DlibResNet, levels: list[list[nn.Module]], level: int) -> torch.Tensor:
    """Importance of each channel of level ``level``'s residual stream."""
    blocks = levels[level]
    score = sum(_norms(block.conv2.weight, 0) for block in blocks)
    if level == 0:
        score = score + _norms(model.stem.weight, 0)
    readers = [block.conv1.weight for block in blocks[1:]]
    if level + 1 < len(levels):
        readers.append(levels[level + 1][0].conv1.weight)
    score = score + sum(_norms(weight, 1) for weight in readers)
    if level == len(levels) - 1:
        score = score + _norms(model.embedding.weight, 1)
    return score


def _top(scores: torch.Tensor, count: int, among: torch.Tensor | None = None) -> list[int]:
    """The ``count`` best channels (among ``among``, default all), in the teacher's order."""
    candidates = among if among is not None else torch.arange(len(scores))
    best = candidates[torch.argsort(scores[candidates], descending=True)[:count]]
    return sorted(int(i) for i in best)


def stream_channels(model: DlibResNet, config: DlibResNetConfig) -> list[list[int]]:
    """For each residual level, the teacher channels the student keeps, in student order.

    Raises:
        ConfigError: a level of ``config`` is narrower than the one before it where the
            teacher's is not (the zero-padded shortcut could not be kept), or the student
            differs from the teacher in depth.
    """
    teacher = model.config
    if [blocks for _, blocks in teacher.levels] != [blocks for _, blocks in config.levels]:
        raise ConfigError("narrow_dlib_resnet keeps the teacher's depth: the student's levels need the same block "
                          "counts")
    if config.stem_channels != config.levels[0][0] or teacher.stem_channels != teacher.levels[0][0]:
        raise ConfigError("narrow_dlib_resnet needs the stem as wide as the first level (dlib's layout)")
    levels, kept = _levels(model), []
    for level, ((wide, _), (narrow, _)) in enumerate(zip(teacher.levels, config.levels)):
        scores = _stream_scores(model, levels, level)
        if level == 0:
            kept.append(_top(scores, narrow))
            continue
        previous, previous_wide = kept[-1], teacher.levels[level - 1][0]
        if narrow < len(previous) or (wide == previous_wide and narrow != len(previous)):
            raise ConfigError(f"level {level}: {narrow} channels cannot hold the {len(previous)} the shortcut "
                              f"brings from level {level - 1} (the teacher widens {previous_wide} -> {wide})")
        new = _top(scores, narrow - len(previous), torch.arange(previous_wide, wide))
        kept.append(previous + new)
    return kept


@torch.no_grad()
def narrow_dlib_resnet(teacher: DlibResNet, width: float = 0.5,
                       config: DlibResNetConfig | None = None) -> tuple[DlibResNet, dict[str, Any]]:
    """A student with ``width`` x the teacher's channels (or ``config``'s), holding the teacher's
    most important channels; returns it and a report of what was kept."""
    config = config or narrower_config(teacher.config, width)
    streams = stream_channels(teacher, config)
    student = DlibResNet(config)
    student.stem.weight.copy_(teacher.stem.weight[streams[0]])
    student.stem.bias.copy_(teacher.stem.bias[streams[0]])
    inputs = streams[0]
    internal_kept = []
    for level, (teacher_blocks, student_blocks) in enumerate(zip(_levels(teacher), _levels(student))):
        outputs = streams[level]
        for teacher_block, student_block in zip(teacher_blocks, student_blocks):
            width_inside = student_block.conv1.out_channels
            scores = _norms(teacher_block.conv1.weight, 0) + _norms(teacher_block.conv2.weight, 1)
            inside = _top(scores, width_inside)
            internal_kept.append(inside)
            student_block.conv1.weight.copy_(teacher_block.conv1.weight[inside][:, inputs])
            student_block.conv1.bias.copy_(teacher_block.conv1.bias[inside])
            student_block.conv2.weight.copy_(teacher_block.conv2.weight[outputs][:, inside])
            student_block.conv2.bias.copy_(teacher_block.conv2.bias[outputs])
            inputs = outputs
    student.embedding.weight.copy_(teacher.embedding.weight[:, streams[-1]])
    count = sum(p.numel() for p in teacher.parameters()), sum(p.numel() for p in student.parameters())
    return student, {"levels": [list(level) for level in config.levels], "params_before": count[0],
                     "params_after": count[1],
                     "stream_channels": streams, "block_channels": internal_kept,
                     "importance": "L1 of writers + L1 of readers, each over its layer's mean"}


def teacher_channels(student: DlibResNet, report: dict[str, Any]) -> list[list[int]]:
    """For each conv of a pruned ``student`` (``conv_norm_pairs`` order: the stem, then each
    block's two), the teacher channels its outputs hold (``narrow_dlib_resnet``'s report)."""
    streams, inside = report["stream_channels"], report["block_channels"]
    channels, index = [streams[0]], 0
    for level, (_, count) in enumerate(student.config.levels):
        for _ in range(count):
            channels += [inside[index], streams[level]]
            index += 1
    return channels


@torch.no_grad()
def conv_output_statistics(model: DlibResNet, chips: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The mean and std of every output channel of every conv of ``model`` (before its norm, if
    any; ``conv_norm_pairs`` order) over batches of (B, 3, S, S) chips in [0, 1], as the model
    runs now (train or eval mode)."""
    from slimvision.models.faces.dlib_resnet import conv_norm_pairs

    sums: dict[int, list[torch.Tensor]] = {}
    hooks = []
    for index, (conv, _) in enumerate(conv_norm_pairs(model)):
        def hook(module: nn.Module, args: Any, out: torch.Tensor, index: int = index) -> None:
            flat = out.transpose(0, 1).reshape(out.shape[1], -1).double()  # (C, B*H*W)
            values = torch.stack([flat.sum(1), (flat ** 2).sum(1), torch.full((len(flat),), flat.shape[1],
                                                                                dtype=flat.dtype)])
            sums[index] = [sums[index][0] + values] if index in sums else [values]
        hooks.append(conv.register_forward_hook(hook))
    try:
        for batch in chips:
            model(batch)
    finally:
        for handle in hooks:
            handle.remove()
    stats = []
    for index in range(len(hooks)):
        total, squares, count = sums[index][0]
        mean = total / count
        stats.append((mean.float(), (squares / count - mean ** 2).clamp_min(0).sqrt().float()))
    return stats


@torch.no_grad()
def with_batch_norm(student: DlibResNet, teacher: DlibResNet | None = None, report: dict[str, Any] | None = None,
                    chips: list[torch.Tensor] | None = None) -> DlibResNet:
    """``student`` with a batch norm after every conv, for training (``fold_batch_norm`` folds it
    back for export). From a pruned student (``teacher``, ``narrow_dlib_resnet``'s ``report`` and
    calibration ``chips`` given), each norm's scale and shift are the std and mean of the teacher
    channel it holds, over the chips: the student's every channel then starts with the teacher's
    statistics instead of what half the inputs leave of them. Its running statistics are the
    student's own over the same chips. Without a teacher the norms start as PyTorch's (1, 0)."""
    from dataclasses import replace

    from slimvision.models.faces.dlib_resnet import conv_norm_pairs

    normed = DlibResNet(replace(student.config, batch_norm=True))
    missing, unexpected = normed.load_state_dict(student.state_dict(), strict=False)
    if unexpected or any("norm" not in key for key in missing):
        raise ConfigError(f"with_batch_norm: the student does not fit its own layout ({unexpected or missing})")
    if teacher is None:
        return normed
    if report is None or not chips:
        raise ConfigError("with_batch_norm: a teacher needs the pruning report and calibration chips")
    pairs = conv_norm_pairs(normed)
    for (_, norm), (mean, std), kept in zip(pairs, conv_output_statistics(teacher.eval(), chips),
                                             teacher_channels(normed, report)):
        norm.weight.copy_(std[kept].clamp_min(1e-4))
        norm.bias.copy_(mean[kept])
    # The running statistics: the student's own, in training mode (each norm sees the ones before it).
    normed.train()
    for _, norm in pairs:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    for batch in chips:
        normed(batch)
    for _, norm in pairs:
        norm.momentum = 0.1
    return normed.eval()
