"""Grey medical images as float slices in [0, 1]: PNG/JPEG/TIFF (8 or 16 bit), DICOM and NIfTI.

Every reader returns :class:`MedicalSlice` objects: one 2-D ``float32`` array each, already mapped
to [0, 1] by an :class:`Intensity` rule, plus where it came from. The rule is part of a trained
model's config, so the same raw values always become the same network inputs:

* ``auto`` (default): 8-bit files by their full range 0..255; everything else (16-bit images,
  DICOM, NIfTI) by the 0.5th..99.5th percentile of the whole file, which ignores a few hot
  pixels and works for MRI, whose units are arbitrary;
* ``percentile``: the ``low``..``high`` percentiles of each file (a volume is one file, so all
  its slices share one mapping);
* ``range``: fixed raw values ``low``..``high``, e.g. a CT window in Hounsfield units
  (``Intensity.window(center=40, width=400)`` for soft tissue);
* ``dicom-window``: each DICOM file's own WindowCenter / WindowWidth.

DICOM pixel values go through RescaleSlope / RescaleIntercept first (so CT is in HU), and
MONOCHROME1 images are inverted so that bright always means dense. NIfTI volumes are turned to
the closest RAS orientation, cut along ``axis`` (0 sagittal, 1 coronal, 2 axial) and shown with
the upper side up; slices with almost no foreground are skipped. Colour images are converted to
grey (BT.601) with a warning. Unreadable files raise a one-line :class:`InputError` naming them.

Sizes are checked from the header, before any pixel is decoded (a 130 kB ``.nii.gz`` can declare
gigabytes of voxels): every slice against ``max_pixels`` (as :func:`slimvision.io.images.load_image`
does for photos) and a whole volume or multi-frame file against ``max_voxels``. Numeric DICOM tags
(RescaleSlope / RescaleIntercept, Rows, Columns, NumberOfFrames...) must hold finite numbers.

``pydicom`` and ``nibabel`` are imported only when a DICOM or NIfTI file is read (they are in the
``medical`` extra).

Example:
    >>> slices = read_medical("brain.nii.gz", axis=2)                        # doctest: +SKIP
    >>> ct = read_medical("CT_small.dcm", intensity=Intensity.window(40, 400))  # doctest: +SKIP
    >>> square = to_square(ct[0].pixels, 128)                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, ImageTooLargeError, InputError, MissingAssetError
from slimvision.io.images import DEFAULT_MAX_PIXELS, find_files, pixel_count

log = logging.getLogger(__name__)

#: Suffixes :func:`find_medical_files` picks up (``.nii.gz`` is matched as a whole).
PLAIN_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
NIFTI_SUFFIXES = (".nii", ".nii.gz")
INTENSITY_MODES = ("auto", "percentile", "range", "dicom-window")
#: Largest volume (voxels of all slices, or frames x pixels) :func:`read_medical` decodes by
#: default: 128 Mi voxels (512 x 512 x 512). Reading takes about 5 bytes per voxel (8-bit
#: data) to 9 (16-bit: a percentile copy), so up to about 1.2 GB; a ``.nii.gz`` of zeros
#: declaring that many is only 130 kB. Larger scans (a whole-body CT) need ``max_voxels``.
DEFAULT_MAX_VOXELS = 128 * 2**20
_BT601 = np.array([0.299, 0.587, 0.114], np.float64)


@dataclass
class Intensity(BaseConfig):
    """How a file's raw values become [0, 1] (values outside ``low``..``high`` are clipped).

    Attributes:
        mode: one of ``auto``, ``percentile``, ``range``, ``dicom-window`` (see the module docstring).
        low / high: percentiles (``percentile``, ``auto``) or raw values (``range``).
    """

    mode: str = "auto"
    low: float = 0.5
    high: float = 99.5

    def validate(self) -> None:
        super().validate()
        if self.mode not in INTENSITY_MODES:
            raise ConfigError(f"Intensity.mode must be one of {', '.join(INTENSITY_MODES)}, got {self.mode!r}")
        if not self.low < self.high:
            raise ConfigError(f"Intensity.low must be below Intensity.high, got {self.low} and {self.high}")
        if self.mode in ("auto", "percentile") and not 0 <= self.low < self.high <= 100:
            raise ConfigError(f"Intensity percentiles must lie in [0, 100], got {self.low} and {self.high}")

    @classmethod
    def window(cls, center: float, width: float) -> Intensity:
        """A fixed display window (CT: center 40 / width 400 soft tissue, 400 / 1800 bone)."""
        if width <= 0:
            raise ConfigError(f"a window's width must be positive, got {width}")
        return cls(mode="range", low=center - width / 2, high=center + width / 2)

    def bounds(self, raw: np.ndarray, *, eight_bit: bool, dicom_window: tuple[float, float] | None,
               name: str) -> tuple[float, float]:
        """The raw values that map to 0 and 1 for this file."""
        if self.mode == "range":
            return self.low, self.high
        if self.mode == "dicom-window":
            if dicom_window is None:
                raise InputError(name, "has no WindowCenter/WindowWidth (or none usable); choose another "
                                       "intensity mode (e.g. --window CENTER,WIDTH)")
            center, width = dicom_window
            return center - width / 2, center + width / 2
        if self.mode == "auto" and eight_bit:
            return 0.0, 255.0
        low, high = np.percentile(raw, [self.low, self.high])
        return float(low), float(high)


@dataclass
class MedicalSlice:
    """One grey slice: ``pixels`` (H, W) float32 in [0, 1], from ``source`` (slice or frame ``index``).

    With ``read_medical(..., keep_raw=True)`` it also holds what writing a result back in the
    file's own values needs: ``raw`` (H, W) float32, the values before the intensity mapping
    (DICOM: in modality units), ``bounds``, the raw values that map to 0 and 1, and
    ``eight_bit``, whether the file stores 8-bit values.
    """

    pixels: np.ndarray
    source: Path
    index: int | None = None
    raw: np.ndarray | None = None
    bounds: tuple[float, float] | None = None
    eight_bit: bool = False

    @property
    def name(self) -> str:
        """``brain.nii.gz#slice-091`` for a slice of a file with several, else the file name."""
        return self.source.name if self.index is None else f"{self.source.name}#slice-{self.index:03d}"

    def to_raw(self, mapped: np.ndarray, filled: np.ndarray | None = None) -> np.ndarray:
        """``mapped`` (H, W) in [0, 1] back in the file's raw values (needs ``keep_raw``).

        Pixels where ``mapped`` equals ``pixels`` get their raw value back unchanged, clipped ones
        (beyond the window) included; changed pixels inside the window are mapped back, and
        changed ones beyond it move by the change times the window's width, keeping their offset.
        ``filled`` (H, W) bool marks pixels whose input value was missing: always mapped back.
        """
        if self.raw is None or self.bounds is None:
            raise ValueError(f"{self.name} was read without keep_raw=True")
        low, high = self.bounds
        mapped = np.asarray(mapped, np.float32)
        filled = np.zeros(mapped.shape, bool) if filled is None else np.asarray(filled, bool)
        inside = ((self.raw >= low) & (self.raw <= high)) | filled
        moved = np.where(inside, low + mapped * (high - low), self.raw + (mapped - self.pixels) * (high - low))
        return np.where((mapped == self.pixels) & ~filled, self.raw, moved).astype(np.float32)


def medical_kind(path: Path) -> str | None:
    """``plain``, ``dicom``, ``nifti`` or None, by suffix (DICOM files without one are sniffed)."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if path.suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    if path.suffix.lower() in PLAIN_SUFFIXES:
        return "plain"
    if not path.suffix and _has_dicom_preamble(path):
        return "dicom"
    return None


def find_medical_files(folder: str | Path) -> list[Path]:
    """Every readable medical image under ``folder`` (recursive, hidden files skipped), sorted."""
    return find_files(folder, lambda path: medical_kind(path) is not None, recursive=True)


@dataclass(frozen=True)
class _Limits:
    """The largest slice (pixels) and the largest volume (voxels) a reader may decode; None: no limit."""

    max_pixels: int | None
    max_voxels: int | None

    def check(self, path: Path, shape: tuple[int, ...], what: str, slice_pixels: int) -> None:
        """Refuse, from the header's ``shape`` and the pixels of its largest slice, before decoding."""
        described = f"{what} {' x '.join(map(str, shape))}"
        if any(side < 1 for side in shape):
            raise InputError(path, f"holds no pixels: its header says {described}")
        total = int(np.prod(shape, dtype=np.int64))
        if self.max_pixels is not None and slice_pixels > self.max_pixels:
            raise ImageTooLargeError(path, f"its header says {described}: slices of up to {pixel_count(slice_pixels)}, "
                                           f"above the limit of {pixel_count(self.max_pixels)} (raise --max-pixels "
                                           "to allow it)")
        if self.max_voxels is not None and total > self.max_voxels:
            raise ImageTooLargeError(path, f"its header says {described} = {total / 1e6:.0f} M voxels, above the "
                                           f"limit of {self.max_voxels / 1e6:.0f} M (raise --max-voxels to allow it)")


def read_medical(path: str | Path, *, intensity: Intensity | None = None, axis: int = 2,
                 skip_empty: bool = True, min_foreground: float = 0.01,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 max_voxels: int | None = DEFAULT_MAX_VOXELS, keep_raw: bool = False) -> list[MedicalSlice]:
    """The grey slices of one file, each mapped to [0, 1] by ``intensity``.

    Args:
        path: a PNG/JPEG/TIFF/BMP image (8 or 16 bit), a DICOM file (single or multi-frame) or a
            NIfTI volume (``.nii`` / ``.nii.gz``).
        intensity: the raw-value mapping (default ``auto``).
        axis: the NIfTI axis to cut along after RAS reorientation (0 sagittal, 1 coronal, 2 axial).
        skip_empty: drop slices whose foreground (values above 5% of the mapped range) covers
            less than ``min_foreground`` of the slice; only volumes and multi-frame files, since
            a single image is always wanted.
        max_pixels: refuse files with a slice (or image) of more pixels than this, from the
            header, before decoding; None: no limit.
        max_voxels: refuse volumes and multi-frame files of more voxels than this (likewise).
        keep_raw: also keep each slice's raw values and mapping bounds (see
            :class:`MedicalSlice`), to write results back in the file's own values; a copy of the
            raw data, so twice the memory.

    Raises:
        InputError: the file is missing, unreadable, not grey-convertible or empty;
            :class:`~slimvision.errors.ImageTooLargeError` when its header declares too many
            pixels or voxels.
    """
    path = Path(path)
    intensity = intensity or Intensity()
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "is not a file")
    kind = medical_kind(path)
    if kind is None:
        raise InputError(path, "not a medical image this reader knows (PNG, JPEG, TIFF, BMP, DICOM .dcm, NIfTI .nii/.nii.gz)")
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0 (sagittal), 1 (coronal) or 2 (axial), got {axis}")
    limits = _Limits(max_pixels, max_voxels)
    reader = {"plain": _read_plain, "dicom": _read_dicom, "nifti": _read_nifti}[kind]
    raw, eight_bit, window = reader(path, axis, limits)
    if not np.isfinite(raw).all():
        raise InputError(path, "holds NaN or infinite values (after its rescale slope / intercept)")
    low, high = intensity.bounds(raw, eight_bit=eight_bit, dicom_window=window, name=str(path))
    kept_raw = raw.copy() if keep_raw else None  # _map_range works in place
    mapped = _map_range(raw, low, high)
    extra = {"bounds": (low, high), "eight_bit": eight_bit}
    if mapped.ndim == 2:
        return [MedicalSlice(mapped, path, raw=kept_raw, **extra)]
    slices = [MedicalSlice(np.ascontiguousarray(mapped[index]), path, index,
                           raw=None if kept_raw is None else kept_raw[index], **extra)
              for index in range(len(mapped))]
    if skip_empty:
        slices = [s for s in slices if float((s.pixels > 0.05).mean()) >= min_foreground]
    if not slices:
        raise InputError(path, f"every one of its {len(mapped)} slices is empty (foreground < {min_foreground:.0%})")
    return slices


def to_square(pixels: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """Pad a (H, W) slice to a centred square with ``fill``, then resize it to ``size`` x ``size``.

    Padding first keeps the anatomy's proportions; shrinking uses box averaging (no aliasing),
    enlarging is bilinear.
    """
    height, width = pixels.shape
    side = max(height, width)
    square = np.full((side, side), fill, np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = pixels
    return _resize_square(square, size)


def from_square(square: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`to_square`: resize the square back to the padded side and cut out the (H, W) slice."""
    height, width = shape
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    resized = _resize_square(np.asarray(square, np.float32), side)
    return np.clip(resized[top:top + height, left:left + width], 0.0, 1.0)


def _resize_square(square: np.ndarray, size: int) -> np.ndarray:
    """A float square resized to ``size`` (box filter shrinking, bilinear enlarging), clipped to [0, 1]."""
    from PIL import Image

    if square.shape[0] == size:
        return square
    method = Image.Resampling.BOX if square.shape[0] > size else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(square, mode="F").resize((size, size), method), np.float32)
    return np.clip(resized, 0.0, 1.0)


def _map_range(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """``clip((raw - low) / (high - low), 0, 1)`` in float32, in place: ``raw`` is the reader's own
    float32 array, and a volume's copies are what bound the size a file may declare."""
    scale = 1.0 / (high - low) if high > low else 0.0
    mapped = raw if raw.dtype == np.float32 and raw.flags.writeable else raw.astype(np.float32)
    np.subtract(mapped, np.float32(low), out=mapped)
    np.multiply(mapped, np.float32(scale), out=mapped)
    return np.clip(mapped, 0.0, 1.0, out=mapped)


def _to_grey(values: np.ndarray, path: Path, channel_axis: int = -1) -> np.ndarray:
    """Colour -> grey (BT.601) with a warning; alpha is dropped."""
    log.warning("%s: colour image converted to grey (BT.601 luma)", path)
    colour = np.moveaxis(values, channel_axis, -1)[..., :3].astype(np.float64)
    return colour @ _BT601


def _read_plain(path: Path, axis: int, limits: _Limits) -> tuple[np.ndarray, bool, None]:
    """(H, W) raw values of an ordinary image file, and whether it is 8-bit.

    Opened and size-checked by :func:`slimvision.io.images.open_image` (the caller's
    ``max_pixels``, not Pillow's own global limit), then decoded in full.
    """
    from slimvision.io.images import decode_opened, open_image

    with open_image(path, max_pixels=limits.max_pixels) as image:
        decode_opened(image, str(path))
        mode = image.mode
        converted = image.convert("RGBA" if mode == "PA" else "RGB") \
            if mode in ("P", "1", "CMYK", "YCbCr", "LAB", "HSV", "PA") else image
        values = np.asarray(converted)
    eight_bit = values.dtype == np.uint8
    if values.ndim == 3:
        values = values[..., 0] if values.shape[2] == 2 else _to_grey(values, path)  # LA: grey + alpha
    return values.astype(np.float32), eight_bit, None


def _read_dicom(path: Path, axis: int, limits: _Limits) -> tuple[np.ndarray, bool, tuple[float, float] | None]:
    """Pixel values in modality units (slope/intercept applied), MONOCHROME1 inverted."""
    pydicom = _require("pydicom")
    try:
        dataset = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise InputError(path, f"not a readable DICOM file ({_one_line(error)})") from None
    if "PixelData" not in dataset:
        modality = _tag_text(dataset, "Modality", "unknown")
        raise InputError(path, f"DICOM file holds no image (modality {modality}, no PixelData)")
    frames = int(_tag_number(dataset, "NumberOfFrames", path, 1, whole=True))
    rows = int(_tag_number(dataset, "Rows", path, None, whole=True))
    columns = int(_tag_number(dataset, "Columns", path, None, whole=True))
    if frames > 1:
        limits.check(path, (frames, rows, columns), "frames x rows x columns", rows * columns)
    else:
        limits.check(path, (rows, columns), "rows x columns", rows * columns)
    slope = _tag_number(dataset, "RescaleSlope", path, 1.0)
    intercept = _tag_number(dataset, "RescaleIntercept", path, 0.0)
    try:
        values = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged or unsupported pixel data
        raise InputError(path, f"DICOM pixel data cannot be decoded ({_one_line(error)})") from None
    photometric = _tag_text(dataset, "PhotometricInterpretation", "MONOCHROME2")
    if not photometric.startswith("MONOCHROME"):
        # pydicom 3 hands YBR data over as RGB already (pixel_array's as_rgb default).
        values = _to_grey(values, path)
    values = values.astype(np.float64) * (slope or 1.0) + intercept
    if photometric == "MONOCHROME1":
        values = values.max() + values.min() - values  # bright means dense, as in MONOCHROME2
    if frames == 1 and values.ndim == 3:
        values = values[0]
    return values.astype(np.float32), False, _dicom_window(dataset, path)


def dicom_with_pixels(source: str | Path, values: np.ndarray) -> bytes:
    """The single-frame DICOM file ``source`` with its pixels replaced, as bytes to write.

    ``values`` (H, W) are in the units :func:`read_medical` gives for the file (modality units:
    RescaleSlope / RescaleIntercept applied, MONOCHROME1 inverted); they are turned back into
    the file's stored values and integer type, so a pixel read and written unchanged keeps its
    exact stored value. The copy is marked DERIVED with a new SOP Instance UID (it is a new
    image, not the scan) and stored uncompressed.

    Raises:
        InputError: ``source`` is not a readable single-frame DICOM image of integer pixels.
    """
    import io

    pydicom = _require("pydicom")
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path = Path(source)
    try:
        dataset = pydicom.dcmread(path)
        stored = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged files
        raise InputError(path, f"not a readable DICOM image ({_one_line(error)})") from None
    if stored.ndim != 2 or stored.dtype.kind not in "iu":
        raise InputError(path, "only single-frame grey DICOM images of whole numbers are written back")
    slope = _tag_number(dataset, "RescaleSlope", path, 1.0) or 1.0
    intercept = _tag_number(dataset, "RescaleIntercept", path, 0.0)
    modality = np.asarray(values, np.float64)
    if _tag_text(dataset, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        # read_medical inverted by the stored image's max + min; the same flip undoes it.
        original = stored.astype(np.float64) * slope + intercept
        modality = original.max() + original.min() - modality
    low, high = _stored_range(dataset, stored.dtype)
    pixels = np.clip(np.rint((modality - intercept) / slope), low, high).astype(stored.dtype)
    dataset.PixelData = pixels.tobytes()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.ImageType = ["DERIVED", "SECONDARY"]
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _stored_range(dataset: Any, dtype: np.dtype) -> tuple[int, int]:
    """The values BitsStored allows (signed when PixelRepresentation is 1), within ``dtype``'s."""
    limits = np.iinfo(dtype)
    try:
        bits = int(dataset.get("BitsStored") or limits.bits)
        signed = int(dataset.get("PixelRepresentation") or 0) == 1
    except (TypeError, ValueError):
        return int(limits.min), int(limits.max)
    bits = min(max(bits, 1), limits.bits)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return max(low, int(limits.min)), min(high, int(limits.max))


def _tag_number(dataset: Any, keyword: str, path: Path, default: float | None, *, whole: bool = False) -> float:
    """A numeric DICOM tag's (first) value, ``default`` when absent or empty.

    Raises:
        InputError: the tag holds text that is not a finite number (or, with ``whole``, not a
            whole number >= 0), or it is required (``default`` None) and missing.
    """
    try:
        value = dataset.get(keyword)
    except Exception as error:  # pydicom converts on access and may raise for a malformed value
        raise InputError(path, f"DICOM tag {keyword} is unreadable ({_one_line(error)})") from None
    if value is None or value == "":
        if default is None:
            raise InputError(path, f"DICOM image has no {keyword} tag")
        return default
    try:
        number = _first_number(value)
    except (TypeError, ValueError, IndexError):
        number = float("nan")
    if not np.isfinite(number) or (whole and (number < 0 or number != int(number))):
        noun = "a whole number" if whole else "a finite number"
        raise InputError(path, f"DICOM tag {keyword} is {str(value)[:40]!r}, not {noun}")
    return number


def _tag_text(dataset: Any, keyword: str, default: str) -> str:
    """A text tag's value, ``default`` when absent or unreadable."""
    try:
        value = dataset.get(keyword, default)
    except Exception:  # noqa: BLE001 - a damaged descriptive tag is not worth refusing the file
        return default
    return str(value) if value not in (None, "") else default


def _dicom_window(dataset: Any, path: Path) -> tuple[float, float] | None:
    """The file's first WindowCenter / WindowWidth pair (both may hold several values), or None
    (also, with a warning, when they are not finite numbers or the width is not positive)."""
    try:
        center, width = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    except Exception:  # noqa: BLE001 - malformed values: treated like missing ones, below
        center = width = "unreadable"
    if center is None or width is None:
        return None
    try:
        pair = _first_number(center), _first_number(width)
    except (TypeError, ValueError, IndexError):
        pair = (float("nan"), float("nan"))
    if not (np.isfinite(pair).all() and pair[1] > 0):
        log.warning("%s: ignoring its WindowCenter/WindowWidth (%s / %s are not a usable window)",
                    path, str(center)[:40], str(width)[:40])
        return None
    return pair


def _first_number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float, str)) else float(value[0])


def _read_nifti(path: Path, axis: int, limits: _Limits) -> tuple[np.ndarray, bool, None]:
    """(slices, H, W) of a volume cut along ``axis`` in RAS orientation, upper side up.

    The header's shape and data type are checked before any voxel is decoded.
    """
    nibabel = _require("nibabel")
    # nibabel logs the header fields it repairs (zero voxel spacing, say) through a handler of its
    # own and again through ours: the same line twice above any error. Spacing is not used here.
    logging.getLogger("nibabel.global").setLevel(logging.ERROR)
    try:
        image = nibabel.load(path)  # reads the header only
        shape = tuple(int(side) for side in image.header.get_data_shape())
        dtype = np.dtype(image.header.get_data_dtype())
    except Exception as error:  # nibabel raises ImageFileError, EOFError, zlib errors... for damaged files
        raise InputError(path, f"not a readable NIfTI volume ({_one_line(error)})") from None
    if len(shape) < 3 or len(shape) > 4:
        raise InputError(path, f"expected a 3-D volume, its header says shape {shape}")
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise InputError(path, f"holds {dtype} voxels (colour or complex); expected grey values")
    # Any of the three axes may be cut, so the largest slice is the largest pair of sides; the
    # voxels count every time point of a 4-D file (all are decoded).
    sides = shape[:3]
    limits.check(path, shape, "shape", max(sides[0] * sides[1], sides[0] * sides[2], sides[1] * sides[2]))
    try:
        image = nibabel.as_closest_canonical(image)
        volume = np.asanyarray(image.dataobj)  # applies the header's scl_slope / scl_inter
    except Exception as error:  # truncated data, zlib errors...
        raise InputError(path, f"not a readable NIfTI volume ({_one_line(error)})") from None
    if volume.ndim == 4:
        if volume.shape[3] > 1:
            log.warning("%s: 4-D volume with %d time points; using the first", path, volume.shape[3])
        volume = volume[..., 0]
    if volume.ndim != 3:
        raise InputError(path, f"expected a 3-D volume, got shape {volume.shape}")
    # RAS: axis 0 runs left->right, 1 posterior->anterior, 2 inferior->superior. Moving the cut
    # axis first and transposing each slice puts the later axis vertical; flipping it puts
    # anterior (sagittal cuts: superior) at the top, as radiology viewers show it.
    cut = np.moveaxis(volume, axis, 0)
    return np.ascontiguousarray(cut.transpose(0, 2, 1)[:, ::-1, :], np.float32), volume.dtype == np.uint8, None


def nifti_with_slices(source: str | Path, axis: int, slices: dict[int, np.ndarray], gzipped: bool) -> bytes:
    """The NIfTI volume ``source`` with some slices replaced, as the bytes of a ``.nii`` (or
    ``.nii.gz`` with ``gzipped``) file.

    ``slices`` maps a slice index along ``axis`` to its (H, W) values as :func:`read_medical`
    cut them (RAS orientation, transposed, upper side up); each is put back where it came from
    in the closest-RAS volume, which is written with its affine and the source's header and data
    type (nibabel chooses a scale for integer types). Slices not given keep their values; a 4-D
    file gives its first volume, as :func:`read_medical` reads it.

    Raises:
        InputError: ``source`` is not a readable NIfTI volume.
    """
    import gzip

    nibabel = _require("nibabel")
    path = Path(source)
    try:
        image = nibabel.as_closest_canonical(nibabel.load(path))
        volume = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for damaged files
        raise InputError(path, f"not a readable NIfTI volume ({_one_line(error)})") from None
    if volume.ndim == 4:
        volume = volume[..., 0]
    cut = np.moveaxis(volume, axis, 0)  # a view: writing into it writes the volume
    for index, values in slices.items():
        cut[index] = np.asarray(values, np.float32)[::-1, :].T  # undo "transposed, upper side up"
    header = image.header.copy()
    header.set_data_shape(volume.shape)
    dtype = header.get_data_dtype()
    slope, inter = header.get_slope_inter()
    if dtype.kind in "iu" and slope in (None, 1.0) and inter in (None, 0.0):
        # Unscaled integers stay unscaled, so unchanged voxels keep their exact values.
        limits = np.iinfo(dtype)
        stored: np.ndarray = np.clip(np.rint(volume), limits.min, limits.max).astype(dtype)
    else:
        stored = volume  # nibabel picks a scale that fits the type (float files stay float)
    data = nibabel.Nifti1Image(stored, image.affine, header).to_bytes()
    return gzip.compress(data, compresslevel=6) if gzipped else data


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line (some libraries put hints on further lines)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message[:300]}"


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingAssetError(f"reading this file needs '{module}', which is not installed; "
                                "run: pip install 'slimvision[medical]'") from None
