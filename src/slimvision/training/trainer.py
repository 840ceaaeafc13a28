"""The one training loop: ``out = task(batch, phase); out["loss"].backward(); step``, with checkpoints.

A *task* owns the model(s) and the losses; the trainer owns optimisation, logging, progress
and checkpoints, so distillation, margin-softmax training, a VAE and a GAN all run here. A task
with one optimiser is called as ``task(batch, "main")``; a GAN registers two optimisers
(``{"discriminator": ..., "generator": ...}``) and is called once per phase, in that order.

Example:
    >>> trainer = Trainer(task, {"main": torch.optim.Adam(task.model.parameters(), 1e-3)},  # doctest: +SKIP
    ...                   TrainerConfig(steps=2000, checkpoint_every=500), run_dir="runs/p035")
    >>> history = trainer.fit(loader)                                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, SlimvisionError
from slimvision.training.checkpoint import CheckpointStore

log = logging.getLogger(__name__)


class Task(Protocol):
    """What the trainer needs from a task."""

    #: Everything whose weights are trained and checkpointed (a ModuleDict for several nets).
    model: nn.Module

    def __call__(self, batch: Any, phase: str) -> dict[str, torch.Tensor]:
        """Losses and metrics of one batch for one optimiser ``phase``; must hold "loss"."""
        ...


@runtime_checkable
class TaskAfterStep(Task, Protocol):
    """A task that also acts after each optimiser step (e.g. to update an average of the weights)."""

    def after_step(self, phase: str) -> None:
        """Called right after the optimiser of ``phase`` stepped, with gradients off."""
        ...


@dataclass
class TrainerConfig(BaseConfig):
    steps: int = 1000
    log_every: int = 50
    checkpoint_every: int = 500
    keep_last: int = 2
    #: Clip the global gradient norm of each phase's parameters (None: no clipping).
    grad_clip: float | None = None
    progress: bool = True

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "log_every", "checkpoint_every", "keep_last")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"TrainerConfig.grad_clip must be positive, got {self.grad_clip}")


@dataclass
class History:
    """Per-step averages of every number a task returned, logged every ``log_every`` steps."""

    steps: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    resumed_from: int = 0

    def add(self, step: int, sums: dict[str, float], count: int) -> None:
        self.steps.append(step)
        for key, total in sums.items():
            self.values.setdefault(key, []).append(total / count)

    def to_dict(self) -> dict[str, Any]:
        """{"steps": [...], "values": {name: [...]}}: what a checkpoint keeps."""
        return {"steps": list(self.steps), "values": {key: list(values) for key, values in self.values.items()}}

    @classmethod
    def from_dict(cls, saved: dict[str, Any], until: int) -> History:
        """The log a checkpoint kept, up to step ``until`` (a damaged or missing log gives an empty one)."""
        steps, values = saved.get("steps", []), saved.get("values", {})
        if not (isinstance(steps, list) and isinstance(values, dict)
                and all(isinstance(v, list) and len(v) == len(steps) for v in values.values())):
            log.warning("the checkpoint's loss log is damaged; the plot starts at step %d", until)
            return cls(resumed_from=until)
        kept = [index for index, step in enumerate(steps) if isinstance(step, int) and step <= until]
        return cls([steps[i] for i in kept], {key: [v[i] for i in kept] for key, v in values.items()}, until)

    def as_columns(self) -> dict[str, list[float]]:
        """{"step": [...], name: [...]}: the form the training plots take."""
        return {"step": list(self.steps), **{key: list(values) for key, values in self.values.items()}}


class Trainer:
    """Runs a task for ``config.steps`` optimiser steps, resuming from ``run_dir`` if it holds one.

    ``log`` is the whole run's loss log (earlier sessions' too, from the checkpoint it resumed);
    :meth:`fit` returns the part it added.
    """

    def __init__(self, task: Task, optimizers: dict[str, torch.optim.Optimizer], config: TrainerConfig,
                 run_dir: str | Path | None = None, extra: dict[str, Any] | None = None) -> None:
        if not optimizers:
            raise SlimvisionError("the trainer needs at least one optimiser")
        self.task = task
        self.optimizers = optimizers
        self.config = config
        self.store = CheckpointStore(run_dir, config.keep_last) if run_dir is not None else None
        self.extra = extra or {}
        self.step = 0
        self.log = History()
        self.after_step = task.after_step if isinstance(task, TaskAfterStep) else None
        self._others = {phase: _other_parameters(task.model, optimizer) for phase, optimizer in optimizers.items()}

    def resume(self) -> int:
        """Load the run's latest checkpoint, if any; returns the step it reached.

        What a run killed while saving left behind (hidden staging folders) is removed first.
        """
        if self.store is not None:
            self.store.clean_stale()
            state = self.store.load_latest(self.task.model, self.optimizers)
            if state is not None:
                self.step = state.step
                self.log = History.from_dict(state.history, state.step)
                log.info("resumed from %s (step %d)", state.path, state.step)
        return self.step

    def fit(self, batches: Iterable[Any], resume: bool = True) -> History:
        """Train until ``config.steps``; ``batches`` is re-iterated when it runs out (epochs)."""
        history = History(resumed_from=self.resume() if resume else 0)
        self.task.model.train()
        sums: dict[str, float] = {}
        count = 0
        with _progress(self.config, self.step) as bar:
            for batch in _forever(batches, self.step >= self.config.steps):
                if self.step >= self.config.steps:
                    break
                for key, value in self._train_step(batch).items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                self.step += 1
                bar.update(1)
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    history.add(self.step, sums, count)
                    self.log.add(self.step, sums, count)
                    bar.set_postfix({k: f"{v / count:.4g}" for k, v in sums.items() if k.endswith("loss")})
                    sums, count = {}, 0
                if self.store is not None and (self.step % self.config.checkpoint_every == 0
                                               or self.step == self.config.steps):
                    self.store.save(self.step, self.task.model, self.optimizers, self.extra, self.log.to_dict())
        return history

    def _train_step(self, batch: Any) -> dict[str, float]:
        numbers: dict[str, float] = {}
        for phase, optimizer in self.optimizers.items():
            optimizer.zero_grad(set_to_none=True)
            with _frozen(self._others[phase]):
                out = self.task(batch, phase)
                loss = out.get("loss")
                if loss is None:
                    raise SlimvisionError(f"the task returned no 'loss' for phase {phase!r} (keys: {sorted(out)})")
                if not torch.isfinite(loss):
                    raise SlimvisionError(f"loss became {loss.item()} at step {self.step + 1} ({phase}); "
                                          "lower the learning rate or check the data")
                loss.backward()
            if self.config.grad_clip is not None:
                params = [p for group in optimizer.param_groups for p in group["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            optimizer.step()
            if self.after_step is not None:
                with torch.no_grad():
                    self.after_step(phase)
            prefix = "" if len(self.optimizers) == 1 else f"{phase}/"
            numbers.update({prefix + key: float(value.detach()) for key, value in out.items()
                            if isinstance(value, torch.Tensor) and value.numel() == 1})
        return numbers


def check_same_config(store: CheckpointStore, wanted: BaseConfig, may_change: Iterable[str] = (),
                      saved_defaults: dict[str, Any] | None = None) -> None:
    """Refuse to resume a run with settings other than those its latest checkpoint saved.

    The checkpoint's ``extra["config"]`` is compared with ``wanted`` key by key (nested configs
    as ``model.base_channels``); keys in ``may_change`` (e.g. the step count, to train longer)
    may differ. Nothing to compare (a new run, an older checkpoint without a config) passes. A key
    the checkpoint lacks because the field was added after it was saved passes while ``wanted``
    keeps that field's default: the run resumes as it was trained. Where a field's default has
    changed since, ``saved_defaults`` gives the value a saved config that lacks the (top-level)
    key was trained with, and that value is what ``wanted`` must hold.

    Raises:
        ConfigError: one line naming the run folder and every differing key.
    """
    saved = store.latest_extra().get("config")
    if not isinstance(saved, dict):
        return
    saved = {**(saved_defaults or {}), **saved}
    allowed = set(may_change)
    changed = [key for key in _differing_keys(saved, wanted.to_dict(), _defaults(wanted))
               if key.split(".")[0] not in allowed]
    if changed:
        raise ConfigError(f"{store.folder.parent} was started with other settings ({', '.join(changed)} differ); "
                          "resume with the same ones or use a new run folder")


def _defaults(config: BaseConfig) -> dict[str, Any]:
    """``config``'s class defaults as saved (empty when the class needs arguments)."""
    try:
        return type(config)().to_dict()
    except (TypeError, ValueError, ConfigError):
        return {}


def _differing_keys(saved: dict[str, Any], wanted: dict[str, Any], defaults: dict[str, Any],
                    prefix: str = "") -> list[str]:
    """Dotted names of the keys whose values differ (JSON-normalised, so tuples equal lists); a
    key ``saved`` lacks where ``wanted`` holds its default (a field added since) does not differ."""
    import json

    def same(a: Any, b: Any) -> bool:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

    differing = []
    for key in sorted(set(saved) | set(wanted)):
        old, new, default = saved.get(key), wanted.get(key), defaults.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differing += _differing_keys(old, new, default if isinstance(default, dict) else {}, f"{prefix}{key}.")
        elif key not in saved and key in defaults and same(new, default):
            continue
        elif not same(old, new):
            differing.append(prefix + key)
    return differing


def _other_parameters(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    """The model's trainable parameters that ``optimizer`` does not step."""
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return [p for p in model.parameters() if p.requires_grad and id(p) not in stepped]


@contextmanager
def _frozen(parameters: list[nn.Parameter]) -> Iterator[None]:
    """Parameters without gradients for one phase: backward then skips their weight gradients
    (a GAN's generator step still backpropagates through the discriminator, but only to its
    input), which the next phase would zero anyway."""
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def _forever(batches: Iterable[Any], done: bool) -> Iterator[Any]:
    if done:
        return
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise SlimvisionError("the training data gave no batches")


def _progress(config: TrainerConfig, start: int) -> Any:
    from slimvision.progress import progress_bar

    return progress_bar(config.steps, enabled=config.progress, initial=start, unit="step", desc="training",
                        dynamic_ncols=True, smoothing=0.05, mininterval=0.5)


def shuffled_batches(length: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Sample indices, ``batch_size`` at a time, epoch after epoch, each epoch in a new order
    fixed by ``(seed, epoch)``; an epoch's last incomplete batch is dropped.

    Raises:
        ConfigError: at once, if ``length`` samples cannot fill one batch (epochs of no batch
            would loop for ever).
    """
    if not 0 < batch_size <= length:
        raise ConfigError(f"a batch of {batch_size} needs at least as many samples; there are {length}")
    return _shuffled_batches(length, batch_size, seed)


def _shuffled_batches(length: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(length)
        for start in range(0, length - batch_size + 1, batch_size):
            yield [int(i) for i in order[start:start + batch_size]]
        epoch += 1


class CosineDecay:
    """Batches that set a cosine-decayed learning rate for the step each is used in.

    The rate is a function of the absolute step, so a resumed run continues the same curve
    (a torch scheduler would restart from the checkpoint's already-decayed rate).
    ``base_rate`` is one rate for all of the optimiser's parameter groups, or one per group.
    """

    def __init__(self, batches: Iterable[Any], optimizer: torch.optim.Optimizer,
                 base_rate: float | Sequence[float], start: int, total: int) -> None:
        groups = len(optimizer.param_groups)
        self.base_rates = [float(base_rate)] * groups if isinstance(base_rate, (int, float)) else list(base_rate)
        if len(self.base_rates) != groups:
            raise SlimvisionError(f"CosineDecay got {len(self.base_rates)} rates for {groups} parameter groups")
        self.batches, self.optimizer = batches, optimizer
        self.step, self.total = start, total

    def factor(self, step: int) -> float:
        """The fraction of the base rate used at ``step``: 1 at the start, 0 at ``total``."""
        return 0.5 * (1.0 + math.cos(math.pi * min(step / self.total, 1.0)))

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            for group, base in zip(self.optimizer.param_groups, self.base_rates):
                group["lr"] = base * self.factor(self.step)
            self.step += 1
            yield batch


@dataclass
class FineTuneSchedule(BaseConfig):
    """Fine-tuning a pretrained backbone in two stages (the GAN thesis's recipe, its section 1.4):
    first only the new head trains, the backbone frozen; then the top blocks of the backbone are
    unfrozen and train too, at a lower rate.

    Attributes:
        freeze_backbone_steps: steps at the start with the whole backbone frozen (0: none).
        unfreeze: how many of the backbone's top blocks train after that (-1: all of them; 0:
            the backbone stays frozen for the whole run).
        backbone_lr_scale: the unfrozen blocks' learning rate as a fraction of the head's (the
            recipe lowers it, e.g. 0.1).

    The defaults change nothing: the whole network trains from the first step at one rate.
    """

    freeze_backbone_steps: int = 0
    unfreeze: int = -1
    backbone_lr_scale: float = 1.0

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "freeze_backbone_steps")
        self.require_at_least(-1, "unfreeze")
        if not 0 < self.backbone_lr_scale <= 1:
            raise ConfigError(f"FineTuneSchedule.backbone_lr_scale must be in (0, 1], got {self.backbone_lr_scale}")

    def trained_blocks(self, blocks: Sequence[nn.Module]) -> list[nn.Module]:
        """The blocks that train once the frozen stage is over: the top ``unfreeze`` (all for -1).

        Raises:
            ConfigError: ``unfreeze`` is more than the backbone's blocks (it would train them all
                without a word, as -1 does).
        """
        if self.unfreeze > len(blocks):
            raise ConfigError(f"unfreeze (--unfreeze) is {self.unfreeze}, but the backbone has {len(blocks)} blocks; "
                              f"give 0-{len(blocks)}, or -1 for all of them")
        if self.unfreeze < 0:
            return list(blocks)
        return list(blocks)[len(blocks) - self.unfreeze:] if self.unfreeze else []

    def parameter_groups(self, head: Sequence[nn.Parameter], blocks: Sequence[nn.Module],
                         learning_rate: float) -> list[dict[str, Any]]:
        """Optimiser groups: the head at ``learning_rate``, the blocks that will be unfrozen at
        ``backbone_lr_scale`` x it (blocks that never train are left out)."""
        groups = [{"params": list(head), "lr": learning_rate}]
        backbone = [p for block in self.trained_blocks(blocks) for p in block.parameters()]
        if backbone:
            groups.append({"params": backbone, "lr": learning_rate * self.backbone_lr_scale})
        return groups

    def base_rates(self, learning_rate: float, blocks: Sequence[nn.Module]) -> list[float]:
        """One base rate per group of :meth:`parameter_groups`, for :class:`CosineDecay`."""
        return [learning_rate] + ([learning_rate * self.backbone_lr_scale] if self.trained_blocks(blocks) else [])


class StagedUnfreezing:
    """Batches that apply a :class:`FineTuneSchedule` at the step each is used in: before
    ``freeze_backbone_steps`` every backbone block is frozen (no gradients, batch-norm statistics
    fixed); from then on the chosen top blocks train. A function of the absolute step, so a
    resumed run is in the right stage."""

    def __init__(self, batches: Iterable[Any], blocks: Sequence[nn.Module], schedule: FineTuneSchedule,
                 start: int) -> None:
        self.batches, self.blocks, self.schedule, self.step = batches, list(blocks), schedule, start
        self._trained = {id(block) for block in schedule.trained_blocks(self.blocks)}
        self._stage: bool | None = None

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            self._apply(self.step >= self.schedule.freeze_backbone_steps)
            self.step += 1
            yield batch

    def _apply(self, unfrozen: bool) -> None:
        if unfrozen == self._stage:
            return
        for block in self.blocks:
            trains = unfrozen and id(block) in self._trained
            block.requires_grad_(trains)
            # A frozen block also keeps its batch-norm statistics: the backbone computes as pretrained.
            for module in block.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.train(trains)
        self._stage = unfrozen
        log.info("step %d: backbone %s", self.step, "partly unfrozen" if unfrozen and self._trained else "frozen")
