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
import tempfile
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
    """One instance-norm layer: the tensor it normalises and its two moment tensors."""

    mean: str  # (1, C, 1, 1)
    variance: str  # (1, C, 1, 1)
    mean_prefix: bytes  # image, style vector, earlier moments -> (1, C, h, w) mean pool input
    variance_prefix: bytes  # the same plus this layer's mean -> variance pool input


@dataclass(frozen=True)
class NormSplitGraphs:
    """An instance-norm network split so that its statistics can come from outside.

    Instance norm normalises each channel by its mean and variance over the *whole* image.
    Run on a tile, it would use the tile's own statistics, and neighbouring tiles would
    disagree in brightness and contrast (SSIM 0.75-0.82 against the untiled result on a
    2048x2048 photo, 512-1024 px tiles). With these graphs the statistics are gathered over
    the whole image one layer at a time (layer k's prefixes need the moments of the layers
    before it), and ``tiled`` then paints every tile with the whole-image moments.

    The variance needs its own pass after the mean: the int8 graph squares ``x - mean`` and
    quantizes the square, which saturates, so the float variance computed from sums of x and
    x^2 is far from what the graph uses (SSIM 0.86 instead of 0.99 when we tried it).
    """

    tiled: bytes  # image, style vector, every moment -> stylized image
    layers: tuple[NormLayer, ...]


def _subgraph(model: "onnx.ModelProto", inputs_from: set[str], outputs: list[str]) -> bytes:  # noqa: F821
    """``model`` with the tensors in ``inputs_from`` fed from outside and only ``outputs`` kept."""
    import copy

    from onnx import TensorProto, helper

    sub = copy.deepcopy(model)
    graph = sub.graph
    kept = [node for node in graph.node if not set(node.output) & inputs_from]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.output[:]
    graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs)
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
    return sub.SerializeToString()


def split_norm_statistics(model: "onnx.ModelProto") -> NormSplitGraphs:  # noqa: F821
    """Split a tf2onnx conversion of Magenta's conditional instance norm network.

    tf2onnx names the moments of ``tf.nn.moments`` ``.../moments/mean`` and
    ``.../moments/variance``; each is a ``GlobalAveragePool`` output (``*_prequant`` in the
    int8 graph, before its QuantizeLinear). The mean's pool input is the normalised tensor.
    """
    pools = {node.output[0]: node for node in model.graph.node if node.op_type == "GlobalAveragePool"}
    means = [name for name in pools if "/moments/mean" in name]
    layers: list[NormLayer] = []
    earlier: set[str] = set()
    for mean in means:
        variance = mean.replace("/moments/mean", "/moments/variance")
        if variance not in pools:
            raise SlimvisionError(f"{model.graph.name}: no variance pool beside {mean}")
        mean_prefix = _subgraph(model, set(earlier), [pools[mean].input[0]])
        variance_prefix = _subgraph(model, earlier | {mean}, [pools[variance].input[0]])
        layers.append(NormLayer(mean, variance, mean_prefix, variance_prefix))
        earlier |= {mean, variance}
    if not layers:
        raise SlimvisionError(f"{model.graph.name}: no instance-norm moments found")
    tiled = _subgraph(model, earlier, [output.name for output in model.graph.output])
    return NormSplitGraphs(tiled, tuple(layers))
