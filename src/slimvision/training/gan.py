"""DCGAN training as a two-phase task of the shared trainer (discriminator step, then generator step).

The recipe of the cat-face generator this project builds on: sigmoid cross-entropy with
one-sided label smoothing (real images are labelled 0.9, fakes 0, and the generator aims at 1),
Adam with beta1 = 0.5 and separate learning rates for the two networks. Checkpoints hold both
networks, both optimisers and the torch RNG; batches are a function of the step alone, so a
resumed run continues exactly as an uninterrupted one would.

Two additions to the reference recipe, both config switches:

* an exponential moving average of the generator's weights (Yazici et al. 2019, "The Unusual
  Effectiveness of Averaging in GAN Training"): the average is what samples, exports and
  FID-Lite0 use, because it smooths out the generator's step-to-step oscillation;
* DiffAugment (:mod:`slimvision.training.diffaugment`) for datasets of a few thousand images.

Example:
    >>> images = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)  # doctest: +SKIP
    >>> config = GANTrainingConfig(model=DCGANConfig(resolution=16), steps=10, batch_size=8)  # doctest: +SKIP
    >>> generator, history = train_dcgan(config, images, "runs/tiny-gan")                     # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from slimvision.errors import ConfigError, InputError
from slimvision.io.atomic import atomic_write, write_text_atomic
from slimvision.io.pixels import tile, to_pixels
from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator, sample_noise
from slimvision.training.config import TrainingConfig
from slimvision.training.checkpoint import CheckpointStore, read_cached_array, read_json_rows
from slimvision.training.diffaugment import DiffAugment, parse_policy
from slimvision.training.trainer import History, Trainer, TrainerConfig, check_same_config

#: Settings a resumed run may change: train longer, checkpoint at other steps (neither changes
#: what a step computes; batches and noise are a function of the step and the saved RNG).
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every"})


@dataclass
class GANTrainingConfig(TrainingConfig):
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
        ema_decay: per-step decay of the averaged generator (0: no average; samples and exports
            then use the trained generator itself). Early steps use a smaller decay,
            (1 + n) / (10 + n) after n updates, so the average does not drag its random start along.
        diff_augment: DiffAugment policies, e.g. "color,translation,cutout" ("" for none).
    """

    model: DCGANConfig = field(default_factory=DCGANConfig)
    steps: int = 10_000
    batch_size: int = 64
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    beta1: float = 0.5
    real_label: float = 0.9
    checkpoint_every: int = 500
    ema_decay: float = 0.999
    diff_augment: str = ""

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"GANTrainingConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        parse_policy(self.diff_augment)
        self.require_positive("generator_lr", "discriminator_lr")
        if not 0 <= self.beta1 < 1:
            raise ConfigError(f"GANTrainingConfig.beta1 must be in [0, 1), got {self.beta1}")
        if not 0.5 < self.real_label <= 1:
            raise ConfigError(f"GANTrainingConfig.real_label must be in (0.5, 1], got {self.real_label}")


class WeightAverage(nn.Module):
    """An exponential moving average of a network's weights, kept as a frozen copy of the network.

    ``updates`` is a buffer, so the warm-up schedule resumes from checkpoints with the weights.
    Buffers (batch-norm statistics) are copied, not averaged: they are statistics of the current
    weights' activations.
    """

    def __init__(self, network: nn.Module, decay: float) -> None:
        super().__init__()
        self.average = copy.deepcopy(network).requires_grad_(False)
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1.0 + float(self.updates)) / (10.0 + float(self.updates)))
        for averaged, current in zip(self.average.parameters(), network.parameters()):
            averaged.lerp_(current, 1.0 - decay)
        for averaged, current in zip(self.average.buffers(), network.buffers()):
            averaged.copy_(current)


class DCGANTask:
    """The two phases of one step: "discriminator" learns real from fake, "generator" learns to fool it.

    With ``augment``, the discriminator only ever sees augmented images, real and fake alike
    (DiffAugment); with ``ema_decay`` > 0 the task keeps :class:`WeightAverage` of the generator,
    updated after each generator step, and :attr:`sampler` is that average.
    """

    def __init__(self, generator: DCGANGenerator, discriminator: DCGANDiscriminator, real_label: float, *,
                 augment: str = "", ema_decay: float = 0.0) -> None:
        # Channels-last tensors let the CPU's oneDNN convolutions skip layout reorders: about
        # 1.2x faster training steps on this project's 2-core VM (benchmarks/gan_bench.py).
        for network in (generator, discriminator):
            network.to(memory_format=torch.channels_last)
        modules: dict[str, nn.Module] = {"generator": generator, "discriminator": discriminator}
        self.average = WeightAverage(generator, ema_decay) if ema_decay > 0 else None
        if self.average is not None:
            modules["generator_ema"] = self.average
        self.model = nn.ModuleDict(modules)
        self.generator, self.discriminator = generator, discriminator
        self.real_label = real_label
        self.augment = DiffAugment(augment)

    @property
    def sampler(self) -> DCGANGenerator:
        """The generator to draw images with: the weight average if there is one."""
        return self.average.average if self.average is not None else self.generator  # type: ignore[return-value]

    def after_step(self, phase: str) -> None:
        if phase == "generator" and self.average is not None:
            self.average.update(self.generator)

    def _judge(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, R, R) -> (B,) logits
        return self.discriminator(self.augment(images) if self.augment else images)

    def __call__(self, batch: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        noise = sample_noise(len(batch), self.generator.config.latent_dim)
        batch = batch.contiguous(memory_format=torch.channels_last)
        if phase == "discriminator":
            with torch.no_grad():
                fake = self.generator(noise)
            real_logits, fake_logits = self._judge(batch), self._judge(fake)
            loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.real_label))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            return {"loss": loss, "real_score": torch.sigmoid(real_logits).mean(),
                    "fake_score": torch.sigmoid(fake_logits).mean()}
        fake_logits = self._judge(self.generator(noise))
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
    """Train (or resume) a DCGAN in ``run_dir`` on ``images`` (N, R, R, C) uint8.

    Returns the generator to sample from (the weight average unless ``ema_decay`` is 0) and the
    history of the steps run in this call.

    Raises:
        ConfigError: ``run_dir`` was started with other settings (see :data:`RESUMABLE_CHANGES`).
    """
    images = np.asarray(images)
    expected = (config.model.resolution, config.model.resolution, config.model.image_channels)
    if images.ndim != 4 or images.shape[1:] != expected or images.dtype != np.uint8:
        raise InputError("images", f"expected (N, {', '.join(map(str, expected))}) uint8, got {images.shape} {images.dtype}")
    if len(images) < config.batch_size:
        raise InputError("images", f"{len(images)} images are fewer than one batch of {config.batch_size}")
    torch.manual_seed(config.seed)
    task = DCGANTask(DCGANGenerator(config.model), DCGANDiscriminator(config.model), config.real_label,
                     augment=config.diff_augment, ema_decay=config.ema_decay)
    betas = (config.beta1, 0.999)
    optimizers = {"discriminator": torch.optim.Adam(task.discriminator.parameters(), config.discriminator_lr, betas=betas),
                  "generator": torch.optim.Adam(task.generator.parameters(), config.generator_lr, betas=betas)}
    trainer = Trainer(task, optimizers, TrainerConfig(steps=config.steps, log_every=config.log_every,
                                                      checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=Path(run_dir) / "checkpoints", extra={"config": config.to_dict()})
    assert trainer.store is not None
    check_same_config(trainer.store, config, RESUMABLE_CHANGES)
    start = trainer.resume()
    history = trainer.fit(step_batches(images, config.batch_size, config.seed, start), resume=False)
    history.resumed_from = start
    return task.sampler.eval(), history


def sample_grid(generator: DCGANGenerator, noise: torch.Tensor, columns: int = 8, gap: int = 2) -> np.ndarray:
    """The generator's images for ``noise``, tiled ``columns`` wide on a white background, (H, W, 3) uint8."""
    return tile(to_pixels(_draw(generator, noise)), columns, gap)


def _draw(generator: DCGANGenerator, noise: torch.Tensor, batch_size: int = 100) -> np.ndarray:
    """(N, C, R, R) images in [-1, 1] from the generator in eval mode (its mode is restored after)."""
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        drawn = np.concatenate([generator(noise[start:start + batch_size]).numpy()
                                for start in range(0, len(noise), batch_size)])
    generator.train(was_training)
    return drawn


def train_with_samples(config: GANTrainingConfig, images: np.ndarray, run_dir: str | Path, *, sample_every: int,
                       samples: int = 64, fid_every: int = 0, fid_samples: int = 1000,
                       progress: bool = True) -> tuple[DCGANGenerator, dict[str, list[float]]]:
    """:func:`train_dcgan` in stretches, saving a sample grid every ``sample_every`` steps and
    measuring FID-Lite0 / KID-Lite0 every ``fid_every`` steps (0: never).

    Every grid draws the same noise (seeded by the config), so ``samples/step-NNNNNN.png`` show
    one set of faces taking shape. FID-Lite0 compares ``fid_samples`` generated images with as
    many training images (their features are cached in ``fid-real.npz``) and is appended to
    ``fid.json`` (see :func:`fid_history`). A rerun resumes from the last checkpoint. The losses
    of the whole run (earlier sessions included: the checkpoints keep the log) are returned as
    {"step": [...], "discriminator/loss": [...], ...}; a rerun of a finished run returns them too.

    Raises:
        ConfigError: ``run_dir`` was started with other settings (see :data:`RESUMABLE_CHANGES`).
    """
    from dataclasses import replace

    from slimvision.io.images import save_image

    run_dir = Path(run_dir)
    if sample_every < 1 or fid_every < 0 or fid_samples < 2:
        raise ConfigError(f"sample_every must be >= 1, fid_every >= 0 and fid_samples >= 2; got {sample_every}, "
                          f"{fid_every} and {fid_samples}")
    store = CheckpointStore(run_dir / "checkpoints")
    check_same_config(store, config, RESUMABLE_CHANGES)  # before the FID features are computed
    noise = sample_noise(samples, config.model.latent_dim, torch.Generator().manual_seed(config.seed + 1))
    sample_stops, fid_stops = _stops(sample_every, config.steps), _stops(fid_every, config.steps) if fid_every else set()
    # A stretch ends on a checkpoint, so the next one resumes exactly there.
    stretch = replace(config, checkpoint_every=min(config.checkpoint_every, sample_every, fid_every or sample_every))
    meter = _FIDMeter(run_dir, images, fid_samples, seed=config.seed, progress=progress) if fid_every else None
    generator = None
    done = store.latest_step()
    stops = sorted(sample_stops | fid_stops)
    # Stretches a resumed run has already done keep their grids; the last one always runs
    # (it does nothing when the run is finished) so the generator is returned.
    for stop in [stop for stop in stops if stop > done] or stops[-1:]:
        generator, _ = train_dcgan(replace(stretch, steps=stop), images, run_dir, progress=progress)
        if stop > done and stop in sample_stops:
            save_image(sample_grid(generator, noise), run_dir / "samples" / f"step-{stop:06d}.png", overwrite=True)
        if stop > done and meter is not None and stop in fid_stops:
            meter.record(stop, generator)
    assert generator is not None
    state = store.latest_state()  # every stretch ends on a checkpoint, which holds the whole log
    return generator, History.from_dict(state.history, state.step).as_columns() if state else {"step": []}


def _stops(every: int, steps: int) -> set[int]:
    """Every ``every`` steps, and the last step."""
    return {min(stop, steps) for stop in range(every, steps + every, every)}


FID_FILE, FID_REAL_FILE = "fid.json", "fid-real.npz"


def fid_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The FID-Lite0 / KID-Lite0 measurements of a run: [{"step", "fid_lite0", "kid_lite0", "samples"}, ...]."""
    return read_json_rows(Path(run_dir) / FID_FILE)


class _FIDMeter:
    """Features of the real images once (cached in the run folder), then one FID per call."""

    def __init__(self, run_dir: Path, images: np.ndarray, count: int, seed: int, progress: bool) -> None:
        from slimvision.metrics.fid import FeatureStats, Lite0Embedder

        self.run_dir, self.progress, self.seed = run_dir, progress, seed
        self.embed = Lite0Embedder()
        count = min(count, len(images))
        cache = run_dir / FID_REAL_FILE
        cached = read_cached_array(cache, "features")  # None when missing or damaged
        if cached is not None and cached.ndim == 2 and len(cached) == count:
            self.real = cached.astype(np.float64)
        else:
            chosen = np.sort(np.random.default_rng([seed, 2]).choice(len(images), count, replace=False))
            self.real = self.embed(images[chosen], progress=progress)
            with atomic_write(cache, overwrite=True) as temporary, open(temporary, "wb") as handle:
                np.savez(handle, features=self.real.astype(np.float32))
        self.real_stats = FeatureStats.of(self.real)

    def record(self, step: int, generator: DCGANGenerator) -> dict[str, float]:
        from slimvision.metrics.fid import FeatureStats, frechet_distance, kernel_distance

        fake = self.embed(generated_pixels(generator, len(self.real), seed=self.seed + 2), progress=self.progress)
        entry = {"step": step, "fid_lite0": frechet_distance(self.real_stats, FeatureStats.of(fake)),
                 "kid_lite0": kernel_distance(self.real, fake), "samples": len(fake)}
        history = [row for row in fid_history(self.run_dir) if row["step"] != step] + [entry]
        write_text_atomic(self.run_dir / FID_FILE, json.dumps(history, indent=1), overwrite=True)
        return entry


def generated_pixels(generator: DCGANGenerator, count: int, seed: int) -> np.ndarray:
    """``count`` images from the generator in eval mode, (count, R, R, C) uint8, noise fixed by ``seed``."""
    noise = sample_noise(count, generator.config.latent_dim, torch.Generator().manual_seed(seed))
    return to_pixels(_draw(generator, noise), rgb=False)
