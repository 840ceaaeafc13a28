"""Pixel helpers: the two roundings to uint8, value conversions, the centre crop and the grids."""

from __future__ import annotations

import numpy as np

from slimvision.io.pixels import (
    centre_square,
    comparison_grid,
    grey_grid,
    rint_to_uint8,
    tile,
    to_float,
    to_pixels,
    to_uint8,
)


def test_the_two_roundings_differ_only_on_exact_halves():
    halves = np.array([0.5, 1.5, 2.5, 3.5], np.float32) / np.float32(255.0)
    assert to_uint8(halves).tolist() == [1, 2, 3, 4]  # half up
    assert rint_to_uint8(halves).tolist() == [0, 2, 2, 4]  # half to even
    values = np.random.default_rng(0).random(1000).astype(np.float32)
    off_halves = np.abs((values * np.float32(255.0)) % 1 - 0.5) > 1e-3
    np.testing.assert_array_equal(to_uint8(values)[off_halves], rint_to_uint8(values)[off_halves])
    assert to_uint8(np.array([-1.0, 2.0], np.float32)).tolist() == [0, 255]
    assert rint_to_uint8(np.array([-1.0, 2.0], np.float32)).tolist() == [0, 255]


def test_to_float_and_to_pixels_map_the_ranges():
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [0.0, 1.0]
    drawn = np.array([-1.0, 0.0, 1.0], np.float32).reshape(1, 1, 1, 3)  # (N, C=1, R=1, R=3)
    pixels = to_pixels(drawn)
    assert pixels.shape == (1, 1, 3, 3) and pixels[0, 0, :, 0].tolist() == [0, 128, 255]
    assert to_pixels(drawn, rgb=False).shape == (1, 1, 3, 1)


def test_centre_square_crops_the_middle_and_resizes():
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, 5:15] = 200  # the centre 10 x 10
    assert (centre_square(image, 10) == 200).all()
    assert centre_square(image, 4).shape == (4, 4, 3)


def test_tile_places_pictures_row_by_row_on_white_and_the_grey_grids_follow():
    pictures = np.stack([np.full((2, 2, 3), value, np.uint8) for value in (10, 20, 30)])
    grid = tile(pictures, columns=2, gap=1)
    assert grid.shape == (7, 7, 3)
    assert grid[1, 1, 0] == 10 and grid[1, 4, 0] == 20 and grid[4, 1, 0] == 30
    assert grid[4, 4, 0] == 255 and grid[0, 0, 0] == 255  # the empty cell and the gap stay white
    grey = np.full((2, 3, 3), 0.5, np.float32)
    assert grey_grid(grey, columns=2).shape == (7, 12, 3)
    rows = comparison_grid([grey, grey], gap=1)
    assert rows.shape == (9, 9, 3) and rows[1, 1].tolist() == [128, 128, 128]
