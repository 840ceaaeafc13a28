"""Synthetic Roman numerals on worn, scanned book pages: training data for the numeral map.

No scanned books can be downloaded here, so the map learns from the fonts that are installed
(matplotlib's bundled DejaVu, STIX and Computer Modern faces plus any under /usr/share/fonts),
printed on grey paper and worn down by a :class:`NoiseConfig`: a small rotation, scanner blur,
heavier or lighter inking, specks of dust and ink, stains and coffee rings, JPEG artefacts.
Symbols are then cut out exactly as a page reader cuts them (Otsu threshold, connected
components, the largest one and its fragments), so the map trains on what it will be shown.

Validation fonts are a whole family the map never sees in training (Computer Modern by default).
Sample ``i`` is a pure function of ``(seed, i)``: the same seed gives byte-identical data
whatever the count, and whatever the number of worker processes.

Speed, measured on this 2-core machine (shared, so runs varied by a third): one symbol costs
about 1.5 ms of one core (draw, wear, JPEG round-trip, binarise, label, cut, normalise), so
``render_symbols(count=10_000)`` takes about 9-10 s on both cores (the default from 2000
samples up) and 15 s on one (``workers=1``).

Example:
    >>> train, validation = split_fonts(find_fonts())
    >>> X, y = render_symbols(train, 700, seed=0)          # (700, 1024) float32, labels 0..6
    >>> SYMBOLS[y[3]]
    'L'
    >>> page, placed = render_page([14, 1994], train, seed=0)
    >>> placed[0][0], len(placed[0][1])                      # the number and its ink box
    (14, 4)
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import math
import multiprocessing
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from slimvision.config import BaseConfig
from slimvision.data.glyphs import GLYPH_SIZE, glyph_vector
from slimvision.data.ink import Box, binarize, connected_components, main_glyph
from slimvision.data.roman import SYMBOLS, to_roman
from slimvision.progress import progress_bar

log = logging.getLogger(__name__)

SYSTEM_FONTS = Path("/usr/share/fonts")
FONT_SUFFIXES = (".ttf", ".otf")
#: matplotlib's Computer Modern files name themselves "cmr10" etc.; they are one family of styles.
COMPUTER_MODERN = {"cmr10": "Roman", "cmb10": "Bold", "cmti10": "Italic", "cmmi10": "Math Italic",
                   "cmss10": "Sans", "cmtt10": "Typewriter", "cmsy10": "Symbols", "cmex10": "Extension"}
#: Letters and digits a page reader meets beside numerals, which it must not read as numerals.
#: Left out: the numeral letters in lower case (``xiv`` is a numeral too) and ``l`` and ``1``,
#: which many typefaces draw as a bare bar, like ``I``.
NOT_NUMERALS = "ABEFGHJKNOPQRSTUWYZabefghjknopqrstuwyz023456789"
#: Cap height (pixels) the noise maxima are stated at; blur and stains scale with the real one.
REFERENCE_CAP_HEIGHT = 48
#: Cap heights of the numerals on a rendered page (chapter headings and page numbers).
PAGE_CAP_HEIGHT = (24, 64)
_PROBE_SIZE = 64  # font size (px) the usability check renders at
_MISSING = "\U0010fffd"  # a private-use code point no text font maps: draws the .notdef box



# --------------------------------------------------------------------------- fonts
@dataclass(frozen=True)
class FontFace:
    """One font file: ``name`` is the file stem (unique), ``family`` and ``style`` its names."""

    name: str
    family: str
    style: str
    path: Path


def find_fonts(folders: list[Path] | None = None) -> list[FontFace]:
    """Every installed font that prints all seven numeral capitals, sorted by name.

    Args:
        folders: where to look (recursively); default matplotlib's bundled fonts, then
            /usr/share/fonts. A file whose name or bytes were already seen is skipped.
    """
    faces: dict[str, FontFace] = {}
    seen: set[str] = set()
    for path in _font_files(folders):
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if path.stem in faces or digest in seen:
            continue
        seen.add(digest)
        if _cap_ratio(str(path)) is None:
            continue
        family, style = ImageFont.truetype(str(path), _PROBE_SIZE).getname()
        if path.stem in COMPUTER_MODERN:
            family, style = "Computer Modern", COMPUTER_MODERN[path.stem]
        faces[path.stem] = FontFace(path.stem, family or path.stem, style or "Regular", path)
    return sorted(faces.values(), key=lambda face: face.name)


def _font_files(folders: list[Path] | None) -> list[Path]:
    if folders is None:
        # find_spec locates matplotlib without importing it (matplotlib is not a dependency).
        spec = importlib.util.find_spec("matplotlib")
        bundled = [Path(next(iter(spec.submodule_search_locations)), "mpl-data", "fonts", "ttf")] \
            if spec is not None and spec.submodule_search_locations else []
        folders = [*bundled, SYSTEM_FONTS]
    return [path for folder in folders if folder.is_dir()
            for path in sorted(folder.rglob("*")) if path.suffix.lower() in FONT_SUFFIXES]


def split_fonts(fonts: list[FontFace], validation_families: tuple[str, ...] = ("Computer Modern",)
                ) -> tuple[list[FontFace], list[FontFace]]:
    """(train, validation) by family, so no validation face (or its sibling) is seen in training.

    Raises:
        ValueError: either side is empty.
    """
    if isinstance(validation_families, str):  # one family name, not its letters
        validation_families = (validation_families,)
    validation = [face for face in fonts if face.family in validation_families]
    train = [face for face in fonts if face.family not in validation_families]
    if not train or not validation:
        families = sorted({face.family for face in fonts})
        side = "training" if not train else "validation"
        raise ValueError(f"split_fonts: no {side} fonts left with validation families {validation_families}; "
                         f"the fonts found are of families {families}")
    return train, validation


@lru_cache(maxsize=None)
def _cap_ratio(path: str) -> float | None:
    """Cap height / font size when the font prints IVXLCDM as real capitals, else None.

    Symbol fonts map these code points to other shapes (cmsy10: calligraphic letters, cmex10:
    big operators, LastResort: one box for all), to nothing (STIX size variants, Display
    faces) or to the .notdef box. Real capitals share one height, are one piece each, and only
    D encloses a hole (M may: italic serifs touch), which none of those impostors manage.
    """
    try:
        font = ImageFont.truetype(path, _PROBE_SIZE)
    except OSError as exc:
        log.debug("skipping font %s (%s)", path, exc)
        return None
    missing = _draw(_MISSING, font) > 127
    masks = [_draw(symbol, font) > 127 for symbol in SYMBOLS]
    problem = _capitals_problem(masks, missing)
    if problem:
        log.debug("skipping font %s: %s", path, problem)
        return None
    heights = [np.ptp(np.nonzero(mask)[0]) + 1 for symbol, mask in zip(SYMBOLS, masks) if symbol != "C"]
    return float(np.median(heights)) / _PROBE_SIZE


def _capitals_problem(masks: list[np.ndarray], missing: np.ndarray) -> str | None:
    """Why these renderings of I V X L C D M are not the capitals, or None when they are."""
    for symbol, mask in zip(SYMBOLS, masks):
        if not mask.any():
            return f"{symbol} draws nothing"
        if mask.shape == missing.shape and np.array_equal(mask, missing):
            return f"{symbol} draws the missing-glyph box"
    if len({mask.tobytes() + bytes(mask.shape) for mask in masks}) < len(masks):
        return "some capitals draw the same glyph"
    heights = np.array([np.ptp(np.nonzero(mask)[0]) + 1 for mask in masks])
    if heights.max() > 1.25 * heights.min():
        return f"capital heights differ too much ({heights.tolist()})"
    for symbol, mask in zip(SYMBOLS, masks):
        pieces, holes = len(connected_components(mask)[1]), _holes(mask)
        expected_holes = {"D": (1,), "M": (0, 1)}.get(symbol, (0,))
        if pieces != 1 or holes not in expected_holes:
            return f"{symbol} has {pieces} pieces and {holes} holes"
    return None


def _holes(mask: np.ndarray) -> int:
    """Background regions (4-connected, the dual of 8-connected ink) that do not reach the border."""
    padded = np.pad(~mask, 1, constant_values=True)  # the outside becomes one region
    return len(connected_components(padded, connectivity=4)[1]) - 1


@lru_cache(maxsize=4096)
def word_space(font: FontFace) -> float:
    """Width of the font's space, in ems (0 for math fonts such as cmmi10, which set no spaces)."""
    return _truetype(str(font.path), _PROBE_SIZE).getlength(" ") / _PROBE_SIZE


def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


def _draw(text: str, font: ImageFont.FreeTypeFont, pad: int = 2) -> np.ndarray:
    """(H, W) uint8 ink amount (255 = full ink) of ``text``, tight to its box plus ``pad``."""
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (max(1, right - left) + 2 * pad, max(1, bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, fill=255)
    return np.asarray(canvas)


# --------------------------------------------------------------------------- noise
@dataclass
class NoiseConfig(BaseConfig):
    """How worn the printed page looks. ``level`` scales every maximum below (0 = clean print).

    The defaults (``level=1``) look like a worn scanned page: legible, but no glyph is clean.

    Attributes:
        level: master knob; each effect is drawn between none and ``level`` x its maximum.
        rotation_degrees: largest rotation of the text either way.
        blur_sigma: largest Gaussian blur (scanner optics), pixels at a 48 px cap height.
        ink_noise: largest fraction of pixels turned into specks (half dark dust, half white gaps).
        stroke_weight: largest stroke change: strokes grow by up to this many pixels on each side,
            or shrink by up to a third of that (so hairlines thin but survive).
        stain_probability: chance of a stain (soft grey blob or coffee ring) per patch, or per
            8 x 8 cap-height square of a page.
        stain_size: largest stain radius, in cap heights.
        jpeg_quality_min: lowest JPEG quality of the scan's round-trip at level 1 (95 is the highest);
            lower levels raise it, level 0 skips JPEG altogether.
        paper_grey: largest darkening of the paper below white, and lightening of the ink above
            black, in grey levels; uneven lighting and grain scale with it.
        scale: largest relative stretch of the text, drawn apart for height and width
            (font size around the requested cap height, condensed or expanded print).
    """

    level: float = 1.0
    rotation_degrees: float = 3.0
    blur_sigma: float = 1.0
    ink_noise: float = 0.01
    stroke_weight: float = 1.0
    stain_probability: float = 0.3
    stain_size: float = 1.0
    jpeg_quality_min: int = 30
    paper_grey: float = 40.0
    scale: float = 0.1

    def validate(self) -> None:
        super().validate()
        self.require_range("level", 0.0, 4.0, "0 = clean print, 1 = the default wear")
        self.require_range("rotation_degrees", 0.0, 45.0)
        self.require_range("blur_sigma", 0.0, 5.0)
        self.require_range("ink_noise", 0.0, 0.2)
        self.require_range("stroke_weight", 0.0, 1.0)
        self.require_range("stain_probability", 0.0, 1.0)
        self.require_range("stain_size", 0.0, 5.0)
        self.require_range("jpeg_quality_min", 1, 95)
        self.require_range("paper_grey", 0.0, 100.0)
        self.require_range("scale", 0.0, 0.5)

# --------------------------------------------------------------------------- rendering
def render_text(text: str, font: FontFace, *, cap_height: float, rng: np.random.Generator,
                noise: NoiseConfig | None = None) -> np.ndarray:
    """One word (``"XIV"``) or symbol printed and scanned: (H, W) uint8, dark ink on light paper.

    Letters keep the font's own spacing (serifs may touch, as in real books); the margins
    (a fifth to three fifths of the cap height) differ on every side.
    """
    noise = noise or NoiseConfig()
    ink = _ink(text, font, cap_height, rng, noise)
    top, bottom, left, right = (rng.uniform(0.2, 0.6, 4) * cap_height).round().astype(int)
    page = np.zeros((ink.shape[0] + top + bottom, ink.shape[1] + left + right), np.float32)
    page[top: top + ink.shape[0], left: left + ink.shape[1]] = ink
    return _print(page, rng, noise, cap_height)


def _ink(text: str, font: FontFace, cap_height: float, rng: np.random.Generator, noise: NoiseConfig) -> np.ndarray:
    """(H, W) float32 ink amount in [0, 1] of ``text``: stretched, inked heavier or lighter, rotated."""
    if not text:
        raise ValueError("render_text: empty text")
    ratio = _cap_ratio(str(font.path))
    if ratio is None:
        raise ValueError(f"render_text: font {font.name} ({font.path}) cannot print the numeral capitals")
    if cap_height < 4:
        raise ValueError(f"render_text: cap_height must be at least 4 px, got {cap_height}")
    level = noise.level
    stretch_y, stretch_x = 1.0 + rng.uniform(-1, 1, 2) * noise.scale * level
    ink = _draw(text, _truetype(str(font.path), max(4, round(cap_height * stretch_y / ratio))))
    ink = _restroke(ink, rng.uniform(-1, 1) * noise.stroke_weight * level)
    angle = rng.uniform(-1, 1) * noise.rotation_degrees * level
    return _warp(ink, stretch_x / stretch_y, angle)


def _restroke(ink: np.ndarray, change: float) -> np.ndarray:
    """Grow (change > 0) or shrink strokes by a fraction of a pixel per side.

    A 3 x 3 max (min) filter moves every edge by one pixel; blending with it moves edges by
    ``change`` pixels in effect. Shrinking goes a third as far: a hairline shrunk by a whole
    pixel would vanish, and with it the shape of an italic M.
    """
    amount = change if change > 0 else -change / 3
    if amount < 0.05:
        return ink
    pick = np.maximum if change > 0 else np.minimum
    rows = pick(pick(ink[:, :-2], ink[:, 1:-1]), ink[:, 2:])  # separable 3 x 3 filter
    moved = np.zeros_like(ink)  # the outer ring stays empty: _draw leaves two empty pixels around
    moved[1:-1, 1:-1] = pick(pick(rows[:-2], rows[1:-1]), rows[2:])
    return (ink + (moved.astype(np.float32) - ink) * min(1.0, amount)).round().astype(np.uint8)


def _warp(ink: np.ndarray, widen: float, angle: float) -> np.ndarray:
    """Stretch the width by ``widen`` and rotate by ``angle`` degrees (anticlockwise) in one resampling.

    Returns float32 ink in [0, 1], on a canvas grown to hold the whole result.
    """
    image = Image.fromarray(ink)
    if abs(widen - 1.0) > 0.01 or abs(angle) > 0.05:
        # Forward map about the centres (y down): stretch x by widen, then rotate anticlockwise;
        # PIL wants the inverse, output (x, y) -> input (a x + b y + c, d x + e y + f).
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        height, width = ink.shape
        out_w = math.ceil(abs(cos) * widen * width + abs(sin) * height) + 2
        out_h = math.ceil(abs(sin) * widen * width + abs(cos) * height) + 2
        a, b, d, e = cos / widen, -sin / widen, sin, cos
        c = width / 2 - (a * out_w / 2 + b * out_h / 2)
        f = height / 2 - (d * out_w / 2 + e * out_h / 2)
        coefficients = (a, b, c, d, e, f)
        image = image.transform((out_w, out_h), Image.Transform.AFFINE, coefficients,
                                Image.Resampling.BILINEAR, fillcolor=0)
    return np.asarray(image, np.float32) / 255.0


def _print(ink: np.ndarray, rng: np.random.Generator, noise: NoiseConfig, cap_height: float) -> np.ndarray:
    """Ink amount (H, W) -> scanned grey page (H, W) uint8: paper, stains, grain, blur, specks, JPEG."""
    level = noise.level
    height, width = ink.shape
    spread = noise.paper_grey * level
    paper_level = 255.0 - rng.uniform(0, spread)
    ink_level = rng.uniform(0, spread)
    paper = np.full((height, width), paper_level, np.float32)
    if spread > 0:  # uneven lighting: a gentle ramp in a random direction
        angle = rng.uniform(0, 2 * math.pi)
        slope = rng.uniform(0, 0.3 * spread) / max(height, width)  # grey levels per pixel
        ramp_y = (np.arange(height, dtype=np.float32) - height / 2) * (slope * math.sin(angle))
        ramp_x = (np.arange(width, dtype=np.float32) - width / 2) * (slope * math.cos(angle))
        paper += ramp_y[:, None] + ramp_x[None, :]
    _stain(paper, rng, noise, cap_height, contrast=paper_level - ink_level)
    gray = paper + (ink_level - paper) * ink
    if spread > 0:
        # Paper grain, uniform (a fifth of the time of normal draws) with a standard deviation of spread / 10.
        gray += (rng.random(gray.shape, np.float32) - 0.5) * (0.1 * spread * math.sqrt(12))
    image = Image.fromarray((np.clip(gray, 0, 255) + 0.5).astype(np.uint8))
    sigma = rng.uniform(0, noise.blur_sigma * level) * cap_height / REFERENCE_CAP_HEIGHT
    if sigma > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(sigma))
    scanned = _specks(np.array(image), rng, rng.uniform(0, noise.ink_noise * level), ink_level, paper_level)
    if level > 0:
        lowest = max(10, round(100 - (100 - noise.jpeg_quality_min) * level))
        return _jpeg(scanned, int(rng.integers(min(lowest, 95), 96)))
    return scanned


def _stain(paper: np.ndarray, rng: np.random.Generator, noise: NoiseConfig, cap_height: float,
           contrast: float) -> None:
    """Darken ``paper`` in place with soft blobs and coffee rings."""
    height, width = paper.shape
    chance = min(1.0, noise.stain_probability * noise.level)
    squares = max(1, round(height * width / (8 * cap_height) ** 2))
    for _ in range(int(rng.binomial(squares, chance)) if chance > 0 else 0):
        radius = max(2.0, rng.uniform(0.3, 1.0) * noise.stain_size * cap_height)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        # A fifth of the contrast at most: blurred hairlines must stay darker than any stain.
        depth = rng.uniform(0.05, 0.2) * contrast
        reach = int(radius * 1.5) + 1
        top, bottom = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        left, right = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        if top >= bottom or left >= right:
            continue
        y = np.arange(top, bottom, dtype=np.float32)[:, None] - cy
        x = np.arange(left, right, dtype=np.float32)[None, :] - cx
        r = np.sqrt(y * y + x * x) / radius
        if rng.random() < 0.5:
            shade = np.exp(-2.0 * r * r)  # blob: soft everywhere
        else:  # coffee ring: a dark rim where the drop dried, a faint tint inside
            shade = np.exp(-(((r - 1.0) / 0.12) ** 2)) + 0.25 / (1.0 + np.exp((r - 1.0) / 0.05))
        paper[top:bottom, left:right] -= depth * np.minimum(shade, 1.0)


def _specks(gray: np.ndarray, rng: np.random.Generator, fraction: float, ink_level: float,
            paper_level: float) -> np.ndarray:
    """Salt and pepper, in place on uint8 ``gray``: ``fraction`` of the pixels become dark dust or white gaps."""
    count = int(rng.binomial(gray.size, fraction)) if fraction > 0 else 0
    if count:
        where = rng.integers(0, gray.size, count)
        shade = rng.uniform(0, 30, count)
        dark = rng.random(count) < 0.5
        gray.reshape(-1)[where] = np.clip(np.where(dark, ink_level + shade, paper_level - shade), 0, 255).round()
    return gray


def _jpeg(gray: np.ndarray, quality: int) -> np.ndarray:
    """The scanner's lossy save and the reader's load."""
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer, formats=["JPEG"]) as decoded:  # named format: no sniffing of every plugin
        decoded.load()
        return np.array(decoded)  # writable, like every other page this module returns


# --------------------------------------------------------------------------- datasets
def render_symbols(fonts: list[FontFace], count: int, *, seed: int, noise: NoiseConfig | None = None,
                   cap_height: tuple[int, int] = (24, 64), workers: int | None = None,
                   alphabet: str = SYMBOLS, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``count`` worn single symbols, cut out as a page reader would, as glyph vectors.

    Sample ``i`` is ``alphabet[i % len(alphabet)]`` in font ``fonts[(i // len(alphabet)) % len(fonts)]``
    (so symbols and fonts are balanced), at a random cap height in ``cap_height`` (inclusive);
    its wear comes from ``np.random.default_rng([seed, i])``. Shuffle before online training.

    Args:
        workers: processes to render in; the data are the same for any number. Default: every
            available core from 2000 samples up (forked processes, where the OS has fork).
        alphabet: the characters to render: the seven numeral symbols, or e.g. ``NOT_NUMERALS``
            (letters and digits a reader must not take for numerals).
        progress: show a progress bar on stderr.

    Returns:
        X: (count, 1024) float32 in [0, 1] (see :func:`~slimvision.data.glyphs.glyph_vector`).
        y: (count,) int64 indices into ``alphabet``.
    """
    _check_request(fonts, count, cap_height)
    if not alphabet or any(not character.strip() for character in alphabet):
        raise ValueError(f"render_symbols: alphabet must be printable characters, got {alphabet!r}")
    noise = noise or NoiseConfig()
    labels = np.arange(count, dtype=np.int64) % len(alphabet)
    workers = _worker_count(workers, count)
    # A few chunks per process even out fast and slow chunks (big cap heights cost more), and
    # chunks of at most _CHUNK samples keep the progress bar moving.
    chunks = max(4 * workers if workers > 1 else 1, math.ceil(count / _CHUNK))
    bounds = np.linspace(0, count, chunks + 1).round().astype(int).tolist()
    jobs = [(fonts, start, stop, seed, noise, cap_height, alphabet) for start, stop in zip(bounds[:-1], bounds[1:])]
    parts = []
    with progress_bar(count, enabled=progress, desc=f"rendering {alphabet if len(alphabet) <= 8 else 'glyphs'}",
                      unit="glyph", leave=False) as bar:
        if workers == 1:
            for job in jobs:
                parts.append(_symbol_rows(*job))
                bar.update(len(parts[-1]))
        else:
            # fork: the children start at once with the parent's fonts loaded, and need no importable __main__.
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for part in pool.imap(_star_symbol_rows, jobs):
                    parts.append(part)
                    bar.update(len(part))
    return np.concatenate(parts), labels


def _star_symbol_rows(job: tuple[Any, ...]) -> np.ndarray:
    return _symbol_rows(*job)


#: Most samples per rendering job (one progress-bar step).
_CHUNK = 1000
#: Below this many samples starting processes costs more than it saves.
PARALLEL_FROM = 2000


def _worker_count(workers: int | None, count: int) -> int:
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
    elif count < PARALLEL_FROM:
        return 1
    else:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    if multiprocessing.current_process().daemon or "fork" not in multiprocessing.get_all_start_methods():
        return 1  # a pool's worker may not start processes of its own; no fork on this OS
    return max(1, min(workers, count))


def symbol_font(fonts: list[FontFace], index: int, alphabet_size: int) -> FontFace:
    """The font :func:`render_symbols` draws sample ``index`` in (each character once per font, in turn)."""
    return fonts[(index // alphabet_size) % len(fonts)]


def _symbol_rows(fonts: list[FontFace], start: int, stop: int, seed: int, noise: NoiseConfig,
                 cap_height: tuple[int, int], alphabet: str = SYMBOLS) -> np.ndarray:
    """Glyph vectors of samples ``start`` to ``stop`` of :func:`render_symbols`, (stop - start, 1024)."""
    rows = np.empty((stop - start, GLYPH_SIZE * GLYPH_SIZE), np.float32)
    for index in range(start, stop):
        rng = np.random.default_rng([seed, index])
        font = symbol_font(fonts, index, len(alphabet))
        height = int(rng.integers(cap_height[0], cap_height[1] + 1))
        gray = render_text(alphabet[index % len(alphabet)], font, cap_height=height, rng=rng, noise=noise)
        rows[index - start] = glyph_vector(main_glyph(binarize(gray)))
    return rows


def render_numerals(fonts: list[FontFace], numbers: list[int], *, seed: int, noise: NoiseConfig | None = None,
                    cap_height: tuple[int, int] = (24, 64)) -> list[tuple[np.ndarray, int]]:
    """A worn grey patch of each whole numeral (``to_roman(n)``), with its number.

    Numeral ``i`` is printed in ``fonts[i % len(fonts)]`` with wear from
    ``np.random.default_rng([seed, i])``.
    """
    _check_request(fonts, len(numbers), cap_height)
    noise = noise or NoiseConfig()
    patches = []
    for index, number in enumerate(numbers):
        rng = np.random.default_rng([seed, index])
        height = int(rng.integers(cap_height[0], cap_height[1] + 1))
        patch = render_text(to_roman(number), fonts[index % len(fonts)], cap_height=height, rng=rng, noise=noise)
        patches.append((patch, number))
    return patches


def render_page(numbers: list[int], fonts: list[FontFace], *, seed: int, noise: NoiseConfig | None = None,
                size: tuple[int, int] = (1400, 1000)) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """A worn page of ``size`` (H, W) with the numerals at random, non-overlapping places.

    Each numeral gets a random font and cap height in ``PAGE_CAP_HEIGHT`` (smaller when it does
    not fit), and is kept at least its half cap height of clear paper from the others and the
    edges, so no two numerals share ink or read as one word. Longest numerals are placed first.

    Returns:
        The page, (H, W) uint8, and each number with its ink box (top, left, bottom, right),
        bottom/right exclusive, in the order given.

    Raises:
        ValueError: the numerals do not fit on the page.
    """
    _check_request(fonts, len(numbers), PAGE_CAP_HEIGHT)
    noise = noise or NoiseConfig()
    rng = np.random.default_rng(seed)
    page = np.zeros(size, np.float32)
    taken: list[Box] = []  # placed boxes, each grown by its clearance
    boxes: dict[int, Box] = {}
    heights = []
    for index in sorted(range(len(numbers)), key=lambda i: -len(to_roman(numbers[i]))):
        font = fonts[int(rng.integers(len(fonts)))]
        height = int(rng.integers(PAGE_CAP_HEIGHT[0], PAGE_CAP_HEIGHT[1] + 1))
        while True:
            ink = _crop_ink(_ink(to_roman(numbers[index]), font, height, rng, noise))
            clear = height // 2
            top, left = _free_spot(ink.shape, clear, taken, size, rng)
            if top >= 0 or height == PAGE_CAP_HEIGHT[0]:
                break
            height = max(PAGE_CAP_HEIGHT[0], int(height * 0.8))
        if top < 0:
            raise ValueError(f"render_page: {to_roman(numbers[index])} ({numbers[index]}) does not fit on a "
                             f"{size[0]}x{size[1]} page beside the {len(boxes)} numerals already placed; "
                             f"use fewer numbers or a larger size")
        bottom, right = top + ink.shape[0], left + ink.shape[1]
        page[top:bottom, left:right] = ink
        taken.append((top - clear, left - clear, bottom + clear, right + clear))
        boxes[index] = (top, left, bottom, right)
        heights.append(height)
    cap_height = float(np.median(heights)) if heights else REFERENCE_CAP_HEIGHT
    return _print(page, rng, noise, cap_height), [(number, boxes[i]) for i, number in enumerate(numbers)]


def _crop_ink(ink: np.ndarray) -> np.ndarray:
    """Ink cropped to where it is at least half strength (what a clean scan's threshold keeps)."""
    rows, cols = np.nonzero(ink >= 0.5)
    if rows.size == 0:
        rows, cols = np.nonzero(ink)
    return ink[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


def _free_spot(shape: tuple[int, int], clear: int, taken: list[Box], size: tuple[int, int],
               rng: np.random.Generator, tries: int = 300) -> tuple[int, int]:
    """(top, left) of a ``shape`` box whose ``clear`` margin stays on the page and off every taken box.

    (-1, -1) when ``tries`` random places all collide.
    """
    height, width = shape[0] + 2 * clear, shape[1] + 2 * clear  # the box with its margin
    free_rows, free_cols = size[0] - height, size[1] - width
    if free_rows < 0 or free_cols < 0:
        return -1, -1
    for _ in range(tries):
        top, left = int(rng.integers(free_rows + 1)), int(rng.integers(free_cols + 1))
        if all(top + height <= t or top >= b or left + width <= l or left >= r for t, l, b, r in taken):
            return top + clear, left + clear
    return -1, -1


def _check_request(fonts: list[FontFace], count: int, cap_height: tuple[int, int]) -> None:
    if not fonts:
        raise ValueError("no fonts given: find_fonts() found none that print IVXLCDM, or the split left none")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    low, high = cap_height
    if not 4 <= low <= high:
        raise ValueError(f"cap_height must be (low, high) with 4 <= low <= high, got {cap_height}")
