"""Configuration of the medical-image VAE: input size, backbone, latent size, U-Net skips."""

from __future__ import annotations

from dataclasses import dataclass

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: Backbones the encoder can use; only Lite0 has weights that ship offline.
BACKBONES = ("efficientnet-lite0", "efficientnet-b1")
#: The backbone's total stride: the encoder's last feature map is image_size / 32 on a side.
BACKBONE_STRIDE = 32


@dataclass
class VAEConfig(BaseConfig):
    """A variational autoencoder for grey (or colour) images (the design of Gerget & Lantev 2021).

    Encoder: a 3x3 convolution from ``in_channels`` to the 3 channels the backbone expects, the
    backbone's feature extractor down to stride 32, a 1x1 reduction to ``reduce_channels``, and
    a dense layer to the latent mean and log-variance (``latent_dim`` each). Decoder: the
    mirror image, a dense layer back to the stride-32 map and five transposed convolutions that
    double the size while walking the backbone's level widths back down (320, 112, 40, 24, 16),
    to ``out_channels``: linear in training, clipped to [0, 1] in eval mode and in exports.

    Attributes:
        image_size: input and output side; a multiple of 32 (224 as in the paper, 128 for CPUs).
        in_channels / out_channels: 1 for grey images, 3 for colour.
        backbone: ``efficientnet-lite0`` (ImageNet weights ship in a package) or
            ``efficientnet-b1`` (the paper's; random start or user-supplied weights).
        latent_dim: size of the latent mean and of the log-variance (the paper: 512).
        reduce_channels: channels of the stride-32 map that the dense layers see; keeps them
            small (at 224 px, 7 x 7 x 32 = 1568 inputs instead of 7 x 7 x 320).
        skip_connections: U-Net skips: the decoder also sees the encoder's feature map at each
            size (and features of the input, from three convolutions, at full size). Restores
            detail for denoising and inpainting, but then the decoder needs an image, so such a
            model cannot sample new images from the prior.
        mask_channel: the network also sees which pixels are intact (a second input plane, 1 where
            a pixel is known). Without it a removed pixel (0) looks like black background, which
            MRI and CT slices are full of; with it the model knows exactly what to fill in.
            Plain denoising passes an all-ones mask.
    """

    image_size: int = 224
    in_channels: int = 1
    out_channels: int = 1
    backbone: str = "efficientnet-lite0"
    latent_dim: int = 512
    reduce_channels: int = 32
    skip_connections: bool = False
    mask_channel: bool = False

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "latent_dim", "reduce_channels")
        self.require_one_of("backbone", BACKBONES)
        self.require_one_of("in_channels", (1, 3))
        self.require_one_of("out_channels", (1, 3))
        if self.image_size < BACKBONE_STRIDE or self.image_size % BACKBONE_STRIDE:
            raise ConfigError(f"VAEConfig.image_size must be a positive multiple of {BACKBONE_STRIDE} "
                              f"(e.g. 64, 128, 224), got {self.image_size}")

    @property
    def bottleneck_side(self) -> int:
        """Side of the encoder's last feature map (image_size / 32)."""
        return self.image_size // BACKBONE_STRIDE

    @property
    def network_channels(self) -> int:
        """Planes the network reads: the image's, plus the intact-pixel mask if ``mask_channel``."""
        return self.in_channels + int(self.mask_channel)

    @property
    def original_dim(self) -> int:
        """Values in one output image: the paper's "original dim" that scales the MSE."""
        return self.image_size * self.image_size * self.out_channels
