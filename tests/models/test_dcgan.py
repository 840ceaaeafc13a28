"""DCGAN networks: shapes at each resolution, the reference 128 px layout, start weights, config checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimvision.errors import ConfigError
from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator, sample_noise
from slimvision.registry import create_model


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes_at_each_resolution(resolution):
    config = DCGANConfig(resolution=resolution, base_channels=4, latent_dim=16)
    generator, discriminator = DCGANGenerator(config), DCGANDiscriminator(config)
    images = generator(sample_noise(3, 16, torch.Generator().manual_seed(0)))
    assert images.shape == (3, 3, resolution, resolution)
    assert images.abs().max() <= 1.0                             # tanh
    assert discriminator(images).shape == (3,)


def test_the_128_px_networks_are_the_reference_layout():
    config = DCGANConfig()
    generator, discriminator = DCGANGenerator(config), DCGANDiscriminator(config)
    assert generator.project.out_features == 8 * 8 * 1024
    up = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in generator.modules()
          if isinstance(m, nn.ConvTranspose2d)]
    assert up == [(1024, 512, (5, 5), (2, 2)), (512, 256, (5, 5), (2, 2)), (256, 128, (5, 5), (2, 2)),
                  (128, 64, (5, 5), (2, 2)), (64, 3, (5, 5), (1, 1))]
    down = [(m.out_channels, m.stride[0]) for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert down == [(64, 2), (128, 2), (256, 2), (512, 1), (1024, 2)]
    assert discriminator.logit.in_features == 8 * 8 * 1024
    norms = [m for m in discriminator.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4                                       # every layer but the input one


def test_start_weights_follow_dcgan():
    generator = DCGANGenerator(DCGANConfig(resolution=32, base_channels=16))
    conv = generator.upsample[0][0].weight
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    norm = generator.upsample[0][1]
    assert abs(norm.weight.mean().item() - 1.0) < 0.01 and torch.all(norm.bias == 0)


def test_noise_is_uniform_in_minus_one_to_one_and_seeded():
    noise = sample_noise(4000, 10, torch.Generator().manual_seed(3))
    assert noise.min() >= -1 and noise.max() <= 1 and abs(noise.mean().item()) < 0.02
    assert torch.equal(noise, sample_noise(4000, 10, torch.Generator().manual_seed(3)))


def test_registry_builds_both_networks():
    config = DCGANConfig(resolution=32, base_channels=4)
    assert isinstance(create_model("dcgan-generator", config=config), DCGANGenerator)
    assert isinstance(create_model("dcgan-discriminator", config=config), DCGANDiscriminator)


@pytest.mark.parametrize("field, value, message", [("resolution", 48, "power of two"), ("resolution", 8, "at least 16"),
                                                   ("kernel_size", 4, "odd"), ("leaky_slope", 1.5, "leaky_slope"),
                                                   ("init_std", 0.0, "init_std")])
def test_bad_configs_are_refused_by_name(field, value, message):
    with pytest.raises(ConfigError, match=message):
        DCGANConfig(**{field: value})


def test_config_round_trips_through_json():
    config = DCGANConfig(resolution=64, base_channels=32, image_channels=1)
    assert DCGANConfig.from_json(config.to_json()) == config
