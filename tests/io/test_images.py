"""Tests for slimvision.io.images: every bad input gives a one-line error, every format loads right.

All fixtures are generated inside tmp_path with PIL/numpy; nothing is downloaded.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from slimvision.errors import InputError, OutputError
from slimvision.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    find_images,
    load_image,
    save_image,
    to_rgb_array,
)

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _gradient(height: int = 32, width: int = 48) -> np.ndarray:
    """A smooth RGB test image (smooth so lossy codecs stay close)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 128)], axis=2
    ).astype(np.uint8)


def _assert_input_error(err: pytest.ExceptionInfo[InputError], path: Path, problem: str) -> None:
    message = str(err.value)
    assert message == f"{path}: {problem}"
    assert "\n" not in message
    assert "Traceback" not in message


def _assert_rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*shape, 3)
    assert array.flags["C_CONTIGUOUS"]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_png16_rgb(path: Path, pixels: np.ndarray) -> None:
    """Write a 48-bit (16 bits per channel) RGB PNG by hand, byte by byte."""
    height, width, _ = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------
# Bad inputs: one-line errors naming the file
# ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "file not found")


def test_directory_given(tmp_path: Path) -> None:
    path = tmp_path / "photos.png"
    path.mkdir()
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "is a directory, not an image file")


def test_zero_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "file is empty (0 bytes)")


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "not a recognised image (PNG, JPEG, WebP, BMP, TIFF, GIF)")


def test_unsupported_format_is_not_recognised(tmp_path: Path) -> None:
    path = tmp_path / "icon.png"  # A real image, but a format we do not claim to read.
    Image.new("RGB", (8, 8), "red").save(path, format="PPM")
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "not a recognised image (PNG, JPEG, WebP, BMP, TIFF, GIF)")


def test_truncated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "image data is truncated or corrupt")


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "image data is truncated or corrupt")


def test_truncation_detected_even_if_someone_enabled_load_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # Restored afterwards.


def test_1x1_image_below_min_side(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    with pytest.raises(InputError) as err:
        load_image(path, min_side=16)
    _assert_input_error(err, path, "image is 1x1; at least 16x16 pixels are needed")


def test_1x1_image_loads_by_default(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
    array = load_image(path)
    _assert_rgb(array, (1, 1))
    assert array[0, 0].tolist() == [10, 20, 30]


def test_huge_declared_size_rejected_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    # IHDR: 8-byte signature, 4-byte length, b"IHDR" (offset 12), width/height at 16..24, CRC 29..33.
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        load_image(path)  # Decoding 30000x30000 would need 2.7 GB; the header check stops it.
    _assert_input_error(
        err,
        path,
        "image is 30000x30000 = 900.0 MP, above the limit of 100.0 MP (raise max_pixels to allow it)",
    )


def test_max_pixels_parameter(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 10)).save(path)
    from slimvision.errors import ImageTooLargeError

    with pytest.raises(ImageTooLargeError, match=r"image is 20x10 = 200 pixels, above the limit of 199 pixels"):  # an InputError
        load_image(path, max_pixels=199)
    assert load_image(path, max_pixels=200).shape == (10, 20, 3)
    assert load_image(path, max_pixels=None).shape == (10, 20, 3)


def test_pil_global_limit_does_not_fire_before_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulates an image between PIL's own limit and ours: PIL must not refuse it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # A DecompressionBombWarning would fail the test.
        array = load_image(path)
    assert array.shape == (30, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # Restored.


def test_default_max_pixels_is_100_mp() -> None:
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)
    path.chmod(0)
    try:
        with pytest.raises(InputError) as err:
            load_image(path)
        _assert_input_error(err, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_denied_while_opening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can read anything, so simulate the error PIL gets from open() on an unreadable file.
    path = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(InputError) as err:
        load_image(path)
    _assert_input_error(err, path, "permission denied")


# ------------------------------------------------------------------------------------------
# Mode conversions
# ------------------------------------------------------------------------------------------


def test_cmyk_jpeg_pure_red(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)
    with Image.open(path) as check:
        assert check.mode == "CMYK"
    array = load_image(path)
    _assert_rgb(array, (16, 16))
    assert np.abs(array.astype(int) - [255, 0, 0]).max() <= 6


def test_16bit_grayscale_png_keeps_full_range(tmp_path: Path) -> None:
    path = tmp_path / "gray16.png"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    array = load_image(path)
    _assert_rgb(array, (1, 3))
    assert array[0, :, 0].tolist() == [0, 128, 255]
    assert (array == array[:, :, :1]).all()  # Gray stays gray.


def test_16bit_rgb_png(tmp_path: Path) -> None:
    path = tmp_path / "rgb48.png"
    pixels = np.array([[[65535, 32768, 0], [0, 65535, 257 * 10]]], dtype=np.uint16)
    _write_png16_rgb(path, pixels)
    array = load_image(path)
    _assert_rgb(array, (1, 2))
    assert array.tolist() == [[[255, 128, 0], [0, 255, 10]]]


def test_16bit_big_endian_tiff(tmp_path: Path) -> None:
    path = tmp_path / "gray16.tif"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(path)
    assert load_image(path)[0, :, 0].tolist() == [0, 128, 255]


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))  # 0: black, 1: blue.
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    image.save(path, transparency=0)
    array = load_image(path)
    assert array.tolist() == [[[255, 255, 255], [0, 0, 255]]]  # Transparent black -> white.


def test_palette_png_with_partial_alpha(tmp_path: Path) -> None:
    path = tmp_path / "palette_alpha.png"
    image = Image.new("P", (1, 1), 0)
    image.putpalette([0, 0, 0] * 256)
    image.save(path, transparency=b"\x80")  # Entry 0 is black at alpha 128.
    assert abs(int(load_image(path)[0, 0, 0]) - 127) <= 1


def test_rgba_half_transparent_black_on_white(tmp_path: Path) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 128)).save(path)
    array = load_image(path)
    assert np.abs(array.astype(int) - 128).max() <= 1


def test_rgba_opaque_and_transparent(tmp_path: Path) -> None:
    path = tmp_path / "rgba2.png"
    pixels = np.array([[[200, 100, 50, 255], [200, 100, 50, 0]]], dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(path)
    assert load_image(path).tolist() == [[[200, 100, 50], [255, 255, 255]]]


def test_la_composited(tmp_path: Path) -> None:
    path = tmp_path / "la.png"
    pixels = np.array([[[100, 255], [0, 0], [0, 128]]], dtype=np.uint8)
    Image.fromarray(pixels, "LA").save(path)
    array = load_image(path)
    assert array[0, :, 0].tolist()[:2] == [100, 255]
    assert abs(int(array[0, 2, 0]) - 127) <= 1
    assert (array == array[:, :, :1]).all()


def test_grayscale_and_1bit(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (3, 2), 77).save(gray)
    assert load_image(gray).tolist() == [[[77] * 3] * 3] * 2
    mono = tmp_path / "mono.bmp"
    Image.new("1", (3, 2), 1).save(mono)
    assert (load_image(mono) == 255).all()


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV"])
def test_other_colour_spaces(mode: str) -> None:
    source = Image.new("RGB", (4, 4), (200, 30, 60))
    array = to_rgb_array(source.convert(mode))
    assert np.abs(array.astype(int) - [200, 30, 60]).max() <= 8


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # Left half red, right half blue.
    pixels[:, 20:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "Rotate 90 CW to display".
    image.save(path, exif=exif, quality=95)
    array = load_image(path)
    _assert_rgb(array, (40, 20))
    assert array[5, 10].tolist()[0] > 200 and array[5, 10].tolist()[2] < 50  # Top: red.
    assert array[35, 10].tolist()[2] > 200 and array[35, 10].tolist()[0] < 50  # Bottom: blue.


def test_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    blue = Image.new("RGB", (8, 8), (0, 0, 255))
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    array = load_image(path)
    _assert_rgb(array, (8, 8))
    assert (array == [255, 0, 0]).all()


# ------------------------------------------------------------------------------------------
# Round trips through save_image
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "tolerance"),
    [(".png", 0), (".bmp", 0), (".tif", 0), (".tiff", 0), (".webp", 12), (".jpg", 12), (".JPEG", 12)],
)
def test_round_trip(tmp_path: Path, suffix: str, tolerance: int) -> None:
    path = tmp_path / f"image{suffix}"
    pixels = _gradient()
    assert save_image(pixels, path) == path
    array = load_image(path)
    _assert_rgb(array, pixels.shape[:2])
    assert np.abs(array.astype(int) - pixels.astype(int)).max() <= tolerance
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # No temp file left.


def test_save_grayscale_2d(tmp_path: Path) -> None:
    path = save_image(np.full((4, 5), 42, dtype=np.uint8), tmp_path / "g.png")
    assert (load_image(path) == 42).all()


def test_save_unknown_suffix_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "out.xyz"
    with pytest.raises(OutputError) as err:
        save_image(_gradient(), path)
    assert str(err.value) == (
        f"{path}: unsupported output format '.xyz'; use .png, .jpg, .webp, .bmp or .tiff"
    )
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_existing_and_input(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    save_image(_gradient(), path)
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        save_image(_gradient(), path)
    with pytest.raises(OutputError, match="is an input file"):
        save_image(_gradient(), path, overwrite=True, protected=[path])
    save_image(np.zeros((2, 2, 3), np.uint8), path, overwrite=True)
    assert load_image(path).shape == (2, 2, 3)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (np.zeros((4, 4, 4), np.uint8), "HxW or HxWx3"),
        (np.zeros((4,), np.uint8), "HxW or HxWx3"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
    ],
)
def test_save_validates_array(tmp_path: Path, array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_image(array, tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_save_validates_quality(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quality"):
        save_image(_gradient(), tmp_path / "out.jpg", quality=0)
    with pytest.raises(ValueError, match="png_level"):
        save_image(_gradient(), tmp_path / "out.png", png_level=10)
    assert list(tmp_path.iterdir()) == []


def test_png_level_trades_size_for_speed_losslessly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = np.clip(_gradient(128, 128).astype(int) + rng.integers(-8, 9, (128, 128, 3)), 0, 255).astype(np.uint8)
    sizes = {}
    for level in (0, 1, 9):
        path = save_image(image, tmp_path / f"level{level}.png", png_level=level)
        assert np.array_equal(load_image(path), image)
        sizes[level] = path.stat().st_size
    assert sizes[0] > sizes[1] >= sizes[9]


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "PNG"), (".png", "JPEG"), (".webp", "BMP"), (".gif", "TIFF")])
def test_misnamed_files_still_load(tmp_path: Path, suffix: str, fmt: str) -> None:
    """The suffix is only a first guess: the content decides the format."""
    image = _gradient(32, 48)
    path = tmp_path / f"misnamed{suffix}"
    Image.fromarray(image).save(path, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    loaded = load_image(path)
    assert loaded.shape == (32, 48, 3)
    assert np.abs(loaded.astype(int) - image).max() <= (8 if fmt == "JPEG" else 0)


# ------------------------------------------------------------------------------------------
# to_rgb_array on in-memory images
# ------------------------------------------------------------------------------------------


def test_arrays_of_each_kind() -> None:
    gray = np.array([[0, 255]], dtype=np.uint8)
    assert to_rgb_array(gray).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    rgb16 = np.full((1, 1, 3), 65535, dtype=np.uint16)
    assert to_rgb_array(rgb16).tolist() == [[[255, 255, 255]]]
    floats = np.array([[[0.0, 0.5, 1.0]]], dtype=np.float32)
    assert to_rgb_array(floats).tolist() == [[[0, 128, 255]]]
    rgba = np.array([[[0, 0, 0, 0], [10, 20, 30, 255]]], dtype=np.uint8)
    assert to_rgb_array(rgba).tolist() == [[[255, 255, 255], [10, 20, 30]]]
    gray_alpha = np.array([[[0, 0]]], dtype=np.uint8)
    assert to_rgb_array(gray_alpha).tolist() == [[[255, 255, 255]]]
    mask = np.array([[True, False]])
    assert to_rgb_array(mask)[0, :, 0].tolist() == [255, 0]


def test_uint8_rgb_array_is_returned_without_copy_when_contiguous() -> None:
    pixels = _gradient()
    assert to_rgb_array(pixels) is pixels
    view = pixels[:, ::2]
    result = to_rgb_array(view)
    assert result.flags["C_CONTIGUOUS"] and (result == view).all()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 2), 1.5), r"float image values must be in \[0, 1\], found \[1\.5, 1\.5\]"),
        (np.full((2, 2), np.nan), "NaN or infinite"),
        (np.zeros((2, 2), np.int64), "unsupported array dtype int64"),
        (np.zeros((2, 2, 5), np.uint8), r"got shape \(2, 2, 5\)"),
        (np.zeros((0, 3), np.uint8), "no pixels"),
    ],
)
def test_bad_arrays(array: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        to_rgb_array(array, name="frame 3")
    assert str(err.value).startswith("frame 3: ")


def test_pil_int32_and_float_modes() -> None:
    as_i = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert as_i.mode == "I"
    assert to_rgb_array(as_i)[0, :, 0].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32))
    assert to_rgb_array(wide)[0, :, 0].tolist() in ([0, 127, 255], [0, 128, 255])  # Stretched.
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert unit.mode == "F"
    assert to_rgb_array(unit)[0, :, 0].tolist() == [0, 128, 255]


def test_wrong_type() -> None:
    with pytest.raises(TypeError, match="expected a PIL image or a numpy array"):
        to_rgb_array([[0, 1]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# find_images
# ------------------------------------------------------------------------------------------


def test_find_images(tmp_path: Path) -> None:
    for name in ["b.PNG", "a.jpg", "c.txt", ".hidden.png", "sub/d.webp", ".cache/e.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    assert find_images(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b.PNG"]
    assert find_images(tmp_path, recursive=True) == [
        tmp_path / "a.jpg",
        tmp_path / "b.PNG",
        tmp_path / "sub" / "d.webp",
    ]
    assert ".gif" in IMAGE_SUFFIXES and ".tiff" in IMAGE_SUFFIXES


def test_find_images_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder not found"):
        find_images(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="is not a folder"):
        find_images(tmp_path / "file.png")
