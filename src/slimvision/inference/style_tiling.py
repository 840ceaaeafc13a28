"""Style transfer on images larger than the memory budget: tiles with whole-image norm statistics.

The transformer's instance norms normalise each channel by the mean and variance of the
*whole* image. Tiles that computed their own statistics would disagree in tone (SSIM 0.75-0.82
against an untiled run), so :class:`GlobalNormTiler` gathers every norm layer's moments over
all tiles first and feeds them to every tile (see ``slimvision.graph.rewrite``).
Each tile runs the network once, in segments, handing its activations on through files:
2.5-3.5 untiled runs' time for a 1024 px image in 448-508 px tiles (which cover 1.7x its
pixels), against 10-13 when each layer's statistics re-ran the network from the image.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from slimvision.errors import SlimvisionError
from slimvision.graph.rewrite import NormLayer, NormSplitGraphs
from slimvision.graph.session import OnnxModel, SessionSettings
from slimvision.inference.tiling import Tile, blend, tile_grid

#: Below this the mirror pads of the 9x9 and 3x3 convolutions run out of pixels.
MIN_CONTENT_SIDE = 16
#: Peak ONNX Runtime working memory of the int8 transformer per content pixel, measured with
#: ORT 1.32 on 2 threads (2048x2048: 943 MB peak RSS against 66 MB for the bare session),
#: plus headroom. Used to turn a memory budget into a tile size.
TRANSFORM_BYTES_PER_PIXEL = 220
#: The smallest tile a budget may give: tiles this small already sit inside the network's
#: receptive field (SSIM about 0.93 against an untiled run at 128 px, see the tests).
MIN_TILE_SIDE = 128


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad an (H, W, C) image at the bottom and right to sides that are multiples of ``multiple``.

    Example:
        >>> pad_to_multiple(np.zeros((5, 8, 3)), 4).shape
        (8, 8, 3)
    """
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def tile_size_for_budget(memory_budget_mb: float, bytes_per_pixel: float = TRANSFORM_BYTES_PER_PIXEL, *,
                         size_multiple: int) -> int:
    """Largest square tile (a multiple of ``size_multiple``, the transformer card's) whose
    transformer working memory fits the budget.

    Example:
        >>> tile_size_for_budget(64, 330, size_multiple=4)
        448
    """
    pixels = memory_budget_mb * 1024 * 1024 / bytes_per_pixel
    side = int(math.sqrt(pixels)) // size_multiple * size_multiple
    if side < MIN_TILE_SIDE:
        # Rounded up to the reported precision, so the stated minimum is itself accepted.
        minimum = math.ceil(MIN_TILE_SIDE ** 2 * bytes_per_pixel / (1024 * 1024) * 100) / 100
        raise SlimvisionError(f"a memory budget of {memory_budget_mb} MB is too small (need >= {minimum} MB)")
    return side


class TileStore:
    """What each tile's segments hand on to the next ones, kept in ``.npy`` files in ``folder``.

    All tiles' activations together grow with the image (up to 32 bytes per pixel for the
    float graph, 8 for the int8 one) past any memory budget; one tile's at a time stay well
    inside it. ``folder`` is a temporary folder ($TMPDIR); the files mostly live in the OS page
    cache, which costs about 10% more time than keeping them in RAM (1024 px, float graph).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._names: dict[int, list[str]] = {}

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        self._names[index] = list(arrays)
        for j, array in enumerate(arrays.values()):
            np.save(self.folder / f"{index}-{j}.npy", array)

    def get(self, index: int) -> dict[str, np.ndarray]:
        return {name: np.load(self.folder / f"{index}-{j}.npy") for j, name in enumerate(self._names.get(index, []))}


class GlobalNormTiler:
    """Paints an image tile by tile with instance-norm statistics of the whole image.

    Layer by layer, every tile runs the network's next segment, up to that layer's norm (with
    the whole-image moments of the earlier layers fed in and what its earlier segments handed
    on), and per-channel sums of the normalised tensor are pooled over the tiles' cores, so
    each pixel counts once; both moments follow from them (see
    :class:`~slimvision.graph.rewrite.NormLayer`). Then every tile runs the rest of the
    network with all the moments, and the tiles are blended. Each tile runs the network about
    once, plus moving its activations through a :class:`TileStore`.

    ``size_multiple`` is the transformer card's (``preprocessing.content_image.size_multiple``):
    tiles start at multiples of it and are padded to it, as the untiled run pads the image, so
    every tile's activations sit on the whole image's grid.
    """

    def __init__(self, split: NormSplitGraphs, settings: SessionSettings, size_multiple: int) -> None:
        if size_multiple < 1:
            raise SlimvisionError(f"size_multiple must be at least 1, got {size_multiple}")
        self.size_multiple = size_multiple
        # 14 sessions that each kept an arena would together hold several times the memory
        # of one untiled run: +640 MB at a 64 MB budget with arenas, +120 MB without, at about
        # the same speed (1024 px, fp32).
        settings = dataclasses.replace(settings, memory_arena=False)
        self.image, self.style = split.image, split.style
        self.layers = [
            (layer,
             OnnxModel(layer.segment, settings, f"style transformer (up to norm {k})"),
             None if layer.variance_table is None
             else OnnxModel(layer.variance_table, settings, f"style transformer (norm {k} variance table)"))
            for k, layer in enumerate(split.layers)
        ]
        self.tail = OnnxModel(split.tail, settings, "style transformer (after the last norm)")
        steps = [segment for _, segment, _ in self.layers] + [self.tail]
        # After step k a tile keeps only what a later step reads.
        self._kept = [set().union(*(step.input_names for step in steps[k + 1:])) for k in range(len(self.layers))]

    @property
    def passes(self) -> int:
        """Runs per tile: one segment per norm layer (both its moments), then the rest of the network."""
        return len(self.layers) + 1

    def _run(self, model: OnnxModel, carried: dict[str, np.ndarray], tile: Tile, content: np.ndarray,
             style: np.ndarray, moments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``model``'s outputs on one tile, fed by name from what the tile carries and the moments."""
        available = {self.style: style, **moments, **carried}
        if self.image in model.input_names:
            crop = content[tile.top:tile.bottom, tile.left:tile.right]
            available[self.image] = np.ascontiguousarray(pad_to_multiple(crop, self.size_multiple)[None])
        outputs = model.run({name: available[name] for name in model.input_names})
        return dict(zip(model.output_names, outputs))

    def moments(self, content: np.ndarray, style: np.ndarray, tiles: list[Tile], tick: Callable[[], None],
                store: TileStore) -> dict[str, np.ndarray]:
        """Whole-image mean and variance of every norm layer, as (1, C, 1, 1) float32.

        Leaves in ``store`` what each tile needs to finish (see :meth:`paint`).
        """
        moments: dict[str, np.ndarray] = {}
        for k, (layer, segment, table) in enumerate(self.layers):
            total: np.ndarray | int = 0
            count = 0
            for index, tile in enumerate(tiles):
                carried = store.get(index)
                outputs = self._run(segment, carried, tile, content, style, moments)
                store.put(index, {name: array for name, array in {**carried, **outputs}.items()
                                  if name in self._kept[k]})
                pooled = outputs[segment.output_names[0]]  # (1, C, h, w)
                scale = pooled.shape[2] / _padded(tile.bottom - tile.top, self.size_multiple)
                top, bottom, left, right = _core_of(tile, scale, pooled.shape[2:], content.shape[:2])
                core = pooled[0, :, top:bottom, left:right]
                total = total + _core_sums(core, table is not None)
                count += core.shape[1] * core.shape[2]
                tick()
            sums = np.asarray(total)
            mean, variance = (_float_moments(sums, count) if table is None
                              else _quantized_moments(layer, table, sums, count))
            moments[layer.mean] = mean.astype(np.float32).reshape(1, -1, 1, 1)
            moments[layer.variance] = variance.astype(np.float32).reshape(1, -1, 1, 1)
        return moments

    def paint(self, content: np.ndarray, style: np.ndarray, tiles: list[Tile], moments: dict[str, np.ndarray],
              store: TileStore, overlap: int, tick: Callable[[], None]) -> np.ndarray:
        """Finish every tile from what :meth:`moments` left in ``store``, and blend the tiles."""
        def painted() -> Iterator[tuple[Tile, np.ndarray]]:
            for index, tile in enumerate(tiles):
                (out,) = self._run(self.tail, store.get(index), tile, content, style, moments).values()
                tick()
                yield tile, out[0, :tile.bottom - tile.top, :tile.right - tile.left]  # (h, w, 3)

        return blend(painted(), content.shape[0], content.shape[1], overlap)

    def __call__(self, content: np.ndarray, style: np.ndarray, tile_size: int, overlap: int,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        height, width = content.shape[:2]
        tiles = list(tile_grid(height, width, tile_size, overlap, self.size_multiple))
        total_steps = len(tiles) * self.passes
        steps = 0

        def tick() -> None:
            nonlocal steps
            steps += 1
            if progress is not None:
                progress(steps, total_steps)

        with tempfile.TemporaryDirectory(prefix="slimvision-tiles-") as folder:
            store = TileStore(Path(folder))
            moments = self.moments(content, style, tiles, tick, store)
            return self.paint(content, style, tiles, moments, store, overlap, tick)


def _padded(length: int, multiple: int) -> int:
    """A tile side after :func:`pad_to_multiple`."""
    return -(-length // multiple) * multiple


def _core_sums(core: np.ndarray, quantized: bool) -> np.ndarray:
    """Per-channel sums over a (C, h, w) core: code counts (C, 256), or [sum x, sum x^2] (C, 2)."""
    if quantized:
        codes = core.view(np.uint8)  # int8 codes index their levels by byte pattern
        return np.stack([np.bincount(channel.ravel(), minlength=256) for channel in codes])
    sums = np.empty((core.shape[0], 2))
    for c, channel in enumerate(core):
        values = channel.astype(np.float64)  # a channel at a time: the float64 copy stays small
        sums[c] = values.sum(), np.vdot(values, values)
    return sums


def _float_moments(sums: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance from (C, 2) sums of x and x^2: float64 keeps E[x^2] - E[x]^2 clear of
    cancellation (measured within 4e-8 of the graph's own float32 variance)."""
    mean = sums[:, 0] / count
    return mean, np.maximum(sums[:, 1] / count - mean ** 2, 0.0)  # a flat channel may round below 0


def _quantized_moments(layer: NormLayer, table: OnnxModel, counts: np.ndarray,
                       count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance, as the int8 graph computes them, from (C, 256) code counts."""
    levels = np.asarray(layer.levels, dtype=np.float32)
    mean = counts @ levels.astype(np.float64) / count  # (C,)
    feeds = {layer.normalised: levels.reshape(1, 1, 1, -1),
             layer.mean: mean.astype(np.float32).reshape(1, -1, 1, 1)}
    (pooled,) = table.run(feeds)  # (1, C, 1, 256): what the variance pool averages, per level
    variance = (counts * np.broadcast_to(pooled[0, :, 0, :], counts.shape)).sum(axis=1) / count
    return mean, variance


def _core_of(tile: Tile, scale: float, activation: tuple[int, ...],
             image: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A tile's core in its (h, w) ``activation``, ``scale`` times the padded tile's size.

    Inner edges are mapped from whole-image coordinates with one rule (floor), so neighbouring
    cores still partition the activation grid exactly: every activation pixel is pooled once.
    A core that reaches the border of the (H, W) ``image`` runs to the end of the activation:
    the untiled run pads the image to its size multiple and pools the padded part too (150 rows
    give 38 rows at 1/4 scale with a multiple of 4, the last one half padding), and the last
    tile pads the same way.
    """
    def edge(position: int, origin: int, border: int, size: int) -> int:
        if position == border:
            return size
        return math.floor(position * scale + 1e-9) - math.floor(origin * scale + 1e-9)

    return (edge(tile.core_top, tile.top, image[0], activation[0]),
            edge(tile.core_bottom, tile.top, image[0], activation[0]),
            edge(tile.core_left, tile.left, image[1], activation[1]),
            edge(tile.core_right, tile.left, image[1], activation[1]))
