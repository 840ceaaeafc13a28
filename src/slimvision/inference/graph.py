"""Load-time rewrites of shipped ONNX graphs, cached so the ``onnx`` import is paid once.

The style transform network ships with a fixed 384x384 input although every layer in it is
convolutional (mirror pads, convolutions, instance norms over the spatial axes, resizes by
scale factors). Renaming the fixed height and width to symbolic dimensions lets ONNX Runtime
run it at any resolution; at 384x384 the rewritten graph computes exactly what the shipped
one does (the tests check this).

Example:
    >>> from slimvision.inference.graph import with_free_spatial_dims
    >>> data = with_free_spatial_dims(Path("arbitrary_transform.onnx"))   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from slimvision.assets import file_sha256
from slimvision.errors import SlimvisionError

log = logging.getLogger(__name__)

#: Bumped whenever the rewrite changes, so stale cache entries are never reused.
REWRITE_VERSION = 1


def cache_dir() -> Path:
    """Per-user cache (``$SLIMVISION_CACHE_DIR``, else ``$XDG_CACHE_HOME/slimvision``)."""
    explicit = os.environ.get("SLIMVISION_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slimvision"


def free_spatial_dims_proto(model: "onnx.ModelProto") -> "onnx.ModelProto":  # noqa: F821
    """Make dims 1 and 2 of every NHWC image input/output symbolic ("height", "width").

    Only tensors of rank 4 whose two middle dims are equal, fixed and larger than 1 are touched
    (the [1, 1, 1, 100] style vector is left alone).
    """
    changed = 0
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 1 and dims[1].dim_value == dims[2].dim_value:
            dims[1].dim_param, dims[2].dim_param = "height", "width"
            changed += 1
    if not changed:
        raise SlimvisionError(f"{model.graph.name}: no fixed NHWC image input or output to free")
    # Shape annotations inside the graph were inferred for 384x384: drop them so nothing
    # downstream trusts the stale sizes.
    del model.graph.value_info[:]
    return model


def with_free_spatial_dims(path: Path) -> bytes:
    """The model at ``path`` with free height and width, as serialised bytes (cached on disk)."""
    digest = file_sha256(path)
    cached = cache_dir() / f"{path.stem}-{digest[:16]}-freehw-v{REWRITE_VERSION}.onnx"
    if cached.is_file():
        return cached.read_bytes()
    import onnx  # deferred: ~0.3 s to import, needed only on the first run

    model = free_spatial_dims_proto(onnx.load(str(path)))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    _store(cached, data)
    return data


def _store(path: Path, data: bytes) -> None:
    """Write a cache entry atomically; a read-only home just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # deferred: only the first run on a machine writes the cache

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("cannot cache %s (%s); the rewrite will be redone next time", path, exc)


def _live_nodes(graph: "onnx.GraphProto") -> list:  # noqa: F821
    """Nodes that contribute to a graph output, in their original (topological) order."""
    needed = {output.name for output in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    return live[::-1]


@dataclass(frozen=True)
class NormLayer:
    """One instance-norm layer: the tensor it normalises, its two moments and how to pool them.

    In a float graph ``prefix`` outputs the normalised tensor x, and the variance pool averages
    ``(x - mean)^2``: both moments follow from per-channel sums of x and x^2. In an int8 QDQ
    graph the variance pool averages a *quantized* square, rounded to steps about as large as
    the variance itself (0.30 for a variance of 0.13), so its variance is 1-40% off the float
    one and no sums reproduce it (tiling with the float variances: SSIM 0.55 against the
    untiled run). But there x is ``DequantizeLinear(codes)`` with one scale, so it takes at
    most 256 values: ``prefix`` outputs the codes, whose per-channel counts give the mean
    through ``levels`` and, through ``variance_table``, the graph's own variance, exactly.
    """

    mean: str  # (1, C, 1, 1)
    variance: str  # (1, C, 1, 1)
    normalised: str  # x, the (1, C, h, w) tensor the layer normalises
    prefix: bytes  # image, style vector, earlier moments -> x, or x's int8 codes when quantized
    levels: tuple[float, ...] | None = None  # quantized only: x for each code's byte pattern 0..255
    variance_table: bytes | None = None  # quantized only: x (1, 1, 1, L), mean -> (1, C, 1, L) pool input


@dataclass(frozen=True)
class NormSplitGraphs:
    """An instance-norm network split so that its statistics can come from outside.

    Instance norm normalises each channel by its mean and variance over the *whole* image.
    Run on a tile, it would use the tile's own statistics, and neighbouring tiles would
    disagree in brightness and contrast (SSIM 0.75-0.82 against the untiled result on a
    2048x2048 photo, 512-1024 px tiles). With these graphs the statistics are gathered over
    the whole image one layer at a time (layer k's prefix needs the moments of the layers
    before it; one run of it per tile gives both of layer k's moments, see :class:`NormLayer`),
    and ``tiled`` then paints every tile with the whole-image moments.
    """

    tiled: bytes  # image, style vector, every moment -> stylized image
    layers: tuple[NormLayer, ...]


#: Ops that act on each element alone (with broadcast constants): a variance table built from
#: them gives the same value for an x whether it sits in an image or in a list of levels.
_ELEMENTWISE = frozenset({"Identity", "Sub", "Add", "Mul", "Div", "Pow", "Abs", "Neg", "Cast",
                          "QuantizeLinear", "DequantizeLinear"})


def _subgraph(model: "onnx.ModelProto", inputs_from: set[str], outputs: list[str],  # noqa: F821
              activations: frozenset[str] = frozenset(), output_types: dict[str, int] | None = None) -> bytes:
    """``model`` with the tensors in ``inputs_from`` fed from outside and only ``outputs`` kept.

    Fed tensors are (1, C, 1, 1) moments, except those in ``activations`` (shape left free).
    Outputs are float unless ``output_types`` names another ONNX element type.
    """
    import copy

    from onnx import TensorProto, helper

    sub = copy.deepcopy(model)
    graph = sub.graph
    fed = inputs_from | activations
    kept = [node for node in graph.node if not set(node.output) & fed]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.output[:]
    types = output_types or {}
    graph.output.extend(helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None)
                        for name in outputs)
    live = _live_nodes(graph)
    del graph.node[:]
    graph.node.extend(live)
    used = {name for node in live for name in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    original_inputs = [value for value in graph.input if value.name in used]
    del graph.input[:]
    graph.input.extend(original_inputs)
    graph.input.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, f"c{i}", 1, 1])
        for i, name in enumerate(sorted(inputs_from & used))
    )
    graph.input.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                       for name in sorted(activations & used))
    return sub.SerializeToString()


def _quantized_levels(model: "onnx.ModelProto", x: str) -> tuple[str, tuple[float, ...], int] | None:  # noqa: F821
    """(codes, value of each code byte 0..255, codes' ONNX type) when x = DequantizeLinear(8-bit codes)
    with one scale and zero point; else None."""
    import numpy as np
    from onnx import numpy_helper

    producer = next((node for node in model.graph.node if x in node.output), None)
    if producer is None or producer.op_type != "DequantizeLinear" or len(producer.input) < 3:
        return None
    constants = {init.name: init for init in model.graph.initializer}
    if producer.input[1] not in constants or producer.input[2] not in constants:
        return None
    scale = numpy_helper.to_array(constants[producer.input[1]])
    zero_point = numpy_helper.to_array(constants[producer.input[2]])
    if scale.size != 1 or zero_point.size != 1 or zero_point.dtype not in (np.int8, np.uint8):
        return None
    codes = np.arange(256, dtype=np.uint8).view(zero_point.dtype)
    # DequantizeLinear's own arithmetic: float(code - zero_point) * scale, in float32.
    levels = (codes.astype(np.int32) - zero_point.astype(np.int32)).astype(np.float32) * scale.astype(np.float32)
    return producer.input[0], tuple(float(v) for v in levels.reshape(-1)), constants[producer.input[2]].data_type


def _check_variance_table(name: str, table: bytes, x: str, mean: str) -> None:
    """The table must depend on x and the mean only, element by element."""
    import onnx

    graph = onnx.load_from_string(table).graph
    foreign = {value.name for value in graph.input} - {x, mean}
    if foreign:
        raise SlimvisionError(f"{name}: the variance of {x} also depends on {sorted(foreign)}")
    depends_on_x = {x}
    for node in graph.node:
        if depends_on_x & set(node.input):
            if node.op_type not in _ELEMENTWISE:
                raise SlimvisionError(f"{name}: the variance of {x} goes through a {node.op_type}, "
                                      "not element by element")
            depends_on_x.update(node.output)


def _check_squared_difference(model: "onnx.ModelProto", pool_input: str, x: str, mean: str) -> None:  # noqa: F821
    """The variance pool must average (x - mean)^2 (Identity, Reshape allowed between)."""
    producers = {output: node for node in model.graph.node for output in node.output}

    def through(name: str, ops: tuple[str, ...] = ("Identity",)) -> str:
        while name in producers and producers[name].op_type in ops:
            name = producers[name].input[0]
        return name

    def is_squared_difference() -> bool:
        square = producers.get(through(pool_input))
        if square is None or square.op_type != "Mul" or through(square.input[0]) != through(square.input[1]):
            return False
        difference = producers.get(through(square.input[0]))
        # x itself may be an Identity's output (Q/DQ replaced in a float graph): compare roots.
        return (difference is not None and difference.op_type == "Sub"
                and through(difference.input[0]) == through(x)
                and through(difference.input[1], ("Identity", "Reshape", "Unsqueeze")) == mean)

    if not is_squared_difference():
        raise SlimvisionError(f"{model.graph.name}: the variance of {x} is not the mean of (x - mean)^2")


def _norm_layer(model: "onnx.ModelProto", pools: dict, mean: str, earlier: set[str]) -> NormLayer:  # noqa: F821
    """The prefix (and, for an int8 x, the variance table) of the layer whose mean pool is ``mean``."""
    variance = mean.replace("/moments/mean", "/moments/variance")
    if variance not in pools:
        raise SlimvisionError(f"{model.graph.name}: no variance pool beside {mean}")
    x, variance_input = pools[mean].input[0], pools[variance].input[0]
    quantized = _quantized_levels(model, x)
    if quantized is None:
        _check_squared_difference(model, variance_input, x, mean)
        return NormLayer(mean, variance, x, _subgraph(model, earlier, [x]))
    codes, levels, codes_type = quantized
    table = _subgraph(model, {mean}, [variance_input], activations=frozenset({x}))
    _check_variance_table(model.graph.name, table, x, mean)
    prefix = _subgraph(model, earlier, [codes], output_types={codes: codes_type})
    return NormLayer(mean, variance, x, prefix, levels, table)


def split_norm_statistics(model: "onnx.ModelProto") -> NormSplitGraphs:  # noqa: F821
    """Split a tf2onnx conversion of Magenta's conditional instance norm network.

    tf2onnx names the moments of ``tf.nn.moments`` ``.../moments/mean`` and
    ``.../moments/variance``; each is a ``GlobalAveragePool`` output (``*_prequant`` in the
    int8 graph, before its QuantizeLinear). The mean's pool input is the normalised tensor.
    Works on the shipped int8 QDQ graph and on float graphs made from it (Q/DQ as Identity).
    """
    pools = {node.output[0]: node for node in model.graph.node if node.op_type == "GlobalAveragePool"}
    means = [name for name in pools if "/moments/mean" in name]
    layers: list[NormLayer] = []
    earlier: set[str] = set()
    for mean in means:
        layers.append(_norm_layer(model, pools, mean, earlier))
        earlier |= {mean, layers[-1].variance}
    if not layers:
        raise SlimvisionError(f"{model.graph.name}: no instance-norm moments found")
    tiled = _subgraph(model, earlier, [output.name for output in model.graph.output])
    return NormSplitGraphs(tiled, tuple(layers))
