"""OpenCV's digit sheet: cells in reading order, labels by row block, clear errors, the CLI writer."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slimvision.data.digits import load_opencv_digits
from slimvision.errors import InputError


@pytest.fixture()
def sheet(tmp_path):
    """A sheet in digits.png's layout where every cell is filled with its own index mod 251."""
    cells = (np.arange(5000) % 251).astype(np.uint8).reshape(50, 100)
    path = tmp_path / "digits.png"
    Image.fromarray(np.kron(cells, np.ones((20, 20), np.uint8))).save(path)
    return path


def test_cells_come_in_reading_order_with_labels_by_block_of_five_rows(sheet):
    digits, labels = load_opencv_digits(sheet, size=20)
    assert digits.shape == (5000, 20, 20, 1) and digits.dtype == np.uint8
    assert [int(digits[i, 0, 0, 0]) for i in (0, 1, 100, 4999)] == [0, 1, 100, 4999 % 251]
    assert labels[0] == 0 and labels[499] == 0 and labels[500] == 1 and labels[-1] == 9
    resized, _ = load_opencv_digits(sheet, size=32)
    assert resized.shape == (5000, 32, 32, 1) and int(resized[7, 16, 16, 0]) == 7


def test_a_sheet_of_the_wrong_size_is_refused_by_name(tmp_path):
    Image.new("L", (200, 100)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="small.png.*expected OpenCV's 2000x1000"):
        load_opencv_digits(tmp_path / "small.png")


def test_the_cli_writes_one_grey_png_per_digit_and_never_half_overwrites(sheet, tmp_path, capsys):
    from slimvision.cli.main import main

    out = tmp_path / "digits"
    assert main(["gan", "prepare-digits", "--sheet", str(sheet), "-o", str(out), "--size", "8"]) == 0
    written = sorted(out.iterdir())
    assert len(written) == 5000 and written[0].name == "digit0_0000.png"
    assert np.asarray(Image.open(out / "digit9_4999.png")).shape == (8, 8)
    (out / "digit0_0000.png").write_bytes(b"mine")
    assert main(["gan", "prepare-digits", "--sheet", str(sheet), "-o", str(out), "--size", "8"]) != 0
    assert "exists" in capsys.readouterr().err and (out / "digit0_0000.png").read_bytes() == b"mine"


def test_a_huge_sheet_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    # 30000 x 30000 declared in a tiny PNG: the size check comes before any pixel is decoded.
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    huge = tmp_path / "digits.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)     # Pillow's global guard off: ours must hold
    decoded = []
    monkeypatch.setattr(Image.Image, "convert", lambda self, *a, **k: decoded.append(self) or self)
    with pytest.raises(InputError, match=r"digits.png: is 30000x30000, expected OpenCV's 2000x1000"):
        load_opencv_digits(huge)
    assert decoded == []
