"""What every training config shares, declared once (no torch here: the CLI reads it at start-up).

:class:`TrainingConfig` holds the fields that every run of the one :class:`~slimvision.training.
trainer.Trainer` re-declared (the GAN, the VAE and the two style distillations): batch size,
seed, checkpoint and log intervals, with their meaning, their checks and their help text. A
system's config inherits it and restates a field only to give it its own default (a GAN's batch
is 64, a transformer's 8). The names are the ones saved configs and checkpoints already hold, so
every saved config still loads and a resume still compares equal.

Some shared knobs are not fields here, each for a reason a saved config fixes:

* the step count: the VAE counts ``epochs`` (its steps follow from the data size);
* the learning rate: the saved names differ (``lr``, ``learning_rate``, the GAN's two rates);
* the device: the GAN trains on the CPU only, and a field it ignored would be a silent one.

Their one help text each is in :data:`FIELD_HELP`, with the shared fields', for the CLI flags.
``trainer.TrainerConfig`` stays the loop's own view of a run (step count, intervals, kept
checkpoints, clipping, progress), which each system builds from its config.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class TinyRun(TrainingConfig):
    ...     batch_size: int = 4
    ...     width: int = 8
    >>> TinyRun().seed, TinyRun(batch_size=2).batch_size
    (0, 2)
    >>> TinyRun.from_dict({"btach_size": 2})
    Traceback (most recent call last):
    slimvision.errors.ConfigError: TinyRun: unknown key(s) 'btach_size'; known keys are batch_size, checkpoint_every, log_every, seed, width
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slimvision.config import BaseConfig

#: One help text per training knob, for fields here and for those each system declares itself.
FIELD_HELP = {
    "batch_size": "images per step",
    "seed": "seed of the data and of the networks' start",
    "checkpoint_every": "steps between checkpoints",
    "log_every": "steps between loss log entries",
    "steps": "optimiser steps",
    "epochs": "passes over the training data",
    "lr": "learning rate",
    "device": "torch device, e.g. cpu, cuda or cuda:1",
}


def _shared(default: int, name: str) -> int:
    return field(default=default, metadata={"help": FIELD_HELP[name]})


@dataclass
class TrainingConfig(BaseConfig):
    """The fields every Trainer-run config shares (see the module docstring).

    Attributes:
        batch_size: examples per optimiser step.
        seed: seeds the data order and the networks' start (the same seed, the same run).
        checkpoint_every: steps between checkpoints (the VAE counts epochs).
        log_every: steps between loss log entries (averages over them).
    """

    batch_size: int = _shared(32, "batch_size")
    seed: int = _shared(0, "seed")
    checkpoint_every: int = _shared(250, "checkpoint_every")
    log_every: int = _shared(50, "log_every")

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "batch_size", "checkpoint_every", "log_every")
