"""The VAE as plain modules: :class:`VAEEncoder`, :class:`VAEDecoder` and :class:`VariationalAutoencoder`.

Example:
    >>> import torch
    >>> vae = VariationalAutoencoder(VAEConfig(image_size=64, latent_dim=16)).eval()
    >>> recon, mean, log_var = vae(torch.rand(2, 1, 64, 64))
    >>> recon.shape, mean.shape, log_var.shape
    (torch.Size([2, 1, 64, 64]), torch.Size([2, 16]), torch.Size([2, 16]))
    >>> vae.decode(torch.randn(3, 16)).shape          # new images from the prior
    torch.Size([3, 1, 64, 64])
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimvision.errors import ConfigError
from slimvision.models.layers.efficientnet_lite import (
    FEATURE_CHANNELS,
    EfficientNet,
    EfficientNetLite0,
    efficientnet_b,
    load_efficientnet_lite0,
)
from slimvision.models.vae.config import VAEConfig
from slimvision.registry import register_model

#: Widths of the decoder's five levels, stride 16 up to full size: the backbone's levels in reverse.
DECODER_WIDTHS = (*FEATURE_CHANNELS[::-1][1:], FEATURE_CHANNELS[0])  # 112, 40, 24, 16, 16
#: Width of the full-size features a U-Net VAE's last decoder level sees (the backbone's finest
#: level is already at half size).
FULL_SIZE_WIDTH = 32


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class VAEEncoder(nn.Module):
    """Image (B, C_in, S, S) in [0, 1] [+ intact-pixel mask (B, 1, S, S)] -> latent mean and
    log-variance (B, latent) each, and the feature maps the decoder's skips use (finest first:
    full-size features of the input and its mask, then strides 2, 4, 8, 16)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        # The paper's first layer: 3 filters turn the grey channel into the backbone's RGB. It
        # starts as "copy the grey value to R, G and B" (centre tap 1), so a pretrained backbone
        # first sees exactly the grey image it would have been shown.
        self.to_rgb = nn.Conv2d(config.network_channels, 3, 3, padding=1)
        with torch.no_grad():
            self.to_rgb.weight.zero_()
            self.to_rgb.bias.zero_()
            for channel in range(3):
                self.to_rgb.weight[channel, channel % config.in_channels, 1, 1] = 1.0
        self.backbone: EfficientNet = (EfficientNetLite0() if config.backbone == "efficientnet-lite0"
                                       else efficientnet_b("b1"))
        # The classifier head is not part of the feature extractor.
        del self.backbone.head, self.backbone.classifier
        side = config.bottleneck_side
        # The backbone's first layer halves the size, so a U-Net decoder would meet the full-size
        # input raw. Three full-size convolutions give it features there: filling a pixel from
        # its intact neighbours is local work, best done at full resolution.
        self.full_size = (nn.Sequential(conv_bn_relu(config.network_channels, FULL_SIZE_WIDTH),
                                        conv_bn_relu(FULL_SIZE_WIDTH, FULL_SIZE_WIDTH),
                                        conv_bn_relu(FULL_SIZE_WIDTH, FULL_SIZE_WIDTH))
                          if config.skip_connections else None)
        self.reduce = conv_bn_relu(FEATURE_CHANNELS[-1], config.reduce_channels, kernel_size=1)
        self.to_latent = nn.Linear(config.reduce_channels * side * side, 2 * config.latent_dim)

    def forward(self, image: torch.Tensor, known: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        if self.config.mask_channel:
            # No mask given: nothing is missing (plain denoising).
            known = torch.ones_like(image[:, :1]) if known is None else known.to(image.dtype)
            image = torch.cat([image, known], dim=1)
        levels = self.backbone.features(self.to_rgb(image))  # strides 2, 4, 8, 16, 32
        mean, log_var = self.to_latent(self.reduce(levels[-1]).flatten(1)).chunk(2, dim=1)  # (B, latent) each
        finest = self.full_size(image) if self.full_size is not None else image
        return mean, log_var, [finest, *levels[:-1]]


class VAEDecoder(nn.Module):
    """Latent (B, latent) [+ the encoder's skip maps] -> image (B, C_out, S, S) in [0, 1] (in eval mode)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        side = config.bottleneck_side
        self.from_latent = nn.Linear(config.latent_dim, config.reduce_channels * side * side)
        self.expand = conv_bn_relu(config.reduce_channels, FEATURE_CHANNELS[-1], kernel_size=1)
        widths = (FEATURE_CHANNELS[-1], *DECODER_WIDTHS)
        skip_widths = (FULL_SIZE_WIDTH, *FEATURE_CHANNELS[:-1])[::-1]  # stride 16 first
        self.up = nn.ModuleList()
        self.refine = nn.ModuleList()
        for c_in, c_out, skip in zip(widths, widths[1:], skip_widths):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
            self.refine.append(conv_bn_relu(c_out + (skip if config.skip_connections else 0), c_out))
        self.to_image = nn.Conv2d(widths[-1], config.out_channels, 3, padding=1)

    def forward(self, latent: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        if self.config.skip_connections and skips is None:
            raise ConfigError("this VAE has U-Net skip connections: decoding needs the encoder's feature maps "
                              "(a model without skips can decode latents alone)")
        side = self.config.bottleneck_side
        x = self.expand(self.from_latent(latent).view(-1, self.config.reduce_channels, side, side))
        for level, (up, refine) in enumerate(zip(self.up, self.refine)):
            x = up(x)  # (B, C, 2s, 2s)
            if self.config.skip_connections:
                x = torch.cat([x, skips[-1 - level]], dim=1)
            x = refine(x)
        image = self.to_image(x)  # (B, C_out, S, S)
        # Clipped to [0, 1] in eval mode; a "leaky" clip while training, so that every pixel keeps
        # a gradient. MRI/CT slices are mostly black background, where SSIM punishes even a
        # 0.01 grey veil (its c1 is 1e-4); a sigmoid never reaches 0, and a linear output
        # scatters around it. The leaky clip makes overshooting below 0 cheap, so the network
        # learns to aim background under 0, which the eval-mode clip turns into exact black.
        return leaky_clip(image) if self.training else image.clamp(0.0, 1.0)


@register_model("vae")
class VariationalAutoencoder(nn.Module):
    """Encoder + reparameterisation + decoder. ``forward`` returns (reconstruction, mean, log_var);
    the latent is sampled in training mode and is the mean in eval mode. ``known`` (B, 1, S, S),
    1 where a pixel is intact, is read only by models with ``mask_channel``."""

    config_class = VAEConfig

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or VAEConfig()
        self.encoder = VAEEncoder(config)
        self.decoder = VAEDecoder(config)

    def forward(self, image: torch.Tensor, known: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var, skips = self.encoder(image, known)
        latent = reparameterize(mean, log_var) if self.training else mean
        return self.decoder(latent, skips if self.config.skip_connections else None), mean, log_var

    def encode(self, image: torch.Tensor, known: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var, _ = self.encoder(image, known)
        return mean, log_var

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)


def leaky_clip(values: torch.Tensor, slope: float = 0.1) -> torch.Tensor:
    """Identity on [0, 1], with slope ``slope`` outside it (a clip that still passes gradients)."""
    clipped = values.clamp(0.0, 1.0)
    return clipped + slope * (values - clipped)


def reparameterize(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """z = mean + sigma * eps, eps ~ N(0, I): a sample that gradients can flow through."""
    return mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)


def build_vae(config: VAEConfig, backbone_weights: str | Path | None = None, pretrained: bool = True) -> VariationalAutoencoder:
    """A VAE ready to train: the Lite0 backbone starts from the shipped ImageNet weights
    (``pretrained``), a B1 backbone from ``backbone_weights`` if given (no B1 weights ship)."""
    vae = VariationalAutoencoder(config)
    if config.backbone == "efficientnet-lite0" and (pretrained or backbone_weights is not None):
        source = load_efficientnet_lite0(backbone_weights)
        vae.encoder.backbone.load_state_dict(source.state_dict(), strict=False)
    elif config.backbone == "efficientnet-b1" and backbone_weights is not None:
        source = efficientnet_b("b1", backbone_weights)
        vae.encoder.backbone.load_state_dict(source.state_dict(), strict=False)
    vae.encoder.backbone.requires_grad_(True)
    return vae
