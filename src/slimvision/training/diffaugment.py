"""Differentiable augmentation for GAN training on small datasets (DiffAugment).

Zhao et al. 2020 ("Differentiable Augmentation for Data-Efficient GAN Training") showed that a
discriminator trained on a few thousand images memorises them and its feedback collapses; the
cure is to augment *both* real and generated images, in both the discriminator's and the
generator's step, with operations that gradients pass through, so the generator is still pushed
towards un-augmented images. Their three policies, as used here (images in [-1, 1]):

* ``color``: per image, add a brightness offset in [-0.5, 0.5), scale saturation (distance from
  the pixel's channel mean) by [0, 2) and contrast (distance from the image mean) by [0.5, 1.5);
* ``translation``: shift by up to 1/8 of the side in each direction, filling with zeros;
* ``cutout``: zero one square of half the side at a random place.

Randomness comes from torch's global generator, which checkpoints save, so resumed runs repeat.

Example:
    >>> import torch
    >>> augment = DiffAugment("color,translation,cutout")
    >>> augment(torch.rand(4, 3, 32, 32) * 2 - 1).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import torch

from slimvision.errors import ConfigError

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _color(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
    batch = x.shape[0]
    x = x + (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(batch, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
    batch, _, height, width = x.shape
    reach_y, reach_x = int(height * TRANSLATION_RATIO + 0.5), int(width * TRANSLATION_RATIO + 0.5)
    shift_y = torch.randint(-reach_y, reach_y + 1, (batch, 1, 1), device=x.device)
    shift_x = torch.randint(-reach_x, reach_x + 1, (batch, 1, 1), device=x.device)
    rows = torch.arange(height, device=x.device).view(1, height, 1) - shift_y  # source row of each output row
    cols = torch.arange(width, device=x.device).view(1, 1, width) - shift_x
    inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).unsqueeze(1)  # (B, 1, H, W)
    flat = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)  # (B, H, W)
    index = flat.flatten(1).unsqueeze(1).expand(-1, x.shape[1], -1)  # (B, C, H*W)
    moved = x.flatten(2).gather(2, index).view_as(x)
    return moved * inside


def _cutout(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
    batch, _, height, width = x.shape
    size_y, size_x = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
    # The square's centre may sit anywhere, so near the border only part of it lands on the image.
    top = torch.randint(0, height + (1 - size_y % 2), (batch, 1, 1), device=x.device) - size_y // 2
    left = torch.randint(0, width + (1 - size_x % 2), (batch, 1, 1), device=x.device) - size_x // 2
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    hole = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)  # (B, H, W)
    return x * (~hole).unsqueeze(1).to(x.dtype)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


class DiffAugment:
    """Applies a comma-separated list of policies (see the module docstring) in the order given.

    An empty policy string is the identity, so a run can switch augmentation off by config.
    """

    def __init__(self, policy: str) -> None:
        self.names = parse_policy(policy)

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same
        for name in self.names:
            images = POLICIES[name](images)
        return images


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ("color", "translation"); unknown names are a ConfigError."""
    names = tuple(part.strip() for part in policy.split(",") if part.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ConfigError(f"unknown DiffAugment policy {', '.join(map(repr, unknown))}; "
                          f"choose from {', '.join(POLICIES)}")
    return names
