"""tile_grid geometry and run_tiled blending."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slimvision.inference.style_tiling import _core_of
from slimvision.inference.tiling import run_tiled, tile_grid

#: The shipped transformers' size multiple (their cards; tests/inference/test_style.py checks it).
SIZE_MULTIPLE = 4

GRIDS = [  # (height, width, tile_size, overlap)
    (300, 500, 128, 32),
    (257, 129, 64, 16),
    (1000, 130, 128, 10),
    (129, 128, 128, 0),
    (96, 128, 128, 16),  # a single tile
    (64, 64, 128, 63),
    (512, 512, 256, 64),
]


def _spans_along(tiles, axis):
    key = (lambda t: (t.top, t.bottom)) if axis == 0 else (lambda t: (t.left, t.right))
    return sorted({key(t) for t in tiles})


@pytest.mark.parametrize("height, width, tile_size, overlap", GRIDS)
def test_tiles_cover_every_pixel_and_cores_partition(height, width, tile_size, overlap):
    tiles = list(tile_grid(height, width, tile_size, overlap))
    covered = np.zeros((height, width), dtype=np.int32)
    cores = np.zeros((height, width), dtype=np.int32)
    for tile in tiles:
        assert 0 <= tile.top < tile.bottom <= height and 0 <= tile.left < tile.right <= width
        assert tile.bottom - tile.top == min(tile_size, height)
        assert tile.right - tile.left == min(tile_size, width)
        assert tile.top <= tile.core_top < tile.core_bottom <= tile.bottom
        assert tile.left <= tile.core_left < tile.core_right <= tile.right
        covered[tile.top:tile.bottom, tile.left:tile.right] += 1
        cores[tile.core_top:tile.core_bottom, tile.core_left:tile.core_right] += 1
    assert covered.min() >= 1
    np.testing.assert_array_equal(cores, np.ones_like(cores))


@pytest.mark.parametrize("height, width, tile_size, overlap", GRIDS)
def test_neighbours_overlap_at_least_as_requested(height, width, tile_size, overlap):
    tiles = list(tile_grid(height, width, tile_size, overlap))
    for axis, length in ((0, height), (1, width)):
        spans = _spans_along(tiles, axis)
        assert spans[0][0] == 0 and spans[-1][1] == length
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end - start >= overlap
    rows, cols = len(_spans_along(tiles, 0)), len(_spans_along(tiles, 1))
    assert len(tiles) == rows * cols


@pytest.mark.parametrize("height, width, tile_size, overlap", [g for g in GRIDS if g[3] * 2 + 4 < g[2]])
@pytest.mark.parametrize("align", [2, 4, 8])
def test_aligned_grid_starts_on_the_stride(height, width, tile_size, overlap, align):
    tiles = list(tile_grid(height, width, tile_size, overlap, align))
    covered = np.zeros((height, width), dtype=np.int32)
    cores = np.zeros((height, width), dtype=np.int32)
    for tile in tiles:
        assert tile.top % align == 0 and tile.left % align == 0
        # Only the last tile of a row or column may be stretched (by < align) to reach the border.
        assert tile.bottom - tile.top <= min(tile_size, height) + (align - 1 if tile.bottom == height else 0)
        assert tile.right - tile.left <= min(tile_size, width) + (align - 1 if tile.right == width else 0)
        covered[tile.top:tile.bottom, tile.left:tile.right] += 1
        cores[tile.core_top:tile.core_bottom, tile.core_left:tile.core_right] += 1
    assert covered.min() >= 1
    np.testing.assert_array_equal(cores, np.ones_like(cores))
    for axis in (0, 1):
        spans = _spans_along(tiles, axis)
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end - start >= overlap


def test_aligned_grid_moves_unaligned_starts():
    assert [t.left for t in tile_grid(120, 260, 136, 34)] == [0, 62, 124]
    assert [t.left for t in tile_grid(120, 260, 136, 34, 4)] == [0, 60, 124]
    assert [(t.top, t.bottom) for t in tile_grid(150, 100, 136, 34, 4)] == [(0, 136), (12, 150)]


def test_aligned_run_tiled_reproduces_the_input():
    image = np.random.default_rng(3).random((150, 262, 3), dtype=np.float32)
    out = run_tiled(lambda tile: tile, image, 64, 16, align=4)
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-6)


def test_grid_is_row_major():
    tiles = list(tile_grid(300, 500, 128, 32))
    assert [(t.top, t.left) for t in tiles] == sorted((t.top, t.left) for t in tiles)


@pytest.mark.parametrize("tile_size, overlap", [(128, 64), (128, 100), (64, 32), (10, 5)])
def test_overlap_of_half_a_tile_or_more_is_an_error(tile_size, overlap):
    with pytest.raises(ValueError, match="overlap"):
        list(tile_grid(500, 500, tile_size, overlap))


@pytest.mark.parametrize("height, width, tile_size, overlap", [(300, 500, 128, 32), (257, 129, 64, 16)])
def test_identity_reproduces_the_input(height, width, tile_size, overlap):
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    calls = []
    out = run_tiled(lambda tile: (calls.append(tile.shape), tile)[1], image, tile_size, overlap)
    assert len(calls) == len(list(tile_grid(height, width, tile_size, overlap))) > 1
    assert out.shape == image.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, image, rtol=0, atol=1e-6)  # exact up to float32 rounding (~2e-7)


def test_output_channels_may_differ_from_input():
    image = np.random.default_rng(1).random((200, 150, 3), dtype=np.float32)
    out = run_tiled(lambda tile: tile.sum(axis=2, keepdims=True), image, 64, 16)
    assert out.shape == (200, 150, 1)
    np.testing.assert_allclose(out[..., 0], image.sum(axis=2), atol=1e-5)


@pytest.mark.parametrize("overlap", [8, 16, 32])
def test_constant_offsets_per_tile_blend_smoothly(overlap):
    height, width, tile_size = 300, 420, 128
    image = np.zeros((height, width, 1), dtype=np.float32)
    rng = np.random.default_rng(overlap)
    offsets = iter(rng.choice([0.0, 1.0], size=100))

    def fn(tile: np.ndarray) -> np.ndarray:
        return np.full_like(tile, next(offsets))

    out = run_tiled(fn, image, tile_size, overlap)[..., 0]
    assert 0.0 <= out.min() and out.max() <= 1.0  # a convex combination of the tiles
    # A hard seam would jump by 1 between two pixels; the raised-cosine ramp's steepest slope is
    # pi / (2 * overlap) per pixel; measured jumps are about 0.55 of that.
    bound = math.pi / (2 * overlap)
    jumps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert 0 < jumps <= bound, (jumps, bound)


def test_tile_value_is_kept_away_from_overlaps():
    image = np.zeros((100, 300, 1), dtype=np.float32)
    values = iter([1.0, 2.0, 3.0])
    out = run_tiled(lambda tile: np.full_like(tile, next(values)), image, 128, 16)[..., 0]
    tiles = list(tile_grid(100, 300, 128, 16))
    assert len(tiles) == 3
    # Left of the second tile only the first contributes, right of the second-to-last only the last.
    np.testing.assert_array_equal(out[:, :tiles[1].left], 1.0)
    np.testing.assert_array_equal(out[:, tiles[1].right:], 3.0)


def test_single_tile_is_one_call_on_the_whole_image():
    image = np.random.default_rng(2).random((96, 128, 3), dtype=np.float32)
    seen = []

    def fn(tile):
        seen.append(tile)
        return tile * 2

    out = run_tiled(fn, image, 128, 16)
    assert len(seen) == 1 and seen[0] is image
    np.testing.assert_array_equal(out, image * 2)


def test_progress_counts_every_tile():
    image = np.zeros((300, 500, 3), dtype=np.float32)
    reports = []
    run_tiled(lambda tile: tile, image, 128, 32, progress=lambda done, total: reports.append((done, total)))
    total = len(list(tile_grid(300, 500, 128, 32)))
    assert reports == [(i, total) for i in range(1, total + 1)]


def test_aligned_grid_has_no_duplicate_tiles():
    for length in (137, 138, 139, 3126):
        tile = 136 if length < 1000 else 3124
        starts = [t.top for t in tile_grid(length, 100, tile, 34, 4)]
        assert len(set(starts)) == len(starts), (length, starts)


def test_a_side_a_few_px_longer_than_a_tile_is_one_stretched_tile():
    # The two starts (0 and 1) round to the same grid point: one tile, stretched by < align.
    assert [(t.top, t.bottom) for t in tile_grid(139, 100, 136, 34, 4)] == [(0, 139)]
    assert [(t.top, t.bottom) for t in tile_grid(140, 100, 136, 34, 4)] == [(0, 136), (4, 140)]


@pytest.mark.parametrize("tile_size, overlap, align", [(8, 3, 5), (8, 3, 8), (10, 4, 6), (64, 16, 0)])
def test_tiles_that_cannot_advance_are_a_value_error(tile_size, overlap, align):
    with pytest.raises(ValueError, match="align"):
        list(tile_grid(500, 500, tile_size, overlap, align))


@pytest.mark.parametrize("height, width", [(150, 200), (256, 256), (120, 260), (137, 301), (400, 152)])
def test_cores_pool_the_padded_activation_of_an_untiled_run(height, width):
    """At every network scale, tile cores cover the untiled run's padded activation exactly once."""
    for scale in (1, 1 / 2, 1 / 4):
        padded_h = -(-height // SIZE_MULTIPLE) * SIZE_MULTIPLE
        padded_w = -(-width // SIZE_MULTIPLE) * SIZE_MULTIPLE
        untiled = np.zeros((round(padded_h * scale), round(padded_w * scale)), dtype=np.int32)
        for tile in tile_grid(height, width, 136, 34, SIZE_MULTIPLE):
            tile_h = -(-(tile.bottom - tile.top) // SIZE_MULTIPLE) * SIZE_MULTIPLE
            tile_w = -(-(tile.right - tile.left) // SIZE_MULTIPLE) * SIZE_MULTIPLE
            activation = (round(tile_h * scale), round(tile_w * scale))
            top, bottom, left, right = _core_of(tile, scale, activation, (height, width))
            assert 0 <= top < bottom <= activation[0] and 0 <= left < right <= activation[1]
            # Tile starts are on the stride grid, so the tile's activation sits at start * scale.
            row, col = round(tile.top * scale), round(tile.left * scale)
            untiled[row + top:row + bottom, col + left:col + right] += 1
        np.testing.assert_array_equal(untiled, np.ones_like(untiled), err_msg=f"scale {scale}")
