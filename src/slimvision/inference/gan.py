"""Draw images from an exported DCGAN generator with ONNX Runtime (numpy only, no torch).

Example:
    >>> sampler = GANSampler("runs/cats64/generator.onnx")           # doctest: +SKIP
    >>> sampler.sample(16, seed=3).shape                              # doctest: +SKIP
    (16, 64, 64, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimvision.assets import GAN_DIGITS32_INT8, GAN_DIGITS32_WEIGHTS
from slimvision.errors import InputError
from slimvision.export.card import card_path, read_card
from slimvision.graph.session import OnnxModel, SessionSettings
from slimvision.io.pixels import to_pixels


#: The shipped demo: a 32 px DCGAN trained on OpenCV's 5,000 handwritten digits (docs/gan.md has
#: the command), as the int8 graph that samples and the float weights it was quantized from.
DEMO_GENERATOR = GAN_DIGITS32_INT8.path()
DEMO_WEIGHTS = GAN_DIGITS32_WEIGHTS.path()


#: The output range :func:`~slimvision.io.pixels.to_pixels` maps to 0..255.
PIXEL_RANGE = [-1.0, 1.0]


class GANSampler:
    """A generator graph (``noise`` -> ``images`` in [-1, 1]) that returns uint8 RGB pictures.

    The latent size and the output range come from the graph's card (``generator.card.json``,
    written by 'slimvision gan export'), not from the graph.
    """

    def __init__(self, path: str | Path, settings: SessionSettings | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no such generator graph (export one with 'slimvision gan export')")
        card_file = card_path(path)
        if not card_file.is_file():
            raise InputError(card_file, "the generator graph has no card beside it (export it again with "
                                        "'slimvision gan export')")
        card = read_card(card_file)
        try:
            noise, images = card.input("noise"), card.output("images")
        except KeyError as error:
            raise InputError(card_file, f"not a generator's card: {error.args[0]}") from None
        if not noise.shape or not isinstance(noise.shape[-1], int) or noise.shape[-1] < 1:
            raise InputError(card_file, f"input 'noise' needs a fixed length, the card says shape {noise.shape}")
        if images.value_range != PIXEL_RANGE:
            raise InputError(card_file, f"output 'images' in {images.value_range}; the sampler draws {PIXEL_RANGE}")
        self.card = card
        self.latent_dim = int(noise.shape[-1])
        self.model = OnnxModel(path, settings)

    def noise(self, count: int, seed: int) -> np.ndarray:
        """(count, latent_dim) float32 noise, uniform in [-1, 1], fixed by ``seed``."""
        return np.random.default_rng(seed).uniform(-1.0, 1.0, (count, self.latent_dim)).astype(np.float32)

    def generate(self, noise: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, latent_dim) noise -> (N, R, R, 3) uint8 images (grey generators are repeated to RGB)."""
        noise = np.asarray(noise, np.float32)
        parts = [self.model.run({"noise": noise[start:start + batch_size]})[0]
                 for start in range(0, len(noise), batch_size)]
        return to_pixels(np.concatenate(parts))

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        return self.generate(self.noise(count, seed))

    def interpolate(self, seed_a: int, seed_b: int, steps: int) -> np.ndarray:
        """``steps`` images walking in a straight line through noise space from one seed's face to another's."""
        a, b = self.noise(1, seed_a)[0], self.noise(1, seed_b)[0]
        weights = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.generate((1 - weights) * a + weights * b)
