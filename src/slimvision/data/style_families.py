"""Style data by FAMILY: procedural families of the graphic styles users paint with, held out whole.

``data.style_images`` draws style samples from the few real images installed packages ship plus
five generic textures, and holds out whole files. A student trained that way paints a spiral, a
striped flag and a Voronoi mosaic in the same rainbow look (issue 24). This module adds what
users actually paint with, as *families*: each family is a pure function
``(seed, index, size) -> (size, size, 3) uint8`` that varies scale, orientation, density and
palette, so it is a kind of picture, not a template. Palettes come from the real images
(median-cut) or are random harmonious schemes; real images are cut and mixed (patch collages,
CutMix-like blends) and any sample can get a strong colour jitter (hue rotation, saturation,
posterise, invert).

Held-out sets are split by family and by source, never by file:

* :data:`HELD_OUT_FAMILIES` (``concentric``, ``stained_glass``, ``halftone``, ``marble``,
  ``woven``) are never rendered for training, not even as a mix ingredient; each has a training
  cousin (``spiral``, ``voronoi``, ``dots``, ``noise``, ``checkers``), so a score on them measures
  how a student carries over to a neighbouring kind of picture it never saw.
* :func:`split_real_sources` holds out whole origins (``matplotlib``, ``opencv-doc``), the
  demo painting and optionally ``split_sources``' hashed files, and moves any training file that
  shows the same picture as a held-out one (slimvision's samples copy scikit-image's) to the
  held-out side. Held-out files give no crops, collages or palettes to training.

Trainers take :func:`family_training_data` (``style_data="families"`` in the style predictor's
and transformer's configs); evaluation takes :func:`held_out_styles`; ``slimvision train
style-data --sheet families.png`` draws a row per family (:func:`family_sheet`). A render is a
pure function of its arguments; with a :class:`PaletteBank` it also depends on the bank's images.

Example:
    >>> train_families, held_out = split_families()
    >>> image = render("spiral", seed=0, index=3, size=256)     # (256, 256, 3) uint8, always the same
    >>> dataset, held_out_files = family_training_data(20_000, seed=0, held_out_fraction=0.15)
    >>> sample_id, image = dataset[17]                          # ("fam0-17", (256, 256, 3) uint8)
    >>> evaluation = held_out_styles(per_family=8)              # 40 (name, image) of held-out families
"""

from __future__ import annotations

import colorsys
import functools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from slimvision.data.style_images import (StyleSource, augment, find_style_sources, load_rgb, random_crop,
                                          split_sources)
from slimvision.errors import ConfigError

#: The style data a trainer's ``style_data`` field chooses: "files" (``data.style_images``, the
#: shipped students' data) or "families" (this module: :func:`family_training_data`).
STYLE_DATA = ("files", "families")

Palette = np.ndarray  # (K, 3) float32 in [0, 1], K >= 2
Painter = Callable[[np.random.Generator, int, Palette], np.ndarray]  # -> (size, size, 3) float32 in [0, 1]


@dataclass(frozen=True)
class Family:
    """One kind of style picture: a painter and a line saying what it draws."""

    name: str
    about: str
    paint: Painter


# --------------------------------------------------------------------------- palettes
def harmonious_palette(rng: np.random.Generator) -> Palette:
    """2-6 colours of one hue scheme (monochrome, analogous, complementary, triadic, split), (K, 3)."""
    scheme = int(rng.integers(5))
    base = rng.random()
    offsets = [[0.0], [0.0, 0.08, -0.08], [0.0, 0.5], [0.0, 1 / 3, 2 / 3], [0.0, 5 / 12, 7 / 12]][scheme]
    count = int(rng.integers(2, 7))
    colours = []
    for i in range(count):
        hue = (base + offsets[i % len(offsets)] + rng.normal(0, 0.02)) % 1.0
        saturation = float(np.clip(rng.uniform(0.25, 1.0) if scheme else rng.uniform(0.2, 0.9), 0, 1))
        value = float(rng.uniform(0.15, 1.0))
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return np.asarray(colours, np.float32)


class PaletteBank:
    """Colour palettes of real images (median-cut, ``colours`` per image), drawn from per sample.

    Args:
        sources: the images whose colours are used (training images only, for training data).
        colours: colours taken from each image.
    """

    def __init__(self, sources: Sequence[StyleSource], colours: int = 8) -> None:
        self.sources = sorted(sources, key=lambda source: source.name)
        self.colours = colours

    @functools.cached_property
    def palettes(self) -> list[Palette]:
        return [image_palette(load_rgb(source.path), self.colours) for source in self.sources]

    def draw(self, rng: np.random.Generator) -> Palette:
        """A random subset (2 to all colours, shuffled) of one image's palette."""
        palette = self.palettes[int(rng.integers(len(self.palettes)))]
        keep = int(rng.integers(2, len(palette) + 1))
        return palette[rng.permutation(len(palette))[:keep]]


def image_palette(image: np.ndarray, colours: int = 8) -> Palette:
    """The ``colours`` main colours of an (H, W, 3) uint8 image by median cut, (K, 3) in [0, 1]."""
    thumbnail = Image.fromarray(image).resize((128, 128), Image.Resampling.NEAREST)  # no blended colours
    quantized = thumbnail.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    used = sorted(count_index for count_index in quantized.getcolors() or [])  # (count, index), rare first
    table = np.asarray(quantized.getpalette()[:3 * 256], np.float32).reshape(-1, 3) / 255.0
    palette = table[[index for _, index in used]]
    if len(palette) < 2:  # a one-colour image: add its inverse so every palette has two colours
        palette = np.concatenate([palette, 1.0 - palette])
    return palette


def _pick_palette(rng: np.random.Generator, palettes: PaletteBank | None) -> Palette:
    if palettes is not None and palettes.sources and rng.random() < 0.5:
        return palettes.draw(rng)
    return harmonious_palette(rng)


# --------------------------------------------------------------------------- shared helpers
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [0, 1), (size, size) each: families are drawn in relative units."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(axis, axis)


def _rotated(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    x, y = _grid(size)
    x, y = x - 0.5, y - 0.5
    cos, sin = math.cos(angle), math.sin(angle)
    return x * cos + y * sin, -x * sin + y * cos


def _ramp(field: np.ndarray, palette: Palette) -> np.ndarray:
    """Colour a [0, 1] field through the palette's colours as stops, (H, W, 3)."""
    stops = np.linspace(0.0, 1.0, len(palette))
    return np.stack([np.interp(field, stops, palette[:, c]) for c in range(3)], axis=-1)


def _index_colours(labels: np.ndarray, palette: Palette) -> np.ndarray:
    """Colour integer labels by cycling through the palette, (H, W, 3)."""
    return palette[np.mod(labels, len(palette)).astype(np.int64)]


def _value_noise(rng: np.random.Generator, size: int, octaves: int, base_cells: int = 4,
                 persistence: float = 0.5) -> np.ndarray:
    """Fractal value noise in [0, 1], (size, size): octaves of bicubic-upsampled random grids."""
    total = np.zeros((size, size), np.float32)
    for octave in range(octaves):
        cells = base_cells * 2 ** octave
        coarse = Image.fromarray(rng.random((cells + 1, cells + 1)).astype(np.float32), mode="F")
        total += np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.float32) * persistence ** octave
    return (total - total.min()) / max(float(np.ptp(total)), 1e-6)


def _canvas(rng: np.random.Generator, size: int, palette: Palette, scale: int = 1) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    background = tuple(int(c * 255) for c in palette[int(rng.integers(len(palette)))])
    canvas = Image.new("RGB", (size * scale, size * scale), background)
    return canvas, ImageDraw.Draw(canvas)


def _colour(rng: np.random.Generator, palette: Palette, jitter: float = 0.0) -> tuple[int, int, int]:
    colour = palette[int(rng.integers(len(palette)))] + rng.normal(0, jitter, 3)
    return tuple(int(v) for v in np.clip(colour * 255 + 0.5, 0, 255))


def _finish(canvas: Image.Image, size: int) -> np.ndarray:
    """A (possibly supersampled) PIL canvas as (size, size, 3) float in [0, 1]."""
    if canvas.size != (size, size):
        canvas = canvas.resize((size, size), Image.Resampling.BOX)  # anti-aliases hard edges
    return np.asarray(canvas, np.float32) / 255.0


def _nearest_points(size: int, points: np.ndarray, work: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Label of the nearest point and (second - first) distance, at ``min(size, work)`` px, upsampled.

    Voronoi cells cost one pass per point; computing them on at most 128 px keeps a 256 px
    image in a few milliseconds (the edges are smoothed by the bilinear upsampling).
    """
    side = min(size, work)
    x, y = _grid(side)
    first = np.full((side, side), np.inf, np.float32)
    second = np.full((side, side), np.inf, np.float32)
    labels = np.zeros((side, side), np.int32)
    for label, (px, py) in enumerate(points.astype(np.float32)):  # float32 throughout: PIL's "F" mode
        distance = np.sqrt((x - px) ** 2 + (y - py) ** 2)
        closer = distance < first
        second = np.where(closer, first, np.minimum(second, distance))
        labels = np.where(closer, label, labels)
        first = np.where(closer, distance, first)
    gap = second - first
    if side != size:
        labels = np.asarray(Image.fromarray(labels).resize((size, size), Image.Resampling.NEAREST))
        gap = np.asarray(Image.fromarray(gap.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR))
    return labels, gap


# --------------------------------------------------------------------------- the families
def _stripes(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, _ = _rotated(size, rng.uniform(0, math.pi))
    widths = rng.uniform(0.01, 0.12, int(rng.integers(2, 9)))  # one repeat of bands of varying width
    edges = np.cumsum(widths)
    position = np.mod(u * rng.uniform(0.6, 1.6), edges[-1])
    labels = np.searchsorted(edges, position, side="right")
    return _index_colours(labels + int(rng.integers(len(palette))), palette)


def _wavy_stripes(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.uniform(0, math.pi))
    amplitude, frequency = rng.uniform(0.01, 0.08), rng.uniform(1, 8)
    u = u + amplitude * np.sin(2 * math.pi * frequency * v + rng.uniform(0, 2 * math.pi))
    period = rng.uniform(0.03, 0.2)
    labels = np.floor(u / period * len(palette) / max(len(palette) - 1, 1)).astype(np.int64)
    soft = rng.random() < 0.4  # some wavy stripes are shaded bands, others hard
    if soft:
        return _ramp(0.5 + 0.5 * np.sin(2 * math.pi * u / period), palette)
    return _index_colours(labels, palette)


def _zigzag(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.uniform(0, math.pi))
    tooth = rng.uniform(0.03, 0.15)
    u = u + rng.uniform(0.3, 1.2) * tooth * np.abs(np.mod(v / tooth, 2.0) - 1.0)  # chevrons
    labels = np.floor(u / rng.uniform(0.02, 0.1)).astype(np.int64)
    return _index_colours(labels, palette)


def _plaid(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.choice([0.0, math.pi / 4, rng.uniform(0, math.pi)]))
    image = np.zeros((size, size, 3), np.float32)
    for axis in (u, v):  # two crossing sets of coloured bands, averaged like woven threads
        widths = rng.uniform(0.01, 0.08, int(rng.integers(3, 7)))
        edges = np.cumsum(widths)
        labels = np.searchsorted(edges, np.mod(axis, edges[-1]), side="right")
        image += _index_colours(labels + int(rng.integers(len(palette))), palette)
    return image / 2


def _spiral(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    x, y = _grid(size)
    cx, cy = rng.uniform(0.2, 0.8, 2)
    radius = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) + 1e-6
    theta = np.arctan2(y - cy, x - cx)
    arms = int(rng.integers(1, 7))
    growth = np.log(radius) * rng.uniform(2, 6) if rng.random() < 0.5 else radius * rng.uniform(10, 40)  # log / Archimedes
    phase = (arms * theta / (2 * math.pi) + rng.choice([-1, 1]) * growth) % 1.0
    if rng.random() < 0.5:
        return _index_colours(np.floor(phase * len(palette)).astype(np.int64), palette)
    return _ramp(0.5 + 0.5 * np.sin(2 * math.pi * phase), palette)


def _concentric(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    x, y = _grid(size)
    centres = rng.uniform(-0.2, 1.2, (int(rng.integers(1, 4)), 2))
    ring = rng.uniform(0.02, 0.12)
    distance = np.min([np.sqrt((x - cx) ** 2 + (y - cy) ** 2) for cx, cy in centres], axis=0)
    labels = np.floor(distance / ring).astype(np.int64)
    return _index_colours(labels + int(rng.integers(len(palette))), palette)


def _checkers(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.choice([0.0, math.pi / 4, rng.uniform(0, math.pi)]))
    cell = rng.uniform(0.03, 0.25)
    aspect = rng.uniform(0.5, 2.0) if rng.random() < 0.3 else 1.0
    cells = np.floor(u / cell) + np.floor(v / (cell * aspect))
    colours = min(len(palette), int(rng.integers(2, 4)))
    return _index_colours(np.mod(cells, colours).astype(np.int64), palette)


def _dots(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.uniform(0, math.pi / 2))
    spacing = rng.uniform(0.03, 0.2)
    if rng.random() < 0.5:  # staggered rows
        u = u + np.mod(np.floor(v / spacing), 2) * spacing / 2
    cu, cv = np.mod(u, spacing) / spacing - 0.5, np.mod(v, spacing) / spacing - 0.5
    radius = rng.uniform(0.15, 0.48)
    inside = np.sqrt(cu ** 2 + cv ** 2) < radius
    background, dot = palette[0], palette[1:]
    cell_id = (np.floor(u / spacing) * 7 + np.floor(v / spacing) * 13).astype(np.int64)
    colours = dot[np.mod(cell_id, len(dot))] if rng.random() < 0.5 else np.broadcast_to(dot[0], (size, size, 3))
    return np.where(inside[..., None], colours, background)


def _halftone(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    tone = _value_noise(rng, size, 2, base_cells=2) if rng.random() < 0.5 else _linear_field(rng, size)
    u, v = _rotated(size, rng.uniform(0, math.pi / 2))
    spacing = rng.uniform(0.015, 0.06)
    cu, cv = np.mod(u, spacing) / spacing - 0.5, np.mod(v, spacing) / spacing - 0.5
    inside = np.sqrt(cu ** 2 + cv ** 2) < 0.7 * np.sqrt(tone)  # dot area follows the tone
    ink, paper = palette[0], palette[-1]
    return np.where(inside[..., None], ink, paper)


def _linear_field(rng: np.random.Generator, size: int) -> np.ndarray:
    u, _ = _rotated(size, rng.uniform(0, 2 * math.pi))
    return np.clip(u / 1.42 + 0.5, 0.0, 1.0)


def _voronoi(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    points = rng.random((int(rng.integers(6, 120)), 2))
    labels, _ = _nearest_points(size, points)
    shades = palette[rng.integers(len(palette), size=len(points))] * rng.uniform(0.85, 1.15, (len(points), 1))
    return np.clip(shades[labels], 0.0, 1.0)


def _stained_glass(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    points = rng.random((int(rng.integers(10, 90)), 2))
    labels, gap = _nearest_points(size, points)
    cells = palette[rng.integers(len(palette), size=len(points))][labels]
    glow = _value_noise(rng, size, 2)[..., None] * 0.3 + 0.85  # light through uneven glass
    lead = gap * size < rng.uniform(1.5, 5.0)  # dark lead lines where two cells meet
    lead_colour = np.full(3, rng.uniform(0.0, 0.15), np.float32)
    return np.where(lead[..., None], lead_colour, np.clip(cells * glow, 0, 1))


def _mosaic_tiles(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.choice([0.0, rng.uniform(0, math.pi)]))
    tile = rng.uniform(0.02, 0.1)
    iu, iv = np.floor(u / tile), np.floor(v / tile)
    grout = (np.mod(u, tile) < tile * 0.12) | (np.mod(v, tile) < tile * 0.12)
    tile_rng = np.random.default_rng(int(rng.integers(2 ** 31)))
    table = tile_rng.integers(len(palette), size=(64, 64))
    shade = tile_rng.uniform(0.8, 1.15, (64, 64))
    a, b = np.mod(iu, 64).astype(np.int64), np.mod(iv, 64).astype(np.int64)
    tiles = palette[table[a, b]] * shade[a, b][..., None]
    return np.where(grout[..., None], rng.uniform(0.3, 0.95), np.clip(tiles, 0, 1))


def _woven(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.choice([0.0, math.pi / 4, rng.uniform(0, math.pi)]))
    thread = rng.uniform(0.02, 0.08)
    iu, iv = np.floor(u / thread), np.floor(v / thread)
    over = np.mod(iu + iv, 2) == 0  # plain weave: warp over weft on alternate crossings
    fu, fv = np.mod(u, thread) / thread, np.mod(v, thread) / thread
    shade = np.where(over, np.sin(math.pi * fv), np.sin(math.pi * fu)) * 0.5 + 0.5  # rounded threads
    warp, weft = palette[0], palette[1 % len(palette)]
    return np.where(over[..., None], warp, weft) * shade[..., None]


def _line_art(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    paper = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.8, 0.98), rng.uniform(0.7, 0.95)], np.float32)
    canvas = Image.new("RGB", (size * 2, size * 2), tuple(int(c * 255) for c in paper))
    draw = ImageDraw.Draw(canvas)
    ink = _colour(rng, palette) if rng.random() < 0.4 else tuple(int(c) for c in rng.integers(0, 60, 3))
    for _ in range(int(rng.integers(8, 60))):  # curvy ink strokes: random walks with momentum
        point = rng.random(2) * size * 2
        heading = rng.uniform(0, 2 * math.pi)
        path = [tuple(point)]
        for _ in range(int(rng.integers(5, 40))):
            heading += rng.normal(0, 0.35)
            point = point + rng.uniform(4, 16) * np.array([math.cos(heading), math.sin(heading)])
            path.append(tuple(point))
        draw.line(path, fill=ink, width=int(rng.integers(1, 7)), joint="curve")
    return _finish(canvas, size)


def _hatching(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    tone = _value_noise(rng, size, 3, base_cells=2)
    image = np.ones((size, size, 3), np.float32) * palette[-1]
    ink = palette[0]
    spacing = rng.uniform(0.01, 0.04)
    for layer, angle in enumerate(rng.uniform(0, math.pi) + np.arange(int(rng.integers(1, 4))) * math.pi / 4):
        u, _ = _rotated(size, angle)
        line = np.mod(u, spacing) / spacing < 0.35
        dark = tone < (layer + 1) / 4 + 0.2  # more crossing layers where the tone is darker
        image = np.where((line & dark)[..., None], ink, image)
    return image


def _gradient_linear(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    field = _linear_field(rng, size)
    if rng.random() < 0.3:  # posterised bands of the gradient
        levels = int(rng.integers(3, 9))
        field = np.minimum(np.floor(field * levels), levels - 1) / (levels - 1)  # 0 .. 1 in `levels` steps
    return _ramp(field ** rng.uniform(0.5, 2.0), palette)


def _gradient_radial(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    x, y = _grid(size)
    cx, cy = rng.uniform(-0.2, 1.2, 2)
    field = np.sqrt((x - cx) ** 2 + ((y - cy) * rng.uniform(0.5, 2.0)) ** 2) / rng.uniform(0.4, 1.5)
    return _ramp(np.clip(field, 0, 1), palette)


def _noise(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    field = _value_noise(rng, size, int(rng.integers(2, 7)), base_cells=int(rng.integers(2, 9)),
                         persistence=rng.uniform(0.35, 0.75))
    if rng.random() < 0.3:  # ridged noise: sharp creases
        field = 1.0 - np.abs(2 * field - 1)
    return _ramp(field, palette)


def _marble(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.uniform(0, math.pi))
    turbulence = _value_noise(rng, size, 5, base_cells=2)
    veins = np.sin(2 * math.pi * (u * rng.uniform(2, 10) + turbulence * rng.uniform(1, 5)))
    return _ramp((0.5 + 0.5 * veins) ** rng.uniform(0.3, 3.0), palette)


def _brush_strokes(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    canvas, draw = _canvas(rng, size, palette)
    flow = _value_noise(rng, 32, 2, base_cells=2) * rng.uniform(0.5, 3.0) + rng.uniform(0, math.pi)  # local direction
    width_range = (max(2, size // 60), max(3, size // int(rng.integers(8, 25))))
    for _ in range(int(rng.integers(150, 600))):
        x0, y0 = rng.random(2) * size
        angle = flow[int(y0 * 32 / size), int(x0 * 32 / size)] + rng.normal(0, 0.2)
        length = rng.uniform(0.03, 0.15) * size
        end = (x0 + length * math.cos(angle), y0 + length * math.sin(angle))
        width = int(rng.integers(*width_range))
        draw.line([(x0, y0), end], fill=_colour(rng, palette, 0.05), width=width)
        if rng.random() < 0.5:  # impasto: a lighter ridge along the stroke
            ridge = tuple(min(255, c + 40) for c in _colour(rng, palette, 0.05))
            draw.line([(x0 + 1, y0 - 1), (end[0] + 1, end[1] - 1)], fill=ridge, width=max(1, width // 4))
    return _finish(canvas, size)


def _pointillism(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    tone = _value_noise(rng, size, 2, base_cells=2)  # which colours go where: a soft underlying picture
    image = np.broadcast_to(palette[int(rng.integers(len(palette)))], (size, size, 3)).copy()
    spacing = rng.uniform(0.008, 0.03)
    x, y = _grid(size)
    for _layer in range(3):  # three offset, jittered dot grids cover the canvas like dabs
        shift_x, shift_y = rng.random(2)
        gx, gy = np.floor(x / spacing + shift_x) - shift_x, np.floor(y / spacing + shift_y) - shift_y
        cell = (np.rint(gx) * 92821 + np.rint(gy) * 68917).astype(np.int64) % 4099  # a hash of the grid cell
        jitter = rng.random((4099, 3))
        cx, cy = (gx + 0.2 + 0.6 * jitter[cell, 0]) * spacing, (gy + 0.2 + 0.6 * jitter[cell, 1]) * spacing
        inside = (x - cx) ** 2 + (y - cy) ** 2 < (0.45 * spacing) ** 2
        stop = tone * (len(palette) - 1) + (jitter[cell, 2] - 0.5) * 2.0
        colours = palette[np.clip(np.rint(stop), 0, len(palette) - 1).astype(np.int64)]
        image = np.where(inside[..., None], colours, image)
    return image


def _poster(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    scale = 2  # supersampled, then box-filtered: hard but clean edges
    background = int(rng.integers(len(palette)))
    side = size * scale
    canvas = Image.new("RGB", (side, side), tuple(int(c * 255) for c in palette[background]))
    draw = ImageDraw.Draw(canvas)
    others = [colour for i, colour in enumerate(palette) if i != background]  # shapes always show
    for _ in range(int(rng.integers(3, 10))):
        kind = rng.integers(3)
        fill = _colour(rng, np.asarray(others))
        centre, extent = rng.random(2) * side, rng.uniform(0.15, 0.7) * side
        if kind == 0:
            draw.ellipse([*(centre - extent / 2), *(centre + extent / 2)], fill=fill)
        elif kind == 1:
            corners = centre + (rng.random((int(rng.integers(3, 7)), 2)) - 0.5) * extent * 1.5
            draw.polygon([tuple(corner) for corner in corners], fill=fill)
        else:
            draw.rectangle([*(centre - extent / 2), *(centre + extent / 2 * rng.uniform(0.3, 1.0, 2))], fill=fill)
    return _finish(canvas, size)


def _sunburst(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    x, y = _grid(size)
    cx, cy = rng.uniform(-0.3, 1.3, 2)
    theta = np.arctan2(y - cy, x - cx) + rng.uniform(0, 2 * math.pi)
    rays = int(rng.integers(6, 48))
    twist = rng.uniform(-3, 3) * np.sqrt((x - cx) ** 2 + (y - cy) ** 2) if rng.random() < 0.4 else 0.0
    labels = np.floor(np.mod(theta + twist, 2 * math.pi) / (2 * math.pi) * rays).astype(np.int64)
    return _index_colours(labels, palette)


def _hexagons(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    u, v = _rotated(size, rng.uniform(0, math.pi / 3))
    cell = rng.uniform(0.03, 0.15)
    # axial coordinates of the nearest hexagon centre (cube rounding)
    q = (u * 2 / 3) / cell
    r = (-u / 3 + v * math.sqrt(3) / 3) / cell
    cube = np.stack([q, r, -q - r])
    rounded = np.rint(cube)
    worst = np.argmax(np.abs(rounded - cube), axis=0)
    for axis in range(3):  # fix the coordinate with the largest rounding error so the three sum to 0
        others = rounded[(axis + 1) % 3] + rounded[(axis + 2) % 3]
        rounded[axis] = np.where(worst == axis, -others, rounded[axis])
    table = rng.integers(len(palette), size=(64, 64))  # a colour per hexagon
    shades = palette[table[np.mod(rounded[0], 64).astype(np.int64), np.mod(rounded[1], 64).astype(np.int64)]]
    if rng.random() < 0.5:  # outlined cells: the hex distance from the centre is 0.5 on the border
        from_centre = np.abs(cube - rounded).sum(axis=0) / 2
        shades = np.where((from_centre > rng.uniform(0.4, 0.47))[..., None], palette[0] * 0.3, shades)
    return shades


def _camouflage(rng: np.random.Generator, size: int, palette: Palette) -> np.ndarray:
    field = _value_noise(rng, size, int(rng.integers(2, 5)), base_cells=int(rng.integers(2, 7)))
    levels = min(len(palette), int(rng.integers(3, 6)))
    labels = np.minimum((field * levels).astype(np.int64), levels - 1)  # flat blobs with hard edges
    return palette[labels]


FAMILIES: dict[str, Family] = {family.name: family for family in (
    Family("stripes", "straight bands of varying widths at any angle", _stripes),
    Family("wavy_stripes", "stripes bent by a sine, hard or shaded", _wavy_stripes),
    Family("zigzag", "chevrons and zigzag bands", _zigzag),
    Family("plaid", "two crossing sets of bands, averaged like tartan", _plaid),
    Family("spiral", "log and Archimedes spirals, 1-6 arms, banded or shaded", _spiral),
    Family("concentric", "rings around one to three centres", _concentric),
    Family("checkers", "checkerboards, rotated or stretched", _checkers),
    Family("dots", "polka dots on straight or staggered grids", _dots),
    Family("halftone", "printed halftone dots whose size follows a tone", _halftone),
    Family("voronoi", "flat-colour Voronoi mosaics", _voronoi),
    Family("stained_glass", "Voronoi cells lit unevenly, dark lead lines between them", _stained_glass),
    Family("mosaic_tiles", "square tiles with grout, colour varying per tile", _mosaic_tiles),
    Family("woven", "plain weave of two thread colours", _woven),
    Family("line_art", "curvy ink strokes on paper", _line_art),
    Family("hatching", "cross-hatching whose layers follow a tone", _hatching),
    Family("gradient_linear", "multi-stop linear gradients, some posterised", _gradient_linear),
    Family("gradient_radial", "multi-stop radial and elliptic gradients", _gradient_radial),
    Family("noise", "fractal value noise, smooth or ridged", _noise),
    Family("marble", "marbling: sine veins bent by turbulence", _marble),
    Family("brush_strokes", "hundreds of palette strokes following a flow, impasto ridges", _brush_strokes),
    Family("pointillism", "dense small dots of palette colours over a soft picture", _pointillism),
    Family("poster", "a few large flat shapes with hard edges", _poster),
    Family("sunburst", "rays from a centre, straight or twisted", _sunburst),
    Family("hexagons", "hexagonal tilings, plain or outlined", _hexagons),
    Family("camouflage", "flat blobs of three to five colours, hard edges", _camouflage),
)}

#: Families held out of every training set (see the module docstring for why these).
HELD_OUT_FAMILIES: tuple[str, ...] = ("concentric", "stained_glass", "halftone", "marble", "woven")


def check_family_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names as a tuple, or a ConfigError naming the unknown ones and the known ones."""
    names = tuple(names)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown style families {unknown}; known: {', '.join(FAMILIES)}")
    return names


def split_families(held_out: Iterable[str] = HELD_OUT_FAMILIES) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training families, held-out families), both in :data:`FAMILIES` order.

    Raises:
        ConfigError: a name is not a family, or every family would be held out.
    """
    held = set(check_family_names(held_out))
    train = tuple(name for name in FAMILIES if name not in held)
    if not train:
        raise ConfigError("split_families: every family is held out; nothing is left to train on")
    return train, tuple(name for name in FAMILIES if name in held)


def family_seed(name: str) -> int:
    """A stable number per family name (crc32; Python's hash() changes between runs)."""
    return zlib.crc32(name.encode())


def render(family: str, seed: int, index: int, size: int = 256, palettes: PaletteBank | None = None) -> np.ndarray:
    """Image ``index`` of ``family`` for ``seed``, (size, size, 3) uint8; the same arguments give the same image.

    Args:
        family: a name in :data:`FAMILIES`.
        seed, index: pick the image; any non-negative integers.
        size: output side in pixels (the picture scales with it).
        palettes: real-image palettes drawn from half the time; None: harmonious palettes only
            (then the image depends on nothing but the arguments).
    """
    check_family_names([family])
    return _render_with(family, np.random.default_rng([seed, index, family_seed(family)]), size, palettes)


# --------------------------------------------------------------------------- augmentations for any sample
def colour_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strong colour changes that keep the picture: hue rotation, saturation, posterise, invert, channel swap.

    Hue is rotated in YIQ space (the chroma plane turns, the brightness stays), so a red spiral
    becomes a green or blue one of the same contrast.
    """
    pixels = image.astype(np.float32) / 255.0
    yiq = pixels @ _RGB_TO_YIQ.T  # (H, W, 3)
    angle = rng.uniform(0, 2 * math.pi)
    chroma_scale = rng.uniform(0.0, 1.8)
    cos, sin = math.cos(angle) * chroma_scale, math.sin(angle) * chroma_scale
    turn = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], np.float32)
    pixels = np.clip(yiq @ turn.T @ _YIQ_TO_RGB.T, 0.0, 1.0)
    if rng.random() < 0.25:
        levels = int(rng.integers(2, 6))
        pixels = np.round(pixels * (levels - 1)) / (levels - 1)
    if rng.random() < 0.15:
        pixels = 1.0 - pixels
    if rng.random() < 0.2:
        pixels = pixels[..., rng.permutation(3)]
    return (pixels * 255.0 + 0.5).astype(np.uint8)


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def cut_mix(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Combine two same-size samples: a pasted rectangle (CutMix), a soft noise-shaped mask, or a diagonal split."""
    size = a.shape[0]
    kind = int(rng.integers(3))
    if kind == 0:
        height, width = (rng.uniform(0.25, 0.7, 2) * size).astype(int)
        top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
        out = a.copy()
        out[top:top + height, left:left + width] = b[top:top + height, left:left + width]
        return out
    if kind == 1:  # b shows through where a smooth noise field is high: blob-shaped regions
        field = _value_noise(rng, size, 2, base_cells=2)
        mask = np.clip((field - rng.uniform(0.35, 0.65)) * rng.uniform(4, 40) + 0.5, 0.0, 1.0)[..., None]
    else:
        u, _ = _rotated(size, rng.uniform(0, 2 * math.pi))
        mask = (u > rng.uniform(-0.3, 0.3)).astype(np.float32)[..., None]
    return (a.astype(np.float32) * (1 - mask) + b.astype(np.float32) * mask + 0.5).astype(np.uint8)


def patch_collage(images: Sequence[np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """A Mondrian-like collage: the square split into rectangles, each a crop of one of ``images``."""
    out = np.zeros((size, size, 3), np.uint8)
    boxes = [(0, 0, size, size)]
    for _ in range(int(rng.integers(2, 7))):  # split the biggest box, across its longer side
        boxes.sort(key=lambda box: (box[2] - box[0]) * (box[3] - box[1]))
        top, left, bottom, right = boxes.pop()
        if max(bottom - top, right - left) < 16:
            boxes.append((top, left, bottom, right))
            break
        if bottom - top >= right - left:
            cut = int(top + (bottom - top) * rng.uniform(0.3, 0.7))
            boxes += [(top, left, cut, right), (cut, left, bottom, right)]
        else:
            cut = int(left + (right - left) * rng.uniform(0.3, 0.7))
            boxes += [(top, left, bottom, cut), (top, cut, bottom, right)]
    for top, left, bottom, right in boxes:
        source = images[int(rng.integers(len(images)))]
        patch = random_crop(source, rng, max(bottom - top, right - left))
        out[top:bottom, left:right] = patch[:bottom - top, :right - left]
    return out


# --------------------------------------------------------------------------- real images, split by source
#: Origins (see ``StyleSource.origin``) whose images are held out of training data.
HELD_OUT_ORIGINS: tuple[str, ...] = ("matplotlib", "opencv-doc")
#: Two files show the same picture when their 16x16 grey thumbnails, each normalised to zero
#: mean and unit spread, differ by less than this on average (copies measure < 0.03, a stereo
#: pair 0.39, different pictures > 0.6 among the installed images).
SAME_PICTURE = 0.45


def split_real_sources(sources: Sequence[StyleSource], held_out_origins: Iterable[str] = HELD_OUT_ORIGINS,
                       always_held_out: tuple[str, ...] = ("starry_night",), held_out_fraction: float = 0.0
                       ) -> tuple[list[StyleSource], list[StyleSource]]:
    """(training, held-out) real images: whole origins held out, and every copy of a held-out picture.

    A file is held out when its origin is in ``held_out_origins``, its stem is in
    ``always_held_out`` (the demo painting), :func:`~slimvision.data.style_images.split_sources`
    holds it out at ``held_out_fraction`` (a stable hash of the name: more held-out pictures for
    a report), or it shows the same picture (:data:`SAME_PICTURE`) as a held-out file;
    slimvision's samples are copies of scikit-image's, so holding out one copy alone would
    still train on the picture. Both lists are sorted by name.
    """
    held_origins = set(held_out_origins)
    ordered = sorted(sources, key=lambda source: source.name)
    hashed = {source.name for source in split_sources(ordered, held_out_fraction, always_held_out)[1]}
    held = [source.origin in held_origins or source.name in hashed for source in ordered]
    prints = [_picture_print(source.path) for source in ordered]
    changed = True
    while changed:  # spread "held out" through chains of copies
        changed = False
        for i, j in ((i, j) for i in range(len(ordered)) for j in range(len(ordered)) if held[i] and not held[j]):
            if float(np.mean(np.abs(prints[i] - prints[j]))) < SAME_PICTURE:
                held[j] = changed = True
    train = [source for source, out in zip(ordered, held) if not out]
    return train, [source for source, out in zip(ordered, held) if out]


@functools.lru_cache(maxsize=512)
def _picture_print(path: Path) -> np.ndarray:
    grey = np.asarray(Image.fromarray(load_rgb(path)).convert("L").resize((16, 16), Image.Resampling.BOX), np.float32)
    return (grey - grey.mean()) / max(float(grey.std()), 1.0)


# --------------------------------------------------------------------------- the dataset trainers use
class StyleFamilyDataset:
    """``dataset[i] -> (sample id, (size, size, 3) uint8)``, the same image for the same ``(seed, i)``.

    A drop-in for :class:`slimvision.data.style_images.StyleImageDataset` (same items, so a
    ``TeacherCache`` keeps working; ids are ``"fam<seed>-<i>"``, never equal to that dataset's).
    Each sample is a family render (palette from ``real_sources`` half the time) or, with
    ``real_fraction``, an augmented crop or a patch collage of ``real_sources``; then, with
    ``mix_fraction``, cut-and-mixed with a second such sample, and with ``jitter_fraction``
    colour-jittered. Only ``families`` and ``real_sources`` are ever used, also as mix ingredients
    (:meth:`ingredients` lists them per sample).

    Args:
        families: names in :data:`FAMILIES` to draw from (e.g. ``split_families()[0]``).
        length: number of samples (an epoch).
        seed: changes every sample; part of the sample ids.
        size: output side (256: the style predictor's input).
        real_sources: real images for crops, collages and palettes (e.g. ``split_real_sources(...)[0]``).
        real_fraction: share of samples that are real-image crops or collages (0 without sources;
            0.4 covers held-out real images as well as ``style_images`` does, see docs/training.md).
        mix_fraction: share of samples cut-and-mixed with a second sample.
        jitter_fraction: share of samples given :func:`colour_jitter`.
    """

    def __init__(self, families: Sequence[str], length: int, seed: int = 0, size: int = 256,
                 real_sources: Sequence[StyleSource] = (), real_fraction: float = 0.4, mix_fraction: float = 0.2,
                 jitter_fraction: float = 0.4, cache_images: bool = True) -> None:
        self.families = check_family_names(families)
        if not self.families and not (real_sources and real_fraction >= 1.0):
            raise ConfigError("StyleFamilyDataset needs at least one family (or only real images: real_fraction=1)")
        for name, value in (("real_fraction", real_fraction), ("mix_fraction", mix_fraction),
                            ("jitter_fraction", jitter_fraction)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"StyleFamilyDataset.{name} must be in [0, 1], got {value}")
        self.length, self.seed, self.size = length, seed, size
        self.real_sources = sorted(real_sources, key=lambda source: source.name)
        self.real_fraction = real_fraction if self.real_sources else 0.0
        self.mix_fraction, self.jitter_fraction = mix_fraction, jitter_fraction
        self.palettes = PaletteBank(self.real_sources) if self.real_sources else None
        self._images: dict[Path, np.ndarray] | None = {} if cache_images else None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[str, np.ndarray]:
        image, _ = self._sample(index)
        return f"fam{self.seed}-{index}", image

    def ingredients(self, index: int) -> list[str]:
        """What sample ``index`` is made of: ``"family:<name>"`` and ``"real:<origin>/<file>"`` entries."""
        return self._sample(index)[1]

    def _sample(self, index: int) -> tuple[np.ndarray, list[str]]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} samples")
        rng = np.random.default_rng([self.seed, index, 0x5EED])
        used: list[str] = []
        image = self._one(rng, used)
        if rng.random() < self.mix_fraction:
            image = cut_mix(image, self._one(rng, used), rng)
        if rng.random() < self.jitter_fraction:
            image = colour_jitter(image, rng)
        return np.ascontiguousarray(image), used

    def _one(self, rng: np.random.Generator, used: list[str]) -> np.ndarray:
        if rng.random() < self.real_fraction:
            picks = [self.real_sources[int(i)] for i in rng.integers(len(self.real_sources), size=int(rng.integers(2, 5)))]
            if rng.random() < 0.2:  # a collage of patches of a few real images
                used += [f"real:{source.name}" for source in picks]
                return patch_collage([self._real_image(source) for source in picks], rng, self.size)
            used.append(f"real:{picks[0].name}")
            return augment(random_crop(self._real_image(picks[0]), rng, self.size), rng)
        family = self.families[int(rng.integers(len(self.families)))]
        used.append(f"family:{family}")
        return _render_with(family, np.random.default_rng(rng.integers(2 ** 63)), self.size, self.palettes)

    def _real_image(self, source: StyleSource) -> np.ndarray:
        if self._images is None:
            return load_rgb(source.path)
        if source.path not in self._images:
            self._images[source.path] = load_rgb(source.path)
        return self._images[source.path]


def _render_with(family: str, rng: np.random.Generator, size: int, palettes: PaletteBank | None) -> np.ndarray:
    palette = _pick_palette(rng, palettes)
    pixels = FAMILIES[family].paint(rng, size, palette)  # (size, size, 3) float in [0, 1]
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def family_training_data(length: int, seed: int = 0, size: int = 256, held_out_fraction: float = 0.0,
                         held_out_families: Iterable[str] = HELD_OUT_FAMILIES,
                         sources: Sequence[StyleSource] | None = None,
                         **dataset_options: float) -> tuple[StyleFamilyDataset, list[StyleSource]]:
    """The trainers' style data: (a dataset of the training families and training real images,
    the held-out real images; see :func:`split_real_sources` for ``held_out_fraction``).
    ``sources`` defaults to :func:`find_style_sources`; ``dataset_options`` go to
    :class:`StyleFamilyDataset` (``real_fraction``, ...).

    Example:
        >>> dataset, held_out_files = family_training_data(20_000, seed=0, held_out_fraction=0.15)
    """
    train_families, _ = split_families(held_out_families)
    train_sources, held_out_sources = split_real_sources(find_style_sources() if sources is None else sources,
                                                         held_out_fraction=held_out_fraction)
    dataset = StyleFamilyDataset(train_families, length, seed=seed, size=size, real_sources=train_sources,
                                 **dataset_options)
    return dataset, held_out_sources


def held_out_styles(per_family: int = 8, seed: int = 0, size: int = 256,
                    held_out_families: Iterable[str] = HELD_OUT_FAMILIES,
                    sources: Sequence[StyleSource] | None = None) -> list[tuple[str, np.ndarray]]:
    """Evaluation styles no training split ever produces: ``(name, image)`` per held-out family and index.

    Palettes come from the held-out real images (and harmonious schemes), so neither the
    family nor the colours were trained on. Names are ``"<family>/<index>"``.
    """
    _, held_out_sources = split_real_sources(find_style_sources() if sources is None else sources)
    palettes = PaletteBank(held_out_sources) if held_out_sources else None
    return [(f"{family}/{index}", render(family, seed, index, size, palettes))
            for family in check_family_names(held_out_families) for index in range(per_family)]


def validation_styles(per_family: int = 8, seed: int = 1, size: int = 256, families: Iterable[str] | None = None,
                      sources: Sequence[StyleSource] | None = None) -> list[tuple[str, np.ndarray]]:
    """Fresh renders of TRAINING families in training colours: for choosing between students.

    A choice made on :func:`held_out_styles` tunes to the held-out set; this draws new images of
    the families students train on (``render`` seeds them apart from the training samples, which
    come from their own generator), with palettes from the training real images only, so nothing
    held out is looked at. ``families`` defaults to every training family; a held-out name is an
    error. Names are ``"<family>/<index>"``.

    Example:
        >>> styles = validation_styles(per_family=2, seed=1, size=64, families=["spiral", "dots"])
        >>> [name for name, _ in styles]
        ['spiral/0', 'spiral/1', 'dots/0', 'dots/1']
    """
    train_families, held = split_families()
    chosen = train_families if families is None else check_family_names(families)
    if leaked := [name for name in chosen if name in held]:
        raise ConfigError(f"validation_styles: {', '.join(leaked)} held out; validate on training families only")
    train_sources, _ = split_real_sources(find_style_sources() if sources is None else sources)
    palettes = PaletteBank(train_sources) if train_sources else None
    return [(f"{family}/{index}", render(family, seed, index, size, palettes))
            for family in chosen for index in range(per_family)]


# --------------------------------------------------------------------------- a preview sheet
LABEL_WIDTH = 170


def family_sheet(families: Iterable[str] | None = None, per_family: int = 6, tile: int = 96, seed: int = 0,
                 held_out: Iterable[str] = HELD_OUT_FAMILIES, palettes: PaletteBank | None = None) -> np.ndarray:
    """One labelled row per family, ``per_family`` renders each: (rows * tile, label + columns * tile, 3) uint8.

    Held-out families are labelled "held out" in red. Images are rendered at 256 px (how
    trainers see them) and shrunk to ``tile``.

    Example:
        >>> sheet = family_sheet(["spiral", "voronoi"], per_family=4, tile=64)
        >>> sheet.shape
        (128, 426, 3)
    """
    names = check_family_names(FAMILIES if families is None else families)
    held = set(check_family_names(held_out))
    sheet = Image.new("RGB", (LABEL_WIDTH + per_family * tile, len(names) * tile), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=max(10, min(16, tile // 6)))
    for row, name in enumerate(names):
        top = row * tile
        draw.text((6, top + tile // 2 - 12), name, fill=(20, 20, 20), font=font)
        tag, colour = ("held out", (200, 20, 20)) if name in held else ("train", (90, 90, 90))
        draw.text((6, top + tile // 2 + 4), tag, fill=colour, font=font)
        for column in range(per_family):
            image = Image.fromarray(render(name, seed, column, 256, palettes))
            sheet.paste(image.resize((tile, tile), Image.Resampling.BOX), (LABEL_WIDTH + column * tile, top))
    return np.asarray(sheet)
