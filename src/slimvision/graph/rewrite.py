"""Load-time rewrites of shipped ONNX graphs, cached so the ``onnx`` import is paid once.

The style transform network ships with a fixed 384x384 input although every layer in it is
convolutional (mirror pads, convolutions, instance norms over the spatial axes, resizes by
scale factors). Renaming the fixed height and width to symbolic dimensions lets ONNX Runtime
run it at any resolution; at 384x384 the rewritten graph computes exactly what the shipped
one does (the tests check this).

Example:
    >>> from slimvision.graph.rewrite import with_free_spatial_dims
    >>> data = with_free_spatial_dims(Path("arbitrary_transform.onnx"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import zlib
from collections.abc import Callable
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
    (the [1, 1, 1, 100] style vector is left alone). A graph exported with free sizes already
    (our students) passes through.
    """
    changed = 0
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value > 1 and dims[1].dim_value == dims[2].dim_value:
            dims[1].dim_param, dims[2].dim_param = "height", "width"
            changed += 1
        elif len(dims) == 4 and dims[1].dim_param and dims[2].dim_param:
            changed += 1  # free already
    if not changed:
        raise SlimvisionError(f"{model.graph.name}: no fixed NHWC image input or output to free")
    # Shape annotations inside the graph were inferred for 384x384: drop them so nothing
    # downstream trusts the stale sizes.
    del model.graph.value_info[:]
    return model


def free_graph_key(path: Path) -> str:
    """Cache name of :func:`with_free_spatial_dims`'s result for ``path`` (also the session cache key)."""
    return f"{path.stem}-{file_sha256(path)[:16]}-freehw-v{REWRITE_VERSION}"


def with_free_spatial_dims(path: Path) -> bytes:
    """The model at ``path`` with free height and width, as serialised bytes (cached on disk)."""
    return cached_rewrite(path, free_graph_key(path), free_spatial_dims_proto)


def cached_rewrite(path: Path, key: str, rewrite: Callable[["onnx.ModelProto"], "onnx.ModelProto"]) -> bytes:  # noqa: F821
    """``rewrite(onnx.load(path))`` checked and serialised, kept as ``<cache_dir>/<key>.<crc32>.onnx``.

    ``key`` must change whenever the source file or the rewrite does (a content hash and a
    version), so a stale entry is never reused; ``onnx`` is imported only on a cache miss.
    """
    def build() -> "onnx.ModelProto":  # noqa: F821
        import onnx  # deferred: ~0.3 s to import, needed only on the first run on a machine

        return rewrite(onnx.load(str(path)))

    return cached_graph(key, build)


def cached_graph(key: str, build: Callable[[], "onnx.ModelProto"]) -> bytes:  # noqa: F821
    """``build()`` checked and serialised, kept in the cache under ``key`` (same rules as
    :func:`cached_rewrite`, for graphs made from something that is not ONNX).

    A damaged entry (truncated, overwritten, bits flipped: its checksum no longer matches) is
    removed and rebuilt, with a log line; it is never an error.
    """
    cached = read_cache_entry(key)
    if cached is not None:
        return cached
    import onnx  # deferred: needed only on a cache miss

    model = build()
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    write_cache_entry(key, data)
    return data


def _entry_pattern(key: str) -> re.Pattern[str]:
    """``<key>.<crc32 of the bytes, 8 hex digits>.onnx``: the checksum travels in the name, so an
    entry is one file, written and replaced atomically, and checked on every read."""
    return re.compile(re.escape(key) + r"\.([0-9a-f]{8})\.onnx")


def read_cache_entry(key: str) -> bytes | None:
    """The bytes cached under ``key`` if an entry exists and its checksum matches, else None.

    A damaged entry is deleted (so that it is rebuilt) with an info log line naming it.
    """
    folder = cache_dir()
    pattern = _entry_pattern(key)
    try:
        entries = [path for path in folder.glob(f"{glob.escape(key)}.*.onnx") if pattern.fullmatch(path.name)]
    except OSError:
        return None
    for path in entries:
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.debug("cannot read cached %s (%s)", path, exc)
            continue
        if f"{zlib.crc32(data):08x}" == pattern.fullmatch(path.name).group(1):  # type: ignore[union-attr]
            return data
        log.info("cached graph %s is damaged (its checksum does not match); rebuilding it", path)
        path.unlink(missing_ok=True)
    return None


def write_cache_entry(key: str, data: bytes) -> Path | None:
    """Cache ``data`` under ``key`` (atomically; a read-only home just means no cache); returns the file."""
    path = cache_dir() / f"{key}.{zlib.crc32(data):08x}.onnx"
    _store(path, data)
    with contextlib.suppress(OSError):
        (cache_dir() / f"{key}.onnx").unlink(missing_ok=True)  # the unchecked name older versions used
    return path if path.is_file() else None


def _store(path: Path, data: bytes) -> None:
    """Write a cache entry atomically; a read-only home just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # deferred: only the first run on a machine writes the cache

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.debug("cannot cache %s (%s); the rewrite will be redone next time", path, exc)


def live_nodes(graph: "onnx.GraphProto") -> list:  # noqa: F821
    """Nodes that contribute to a graph output, in their original (topological) order."""
    needed = {output.name for output in graph.output}
    live = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(name for name in node.input if name)
    return live[::-1]


def drop_dead_nodes(graph: "onnx.GraphProto") -> set[str]:  # noqa: F821
    """Keep only the nodes that feed a graph output and the initializers they (or the outputs)
    name; returns those names."""
    live = live_nodes(graph)
    del graph.node[:]
    graph.node.extend(live)
    used = {name for node in live for name in node.input} | {output.name for output in graph.output}
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return used


@dataclass(frozen=True)
class NormLayer:
    """One instance-norm layer: the tensor it normalises, its two moments and how to pool them.

    In a float graph ``segment`` outputs the normalised tensor x, and the variance pool averages
    ``(x - mean)^2``: both moments follow from per-channel sums of x and x^2. In an int8 QDQ
    graph the variance pool averages a *quantized* square, rounded to steps about as large as
    the variance itself (0.30 for a variance of 0.13), so its variance is 1-40% off the float
    one and no sums reproduce it (tiling with the float variances: SSIM 0.55 against the
    untiled run). But there x is ``DequantizeLinear(codes)`` with one scale, so it takes at
    most 256 values: ``segment`` outputs the codes, whose per-channel counts give the mean
    through ``levels`` and, through ``variance_table``, the graph's own variance, exactly.
    """

    mean: str  # (1, C, 1, 1)
    variance: str  # (1, C, 1, 1)
    normalised: str  # x, the (1, C, h, w) tensor the layer normalises
    # what earlier segments handed on (the image, for the first), the style vector, earlier
    # moments -> x or its int8 codes (first output), then what later segments read
    segment: bytes
    levels: tuple[float, ...] | None = None  # quantized only: x for each code's byte pattern 0..255
    variance_table: bytes | None = None  # quantized only: x (1, 1, 1, L), mean -> (1, C, 1, L) pool input


@dataclass(frozen=True)
class NormSplitGraphs:
    """An instance-norm network cut at its norms, so that their statistics can come from outside.

    Instance norm normalises each channel by its mean and variance over the *whole* image.
    Run on a tile, it would use the tile's own statistics, and neighbouring tiles would
    disagree in brightness and contrast (SSIM 0.75-0.82 against the untiled result on a
    2048x2048 photo, 512-1024 px tiles). So the network is cut into consecutive segments: layer
    k's segment runs from where layer k-1's stopped up to layer k's normalised tensor, taking
    the moments of the layers before it; ``tail`` runs from the last one to the stylized image.
    Every tile runs every segment once, keeping what later segments read, and the statistics
    are gathered over the whole image one layer at a time (one run gives both moments, see
    :class:`NormLayer`).
    """

    image: str  # the (1, H, W, 3) content input, read by the first segment
    style: str  # the (1, 1, 1, 100) style vector input
    layers: tuple[NormLayer, ...]
    tail: bytes  # what the segments handed on, style vector, moments -> stylized image


#: Ops that act on each element alone (with broadcast constants): a variance table built from
#: them gives the same value for an x whether it sits in an image or in a list of levels.
_ELEMENTWISE = frozenset({"Identity", "Sub", "Add", "Mul", "Div", "Pow", "Abs", "Neg", "Cast",
                          "QuantizeLinear", "DequantizeLinear"})


def _subgraph(model: "onnx.ModelProto", inputs_from: set[str], outputs: list[str],  # noqa: F821
              activations: frozenset[str] = frozenset()) -> bytes:
    """``model`` with the tensors in ``inputs_from`` fed from outside and only float ``outputs`` kept.

    Fed tensors are (1, C, 1, 1) moments, except those in ``activations`` (shape left free).
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
    graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs)
    used = drop_dead_nodes(graph)
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


def _quantized_levels(model: "onnx.ModelProto", x: str) -> tuple[str, tuple[float, ...]] | None:  # noqa: F821
    """(codes, the value of each code byte 0..255) when x = DequantizeLinear(8-bit codes) with
    one scale and zero point; else None."""
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
    return producer.input[0], tuple(float(v) for v in levels.reshape(-1))


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


def _norm_layer(model: "onnx.ModelProto", pools: dict, mean: str) -> tuple[NormLayer, str]:  # noqa: F821
    """The layer whose mean pool is ``mean`` (its segment still empty), and the tensor to pool."""
    variance = mean.replace("/moments/mean", "/moments/variance")
    if variance not in pools:
        raise SlimvisionError(f"{model.graph.name}: no variance pool beside {mean}")
    x, variance_input = pools[mean].input[0], pools[variance].input[0]
    quantized = _quantized_levels(model, x)
    if quantized is None:
        _check_squared_difference(model, variance_input, x, mean)
        return NormLayer(mean, variance, x, b""), x
    codes, levels = quantized
    table = _subgraph(model, {mean}, [variance_input], activations=frozenset({x}))
    _check_variance_table(model.graph.name, table, x, mean)
    return NormLayer(mean, variance, x, b"", levels, table), codes


def _segment_nodes(nodes: list, targets: list[list[str]], image: str, constants: set[str]) -> list[list]:
    """Nodes of each segment: those ``targets[k]`` needs that no earlier segment computed.

    Nodes that do not depend on the image (the style vector's per-layer scales and offsets,
    constant folding) are cheap and repeated wherever needed. A DequantizeLinear of an image
    tensor is repeated too, so int8 codes (1 byte), not floats, cross between segments.
    """
    producers = {output: node for node in nodes for output in node.output}
    on_image = {image}
    for node in nodes:
        if on_image & set(node.input):
            on_image.update(node.output)
    order = {id(node): i for i, node in enumerate(nodes)}
    owned: set[int] = set()
    segments = []
    for wanted in targets:
        found: dict[int, object] = {}
        stack = list(wanted)
        while stack:
            node = producers.get(stack.pop())
            if node is None or id(node) in found or id(node) in owned:
                continue
            found[id(node)] = node
            repeated = node.op_type == "DequantizeLinear" and set(node.input[1:]) <= constants
            if on_image & set(node.output) and not repeated:
                owned.add(id(node))
            stack.extend(name for name in node.input if name)
        segments.append(sorted(found.values(), key=lambda node: order[id(node)]))
    return segments


def _segments(model: "onnx.ModelProto", targets: list[list[str]], fed: set[str]) -> list[bytes]:  # noqa: F821
    """``model`` with the ``fed`` moments from outside, cut into one graph per entry of ``targets``.

    Segment k outputs ``targets[k]`` first, then what later segments read from it, and reads
    the image (``model``'s first input) or what earlier segments output.
    """
    from onnx import TensorProto, helper, shape_inference

    graph = model.graph
    inferred = shape_inference.infer_shapes(model).graph
    types = {value.name: value.type.tensor_type.elem_type
             for value in (*inferred.value_info, *inferred.input, *inferred.output)}
    initializers = {init.name: init for init in graph.initializer}
    nodes = [node for node in graph.node if not set(node.output) & fed]
    parts = _segment_nodes(nodes, targets, graph.input[0].name, set(initializers))
    made = [{name for node in part for name in node.output} for part in parts]
    reads = [{name for node in part for name in node.input if name} for part in parts]
    handed = [reads[k] - made[k] - set(initializers) - fed - {value.name for value in graph.input}
              for k in range(len(parts))]

    def value(name: str, shape: list | None = None) -> "onnx.ValueInfoProto":  # noqa: F821
        return helper.make_tensor_value_info(name, types.get(name) or TensorProto.FLOAT, shape)

    segments = []
    for k, part in enumerate(parts):
        later = set().union(*handed[k + 1:])
        outputs = targets[k] + sorted((made[k] & later) - set(targets[k]))
        inputs = [item for item in graph.input if item.name in reads[k]]
        inputs += [value(name, [1, f"c{i}", 1, 1]) for i, name in enumerate(sorted(fed & reads[k]))]
        inputs += [value(name) for name in sorted(handed[k])]
        sub = helper.make_graph(part, f"{graph.name}-segment{k}", inputs, [value(name) for name in outputs],
                                [initializers[name] for name in sorted(reads[k] & set(initializers))])
        segments.append(helper.make_model(sub, opset_imports=model.opset_import,
                                          ir_version=model.ir_version).SerializeToString())
    return segments


def split_norm_statistics(model: "onnx.ModelProto") -> NormSplitGraphs:  # noqa: F821
    """Cut a tf2onnx conversion of Magenta's conditional instance norm network at its norms.

    tf2onnx names the moments of ``tf.nn.moments`` ``.../moments/mean`` and
    ``.../moments/variance``; each is a ``GlobalAveragePool`` output (``*_prequant`` in the
    int8 graph, before its QuantizeLinear). The mean's pool input is the normalised tensor.
    Works on the shipped int8 QDQ graph and on float graphs made from it (Q/DQ as Identity).
    The content image must be the model's first input and the style vector its second.
    """
    import dataclasses

    pools = {node.output[0]: node for node in model.graph.node if node.op_type == "GlobalAveragePool"}
    found = [_norm_layer(model, pools, name) for name in pools if "/moments/mean" in name]
    if not found:
        raise SlimvisionError(f"{model.graph.name}: no instance-norm moments found")
    if len(model.graph.input) != 2:
        raise SlimvisionError(f"{model.graph.name}: expected two inputs (image, style vector), "
                              f"found {len(model.graph.input)}")
    fed = {name for layer, _ in found for name in (layer.mean, layer.variance)}
    targets = [[pooled] for _, pooled in found] + [[output.name for output in model.graph.output]]
    *segments, tail = _segments(model, targets, fed)
    layers = tuple(dataclasses.replace(layer, segment=segment) for (layer, _), segment in zip(found, segments))
    return NormSplitGraphs(model.graph.input[0].name, model.graph.input[1].name, layers, tail)


def label_norm_moments(path: str | Path) -> int:
    """Name the instance-norm moments of a torch export the way tf2onnx does, so that
    :func:`split_norm_statistics` (and so tiling) finds them; the file is rewritten in place.

    A norm is recognised by its structure: ``mean = GlobalAveragePool(x)``, ``d = x - mean``,
    ``variance = GlobalAveragePool(d * d)``. Its two pool outputs become ``norm{k}/moments/mean``
    and ``norm{k}/moments/variance``. Returns the number of norms labelled.
    """
    import onnx

    from slimvision.io.atomic import write_bytes_atomic

    path = Path(path)
    model = onnx.load(str(path))
    nodes = model.graph.node
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    renames: dict[str, str] = {}
    for node in nodes:
        if node.op_type != "GlobalAveragePool":
            continue
        variance = _variance_pool(node, consumers)
        if variance is not None:
            label = f"norm{len(renames) // 2}/moments"
            renames[node.output[0]], renames[variance.output[0]] = f"{label}/mean", f"{label}/variance"
    for node in nodes:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    write_bytes_atomic(path, model.SerializeToString(), overwrite=True)
    return len(renames) // 2


def _variance_pool(mean_pool: "onnx.NodeProto", consumers: dict[str, list]) -> "onnx.NodeProto | None":  # noqa: F821
    """The pool averaging (x - mean)^2 for ``mean_pool`` = GlobalAveragePool(x), if there is one."""
    x, mean = mean_pool.input[0], mean_pool.output[0]
    for sub in consumers.get(mean, []):
        if sub.op_type != "Sub" or list(sub.input) != [x, mean]:
            continue
        for square in consumers.get(sub.output[0], []):
            if square.op_type == "Mul" and list(square.input) == [sub.output[0]] * 2:
                for pool in consumers.get(square.output[0], []):
                    if pool.op_type == "GlobalAveragePool":
                        return pool
    return None
