"""DCGAN training as a two-phase task of the shared trainer (discriminator step, then generator step).

The recipe of the cat-face generator this project builds on: sigmoid cross-entropy with
one-sided label smoothing (real images are labelled 0.9, fakes 0, and the generator aims at 1),
Adam with beta1 = 0.5 and separate learning rates for the two networks. Checkpoints hold both
networks, both optimisers and the torch RNG; batches are a function of the step alone, so a
resumed run continues exactly as an uninterrupted one would.

Example:
    >>> images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)  # doctest: +SKIP
    >>> config = GANTrainingConfig(model=DCGANConfig(resolution=16), steps=10, batch_size=8)  # doctest: +SKIP
    >>> generator, history = train_dcgan(config, images, "runs/tiny-gan")                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, InputError
from slimvision.inference.gan import tile, to_pixels
from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator, sample_noise
from slimvision.training.checkpoint import CheckpointStore
from slimvision.training.trainer import History, Trainer, TrainerConfig


@dataclass
class GANTrainingConfig(BaseConfig):
    """Everything a DCGAN run is trained from (saved in each checkpoint).

    Attributes:
        model: the two networks.
        steps: optimiser steps of each network.
        batch_size: real images per step (and as many fakes).
        generator_lr / discriminator_lr: Adam learning rates (the reference uses separate ones).
        beta1: Adam's first-moment decay (0.5 for GANs, as Radford et al. found).
        real_label: the target of real images for the discriminator (< 1: one-sided label
            smoothing, which keeps it from growing over-confident).
        checkpoint_every / log_every: in steps.
        seed: seeds the networks' start and the batches.
    """

    model: DCGANConfig = field(default_factory=DCGANConfig)
    steps: int = 10_000
    batch_size: int = 64
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    beta1: float = 0.5
    real_label: float = 0.9
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "batch_size", "checkpoint_every", "log_every")
        self.require_positive("generator_lr", "discriminator_lr")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"GANTrainingConfig.beta1 must be in [0, 1), got {self.beta1}")
        if not 0.5 < self.real_label <= 1:
            raise ConfigError(f"GANTrainingConfig.real_label must be in (0.5, 1], got {self.real_label}")


class DCGANTask:
    """The two phases of one step: "discriminator" learns real from fake, "generator" learns to fool it."""

    def __init__(self, generator: DCGANGenerator, discriminator: DCGANDiscriminator, real_label: float) -> None:
        self.model = nn.ModuleDict({"generator": generator, "discriminator": discriminator})
        self.generator, self.discriminator = generator, discriminator
        self.real_label = real_label

    def __call__(self, batch: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        noise = sample_noise(len(batch), self.generator.config.latent_dim)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generator(noise)
            real_logits, fake_logits = self.discriminator(batch), self.discriminator(fake)
            loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_label))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            return {"loss": loss, "real_score": torch.sigmoid(real_logits).mean(),
                    "fake_score": torch.sigmoid(fake_logits).mean()}
        fake_logits = self.discriminator(self.generator(noise))
        return {"loss": F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))}


def step_batches(images: np.ndarray, batch_size: int, seed: int, start: int) -> Iterator[torch.Tensor]:
    """Batch ``k`` (from ``start`` on) is drawn by ``rng([seed, k])``: the same whether or not a run resumed.

    ``images``: (N, R, R, C) uint8; batches are (B, C, R, R) float in [-1, 1], the generator's range.
    """
    step = start
    while True:
        indices = np.random.default_rng([seed, step]).choice(len(images), batch_size, replace=False)
        pixels = torch.from_numpy(images[np.sort(indices)]).permute(0, 3, 1, 2).float()
        yield pixels.div_(127.5).sub_(1.0)
        step += 1


def train_dcgan(config: GANTrainingConfig, images: np.ndarray, run_dir: str | Path, *,
                progress: bool = True) -> tuple[DCGANGenerator, History]:
    """Train (or resume) a DCGAN in ``run_dir`` on ``images`` (N, R, R, C) uint8; returns G and the history."""
    images = np.asarray(images)
    expected = (config.model.resolution, config.model.resolution, config.model.image_channels)
    if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
        raise InputError("images", f"expected (N, {', '.join(map(str, expected))}) uint8, got {images.shape} {images.dtype}")
    if len(images) < config.batch_size:
        raise InputError("images", f"{len(images)} images are fewer than one batch of {config.batch_size}")
    torch.manual_seed(config.seed)
    task = DCGANTask(DCGANGenerator(config.model), DCGANDiscriminator(config.model), config.real_label)
    betas = (config.beta1, 0.999)
    optimizers = {"discriminator": torch.optim.Adam(task.discriminator.parameters(), config.discriminator_lr, betas=betas),
                  "generator": torch.optim.Adam(task.generator.parameters(), config.generator_lr, betas=betas)}
    trainer = Trainer(task, optimizers, TrainerConfig(steps=config.steps, log_every=config.log_every,
                                                      checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=Path(run_dir) / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    history = trainer.fit(step_batches(images, config.batch_size, config.seed, start), resume=False)
    history.resumed_from = start
    return task.generator.eval(), history


def sample_grid(generator: DCGANGenerator, noise: torch.Tensor, columns: int = 8, gap: int = 2) -> np.ndarray:
    """The generator's images for ``noise``, tiled ``columns`` wide on a white background, (H, W, 3) uint8."""
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        pictures = to_pixels(generator(noise).numpy())
    generator.train(was_training)
    return tile(pictures, columns, gap)


def train_with_samples(config: GANTrainingConfig, images: np.ndarray, run_dir: str | Path, *, sample_every: int,
                       samples: int = 64, progress: bool = True) -> tuple[DCGANGenerator, dict[str, list[float]]]:
    """:func:`train_dcgan` in stretches of ``sample_every`` steps, saving a grid after each one.

    Every grid draws the same noise (seeded by the config), so ``samples/step-NNNNNN.png`` show
    one set of faces taking shape. A rerun resumes from the last checkpoint; the losses of all
    stretches run in this call are returned as {"step": [...], "discriminator/loss": [...], ...}.
    """
    from dataclasses import replace

    from slimvision.io.images import save_image

    run_dir = Path(run_dir)
    if sample_every < 1:
        raise ConfigError(f"sample_every must be at least 1, got {sample_every}")
    noise = sample_noise(samples, config.model.latent_dim, torch.Generator().manual_seed(config.seed + 1))
    # A stretch ends on a checkpoint, so the next one resumes exactly there.
    stretch = replace(config, checkpoint_every=min(config.checkpoint_every, sample_every))
    losses: dict[str, list[float]] = {"step": []}
    generator = None
    done = CheckpointStore(run_dir / "checkpoints").latest_step()
    stops = sorted({min(stop, config.steps) for stop in range(sample_every, config.steps + sample_every, sample_every)})
    # Stretches a resumed run has already done keep their grids; the last one always runs
    # (it does nothing when the run is finished) so the generator is returned.
    for stop in [stop for stop in stops if stop > done] or stops[-1:]:
        generator, history = train_dcgan(replace(stretch, steps=stop), images, run_dir, progress=progress)
        losses["step"] += history.steps
        for key, values in history.values.items():
            losses.setdefault(key, []).extend(values)
        if stop > done:
            save_image(sample_grid(generator, noise), run_dir / "samples" / f"step-{stop:06d}.png", overwrite=True)
    assert generator is not None
    return generator, losses


def export_generator(generator: DCGANGenerator, path: str | Path, *, overwrite: bool = False,
                     source_weights: str | Path | None = None) -> Any:
    """The generator as ONNX (input ``noise`` (B, latent), output ``images`` (B, C, R, R) in [-1, 1]),
    checked against torch at two batch sizes by :func:`~slimvision.compress.export.export_onnx`."""
    from slimvision.compress.export import export_onnx

    example = {"noise": sample_noise(2, generator.config.latent_dim, torch.Generator().manual_seed(0))}
    return export_onnx(generator, path, example, output_names=("images",),
                       dynamic_axes={"noise": {0: "batch"}, "images": {0: "batch"}},
                       overwrite=overwrite, source_weights=source_weights)
