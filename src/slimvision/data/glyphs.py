"""One glyph -> one fixed-length vector: the input every numeral map is trained and read with.

Training renders symbols and reading cuts them from pages; both end here, so a symbol looks
the same to the map whichever way it arrived. The ink is cropped to its bounding box, scaled
to fit a ``size`` x ``size`` square *keeping its aspect ratio* (an ``I`` stays a thin bar
instead of being stretched into a black square), centred, and area-averaged so thin strokes
keep grey values instead of vanishing.

Example:
    >>> mask = np.zeros((40, 12), bool); mask[2:38, 4:8] = True     # an "I"
    >>> glyph_vector(mask).shape
    (1024,)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Side of the square a glyph is scaled into: 32 x 32 = 1024 inputs per map node.
GLYPH_SIZE = 32
#: Empty pixels kept around the glyph inside the square, so strokes never touch its edge.
GLYPH_MARGIN = 2


def glyph_vector(ink: np.ndarray, size: int = GLYPH_SIZE, margin: int = GLYPH_MARGIN) -> np.ndarray:
    """(H, W) ink mask or ink-darkness map (ink > 0) -> (size * size,) float32 in [0, 1].

    Args:
        ink: bool mask, or float/uint8 ink amount (1 or 255 = full ink; *not* a grey page,
            where ink is dark: invert that first).
        size: side of the output square.
        margin: empty pixels on every side of the scaled glyph.

    Raises:
        ValueError: ``ink`` is not 2-D or holds no ink at all.
    """
    array = np.asarray(ink)
    if array.ndim != 2:
        raise ValueError(f"glyph_vector: expected a 2-D ink map, got shape {array.shape}")
    amount = array.astype(np.float32)
    if array.dtype == np.uint8:
        amount /= 255.0
    rows, cols = np.nonzero(amount > 0)
    if rows.size == 0:
        raise ValueError("glyph_vector: the glyph holds no ink")
    amount = amount[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    height, width = amount.shape
    inner = size - 2 * margin
    scale = inner / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    # BOX resampling is an area average: a 1-px stroke shrunk 4x becomes a 0.25 grey, not a gap.
    scaled = Image.fromarray(amount, mode="F").resize((new_w, new_h), Image.Resampling.BOX)
    square = np.zeros((size, size), np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square[top: top + new_h, left: left + new_w] = np.clip(np.asarray(scaled), 0.0, 1.0)
    return square.reshape(-1)


def glyph_image(vector: np.ndarray, size: int = GLYPH_SIZE) -> np.ndarray:
    """Inverse view of :func:`glyph_vector` for pictures: (size * size,) -> (size, size) uint8, ink dark."""
    square = np.clip(np.asarray(vector, np.float32).reshape(size, size), 0.0, 1.0)
    return (255.0 - 255.0 * square).round().astype(np.uint8)
