"""The sliced colour EMD: zero for the same palette, the closed form for a uniform tint, and it
sees joint colour that per-channel histograms miss."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.metrics.colour import DIRECTIONS, colour_emd


def test_the_same_palette_in_another_layout_scores_zero() -> None:
    image = np.random.default_rng(0).random((16, 16, 3))
    shuffled = np.random.default_rng(1).permutation(image.reshape(-1, 3)).reshape(image.shape)
    assert colour_emd(image, image) == 0.0
    assert colour_emd(image, shuffled) == pytest.approx(0.0, abs=1e-12)


def test_a_uniform_tint_moves_every_projection_by_its_component() -> None:
    image = np.random.default_rng(2).random((12, 10, 3)) * 0.5
    shift = np.array([0.2, -0.1, 0.05])
    expected = np.abs(DIRECTIONS @ shift).mean()  # each 1-D distribution just translates
    assert colour_emd(image, image + shift) == pytest.approx(expected)
    assert colour_emd(image + shift, image) == pytest.approx(expected)


def test_joint_colour_differences_that_per_channel_histograms_miss_are_seen() -> None:
    red_green = np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]])  # red + green pixels
    yellow_black = np.array([[[1.0, 1.0, 0.0]], [[0.0, 0.0, 0.0]]])  # yellow + black: same R, G, B histograms
    for channel in range(3):
        assert sorted(red_green[..., channel].ravel()) == sorted(yellow_black[..., channel].ravel())
    assert colour_emd(red_green, yellow_black) > 0.2


def test_images_of_different_sizes_compare_by_quantiles() -> None:
    rng = np.random.default_rng(3)
    image = rng.random((40, 40, 3))
    assert colour_emd(image, image[::2, ::2]) < 0.02  # a subsample: the same distribution, nearly
    assert colour_emd(image, image[::2, ::2] * 0.5) > 0.1


def test_non_images_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        colour_emd(np.zeros((4, 4)), np.zeros((4, 4)))
