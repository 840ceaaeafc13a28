"""Image input and output that never surprises.

Every image slimvision reads comes back as an ``HxWx3`` ``uint8`` RGB array, whatever the file
held: EXIF rotation is applied, alpha is composited on white, palettes, CMYK, 16-bit and float
data are converted with their real range. Every way a file can be unusable (missing, empty, not
an image, truncated, too large, too small) raises a one-line :class:`~slimvision.errors.InputError`
that names the file. Outputs are written atomically (see :mod:`slimvision.io.atomic`).
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from slimvision.errors import ImageTooLargeError, InputError, OutputError, UnsupportedImageError
from slimvision.io.atomic import atomic_write
from slimvision.io.png import encode_png

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "decode_opened",
    "find_images",
    "load_image",
    "open_image",
    "save_image",
    "save_images",
    "to_rgb_array",
]

logger = logging.getLogger(__name__)

#: Largest image (width * height) :func:`load_image` decodes by default: 100 megapixels.
#: It guards against decompression bombs -- tiny files whose header declares a gigantic canvas
#: that would take gigabytes of memory to decode. Real photos are far below it (a 4000x3000
#: photo is 12 MP, a 45 MP camera is 8192x5464). Pass ``max_pixels=None`` to disable the check.
DEFAULT_MAX_PIXELS = 100_000_000

#: File suffixes :func:`load_image` can read and :func:`find_images` picks up (lower case).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

# Only these PIL plugins may identify a file, so an oddity (ICO, PSD, EPS...) is reported as
# "not a recognised image" instead of being half-supported. JPEG also covers MPO camera files.
_PIL_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")

# Output suffix -> PIL format name.
_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
#: zlib level for PNG outputs. Pillow's default (6) spends 60-80 ms on a 512x512 result on our
#: 2-core box; at levels 1-3 slimvision's own writer (``slimvision.io.png``: one filter for all
#: rows, run-length zlib) takes 17 ms for files about 9% larger. Level 1 is OpenCV's default
#: too. Painted images are noisy, so higher levels buy little.
DEFAULT_PNG_LEVEL = 1
#: Up to this level PNGs go through the fast writer; above it, Pillow's per-row filter choice.
FAST_PNG_MAX_LEVEL = 3
_SAVE_HINT = "use .png, .jpg, .webp, .bmp or .tiff"

_NOT_AN_IMAGE = "not a recognised image (PNG, JPEG, WebP, BMP, TIFF, GIF)"
_CORRUPT = "image data is truncated or corrupt"

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_UINT16_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_EXIF_ORIENTATION = 0x0112

# Serialises the (rare) moments when PIL's module-level settings are patched; see _pil_guards.
_PIL_SETTINGS_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_image(
    path: str | Path,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_side: int = 1,
) -> np.ndarray:
    """Read an image file as an ``HxWx3`` ``uint8`` RGB array.

    Reads JPEG, PNG, WebP, BMP, TIFF and GIF (first frame). The EXIF orientation is applied and
    every pixel format is converted to 8-bit RGB as described in :func:`to_rgb_array`. The size
    is checked from the header before any pixel is decoded.

    Args:
        path: The image file.
        max_pixels: Refuse images with more than this many pixels (width * height);
            ``None`` disables the check. See :data:`DEFAULT_MAX_PIXELS`.
        min_side: Refuse images whose width or height is smaller than this.

    Returns:
        A C-contiguous ``(height, width, 3)`` ``uint8`` array.

    Raises:
        InputError: One line naming the file: not found, a directory, permission denied, empty,
            not a recognised image, truncated or corrupt, too large or too small.

    Example:
        >>> rgb = load_image("photo.jpg", min_side=16)  # doctest: +SKIP
        >>> rgb.shape, rgb.dtype  # doctest: +SKIP
        ((3000, 4000, 3), dtype('uint8'))
    """
    file = Path(path)
    _check_readable_file(file)
    with _open_image(file) as img:
        _check_size(file, img.size, max_pixels=max_pixels, min_side=min_side)
        return to_rgb_array(img, name=str(file))


#: Leading bytes of each format we read, for sniffing uploads (never trust a name or a
#: declared content type). TIFF is left out on purpose: its many codecs are a large attack
#: surface for data from strangers, and no browser sends it.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def sniff_image_format(data: bytes) -> str | None:
    """The format the bytes start with (PNG, JPEG, WEBP, GIF, BMP), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def decode_image(data: bytes, name: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 min_side: int = 1) -> np.ndarray:
    """Decode image bytes (an upload) as an ``HxWx3`` ``uint8`` RGB array, like :func:`load_image`.

    The format is taken from the bytes themselves (:func:`sniff_image_format`) and PIL is only
    allowed that one decoder; the size is checked from the header before any pixel is decoded.
    Errors are :class:`InputError` naming ``name``: :class:`UnsupportedImageError` for bytes of
    no known format, :class:`ImageTooLargeError` for too many pixels.
    """
    if not data:
        raise InputError(name, "file is empty (0 bytes)")
    kind = sniff_image_format(data)
    if kind is None:
        raise UnsupportedImageError(name, "not a PNG, JPEG, WebP, GIF or BMP image (checked from its bytes, "
                                          "not its name or declared type)")
    try:
        with _pil_guards():
            img = Image.open(io.BytesIO(data), formats=(kind,))
    except Exception as exc:
        logger.debug("PIL failed to open %s: %r", name, exc)
        raise InputError(name, _CORRUPT) from exc
    with img:
        _check_size(name, img.size, max_pixels=max_pixels, min_side=min_side)
        return to_rgb_array(img, name=name)


@contextmanager
def open_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               min_side: int = 1) -> Iterator[Image.Image]:
    """Open an image file lazily (header only) with its size checked against the caller's limits.

    For readers that need the file's own pixel format (e.g. 16-bit medical images) rather than
    :func:`load_image`'s RGB: every check :func:`load_image` makes before decoding, with the
    caller's ``max_pixels`` instead of Pillow's global limit. Decode with :func:`decode_opened`.

    Raises:
        InputError: as :func:`load_image` (:class:`ImageTooLargeError` above ``max_pixels``).

    Example:
        >>> with open_image("scan.tif", max_pixels=50_000_000) as img:  # doctest: +SKIP
        ...     decode_opened(img, "scan.tif")
        ...     values = np.asarray(img)
    """
    file = Path(path)
    _check_readable_file(file)
    with _open_image(file) as img:
        _check_size(file, img.size, max_pixels=max_pixels, min_side=min_side)
        yield img


def decode_opened(img: Image.Image, name: str) -> None:
    """Decode an image from :func:`open_image` in full, so that truncation and corruption are an
    :class:`InputError` naming ``name`` now (Pillow's global pixel limit does not apply)."""
    _decode(img, name)


def _check_readable_file(file: Path) -> None:
    """Turn the usual file-system problems into one-line errors before PIL sees the file."""
    try:
        info = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(file, "file not found") from None
    except PermissionError:
        raise InputError(file, "permission denied") from None
    except OSError as exc:
        raise InputError(file, f"cannot read file: {exc.strerror or type(exc).__name__}") from None
    if file.is_dir():
        raise InputError(file, "is a directory, not an image file")
    if info.st_size == 0:
        raise InputError(file, "file is empty (0 bytes)")


@contextmanager
def _open_image(file: Path) -> Iterator[Image.Image]:
    """Open ``file`` lazily (header only) with one-line errors, closing it afterwards."""
    try:
        # PIL's own bomb check runs inside open(); disable it here because ours (with the
        # user's max_pixels) runs right after on the header size, before any decoding.
        with _pil_guards():
            img = _open_by_suffix_first(file)
    except UnidentifiedImageError:
        raise InputError(file, _NOT_AN_IMAGE) from None
    except PermissionError:
        raise InputError(file, "permission denied") from None
    except Exception as exc:  # PIL raises many types (SyntaxError, struct.error, ...) on bad headers.
        logger.debug("PIL failed to open %s: %r", file, exc)
        raise InputError(file, _CORRUPT) from exc
    with img:
        yield img


def pixel_count(pixels: int) -> str:
    """A pixel count as people read it: megapixels, or plain pixels below a tenth of one.

    Example:
        >>> pixel_count(12_000_000), pixel_count(4_000)
        ('12.0 MP', '4,000 pixels')
    """
    return f"{pixels / 1e6:.1f} MP" if pixels >= 100_000 else f"{pixels:,} pixels"


def _check_size(
    file: str | Path, size: tuple[int, int], *, max_pixels: int | None, min_side: int
) -> None:
    """Check the declared size (from the header, before decoding) against the limits."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            file,
            f"image is {width}x{height} = {pixel_count(width * height)}, above the limit of "
            f"{pixel_count(max_pixels)} (raise max_pixels to allow it)",
        )
    if width < min_side or height < min_side:
        raise InputError(
            file, f"image is {width}x{height}; at least {min_side}x{min_side} pixels are needed"
        )


@contextmanager
def _pil_guards() -> Iterator[None]:
    """Temporarily switch off PIL's global pixel limit and force truncation detection.

    PIL refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` (about 179 MP) with its own
    multi-line error and warns above 89 MP; our ``max_pixels`` replaces that check, so it must
    not fire first. ``ImageFile.LOAD_TRUNCATED_IMAGES`` must be False or truncated files decode
    silently with grey bands. Both are module globals, so they are restored on exit and changed
    under a lock; other threads using PIL directly may briefly see the patched values.
    """
    with _PIL_SETTINGS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _pil_settings_are_safe(size: tuple[int, int]) -> bool:
    """True if decoding an image of ``size`` cannot trip PIL's globals (no need to patch them)."""
    limit = Image.MAX_IMAGE_PIXELS
    within_limit = limit is None or size[0] * size[1] <= limit
    return within_limit and not ImageFile.LOAD_TRUNCATED_IMAGES


def _decode(img: Image.Image, name: str) -> None:
    """Force the full decode of a lazily opened image so truncation and corruption show up now."""
    try:
        if _pil_settings_are_safe(img.size):
            img.load()  # Common case: no global state touched, so threads decode in parallel.
        else:
            with _pil_guards():
                img.load()
    except Exception as exc:  # OSError, SyntaxError, ValueError, EOFError... all mean bad data.
        logger.debug("PIL failed to decode %s: %r", name, exc)
        raise InputError(name, _CORRUPT) from exc


def _apply_exif_orientation(img: Image.Image, name: str) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; a broken EXIF block is ignored, not fatal."""
    try:
        if img.getexif().get(_EXIF_ORIENTATION, 1) in (1, None):
            return img  # Nothing to do; exif_transpose would still copy the whole image.
        return ImageOps.exif_transpose(img)
    except Exception as exc:
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        return img


# --------------------------------------------------------------------------------------------
# Conversion to RGB
# --------------------------------------------------------------------------------------------


def to_rgb_array(obj: Image.Image | np.ndarray, *, name: str = "<array>") -> np.ndarray:
    """Convert a PIL image or a numpy array to an ``HxWx3`` ``uint8`` RGB array.

    Conversions (the same for files, PIL images and arrays):

    * alpha (RGBA, LA, PA, palette or colour-key transparency) is composited on white;
    * grayscale, 1-bit, palette, CMYK, YCbCr, LAB and HSV are converted to RGB;
    * 16-bit data is scaled by its full range (0..65535 -> 0..255, i.e. divided by 257);
    * 32-bit integer (PIL mode ``I``) holding 0..65535 is treated as 16-bit, otherwise its
      min..max range is stretched to 0..255;
    * float (PIL mode ``F`` or float arrays) in [0, 1] is scaled by 255; mode ``F`` outside
      [0, 1] is stretched from its min..max range.

    A PIL image is fully decoded first and its EXIF orientation applied. Arrays may be ``HxW``,
    ``HxWx1``, ``HxWx2`` (gray + alpha), ``HxWx3`` or ``HxWx4`` of dtype ``uint8``, ``uint16``,
    ``bool`` or float with values in [0, 1].

    Args:
        obj: The image.
        name: What to call the image in error messages (a file path, or ``"<array>"``).

    Returns:
        A new or existing C-contiguous ``(height, width, 3)`` ``uint8`` array.

    Raises:
        InputError: The data cannot be decoded, or the array has an unsupported shape, dtype
            or value range.
        TypeError: ``obj`` is neither a PIL image nor a numpy array.

    Example:
        >>> gray16 = np.array([[0, 32768, 65535]], dtype=np.uint16)
        >>> to_rgb_array(gray16)[0, :, 0].tolist()
        [0, 128, 255]
    """
    if isinstance(obj, Image.Image):
        _decode(obj, name)
        return _pil_to_rgb(_apply_exif_orientation(obj, name))
    if isinstance(obj, np.ndarray):
        return _array_to_rgb(obj, name)
    raise TypeError(f"{name}: expected a PIL image or a numpy array, got {type(obj).__name__}")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image of any mode to RGB uint8, respecting bit depth and alpha."""
    mode = img.mode
    # High bit-depth modes first: PIL's own convert("RGB") would clip them to 255.
    if mode in _UINT16_MODES:
        return _gray_to_rgb(_uint16_to_uint8(np.asarray(img)))
    if mode == "I":
        return _gray_to_rgb(_int32_to_uint8(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_stretch_float(np.asarray(img)))
    if mode in _ALPHA_MODES or "transparency" in img.info:
        if mode == "La":  # PIL cannot go from premultiplied La straight to RGBA.
            img = img.convert("LA")
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    if mode != "RGB":
        img = img.convert("RGB")  # L, 1, P, CMYK (incl. Adobe inverted), YCbCr, LAB, HSV.
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    """Convert an HxW[xC] array (C in 1..4) to RGB uint8."""
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(
            name, f"expected an HxW, HxWx3 or HxWx4 image array, got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(name, f"image is {arr.shape[1]}x{arr.shape[0]}; it has no pixels")
    data = _array_to_uint8(arr, name)
    channels = data.shape[2]
    if channels == 1:
        return _gray_to_rgb(data[:, :, 0])
    if channels == 2:  # Gray + alpha.
        gray = data[:, :, :1]
        return _composite_on_white(np.concatenate([gray, gray, gray, data[:, :, 1:]], axis=2))
    if channels == 4:
        return _composite_on_white(data)
    return np.ascontiguousarray(data)


def _array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale an array's values to uint8 by its dtype's meaning (full range or [0, 1])."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return _uint16_to_uint8(arr)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError(name, "float image contains NaN or infinite values")
        low, high = float(arr.min()), float(arr.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                name, f"float image values must be in [0, 1], found [{low:.4g}, {high:.4g}]"
            )
        return np.rint(arr * 255.0).astype(np.uint8)
    raise InputError(
        name, f"unsupported array dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]"
    )


def _uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 0..65535 onto 0..255 with rounding (x / 257), keeping the full range."""
    # 257 is odd, so x / 257 never ends in exactly .5 and (x + 128) // 257 == round(x / 257).
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _int32_to_uint8(values: np.ndarray) -> np.ndarray:
    """Mode ``I``: 16-bit data (most 16-bit PNG/TIFF files) or arbitrary 32-bit integers."""
    if values.size and values.min() >= 0 and values.max() <= 65535:
        return _uint16_to_uint8(values)
    logger.info("32-bit integer image outside 0..65535; stretching its min..max to 0..255")
    return _stretch(values.astype(np.float64))


def _stretch_float(values: np.ndarray) -> np.ndarray:
    """Mode ``F``: [0, 1] data is scaled by 255, anything else stretched from min..max."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
    """Linearly map ``values.min()..values.max()`` to 0..255 (a flat image becomes black)."""
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((values - low) * scale).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3 or 4)`` uint8 RGB(A) -> ``(H, W)`` uint8 luma (ITU-R BT.601 weights); ``(H, W)`` passes through.

    Example:
        >>> to_gray(np.full((1, 1, 3), (255, 0, 0), np.uint8)).tolist()
        [[76]]
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[..., :3].astype(np.float32)
        return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
    if image.ndim != 2:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return image.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Repeat a 2-D uint8 gray image into three channels."""
    return np.ascontiguousarray(np.repeat(gray[:, :, np.newaxis], 3, axis=2))


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an HxWx4 uint8 RGBA image over white: ``rgb * a + 255 * (1 - a)``, rounded."""
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:].astype(np.uint16)
    # Integer arithmetic: at most 255 * 255 + 127 < 2**16; "+ 127" rounds to nearest.
    blended = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended.astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Saving and finding
# --------------------------------------------------------------------------------------------


def _open_by_suffix_first(file: Path) -> Image.Image:
    """Try the format the suffix names first, then every format we read.

    Asking PIL for a format whose plugin is not loaded yet makes it import all ~40 of its
    plugins (about 50 ms, paid by every one-image CLI run); a file whose suffix tells the
    truth never needs more than its own plugin.
    """
    guess = _SAVE_FORMATS.get(file.suffix.lower()) or ("GIF" if file.suffix.lower() == ".gif" else None)
    if guess is not None:
        try:
            return Image.open(file, formats=(guess,))
        except UnidentifiedImageError:
            pass  # a misnamed file: fall through to every format
    return Image.open(file, formats=_PIL_FORMATS)


def save_image(
    array: np.ndarray,
    path: str | Path,
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    quality: int = 95,
    allow_input_overwrite: bool = False,
    png_level: int = DEFAULT_PNG_LEVEL,
) -> Path:
    """Write an ``HxWx3`` (or ``HxW`` gray) ``uint8`` array, format chosen by the file suffix.

    The file is written atomically (see :func:`slimvision.io.atomic.atomic_write`): on any error
    nothing, not even a partial file, is left at ``path``.

    Args:
        array: The image, ``uint8``, shape ``(H, W, 3)`` or ``(H, W)``.
        path: Destination; its suffix (.png, .jpg/.jpeg, .webp, .bmp, .tif/.tiff) picks the format.
        overwrite: Replace ``path`` if it exists.
        protected: Input files that must never be overwritten, even with ``overwrite=True``.
        quality: JPEG/WebP quality, 1..100 (ignored by lossless formats).
        allow_input_overwrite: Explicitly allow replacing a file listed in ``protected``.
        png_level: PNG zlib compression, 0 (none, fastest) to 9 (smallest, slowest).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: The array is not ``uint8`` ``HxW``/``HxWx3``, or ``quality`` is out of range.
        OutputError: Unsupported suffix, the file exists, it is an input, or it cannot be written.

    Example:
        >>> save_image(np.zeros((64, 64, 3), np.uint8), "out/black.png")  # doctest: +SKIP
        PosixPath('out/black.png')
    """
    _validate_output_array(array)
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if not 0 <= png_level <= 9:
        raise ValueError(f"png_level must be between 0 and 9, got {png_level}")
    target = Path(path)
    fmt = _output_format(target)
    options: dict[str, int] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    elif fmt == "PNG":
        options["compress_level"] = png_level
    array = np.ascontiguousarray(array)
    with atomic_write(
        target,
        overwrite=overwrite,
        protected=protected,
        allow_input_overwrite=allow_input_overwrite,
    ) as temp:
        if fmt == "PNG" and png_level <= FAST_PNG_MAX_LEVEL:
            temp.write_bytes(encode_png(array, png_level))
        else:
            Image.fromarray(array).save(temp, format=fmt, **options)
    logger.debug("saved %s (%dx%d %s)", target, array.shape[1], array.shape[0], fmt)
    return target


def save_images(
    images: Iterable[np.ndarray],
    paths: Sequence[str | Path],
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
) -> list[Path]:
    """:func:`save_image` for several images, all or nothing: without ``overwrite``, a path that
    exists stops it before any file is written.

    Raises:
        OutputError: a path exists (and ``overwrite`` is off), naming it.
    """
    targets = [Path(path) for path in paths]
    taken = next((target for target in targets if target.exists()), None)
    if taken is not None and not overwrite:
        raise OutputError(taken, "exists (pass --overwrite to replace it); nothing was written")
    guarded = list(protected)
    return [save_image(image, target, overwrite=overwrite, protected=guarded) for image, target in zip(images, targets)]


def save_animation(
    frames: Sequence[np.ndarray],
    path: str | Path,
    *,
    frame_ms: int = 80,
    bounce: bool = True,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
) -> Path:
    """Write ``HxWx3`` uint8 frames as a looping animated GIF, atomically (see :func:`save_image`).

    Args:
        frames: at least one frame, all the same shape.
        frame_ms: how long each frame shows.
        bounce: play forwards then backwards (the walk returns to its start without a jump).

    Example:
        >>> save_animation([np.zeros((8, 8, 3), np.uint8)] * 2, "out/walk.gif")  # doctest: +SKIP
        PosixPath('out/walk.gif')
    """
    if len(frames) == 0:
        raise ValueError("an animation needs at least one frame")
    for frame in frames:
        _validate_output_array(frame)
    if len({frame.shape for frame in frames}) > 1:
        raise ValueError(f"animation frames differ in shape: {sorted({frame.shape for frame in frames})}")
    target = Path(path)
    if target.suffix.lower() != ".gif":
        raise OutputError(target, "animations are written as .gif")
    sequence = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    pictures = [Image.fromarray(np.ascontiguousarray(frame)) for frame in sequence]
    with atomic_write(target, overwrite=overwrite, protected=protected) as temp:
        pictures[0].save(temp, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms,
                         loop=0, optimize=False)
    return target


def _validate_output_array(array: np.ndarray) -> None:
    """Reject anything but a uint8 HxW or HxWx3 array, with a message saying what was given."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(f"image array must be uint8, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"image array must be HxW or HxWx3, got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image array has no pixels: shape {tuple(array.shape)}")


def _output_format(target: Path) -> str:
    """PIL format name for the target's suffix, or a one-line OutputError."""
    suffix = target.suffix.lower()
    if not suffix:
        raise OutputError(target, f"has no file extension; {_SAVE_HINT}")
    if suffix not in _SAVE_FORMATS:
        raise OutputError(target, f"unsupported output format '{target.suffix}'; {_SAVE_HINT}")
    return _SAVE_FORMATS[suffix]


def find_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """List the image files in ``folder`` (by suffix, case-insensitive), sorted by path.

    Hidden files and folders (name starting with ".") are skipped: they are temporary files
    (including :func:`~slimvision.io.atomic.atomic_write`'s) or macOS "._" metadata, not images.

    Args:
        folder: The folder to search.
        recursive: Also search sub-folders.

    Returns:
        Paths whose suffix is in :data:`IMAGE_SUFFIXES`, sorted.

    Raises:
        InputError: ``folder`` does not exist or is not a folder.

    Example:
        >>> find_images("photos", recursive=True)  # doctest: +SKIP
        [PosixPath('photos/a.jpg'), PosixPath('photos/trip/b.PNG')]
    """
    return find_files(folder, lambda path: path.suffix.lower() in IMAGE_SUFFIXES, recursive=recursive)


def files_of(sources: Iterable[str | Path], list_folder: Callable[[Path], list[Path]], empty: str,
             missing: str = "no such file or folder") -> list[Path]:
    """The files ``sources`` name, in order: a file as given, a folder as ``list_folder`` lists it.

    Raises:
        InputError: a folder ``list_folder`` finds nothing in (``empty`` says what was looked
            for), or a source that does not exist (``missing``).
    """
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            listed = list_folder(source)
            if not listed:
                raise InputError(source, empty)
            files += listed
        elif source.exists():
            files.append(source)
        else:
            raise InputError(source, missing)
    return files


def find_files(folder: str | Path, keep: Callable[[Path], bool], recursive: bool = False) -> list[Path]:
    """The files in ``folder`` (sub-folders with ``recursive``) that ``keep`` takes, sorted by path.

    Hidden files and folders (name starting with ".") are skipped, as :func:`find_images` says why.
    ``keep`` is asked after the hidden check, and only about files (it may open them).

    Raises:
        InputError: ``folder`` does not exist or is not a folder.
    """
    root = Path(folder)
    if not root.exists():
        raise InputError(root, "folder not found")
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    candidates = root.rglob("*") if recursive else root.iterdir()
    return sorted(path for path in candidates
                  if not any(part.startswith(".") for part in path.relative_to(root).parts)
                  and path.is_file() and keep(path))
