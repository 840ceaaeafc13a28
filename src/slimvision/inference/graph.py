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


def split_norm_statistics(model: "onnx.ModelProto") -> tuple[bytes, bytes, list[str]]:  # noqa: F821
    """Two variants of an instance-norm network, for tiling without per-tile statistics.

    Instance norm normalises each channel by its mean and variance over the *whole* image;
    run on a tile, it would use the tile's own statistics instead, and neighbouring tiles would
    disagree in brightness and contrast. In this family of graphs (tf2onnx's conversion of
    Magenta's conditional instance norm) every ``GlobalAveragePool`` computes one of those
    moments, so:

    * the *statistics* variant also outputs every moment (run it once on the whole image, or
      on a downscaled copy when the whole image does not fit in memory);
    * the *tiled* variant takes every moment as an input instead of computing it.

    Returns:
        (statistics model bytes, tiled model bytes, names of the moment tensors in order).
    """
    import copy

    from onnx import TensorProto, helper

    moments = [node.output[0] for node in model.graph.node if node.op_type == "GlobalAveragePool"]
    if not moments:
        raise SlimvisionError(f"{model.graph.name}: no GlobalAveragePool moments to split out")

    stats = copy.deepcopy(model)
    stats.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in moments)

    tiled = copy.deepcopy(model)
    keep = [node for node in tiled.graph.node if node.output[0] not in set(moments)]
    del tiled.graph.node[:]
    tiled.graph.node.extend(keep)
    tiled.graph.input.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, f"channels_{i}", 1, 1])
        for i, name in enumerate(moments)
    )
    live = _live_nodes(tiled.graph)
    del tiled.graph.node[:]
    tiled.graph.node.extend(live)
    used = {name for node in live for name in node.input}
    initializers = [init for init in tiled.graph.initializer if init.name in used]
    del tiled.graph.initializer[:]
    tiled.graph.initializer.extend(initializers)
    return stats.SerializeToString(), tiled.SerializeToString(), moments
