"""The variational autoencoder for grey medical images.

Importing this package registers ``vae`` with :func:`slimvision.registry.create_model`.
"""

from slimvision.models.vae.config import VAEConfig
from slimvision.models.vae.vae import VAEDecoder, VAEEncoder, VariationalAutoencoder, build_vae, reparameterize

__all__ = ["VAEConfig", "VAEDecoder", "VAEEncoder", "VariationalAutoencoder", "build_vae", "reparameterize"]
