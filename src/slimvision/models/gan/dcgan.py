"""DCGAN generator and discriminator as plain modules, built from a :class:`DCGANConfig`.

Example:
    >>> import torch
    >>> config = DCGANConfig(resolution=32)
    >>> images = DCGANGenerator(config)(sample_noise(4, config.latent_dim))
    >>> images.shape, DCGANDiscriminator(config)(images).shape
    (torch.Size([4, 3, 32, 32]), torch.Size([4]))
"""

from __future__ import annotations

import torch
from torch import nn

from slimvision.models.gan.config import START_SIZE, DCGANConfig
from slimvision.registry import register_model


def sample_noise(count: int, latent_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, latent_dim) noise, uniform in [-1, 1] as the reference generator draws it."""
    return torch.rand(count, latent_dim, generator=generator) * 2.0 - 1.0


def initialize_weights(module: nn.Module, std: float) -> None:
    """DCGAN's start: conv and dense weights ~ N(0, std), batch-norm scales ~ N(1, std), biases 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)


@register_model("dcgan-generator")
class DCGANGenerator(nn.Module):
    """Noise (B, latent_dim) in [-1, 1] -> images (B, C, R, R) in [-1, 1]."""

    config_class = DCGANConfig

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DCGANConfig()
        widths = [config.base_channels * 2 ** index for index in range(config.doublings, -1, -1)]  # 1024 .. 64
        self.start_channels = widths[0]
        # The dense layer feeds batch norm, which has its own offset: a bias would be wasted.
        self.project = nn.Linear(config.latent_dim, widths[0] * START_SIZE * START_SIZE, bias=False)
        self.project_norm = nn.Sequential(nn.BatchNorm2d(widths[0]), nn.LeakyReLU(config.leaky_slope))
        pad = config.kernel_size // 2
        self.upsample = nn.Sequential(*(
            nn.Sequential(nn.ConvTranspose2d(c_in, c_out, config.kernel_size, stride=2, padding=pad,
                                             output_padding=1, bias=False),
                          nn.BatchNorm2d(c_out), nn.LeakyReLU(config.leaky_slope))
            for c_in, c_out in zip(widths, widths[1:])))
        # Radford et al.: no batch norm on the generator's output layer (it made samples oscillate).
        self.to_image = nn.ConvTranspose2d(widths[-1], config.image_channels, config.kernel_size, stride=1,
                                           padding=pad)
        initialize_weights(self, config.init_std)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        x = self.project(noise).view(-1, self.start_channels, START_SIZE, START_SIZE)
        return torch.tanh(self.to_image(self.upsample(self.project_norm(x))))


@register_model("dcgan-discriminator")
class DCGANDiscriminator(nn.Module):
    """Images (B, C, R, R) in [-1, 1] -> (B,) logits, positive for "real"."""

    config_class = DCGANConfig

    def __init__(self, config: DCGANConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DCGANConfig()
        layers = config.doublings + 1
        widths = [config.image_channels] + [config.base_channels * 2 ** index for index in range(layers)]
        strides = [2] * layers
        strides[-2] = 1   # the reference keeps the 512-channel layer at the 16 x 16 of the one before
        blocks = []
        for index, (c_in, c_out, stride) in enumerate(zip(widths, widths[1:], strides)):
            # Radford et al.: no batch norm on the discriminator's input layer.
            norm = [] if index == 0 else [nn.BatchNorm2d(c_out)]
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, config.kernel_size, stride=stride,
                                                  padding=config.kernel_size // 2, bias=index == 0),
                                        *norm, nn.LeakyReLU(config.leaky_slope)))
        self.features = nn.Sequential(*blocks)
        self.logit = nn.Linear(widths[-1] * START_SIZE * START_SIZE, 1)
        initialize_weights(self, config.init_std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logit(self.features(images).flatten(1)).squeeze(1)
