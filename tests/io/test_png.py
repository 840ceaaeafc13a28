"""The fast PNG writer: lossless, standard (Pillow reads it), and what it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from slimvision.io.images import FAST_PNG_MAX_LEVEL, load_image, save_image
from slimvision.io.png import encode_png


def _noisy(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    ramp = np.linspace(0, 255, width)[None, :] if channels is None else np.linspace(0, 255, width)[None, :, None]
    return np.clip(ramp + rng.normal(0, 20, shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (5, 1, 3), (37, 53, 3), (64, 48, None), (1, 9, None)])
@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_round_trip_through_pillow(shape, level):
    image = _noisy(shape[0], shape[1], shape[2])
    data = encode_png(image, level)
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.format == "PNG" and decoded.mode == ("RGB" if image.ndim == 3 else "L")
        decoded.load()  # checks the CRCs and the zlib stream
        np.testing.assert_array_equal(np.asarray(decoded), image)


def test_wrapping_differences_survive():
    """Rows going from 255 to 0 and back: the Up filter's uint8 differences wrap modulo 256."""
    image = np.zeros((6, 4, 3), np.uint8)
    image[::2] = 255
    with Image.open(io.BytesIO(encode_png(image))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), image)


def test_size_is_close_to_pillows():
    image = _noisy(128, 128)
    ours = len(encode_png(image, 1))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    assert ours < 1.25 * buffer.tell()


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros(4, np.uint8)])
def test_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="encode_png takes"):
        encode_png(bad)
    with pytest.raises(ValueError, match="zlib level"):
        encode_png(np.zeros((2, 2, 3), np.uint8), 10)


@pytest.mark.parametrize("level", [1, FAST_PNG_MAX_LEVEL, FAST_PNG_MAX_LEVEL + 1, 9])
def test_save_image_uses_either_writer_losslessly(tmp_path, level):
    image = _noisy(40, 30)
    path = save_image(image, tmp_path / f"l{level}.png", png_level=level)
    np.testing.assert_array_equal(load_image(path), image)
    gray = _noisy(20, 10, None)
    gray_path = save_image(gray, tmp_path / f"g{level}.png", png_level=level)
    np.testing.assert_array_equal(load_image(gray_path), np.repeat(gray[..., None], 3, axis=2))
