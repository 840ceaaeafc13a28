"""Image corruptions for denoising / inpainting training and evaluation (numpy only, no torch).

Three kinds, combined per image: random pixel dropout that keeps a fraction ``p`` of the pixels,
additive Gaussian noise, and rectangular block masks. A removed pixel becomes 0, and every call
returns the mask of the pixels that survived, so an inpainting result can keep them.

Example:
    >>> rng = np.random.default_rng(0)
    >>> image = np.full((64, 64), 0.5, np.float32)
    >>> damaged, kept = drop_pixels(image, keep=0.4, rng=rng)
    >>> round(float(kept.mean()), 2), float(damaged[~kept].max())
    (0.4, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: The noise models :class:`Corruption` draws from.
NOISE_KINDS = ("gaussian", "rician", "poisson")


@dataclass
class Corruption(BaseConfig):
    """The damage a denoising VAE learns to undo, drawn afresh for every training image.

    Attributes:
        keep_min / keep_max: each image keeps a fraction of its pixels drawn uniformly from this
            range (1 and 1: no dropout). Training up to 0.3 covers the benchmark's 0.4.
        noise_max: each image gets Gaussian noise with a standard deviation drawn from [0, noise_max].
        block_probability: chance that an image also loses one to three rectangles.
        block_max_side: the largest rectangle side, as a fraction of the image side.
        intact_probability: chance that an image loses no pixels at all (it still gets noise).
            A model trained only on heavy dropout (say ``keep_max`` 0.7) never sees a whole
            image, and then fails at plain denoising, where every pixel is present.
        noise_kinds: comma-separated noise models, one drawn per image: ``gaussian`` (additive),
            ``rician`` (the magnitude of a complex signal with Gaussian noise in both parts, as
            MRI magnitude images have) and ``poisson`` (photon counts: a peak of 1 / std^2
            counts, as in CT, X-ray and nuclear medicine). The std is drawn as for Gaussian noise.
    """

    keep_min: float = 0.3
    keep_max: float = 1.0
    noise_max: float = 0.05
    block_probability: float = 0.3
    block_max_side: float = 0.3
    intact_probability: float = 0.0
    noise_kinds: str = "gaussian"

    def validate(self) -> None:
        super().validate()
        unknown = sorted(set(self.kinds()) - set(NOISE_KINDS))
        if unknown or not self.kinds():
            raise ConfigError(f"Corruption.noise_kinds: unknown noise model(s) {', '.join(unknown) or '(none given)'}; "
                              f"known: {', '.join(NOISE_KINDS)}")
        if not 0 < self.keep_min <= self.keep_max <= 1:
            raise ConfigError(f"Corruption needs 0 < keep_min <= keep_max <= 1, got {self.keep_min} and {self.keep_max}")
        for name in ("noise_max", "block_probability", "block_max_side", "intact_probability"):
            self.require_range(name, 0, 1)

    def kinds(self) -> list[str]:
        """The noise models named by ``noise_kinds``."""
        return [kind.strip() for kind in self.noise_kinds.split(",") if kind.strip()]

    @classmethod
    def none(cls) -> Corruption:
        """No damage at all: a plain (not denoising) VAE."""
        return cls(keep_min=1.0, keep_max=1.0, noise_max=0.0, block_probability=0.0)


def drop_pixels(image: np.ndarray, keep: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Remove each pixel with probability 1 - ``keep`` (set it to 0); returns (damaged, kept mask)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    kept = rng.random(image.shape[:2]) < keep
    return np.where(kept if image.ndim == 2 else kept[..., None], image, 0).astype(image.dtype), kept


def add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Image plus Gaussian noise of standard deviation ``std``, clipped to [0, 1]."""
    noisy = image + rng.normal(0.0, std, image.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0).astype(image.dtype)


def add_noise_of_kind(image: np.ndarray, kind: str, std: float, rng: np.random.Generator) -> np.ndarray:
    """Image in [0, 1] with ``kind`` noise (see :class:`Corruption`) of about ``std``, clipped to [0, 1]."""
    if kind == "gaussian":
        return add_noise(image, std, rng)
    if kind == "rician":
        real = image + rng.normal(0.0, std, image.shape)
        noisy = np.sqrt(real ** 2 + rng.normal(0.0, std, image.shape) ** 2)
    elif kind == "poisson":
        peak = 1.0 / max(std, 1e-3) ** 2
        noisy = rng.poisson(np.clip(image, 0, 1) * peak) / peak
    else:
        raise ValueError(f"unknown noise model {kind!r}")
    return np.clip(noisy, 0.0, 1.0).astype(image.dtype)


def jitter_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (H, W) image in [0, 1] with its intensities redrawn, as another scanner or protocol
    would give them: a window narrower than the full range (half the time), a gamma of 0.6-1.6
    and, half the time, a smooth multiplicative bias field (up to +-30%, as coil sensitivity
    gives MRI). Black stays black. The clean target is the jittered image: the model learns to
    restore whatever contrast it is shown, not the one it was trained on."""
    import cv2

    out = image.astype(np.float32)
    if rng.random() < 0.5:
        low, high = rng.uniform(0.0, 0.25), rng.uniform(0.6, 1.0)
        out = np.clip((out - low) / (high - low), 0.0, 1.0)
    out = out ** np.float32(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    if rng.random() < 0.5:
        coarse = rng.normal(0.0, 1.0, (3, 3)).astype(np.float32)
        field = cv2.resize(coarse, image.shape[::-1], interpolation=cv2.INTER_CUBIC)
        out = out * np.exp(np.float32(rng.uniform(0.0, 0.3)) * field / max(float(np.abs(field).max()), 1e-6))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def block_mask(shape: tuple[int, int], blocks: int, max_side: float, rng: np.random.Generator) -> np.ndarray:
    """A (H, W) bool mask, False inside ``blocks`` random rectangles of sides up to ``max_side`` x the image's."""
    height, width = shape
    kept = np.ones(shape, bool)
    for _ in range(blocks):
        block_h = int(rng.integers(1, max(2, int(max_side * height) + 1)))
        block_w = int(rng.integers(1, max(2, int(max_side * width) + 1)))
        top, left = int(rng.integers(0, height - block_h + 1)), int(rng.integers(0, width - block_w + 1))
        kept[top:top + block_h, left:left + block_w] = False
    return kept


def corrupt(image: np.ndarray, config: Corruption, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image (H, W) in [0, 1] damaged as ``config`` draws it: noise, then dropout and blocks.

    Returns (damaged image, kept mask); masked-out pixels are 0.
    """
    damaged = image.astype(np.float32)
    noise = rng.uniform(0.0, config.noise_max) if config.noise_max > 0 else 0.0
    if noise > 0:
        kinds = config.kinds()
        # One kind: no draw, so a Gaussian-only run's random stream is what it always was.
        kind = kinds[0] if len(kinds) == 1 else kinds[int(rng.integers(len(kinds)))]
        damaged = add_noise_of_kind(damaged, kind, noise, rng)
    keep = rng.uniform(config.keep_min, config.keep_max)
    intact = config.intact_probability > 0 and rng.random() < config.intact_probability
    kept = rng.random(image.shape[:2]) < keep if keep < 1 and not intact else np.ones(image.shape[:2], bool)
    if not intact and config.block_probability > 0 and rng.random() < config.block_probability:
        kept &= block_mask(image.shape[:2], int(rng.integers(1, 4)), config.block_max_side, rng)
    return np.where(kept, damaged, 0.0).astype(np.float32), kept


def drop_pixels_each(images: np.ndarray, keep: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`drop_pixels` for a stack (N, H, W), reproducibly: the same seed removes the same pixels."""
    rng = np.random.default_rng([seed, 7])
    damaged, kept = zip(*(drop_pixels(image, keep, rng) for image in images))
    return np.stack(damaged), np.stack(kept)
