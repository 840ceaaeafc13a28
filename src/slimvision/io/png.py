"""A fast PNG writer for 8-bit RGB and gray images.

Pillow picks a filter per row by trying all five (libpng's heuristic), which is most of its
encode time at low zlib levels: 38 ms for a 512x512 painting at level 1 on our 2-core box.
Applying the "Up" filter to every row in one NumPy subtraction and compressing with zlib's
run-length strategy takes 17 ms, for files about 4% larger than Pillow's level 1 (9% larger
than its default level 6). Stylized images are noisy textures, where smarter filtering buys
little.

Example:
    >>> import numpy as np
    >>> data = encode_png(np.zeros((4, 6, 3), np.uint8))
    >>> data[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP_FILTER = 2
_COLOUR_TYPE = {2: 0, 3: 2}  # array rank -> PNG colour type (0 gray, 2 RGB)


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """PNG bytes of an (H, W) or (H, W, 3) uint8 array: Up filter, run-length zlib at ``level``."""
    if image.dtype != np.uint8 or image.ndim not in _COLOUR_TYPE or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"encode_png takes (H, W) or (H, W, 3) uint8, got {image.dtype} {image.shape}")
    if not 0 <= level <= 9:
        raise ValueError(f"zlib level must be between 0 and 9, got {level}")
    height, width = image.shape[:2]
    rows = image.reshape(height, -1)
    scanlines = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    scanlines[:, 0] = _UP_FILTER
    scanlines[0, 1:] = rows[0]  # the row above the first is taken as zeros
    np.subtract(rows[1:], rows[:-1], out=scanlines[1:, 1:])  # uint8 wraps modulo 256, as PNG wants
    compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    pixels = compressor.compress(scanlines.data) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[image.ndim], 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)
