"""Generative adversarial networks: the DCGAN generator and discriminator.

Importing this package registers ``dcgan-generator`` and ``dcgan-discriminator`` with
:func:`slimvision.registry.create_model`.
"""

from slimvision.models.gan.config import DCGANConfig
from slimvision.models.gan.dcgan import DCGANDiscriminator, DCGANGenerator, initialize_weights, sample_noise

__all__ = ["DCGANConfig", "DCGANDiscriminator", "DCGANGenerator", "initialize_weights", "sample_noise"]
