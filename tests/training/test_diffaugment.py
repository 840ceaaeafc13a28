"""DiffAugment: each policy does what it says, gradients pass through, bad policies are refused."""

from __future__ import annotations

import pytest
import torch

from slimvision.errors import ConfigError
from slimvision.training.diffaugment import DiffAugment, parse_policy


def batch(count: int = 6, side: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_translation_moves_whole_images_and_fills_with_zeros():
    torch.manual_seed(3)
    images = batch()
    moved = DiffAugment("translation")(images)
    shifts = []
    for original, shifted in zip(images, moved):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(shifted, _shift(original, dy, dx))]
        assert len(matches) == 1                                    # a pure shift of at most 1/8 of the side
        shifts += matches
    assert len(set(shifts)) > 1                                     # each image draws its own shift


def _shift(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(image)
    side = image.shape[-1]
    out[:, max(dy, 0):side + min(dy, 0), max(dx, 0):side + min(dx, 0)] = \
        image[:, max(-dy, 0):side + min(-dy, 0), max(-dx, 0):side + min(-dx, 0)]
    return out


def test_cutout_zeroes_one_square_of_at_most_half_the_side():
    torch.manual_seed(1)
    images = batch(count=20) + 3.0                                  # no pixel is zero before
    cut = DiffAugment("cutout")(images)
    for original, holed in zip(images, cut):
        hole = (holed == 0).all(dim=0)
        assert torch.equal(holed[:, ~hole], original[:, ~hole])
        rows, cols = hole.any(dim=1).nonzero().flatten(), hole.any(dim=0).nonzero().flatten()
        assert 1 <= len(rows) <= 8 and 1 <= len(cols) <= 8
        assert hole.sum() == len(rows) * len(cols)                  # a rectangle (a square clipped by the border)


def test_color_changes_each_image_by_its_own_amounts():
    torch.manual_seed(0)
    images = batch().expand(2, -1, -1, -1, -1).reshape(12, 3, 16, 16)   # every image twice
    coloured = DiffAugment("color")(images)
    means = coloured.mean(dim=(1, 2, 3))
    assert not torch.allclose(means[:6], means[6:])                 # the same image, different draws


def test_gradients_reach_the_input_and_an_empty_policy_is_the_identity():
    images = batch().requires_grad_()
    DiffAugment("color,translation,cutout")(images).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not DiffAugment(" ") and DiffAugment("")(images) is images


def test_unknown_policies_are_refused_by_name():
    assert parse_policy("color, cutout") == ("color", "cutout")
    with pytest.raises(ConfigError, match="'flip'"):
        parse_policy("color,flip")
