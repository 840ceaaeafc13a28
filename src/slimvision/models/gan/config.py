"""Configuration of a DCGAN: image size, latent size and channel widths that scale with the size."""

from __future__ import annotations

import math
from dataclasses import dataclass

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: Side of the first feature map the generator draws and the last the discriminator sees.
START_SIZE = 8


@dataclass
class DCGANConfig(BaseConfig):
    """A DCGAN for ``resolution`` x ``resolution`` images (Radford et al. 2016; the 128 px layout
    of the cat-face generator this project builds on).

    The generator maps ``latent_dim`` uniform noise through a dense layer to an 8 x 8 map, then
    doubles it with 5x5 transposed convolutions until it reaches ``resolution``, halving the
    channels each time down to ``base_channels``; a last stride-1 transposed conv draws the
    ``image_channels`` through tanh. The discriminator mirrors it: 5x5 convolutions from
    ``base_channels`` up, doubling the channels each layer, stride 2 except the second-to-last,
    down to an 8 x 8 map, then one logit. At 128 px that is exactly the reference network:
    G 8x8x1024 -> 512 -> 256 -> 128 -> 64 -> 3 and D 64 -> 128 -> 256 -> 512 (stride 1) -> 1024.
    Smaller images take fewer layers, so the widths scale with the resolution.

    Attributes:
        resolution: image side in pixels: 8 x a power of two, at least 16 (32, 64 and 128 are
            the sizes the issue names).
        latent_dim: length of the noise vector (uniform in [-1, 1]).
        image_channels: 3 for colour, 1 for grey.
        base_channels: channels next to the image, in both networks.
        kernel_size: every convolution's kernel.
        leaky_slope: negative slope of every LeakyReLU.
        init_std: standard deviation of the normal initial weights (DCGAN: 0.02).
    """

    resolution: int = 128
    latent_dim: int = 100
    image_channels: int = 3
    base_channels: int = 64
    kernel_size: int = 5
    leaky_slope: float = 0.2
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "latent_dim", "image_channels", "base_channels", "kernel_size")
        doublings = math.log2(self.resolution / START_SIZE) if self.resolution > 0 else -1
        if self.resolution < 2 * START_SIZE or doublings != int(doublings):
            raise ConfigError(f"DCGANConfig.resolution must be {START_SIZE} x a power of two, at least "
                              f"{2 * START_SIZE} (e.g. 32, 64, 128), got {self.resolution}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"DCGANConfig.kernel_size must be odd (same padding), got {self.kernel_size}")
        if not 0 <= self.leaky_slope < 1:
            raise ConfigError(f"DCGANConfig.leaky_slope must be in [0, 1), got {self.leaky_slope}")
        self.require_positive("init_std")

    @property
    def doublings(self) -> int:
        """Stride-2 layers in each network: log2(resolution / 8)."""
        return int(math.log2(self.resolution // START_SIZE))
