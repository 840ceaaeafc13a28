"""Style images for distilling the style predictor: what installed packages ship, augmented hard.

No painting dataset can be downloaded here, so the student learns the teacher's style space from
every image that installed packages ship (scikit-image's 29 sample images, slimvision's own
samples, Debian's ``opencv-doc`` examples and matplotlib's sample data where installed),
expanded by heavy augmentation, plus procedurally generated textures (stripes, checks, value
noise, cells, strokes) that cover the high-frequency patterns paintings have and photos lack.

Every sample is a pure function of ``(seed, index)``: the same index always gives the same
image, so a teacher's outputs can be cached by sample id and the teacher runs once per sample.
Held-out evaluation images are whole source files the training set never sees, not augmented
copies of training images. This is the data the shipped style students were trained on
(``style_data="files"``); :mod:`slimvision.data.style_families` adds the procedural families
users paint with, held out by family and by source (``style_data="families"``).

Example:
    >>> sources = find_style_sources()
    >>> train, held_out = split_sources(sources, held_out_fraction=0.15)
    >>> dataset = StyleImageDataset(train, length=20_000, seed=0)
    >>> sample_id, image = dataset[17]      # ("0-17", (256, 256, 3) uint8)
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from slimvision.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
#: Files that are not pictures of anything (calibration boards, text, tiny logos) are still
#: useful textures, so nothing is excluded except images too small to crop from.
MIN_SIDE = 64


@dataclass(frozen=True)
class StyleSource:
    """One image file and where it came from."""

    path: Path
    origin: str  # "scikit-image", "slimvision", "opencv-doc", "matplotlib"

    @property
    def name(self) -> str:
        return f"{self.origin}/{self.path.name}"


def _package_folder(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)), *parts)
    return folder if folder.is_dir() else None


def photo_folders() -> list[tuple[str, Path]]:
    """(source, folder) of every installed package that ships photos, in preference order: a
    picture found twice (slimvision's samples copy scikit-image's) counts for the first source."""
    from slimvision.assets import samples_dir

    folders = [("scikit-image", _package_folder("skimage", "data")),
               ("scikit-learn", _package_folder("sklearn", "datasets", "images")),
               ("matplotlib", _package_folder("matplotlib", "mpl-data", "sample_data")),
               ("opencv-doc", OPENCV_DOC_DATA if OPENCV_DOC_DATA.is_dir() else None),
               ("slimvision", samples_dir() / "content")]
    return [(source, folder) for source, folder in folders if folder is not None and folder.is_dir()]


def find_style_sources(extra_folders: list[Path] | None = None) -> list[StyleSource]:
    """Every image file the installed packages (and ``extra_folders``) provide, sorted by name."""
    from slimvision.assets import samples_dir

    folders: list[tuple[str, Path | None]] = [
        ("scikit-image", _package_folder("skimage", "data")),
        ("slimvision", samples_dir()),
        ("opencv-doc", OPENCV_DOC_DATA if OPENCV_DOC_DATA.is_dir() else None),
        ("matplotlib", _package_folder("matplotlib", "mpl-data", "sample_data")),
        *[("user", folder) for folder in extra_folders or []],
    ]
    sources = [StyleSource(path, origin) for origin, folder in folders if folder is not None
               for path in sorted(folder.rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES and _usable(path)]
    return sorted(sources, key=lambda source: source.name)


def _usable(path: Path) -> bool:
    """Readable (header) and large enough to crop from; others are skipped with a debug line."""
    try:
        with Image.open(path) as image:
            usable = min(image.size) >= MIN_SIDE
    except Exception as exc:  # PIL raises many kinds on odd files; they are just not used
        log.debug("skipping %s (%s)", path, exc)
        return False
    if not usable:
        log.debug("skipping %s (smaller than %d px)", path, MIN_SIDE)
    return usable


def split_sources(sources: list[StyleSource], held_out_fraction: float = 0.15,
                  always_held_out: tuple[str, ...] = ("starry_night",)) -> tuple[list[StyleSource], list[StyleSource]]:
    """Split by a hash of the file name: stable across machines and package versions.

    ``always_held_out`` names (file stems) are evaluation-only, e.g. the painting the demo uses.
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in [0, 1), got {held_out_fraction}")
    train, held_out = [], []
    for source in sources:
        bucket = int(hashlib.sha256(source.name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        evaluation = bucket < held_out_fraction or source.path.stem in always_held_out
        (held_out if evaluation else train).append(source)
    return train, held_out


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an image file (slimvision's loader: EXIF, alpha, 16-bit, palettes)."""
    from slimvision.io.images import load_image

    image = load_image(path)
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputError(path, f"too small to crop style samples from (< {MIN_SIDE} px)")
    return image


# --------------------------------------------------------------------------- procedural textures
def procedural_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A random texture of one of five families, in random colours, (size, size, 3) uint8."""
    kind = rng.integers(5)
    field = [_stripes, _checks, _value_noise, _cells, _strokes][kind](rng, size)  # (size, size) in [0, 1]
    palette = rng.random((rng.integers(2, 5), 3))  # 2-4 random colours
    positions = np.linspace(0.0, 1.0, len(palette))
    rgb = np.stack([np.interp(field, positions, palette[:, c]) for c in range(3)], axis=-1)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(4, size / 3)
    wave = np.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)
    return 0.5 + 0.5 * np.tanh(wave * rng.uniform(0.5, 6))  # soft to hard edges


def _checks(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    cell = rng.uniform(6, size / 4)
    return ((np.floor(x / cell) + np.floor(y / cell)) % 2).astype(np.float32)


def _value_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    for octave in range(rng.integers(2, 6)):
        cells = 2 ** (octave + 2)
        coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
        total += np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255 / 2 ** octave
    return (total - total.min()) / max(float(np.ptp(total)), 1e-6)


def _cells(rng: np.random.Generator, size: int) -> np.ndarray:
    points = rng.random((int(rng.integers(8, 64)), 2)) * size
    x, y = _grid(size)
    distances = np.sqrt((x[..., None] - points[:, 0]) ** 2 + (y[..., None] - points[:, 1]) ** 2)
    nearest = np.sort(distances, axis=-1)
    edges = nearest[..., 1] - nearest[..., 0]  # small on the borders between cells
    return np.clip(edges / rng.uniform(4, 20), 0.0, 1.0)


def _strokes(rng: np.random.Generator, size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size), int(rng.integers(0, 256)))
    draw = ImageDraw.Draw(canvas)
    angle = rng.uniform(0, math.pi)  # strokes share a direction, like brush work
    for _ in range(int(rng.integers(40, 200))):
        x0, y0 = rng.random(2) * size
        length = rng.uniform(5, size / 3)
        a = angle + rng.normal(0, 0.4)
        draw.line([(x0, y0), (x0 + length * math.cos(a), y0 + length * math.sin(a))],
                  fill=int(rng.integers(0, 256)), width=int(rng.integers(1, 8)))
    return np.asarray(canvas, np.float32) / 255.0


# --------------------------------------------------------------------------- augmentation
def random_crop(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of 10-100% of the shorter side, resized to ``size``."""
    height, width = image.shape[:2]
    side = int(min(height, width) * math.sqrt(rng.uniform(0.1, 1.0)))
    side = max(side, min(MIN_SIDE, height, width))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flips, a rotation, colour jitter (brightness, contrast, saturation, channel mixing)."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.5:
        image = np.rot90(image, int(rng.integers(1, 4)))
    if rng.random() < 0.3:
        angle = float(rng.uniform(-30, 30))
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).rotate(angle, Image.Resampling.BILINEAR,
                                                                               expand=False, fillcolor=None))
    pixels = image.astype(np.float32) / 255.0
    mean = pixels.mean(axis=(0, 1), keepdims=True)
    pixels = (pixels - mean) * rng.uniform(0.6, 1.5) + mean * rng.uniform(0.7, 1.3)  # contrast, brightness
    gray = pixels.mean(axis=2, keepdims=True)
    pixels = gray + (pixels - gray) * rng.uniform(0.0, 1.8)  # saturation (0 = grayscale)
    if rng.random() < 0.3:  # hue-like shift: mix the channels
        mix = np.eye(3, dtype=np.float32) * 0.7 + rng.random((3, 3)).astype(np.float32) * 0.3
        pixels = pixels @ (mix / mix.sum(axis=0, keepdims=True))
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mix(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend two samples (alpha) or paste a rectangle of one onto the other (cut-mix)."""
    if rng.random() < 0.5:
        alpha = rng.uniform(0.3, 0.7)
        return (a.astype(np.float32) * alpha + b.astype(np.float32) * (1 - alpha) + 0.5).astype(np.uint8)
    size = a.shape[0]
    side = int(rng.integers(size // 4, size // 2 + 1))
    top, left = rng.integers(0, size - side + 1, 2)
    out = a.copy()
    out[top:top + side, left:left + side] = b[top:top + side, left:left + side]
    return out


class StyleImageDataset:
    """``dataset[i] -> (sample id, (size, size, 3) uint8)``, the same image for the same ``(seed, i)``.

    Args:
        sources: image files to crop from (see :func:`find_style_sources`).
        length: number of samples (an epoch).
        seed: changes every sample; part of the sample ids.
        size: output side (256: what the predictor was trained at).
        texture_fraction: share of samples that are procedural textures.
        mix_fraction: share of samples blended with a second sample.
    """

    def __init__(self, sources: list[StyleSource], length: int, seed: int = 0, size: int = 256,
                 texture_fraction: float = 0.25, mix_fraction: float = 0.2, cache_images: bool = True) -> None:
        if not sources and texture_fraction < 1.0:
            raise ValueError("no source images: install scikit-image, or use texture_fraction=1.0")
        self.sources, self.length, self.seed, self.size = sources, length, seed, size
        self.texture_fraction, self.mix_fraction = texture_fraction, mix_fraction
        self._images: dict[Path, np.ndarray] | None = {} if cache_images else None

    def __len__(self) -> int:
        return self.length

    def _source_image(self, source: StyleSource) -> np.ndarray:
        if self._images is None:
            return load_rgb(source.path)
        if source.path not in self._images:
            self._images[source.path] = load_rgb(source.path)
        return self._images[source.path]

    def _one(self, rng: np.random.Generator) -> np.ndarray:
        if not self.sources or rng.random() < self.texture_fraction:
            return procedural_texture(rng, self.size)
        source = self.sources[int(rng.integers(len(self.sources)))]
        return augment(random_crop(self._source_image(source), rng, self.size), rng)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, index])
        image = self._one(rng)
        if rng.random() < self.mix_fraction:
            image = mix(image, self._one(rng), rng)
        return f"{self.seed}-{index}", np.ascontiguousarray(image)
