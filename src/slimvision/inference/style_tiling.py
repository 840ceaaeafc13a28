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
from slimvision.inference.graph import NormSplitGraphs
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

    Layer by layer, every tile runs the network up to that layer's norm (with the whole-image
    moments of all earlier layers fed in), and the mean, then the variance, are pooled over the
    tiles' cores, so each pixel counts once. Then every tile is painted with all the moments.
    This costs several untiled runs' worth of compute (each pass repeats the layers before
    its norm), so it is used only when an image does not fit the memory budget.
    """

    def __init__(self, split: NormSplitGraphs, settings: SessionSettings) -> None:
        self.tiled = OnnxModel(split.tiled, settings, "style transformer (tiled)")
        self.layers = [
            (layer,
             OnnxModel(layer.mean_prefix, settings, f"style transformer (norm {k} mean)"),
             OnnxModel(layer.variance_prefix, settings, f"style transformer (norm {k} variance)"))
            for k, layer in enumerate(split.layers)
        ]

    @property
    def passes(self) -> int:
        """Runs per tile: a mean and a variance pass per norm layer, then the painting."""
        return 2 * len(self.layers) + 1

    def _feeds(self, model: OnnxModel, tile: np.ndarray, style: np.ndarray,
               moments: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Early prefixes do not depend on the style vector, so feed by name what each one takes.
        image_name, style_name = self.tiled.input_names[:2]
        available = {image_name: np.ascontiguousarray(tile[None]), style_name: style, **moments}
        return {name: available[name] for name in model.input_names}

    def _pooled(self, model: OnnxModel, content: np.ndarray, style: np.ndarray, tiles: list[Tile],
                moments: dict[str, np.ndarray], tick: Callable[[], None]) -> np.ndarray:
        """Mean over the whole image of ``model``'s (1, C, h, w) output, as (1, C, 1, 1)."""
        total = 0.0
        count = 0
        for tile in tiles:
            padded = pad_to_multiple(content[tile.top:tile.bottom, tile.left:tile.right], SIZE_MULTIPLE)
            (pooled_input,) = model.run(self._feeds(model, padded, style, moments))  # (1, C, h, w)
            scale = pooled_input.shape[2] / padded.shape[0]
            top, bottom, left, right = _core_of(tile, scale, pooled_input.shape[2:], content.shape[:2])
            core = pooled_input[0, :, top:bottom, left:right]
            total = total + core.sum(axis=(1, 2), dtype=np.float64)
            count += core.shape[1] * core.shape[2]
            tick()
        return (total / count).astype(np.float32).reshape(1, -1, 1, 1)

    def moments(self, content: np.ndarray, style: np.ndarray, tiles: list[Tile],
                tick: Callable[[], None]) -> dict[str, np.ndarray]:
        """Whole-image mean and variance of every norm layer, as (1, C, 1, 1) float32."""
        moments: dict[str, np.ndarray] = {}
        for layer, mean_model, variance_model in self.layers:
            moments[layer.mean] = self._pooled(mean_model, content, style, tiles, moments, tick)
            moments[layer.variance] = self._pooled(variance_model, content, style, tiles, moments, tick)
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
