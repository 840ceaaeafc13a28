"""Run a U-Net VAE at a slice's own size (numpy + ONNX Runtime, no torch), and keep what is intact.

The shipped U-Net VAE was exported for 128 x 128 squares, and slices used to be squared and
resized to that size and back, which blurred every pixel the network touched. Its layers are
convolutions except for the dense bottleneck in the middle (the stride-32 map, 4 x 4 at 128 px,
flattened into the 512-d latent and back). :func:`native_graph_proto` rewrites the graph so that
height and width are free: the stride-32 map is resized to the 4 x 4 the dense layers were
trained on, and their 4 x 4 output is resized back to the map's size before the decoder's
first up-sampling, where the U-Net skips bring the native-resolution detail in. At 128 px both
resizes are the identity, so the rewritten graph computes what the shipped one does.

:func:`run_native` pads a slice to the network's size multiple (32) by reflection, and cuts
slices larger than ``max_side`` into overlapping tiles blended without seams (activation memory
grows with the pixels: the process peaked at 555 MB for a 768 x 768 slice, 185 MB at 256 x 256).

:func:`bounded_denoise` is what a slice without a damage mask gets: the output may differ from
the input only by about the noise the slice holds (:func:`noise_sigma`), so a clean slice passes
through with its detail and a noisy one is denoised.

Example:
    >>> import numpy as np
    >>> clean = np.zeros((40, 40), np.float32)
    >>> bool(np.array_equal(bounded_denoise(clean, clean + 0.2), clean))   # no noise: passes through
    True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slimvision.assets import file_sha256
from slimvision.graph.precision import dequantize_qdq_proto
from slimvision.graph.rewrite import cached_rewrite
from slimvision.inference.tiling import run_tiled

if TYPE_CHECKING:
    import onnx

#: Bumped whenever the rewrite changes, so stale cache entries are never reused.
NATIVE_REWRITE_VERSION = 2
#: The network's total stride: inputs are padded to a multiple of it.
SIZE_MULTIPLE = 32
#: Slices with a longer side run in overlapping tiles of this side (memory, not speed).
MAX_SIDE = 768
TILE_OVERLAP = 64
#: A pixel may move by up to this many noise standard deviations when no mask is given: 3 sigma
#: covers 99.7% of Gaussian noise, while structure the network would blur moves far more.
NOISE_BOUND = 3.0
#: :func:`flat_median_fill`: removed pixels whose kept neighbours' std is below this take their
#: median. Chosen on held-out sources only (MNI152 test blocks, pydicom-data's head CT, dipy's T1,
#: nibabel's T1; docs/vae.md); the public held-out scans played no part.
FLAT_SPREAD = 0.05


def native_graph_key(path: Path) -> str:
    """Cache name of :func:`native_graph`'s result for ``path``."""
    return f"{path.stem}-{file_sha256(path)[:16]}-native-v{NATIVE_REWRITE_VERSION}"


def native_graph(path: Path) -> bytes:
    """The U-Net VAE graph at ``path`` with free height and width, serialised (cached on disk)."""
    return cached_rewrite(path, native_graph_key(path), native_graph_proto)


def native_graph_proto(model: onnx.ModelProto) -> onnx.ModelProto:
    """Free H/W of an exported U-Net VAE (NCHW); the dense bottleneck sees its map resized to the
    side it was exported with. Int8-stored weights are dequantized once here: the same values,
    and at 256 px the float graph ran in 175 ms against 238 on the 2-core box. Raises ValueError
    for a graph without that bottleneck."""
    from onnx import helper, numpy_helper

    side = _bottleneck_side(model)
    model, _ = dequantize_qdq_proto(model)
    graph = model.graph
    for value in (*graph.input, graph.output[0]):  # image, known -> reconstruction
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    del graph.value_info[:]  # inferred for the exported size
    nodes = list(graph.node)
    flatten = next(i for i, node in enumerate(nodes) if node.op_type == "Flatten")
    first_up = next(i for i, node in enumerate(nodes) if node.op_type == "ConvTranspose")
    bottleneck, coarse = nodes[flatten].input[0], nodes[first_up].input[0]
    graph.initializer.extend([numpy_helper.from_array(np.array(value, np.int64), name) for name, value in
                              (("native_side", [side, side]), ("native_0", [0]), ("native_2", [2]),
                               ("native_4", [4]))])
    shrink = [helper.make_node("Shape", [bottleneck], ["native_shape"]),
              helper.make_node("Slice", ["native_shape", "native_0", "native_2"], ["native_nc"]),
              helper.make_node("Slice", ["native_shape", "native_2", "native_4"], ["native_hw"]),
              helper.make_node("Concat", ["native_nc", "native_side"], ["native_small"], axis=0),
              # Antialiased linear shrinking averages the map, as the dense layer saw whole slices.
              helper.make_node("Resize", [bottleneck, "", "", "native_small"], ["native_pooled"],
                               mode="linear", antialias=1)]
    grow = [helper.make_node("Shape", [coarse], ["native_coarse_shape"]),
            helper.make_node("Slice", ["native_coarse_shape", "native_0", "native_2"], ["native_coarse_nc"]),
            helper.make_node("Concat", ["native_coarse_nc", "native_hw"], ["native_large"], axis=0),
            helper.make_node("Resize", [coarse, "", "", "native_large"], ["native_coarse"], mode="linear")]
    nodes[flatten].input[0] = "native_pooled"
    nodes[first_up].input[0] = "native_coarse"
    del graph.node[:]
    graph.node.extend(nodes[:flatten] + shrink + nodes[flatten:first_up] + grow + nodes[first_up:])
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, 18)  # Resize's antialias
    return model


def _bottleneck_side(model: onnx.ModelProto) -> int:
    """The side of the stride-32 map at the size the graph was exported with."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or dims[2].dim_value < SIZE_MULTIPLE or dims[2].dim_value != dims[3].dim_value:
        raise ValueError("not an exported U-Net VAE: its image input is not a fixed square")
    if not any(node.op_type == "Flatten" for node in model.graph.node):
        raise ValueError("not an exported U-Net VAE: no dense bottleneck")
    return dims[2].dim_value // SIZE_MULTIPLE


def run_native(network: Callable[[np.ndarray, np.ndarray], np.ndarray], pixels: np.ndarray,
               known: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``network(image, known)`` ((1, 1, H, W) each, H and W multiples of 32) on a (H, W) slice
    of any size, padded by reflection; larger than ``max_side``: overlapping tiles, blended."""
    stacked = np.stack([pixels, known], axis=-1).astype(np.float32)  # (H, W, 2)

    def one(tile: np.ndarray) -> np.ndarray:
        return _padded(network, tile[..., 0], tile[..., 1])[..., None]

    if max(pixels.shape) <= max_side:
        return one(stacked)[..., 0]
    return run_tiled(one, stacked, max_side, TILE_OVERLAP, align=SIZE_MULTIPLE)[..., 0]


def _padded(network: Callable[[np.ndarray, np.ndarray], np.ndarray], pixels: np.ndarray,
            known: np.ndarray) -> np.ndarray:
    """The network on one slice padded up to the size multiple; the padding is cut off again."""
    height, width = pixels.shape
    pad = ((0, -height % SIZE_MULTIPLE), (0, -width % SIZE_MULTIPLE))
    # Reflection, not zeros: a black band would be a hard edge the network tries to explain.
    mode = "reflect" if min(height, width) > SIZE_MULTIPLE else "edge"
    image = np.pad(pixels, pad, mode=mode)[None, None]
    mask = np.pad(known, pad, constant_values=1.0)[None, None]  # the padding is intact
    return network(image, mask)[0, 0, :height, :width]


def noise_sigma(pixels: np.ndarray) -> float:
    """Robust estimate of the std of additive noise in a (H, W) slice in [0, 1].

    Immerkaer's 3 x 3 kernel cancels planes and most edges; the median absolute response,
    divided by 0.6745 and by the kernel's norm (6), is the noise std. Neighbourhoods holding a
    value at either end of the range (<= 0 or >= 1) are left out: there the noise was clipped
    (air a scanner blanked, black background, a CT window's bone, padding), which shrinks the
    response, so a slice with much background measured about 0.6x the noise it held (Gaussian
    noise of std 0.05 on the MNI152 slices read 0.032; now 0.050). Flat tissue is counted, so a
    clean, piecewise smooth slice measures about 0 while its few edges stay below the median.
    """
    p = np.asarray(pixels, np.float64)
    if min(p.shape) < 3:
        return 0.0
    response = (p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]
                - 2 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) + 4 * p[1:-1, 1:-1])
    clipped = (p <= 0) | (p >= 1)
    touched = np.logical_or.reduce([clipped[dy:dy + response.shape[0], dx:dx + response.shape[1]]
                                    for dy in range(3) for dx in range(3)])
    counted = np.abs(response[~touched])
    if counted.size < 0.01 * response.size:  # (almost) all at the range's ends: nothing to measure
        return 0.0
    return float(np.median(counted) / 0.6745 / 6.0)


def bounded_denoise(pixels: np.ndarray, restored: np.ndarray, sigma: float | None = None,
                    bound: float = NOISE_BOUND) -> np.ndarray:
    """``pixels`` moved towards ``restored`` where the difference looks like noise.

    A difference d within ``bound`` x the noise std (estimated by :func:`noise_sigma` unless
    given) is noise and is removed whole; a larger one is structure the network got wrong
    (blurred detail, an invented edge), and only d x (limit / |d|)^2 of it is taken, which
    falls as d grows (a redescending rule, as in robust statistics). A clean slice (std about
    0) passes through; a plain clip at the limit would move every pixel of a slice the network
    misjudges by the full limit, a veil SSIM sees.
    """
    pixels = np.asarray(pixels, np.float32)
    limit = bound * (noise_sigma(pixels) if sigma is None else sigma)
    difference = pixels - np.asarray(restored, np.float32)
    size = np.abs(difference)
    taken = np.where(size <= limit, difference, difference * (limit / np.maximum(size, 1e-12)) ** 2)
    return (pixels - taken).astype(np.float32)


def masked_median(damaged: np.ndarray, kept: np.ndarray, size: int = 5,
                  where: np.ndarray | None = None) -> np.ndarray:
    """Fill the removed pixels of a (H, W) image with the median of the kept ones around them
    (``size`` x ``size``; ``size + 2`` where none survive); kept pixels stay as they are. With
    ``where``, only those removed pixels are filled (the rest stay as in ``damaged``), and only
    their windows are sorted."""
    removed = ~np.asarray(kept, bool)
    targets = removed if where is None else removed & np.asarray(where, bool)
    values = np.where(kept, damaged, np.nan).astype(np.float32)
    rows, cols = np.nonzero(targets)
    filled = _nan_median(values, size, rows, cols)
    holes = np.isnan(filled)
    if holes.any():
        filled[holes] = _nan_median(values, size + 2, rows[holes], cols[holes])
    result = np.array(damaged, np.float32)
    result[rows, cols] = np.nan_to_num(filled, nan=0.0)
    return result


def _nan_median(values: np.ndarray, size: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """At each (row, col): the median of the non-NaN values in its ``size`` x ``size`` window (NaN
    where there are none), as ``np.nanmedian`` computes it, by one sort: NaNs sort last, so the
    median sits at the middle of the first ``count`` entries. (``nanmedian`` over every window
    of a 256 px slice took longer than the network.)"""
    radius = size // 2
    padded = np.pad(values, radius, constant_values=np.nan)
    windows = np.sort(np.stack([padded[rows + dy, cols + dx] for dy in range(size) for dx in range(size)]),
                      axis=0)
    count = size * size - np.isnan(windows).sum(axis=0)
    low = np.take_along_axis(windows, (np.maximum(count - 1, 0) // 2)[None], axis=0)[0]
    high = np.take_along_axis(windows, (count // 2)[None], axis=0)[0]
    return np.where(count > 0, (low + high) / 2, np.nan).astype(np.float32)


def _box_sum(values: np.ndarray, size: int) -> np.ndarray:
    """Sum over each pixel's ``size`` x ``size`` window (zeros outside the image)."""
    radius = size // 2
    padded = np.pad(np.asarray(values, np.float64), ((radius + 1, radius), (radius + 1, radius)))
    table = padded.cumsum(0).cumsum(1)
    return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def kept_spread(damaged: np.ndarray, kept: np.ndarray, size: int = 5) -> np.ndarray:
    """Standard deviation of the kept pixels in each pixel's ``size`` x ``size`` window (inf where
    none is kept): how flat the surviving neighbourhood of each removed pixel is."""
    weight = np.asarray(kept, np.float64)
    values = np.where(kept, damaged, 0.0).astype(np.float64)
    count = _box_sum(weight, size)
    mean = _box_sum(values, size) / np.maximum(count, 1)
    variance = _box_sum(values * values, size) / np.maximum(count, 1) - mean * mean
    return np.where(count > 0, np.sqrt(np.maximum(variance, 0.0)), np.inf)


def flat_median_fill(damaged: np.ndarray, kept: np.ndarray, restored: np.ndarray,
                     below: float = FLAT_SPREAD) -> np.ndarray:
    """``restored`` with each removed pixel whose kept 5 x 5 neighbours are flat (their std below
    ``below``) taken from :func:`masked_median` instead; 0 turns it off.

    Where the surviving neighbours agree, their median is the right fill to within their spread,
    and the network's fill can be off by more: on held-out head CTs, whose brain is almost
    constant after the intensity window, the network missed by about 0.03 there (docs/vae.md).
    Where the neighbours vary (edges, texture), the network's fill stays."""
    if below <= 0:
        return np.asarray(restored, np.float32)
    flat = ~np.asarray(kept, bool) & (kept_spread(damaged, kept) < below)
    if not flat.any():
        return np.asarray(restored, np.float32)
    return np.where(flat, masked_median(damaged, kept, where=flat), restored).astype(np.float32)
