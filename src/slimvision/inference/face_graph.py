"""dlib's face-recognition network as an ONNX graph, built from its ``.dat`` file without torch or dlib.

Inference never imports torch, and the teacher's weights ship only as dlib's own file, so the
graph is written directly with ``onnx.helper`` from :func:`slimvision.io.dlib.read_dlib_network`
and cached (keyed by the file's hash and :data:`GRAPH_VERSION`). It computes what
:class:`slimvision.models.faces.DlibResNet` computes (a test checks both against dlib):
- input ``face_chip``: (B, 3, 150, 150) RGB in [0, 1], NCHW;
- dlib's input scaling, (255 x - mean) / 256, folded into the first conv (exact: it has no padding);
- each ``affine`` folded into its conv; shortcuts zero-padded where dlib's ``add_prev`` pads;
- output ``descriptor``: (B, 128), compared by Euclidean distance (dlib: same person below 0.6).
How chips are cut and fed, and how descriptors compare, is on the artifact card
(``weights/cards/dlib_face_recognition_resnet_model_v1.card.json``, read by
:mod:`slimvision.inference.face_embedder`), not in the graph: the graph's metadata names only its
source.

Example:
    >>> from slimvision.assets import DLIB_FACE_RESNET
    >>> graph = dlib_resnet_graph(DLIB_FACE_RESNET.path())   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimvision.io.dlib import DlibFormatError, DlibLayer, DlibNetwork, read_dlib_network

#: Bump when the graph this module writes changes, so cached copies are rebuilt (2: the
#: preprocessing left the graph's metadata for the card).
GRAPH_VERSION = 2
INPUT_NAME, OUTPUT_NAME = "face_chip", "descriptor"


def dlib_resnet_graph(path: str | Path) -> bytes:
    """The serialised ONNX graph of the dlib network at ``path`` (built once, then cached)."""
    from slimvision.assets import file_sha256
    from slimvision.graph.rewrite import cached_graph

    path = Path(path)
    key = f"{path.stem}-{file_sha256(path)[:16]}-dlib-graph-v{GRAPH_VERSION}"
    return cached_graph(key, lambda: build_graph(read_dlib_network(path), str(path)))


class _Builder:
    """Appends nodes and initializers, tracking each value's (channels, height, width)."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.weights: list[Any] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def constant(self, prefix: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attributes: Any) -> str:
        from onnx import helper

        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _conv_weights(con: DlibLayer, affine: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of a dlib conv with the affine layer after it folded in."""
    shape = tuple(con.fields["filters_shape"])
    count = int(np.prod(shape))
    flat = con.params.reshape(-1)
    gamma, beta = np.split(affine.params.reshape(-1), 2)
    return flat[:count].reshape(shape) * gamma[:, None, None, None], flat[count:] * gamma + beta


def build_graph(network: DlibNetwork, name: str = "dlib network") -> Any:
    """An ``onnx.ModelProto`` computing ``network`` (the layer sequence of dlib's ``anet_type``)."""
    from onnx import TensorProto, helper

    graph = _Builder()
    layers = list(network.layers)
    size = int(network.input["rows"])
    shape = (3, size, size)
    value, shape, layers = _stem(graph, layers, network.input, shape, name)
    while layers and layers[0].kind == "con":
        value, shape, layers = _block(graph, layers, value, shape, name)
    if [layer.kind for layer in layers] != ["avg_pool", "fc"]:
        raise DlibFormatError(f"{name}: expected a global average pool and the embedding after the residual "
                              f"blocks, found {[layer.tag for layer in layers]}")
    fc = layers[1]
    pooled = graph.node("Flatten", [graph.node("GlobalAveragePool", [value])])
    weights = fc.params.reshape(fc.fields["inputs"], fc.fields["outputs"])  # dlib computes x @ W
    graph.nodes.append(helper.make_node("MatMul", [pooled, graph.constant("embedding", weights)], [OUTPUT_NAME],
                                        name="embedding"))
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, size, size])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", fc.fields["outputs"]])]
    model = helper.make_model(helper.make_graph(graph.nodes, "dlib_face_resnet", inputs, outputs, graph.weights),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="slimvision")
    model.ir_version = 8
    helper.set_model_props(model, {"slimvision.source": "dlib_face_recognition_resnet_model_v1 (dlib, CC0)"})
    return model


def _take(layers: list[DlibLayer], kinds: tuple[str, ...], name: str) -> list[DlibLayer]:
    found = tuple(layer.kind for layer in layers[:len(kinds)])
    if found != kinds:
        raise DlibFormatError(f"{name}: expected layers {kinds}, found {found}")
    return layers[:len(kinds)]


def _conv(graph: _Builder, value: str, con: DlibLayer, affine: DlibLayer,
          shape: tuple[int, int, int], scale: float = 1.0, shift: np.ndarray | None = None) -> tuple[str, tuple]:
    """A conv node (affine folded; optionally an input scale and per-channel shift folded too)."""
    weight, bias = _conv_weights(con, affine)
    if shift is not None:  # conv(s x + t) = (s W) x + (b + sum W t), exact without padding
        bias = bias + np.einsum("oikl,i->o", weight, shift)
    weight = weight * scale
    fields = con.fields
    pad_y, pad_x = fields["padding_y"], fields["padding_x"]
    stride_y, stride_x = fields["stride_y"], fields["stride_x"]
    rows, cols = fields["kernel_rows"], fields["kernel_cols"]
    out = graph.node("Conv", [value, graph.constant("w", weight.astype(np.float32)),
                              graph.constant("b", bias.astype(np.float32))],
                     kernel_shape=[rows, cols], strides=[stride_y, stride_x], pads=[pad_y, pad_x, pad_y, pad_x])
    height = (shape[1] + 2 * pad_y - rows) // stride_y + 1
    width = (shape[2] + 2 * pad_x - cols) // stride_x + 1
    return out, (fields["filters"], height, width)


def _stem(graph: _Builder, layers: list[DlibLayer], network_input: dict[str, Any], shape: tuple[int, int, int],
          name: str) -> tuple[str, tuple, list[DlibLayer]]:
    con, affine, _, pool = _take(layers, ("con", "affine", "relu", "max_pool"), name)
    if con.fields["padding_y"] or con.fields["padding_x"]:
        raise DlibFormatError(f"{name}: the first conv is padded; the input scaling cannot be folded into it")
    mean = np.asarray(network_input["pixel_mean"], np.float64)
    value, shape = _conv(graph, INPUT_NAME, con, affine, shape, scale=255.0 / 256.0, shift=-mean / 256.0)
    value = graph.node("Relu", [value])
    value, shape = _pool(graph, "MaxPool", value, pool, shape)
    return value, shape, layers[4:]


def _pool(graph: _Builder, op: str, value: str, pool: DlibLayer, shape: tuple) -> tuple[str, tuple]:
    fields = pool.fields
    if fields["padding_y"] or fields["padding_x"]:
        raise DlibFormatError(f"padded {pool.tag} layers are not supported")
    out = graph.node(op, [value], kernel_shape=[fields["rows"], fields["cols"]],
                     strides=[fields["stride_y"], fields["stride_x"]])
    height = (shape[1] - fields["rows"]) // fields["stride_y"] + 1
    width = (shape[2] - fields["cols"]) // fields["stride_x"] + 1
    return out, (shape[0], height, width)


def _block(graph: _Builder, layers: list[DlibLayer], value: str, shape: tuple,
           name: str) -> tuple[str, tuple, list[DlibLayer]]:
    """conv, affine, relu, conv, affine, [avg_pool], add_prev, relu -> nodes; the rest of the layers."""
    con1, affine1, _, con2, affine2 = _take(layers, ("con", "affine", "relu", "con", "affine"), name)
    out, out_shape = _conv(graph, value, con1, affine1, shape)
    out, out_shape = _conv(graph, graph.node("Relu", [out]), con2, affine2, out_shape)
    rest = layers[5:]
    shortcut, short_shape = value, shape
    if rest and rest[0].kind == "avg_pool":
        shortcut, short_shape = _pool(graph, "AveragePool", value, rest[0], shape)
        rest = rest[1:]
    _take(rest, ("add_prev", "relu"), name)
    target = tuple(max(a, b) for a, b in zip(out_shape, short_shape))
    added = graph.node("Add", [_pad_to(graph, out, out_shape, target), _pad_to(graph, shortcut, short_shape, target)])
    return graph.node("Relu", [added]), target, rest[2:]


def _pad_to(graph: _Builder, value: str, shape: tuple, target: tuple) -> str:
    """Zero-pad after the last channel, row and column up to ``target`` (dlib's ``add_prev``)."""
    if tuple(shape) == tuple(target):
        return value
    ends = [0] + [t - s for s, t in zip(shape, target)]
    pads = graph.constant("pads", np.array([0, 0, 0, 0] + ends, np.int64))
    return graph.node("Pad", [value, pads])
