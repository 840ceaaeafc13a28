"""Run an int8 QDQ ONNX graph in float: weights dequantized once, activations never quantized.

The style transformer ships as an int8 QDQ graph: every weight is stored as int8 with a scale
(DequantizeLinear in front of each Conv), and every activation passes a QuantizeLinear /
DequantizeLinear pair. ONNX Runtime fuses those pairs into int8 kernels, which on CPUs without
VNNI (AVX2 only, like most laptops before 2021 and our CI box) are *slower* than float ones
(``benchmarks/style_bench.py``: 0.7-0.8x the time at 256-1024 px with the float variant). The
float variant also skips the activation rounding, so it is closer to the float model the int8
one was converted from; it is not bit-identical to the shipped graph (SSIM about 0.89 against
the int8 output, visually the same painting).

Example:
    >>> from slimvision.graph.precision import with_float_weights
    >>> data = with_float_weights(Path("arbitrary_transform.onnx"))              # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from slimvision.assets import file_sha256
from slimvision.graph.rewrite import cached_rewrite, free_spatial_dims_proto

if TYPE_CHECKING:
    import onnx

#: Bumped whenever the rewrite changes, so stale cache entries are never reused.
FLOAT_REWRITE_VERSION = 1
PRECISIONS = ("fp32", "int8")


def dequantize_qdq_proto(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Fold weight DequantizeLinear nodes into float initializers; drop activation Q/DQ pairs.

    Every DequantizeLinear of an initializer becomes the float initializer
    ``(q - zero_point) * scale`` (per-channel scales broadcast along the node's ``axis``), so
    the weights are exactly the int8 values the shipped graph uses. Every other
    QuantizeLinear / DequantizeLinear becomes an Identity, which keeps every tensor name (the
    norm-statistics split looks layers up by name) and which ONNX Runtime removes when it
    optimises the graph.

    Returns:
        The model (modified in place) and counts: ``weights_folded``, ``qdq_nodes_removed``.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes = []
    folded = removed = 0
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            graph.initializer.append(numpy_helper.from_array(_dequantized(node, initializers), node.output[0]))
            folded += 1
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=f"{node.name}_float"))
            removed += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # the int8 type annotations no longer hold
    return model, {"weights_folded": folded, "qdq_nodes_removed": removed}


def _dequantized(node: Any, initializers: dict[str, Any]) -> Any:
    """``(q - zero_point) * scale`` of one constant DequantizeLinear, as float32.

    Handles per-tensor, per-channel (``axis``) and blocked (``block_size``, 4-bit weights)
    scales; the product is rounded to the scale's type first (float16 scales give float16
    weights in ONNX), so the folded weights equal what the node computes.
    """
    import numpy as np
    from onnx import numpy_helper

    def constant(index: int) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        return numpy_helper.to_array(initializers[node.input[index]])

    quantized, scale, zero = constant(0), constant(1), constant(2)
    assert quantized is not None and scale is not None
    scale_type = scale.dtype
    quantized, scale = quantized.astype(np.float64), scale.astype(np.float64)
    zero = np.zeros_like(scale) if zero is None else zero.astype(np.float64)
    axis = next((attr.i for attr in node.attribute if attr.name == "axis"), 1) % quantized.ndim
    block = next((attr.i for attr in node.attribute if attr.name == "block_size"), 0)
    if block > 0:  # one scale per block of `block` entries along the axis
        length = quantized.shape[axis]
        scale = np.repeat(scale, block, axis=axis).take(range(length), axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(range(length), axis=axis)
    elif scale.ndim == 1 and scale.size > 1:  # per-channel: broadcast along the node's axis
        shape = [1] * quantized.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((quantized - zero) * scale).astype(scale_type).astype(np.float32)


def float_graph_key(path: Path) -> str:
    """Cache name of :func:`with_float_weights`'s result for ``path`` (also the session cache key)."""
    from slimvision.graph.rewrite import REWRITE_VERSION

    return f"{path.stem}-{file_sha256(path)[:16]}-float-v{FLOAT_REWRITE_VERSION}-freehw-v{REWRITE_VERSION}"


def with_float_weights(path: Path) -> bytes:
    """The QDQ model at ``path`` as a float graph with free H/W, as serialised bytes (cached)."""

    def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
        return free_spatial_dims_proto(dequantize_qdq_proto(model)[0])

    return cached_rewrite(path, float_graph_key(path), rewrite)
