"""Style transfer on images larger than the memory budget: tiles with whole-image norm statistics.

The transformer's instance norms normalise each channel by the mean and variance of the
*whole* image. Tiles that computed their own statistics would disagree in tone (SSIM 0.75-0.82
against an untiled run), so :class:`GlobalNormTiler` gathers every norm layer's moments over
all tiles first and feeds them to every tile (see ``slimvision.inference.graph``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from slimvision.errors import SlimvisionError
from slimvision.inference.graph import NormLayer, NormSplitGraphs
from slimvision.inference.session import OnnxModel, SessionSettings
from slimvision.inference.tiling import Tile, run_tiled, tile_grid

#: The transformer downsamples twice by 2, so sides are padded to a multiple of 4.
SIZE_MULTIPLE = 4
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
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")


def tile_size_for_budget(memory_budget_mb: float) -> int:
    """Largest square tile (multiple of 4) whose transformer working memory fits the budget."""
    pixels = memory_budget_mb * 1024 * 1024 / TRANSFORM_BYTES_PER_PIXEL
    side = int(math.sqrt(pixels)) // SIZE_MULTIPLE * SIZE_MULTIPLE
    if side < MIN_TILE_SIDE:
        # Rounded up to the reported precision, so the stated minimum is itself accepted.
        minimum = math.ceil(MIN_TILE_SIDE ** 2 * TRANSFORM_BYTES_PER_PIXEL / (1024 * 1024) * 100) / 100
        raise SlimvisionError(f"a memory budget of {memory_budget_mb} MB is too small (need >= {minimum} MB)")
    return side


class GlobalNormTiler:
    """Paints an image tile by tile with instance-norm statistics of the whole image.

    Layer by layer, every tile runs the network up to that layer's norm once (with the
    whole-image moments of all earlier layers fed in), and per-channel sums of the normalised
    tensor are pooled over the tiles' cores, so each pixel counts once; both moments follow
    from them (see :class:`~slimvision.inference.graph.NormLayer`). Then every tile is painted
    with all the moments. This costs several untiled runs' worth of compute (each pass repeats
    the layers before its norm), so it is used only when an image does not fit the memory budget.
    """

    def __init__(self, split: NormSplitGraphs, settings: SessionSettings) -> None:
        self.tiled = OnnxModel(split.tiled, settings, "style transformer (tiled)")
        self.layers = [
            (layer,
             OnnxModel(layer.prefix, settings, f"style transformer (norm {k} input)"),
             None if layer.variance_table is None
             else OnnxModel(layer.variance_table, settings, f"style transformer (norm {k} variance table)"))
            for k, layer in enumerate(split.layers)
        ]

    @property
    def passes(self) -> int:
        """Runs per tile: one per norm layer (both its moments), then the painting."""
        return len(self.layers) + 1

    def _feeds(self, model: OnnxModel, tile: np.ndarray, style: np.ndarray,
               moments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Early prefixes do not depend on the style vector, so feed by name what each one takes.
        image_name, style_name = self.tiled.input_names[:2]
        available = {image_name: np.ascontiguousarray(tile[None]), style_name: style, **moments}
        return {name: available[name] for name in model.input_names}

    def _pooled(self, model: OnnxModel, quantized: bool, content: np.ndarray, style: np.ndarray,
                tiles: list[Tile], moments: dict[str, np.ndarray],
                tick: Callable[[], None]) -> tuple[np.ndarray, int]:
        """Per-channel sums (see :func:`_core_sums`) of ``model``'s output over the tiles' cores,
        and the number of pixels they cover."""
        total: np.ndarray | int = 0
        count = 0
        for tile in tiles:
            padded = pad_to_multiple(content[tile.top:tile.bottom, tile.left:tile.right], SIZE_MULTIPLE)
            (output,) = model.run(self._feeds(model, padded, style, moments))  # (1, C, h, w)
            scale = output.shape[2] / padded.shape[0]
            top, bottom, left, right = _core_of(tile, scale, output.shape[2:], content.shape[:2])
            core = output[0, :, top:bottom, left:right]
            total = total + _core_sums(core, quantized)
            count += core.shape[1] * core.shape[2]
            tick()
        return np.asarray(total), count

    def moments(self, content: np.ndarray, style: np.ndarray, tiles: list[Tile],
                tick: Callable[[], None]) -> dict[str, np.ndarray]:
        """Whole-image mean and variance of every norm layer, as (1, C, 1, 1) float32."""
        moments: dict[str, np.ndarray] = {}
        for layer, prefix, table in self.layers:
            sums, count = self._pooled(prefix, table is not None, content, style, tiles, moments, tick)
            if table is None:
                mean, variance = _float_moments(sums, count)
            else:
                mean, variance = _quantized_moments(layer, table, sums, count)
            moments[layer.mean] = mean.astype(np.float32).reshape(1, -1, 1, 1)
            moments[layer.variance] = variance.astype(np.float32).reshape(1, -1, 1, 1)
        return moments

    def __call__(self, content: np.ndarray, style: np.ndarray, tile_size: int, overlap: int,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        height, width = content.shape[:2]
        tiles = list(tile_grid(height, width, tile_size, overlap, SIZE_MULTIPLE))
        total_steps = len(tiles) * self.passes
        steps = 0

        def tick() -> None:
            nonlocal steps
            steps += 1
            if progress is not None:
                progress(steps, total_steps)

        moments = self.moments(content, style, tiles, tick)

        def paint(tile: np.ndarray) -> np.ndarray:
            h, w = tile.shape[:2]
            (out,) = self.tiled.run(self._feeds(self.tiled, pad_to_multiple(tile, SIZE_MULTIPLE), style, moments))
            tick()
            return out[0, :h, :w]

        return run_tiled(paint, content, tile_size, overlap, align=SIZE_MULTIPLE)


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
    the untiled run pads the image to a multiple of 4 and pools the padded part too (150 rows
    give 38 rows at 1/4 scale, the last one half padding), and the last tile pads the same way.
    """
    def edge(position: int, origin: int, border: int, size: int) -> int:
        if position == border:
            return size
        return math.floor(position * scale + 1e-9) - math.floor(origin * scale + 1e-9)

    return (edge(tile.core_top, tile.top, image[0], activation[0]),
            edge(tile.core_bottom, tile.top, image[0], activation[0]),
            edge(tile.core_left, tile.left, image[1], activation[1]),
            edge(tile.core_right, tile.left, image[1], activation[1]))
