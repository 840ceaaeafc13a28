"""The 5,000 handwritten digits that Debian's ``opencv-doc`` ships, as a small offline GAN dataset.

``/usr/share/doc/opencv-doc/examples/data/digits.png`` (OpenCV's k-NN/SVM sample data, BSD
licence; ``apt-get install opencv-doc``) is one 2000 x 1000 grey sheet of 20 x 20 cells, 50 rows
by 100 columns: rows 0-4 hold 500 zeros, rows 5-9 500 ones, and so on. The digits are white on
black, about 15 px tall, much like MNIST's. :func:`load_opencv_digits` cuts the cells and resizes
each whole cell (Lanczos), so the digit keeps its place and margin at any size.

Example:
    >>> digits, labels = load_opencv_digits(size=32)      # doctest: +SKIP
    >>> digits.shape, digits.dtype, labels[:3]            # doctest: +SKIP
    ((5000, 32, 32, 1), dtype('uint8'), array([0, 0, 0]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimvision.data.style_images import OPENCV_DOC_DATA
from slimvision.errors import InputError, MissingAssetError

DIGITS_PNG = OPENCV_DOC_DATA / "digits.png"
CELL = 20
SHEET_SHAPE = (1000, 2000)  # (rows, columns) of pixels: 50 x 100 cells
CLASSES = 10


def load_opencv_digits(path: str | Path | None = None, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The digits as (5000, size, size, 1) uint8 (white on black) and their labels (5000,) int64.

    Args:
        path: the sheet; ``None`` is opencv-doc's installed copy.
        size: side of each returned image (the cells are 20 px).

    Raises:
        MissingAssetError: no path given and opencv-doc is not installed.
        InputError: the file is not a 2000 x 1000 grey sheet.
    """
    from PIL import Image

    if size < 8:
        raise InputError("size", f"digits are drawn at least 8 px wide, got {size}")
    if path is None:
        if not DIGITS_PNG.is_file():
            raise MissingAssetError(f"{DIGITS_PNG} ships in Debian's opencv-doc package, which is not "
                                    "installed; run: apt-get install opencv-doc")
        path = DIGITS_PNG
    path = Path(path)
    try:
        with Image.open(path) as opened:
            # The size is known from the header: a wrong one is refused before any pixel is
            # decoded (a huge file named digits.png would otherwise be decoded whole first).
            if opened.size != SHEET_SHAPE[::-1]:
                raise InputError(path, f"is {opened.size[0]}x{opened.size[1]}, expected OpenCV's "
                                       f"{SHEET_SHAPE[1]}x{SHEET_SHAPE[0]} sheet of 20 px digits")
            sheet = np.asarray(opened.convert("L"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise InputError(path, f"cannot read the digit sheet: {error}") from None
    rows, columns = SHEET_SHAPE[0] // CELL, SHEET_SHAPE[1] // CELL
    cells = sheet.reshape(rows, CELL, columns, CELL).transpose(0, 2, 1, 3).reshape(-1, CELL, CELL)
    if size != CELL:
        cells = np.stack([np.asarray(Image.fromarray(cell).resize((size, size), Image.LANCZOS)) for cell in cells])
    labels = np.repeat(np.arange(CLASSES), len(cells) // CLASSES)
    return cells[..., None], labels
