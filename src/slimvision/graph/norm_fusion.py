"""Fuse the style transformers' spelled-out conditional instance norms into ONNX
``InstanceNormalization`` nodes, for whole-image painting.

Our transformer students export each conditional instance norm as the arithmetic it is
(``models.style.transformer`` keeps it spelled out so that large images can be tiled with
whole-image statistics, ``graph.rewrite.split_norm_statistics``)::

    m = GlobalAveragePool(x);  c = x - m;  v = GlobalAveragePool(c * c)
    y = c * ((1 / sqrt(v + eps)) * gamma) + beta          # gamma, beta: (1, C, 1, 1) from the style

Each of those nodes is a pass over the activation map, and on a CPU they are memory-bound: an
ONNX Runtime profile of the fast transformer at 1280x720 put a third of its time in them (Mul,
Add, Sub, GlobalAveragePool), against half in the convolutions. ONNX's
``InstanceNormalization(x, scale, bias)`` computes the same with scale and bias as runtime
inputs, in one kernel. The rewrite leaves everything else alone, and the session of a tiled
image keeps using the unfused graph, whose statistics it needs split out.

Example:
    >>> import onnx
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    >>> gb = helper.make_tensor_value_info("gb", TensorProto.FLOAT, [1, 4, 1, 1])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    >>> graph = helper.make_graph(spelled_out_norm("x", "gb", "gb", "y"), "norm", [x, gb], [y],
    ...                           [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ...                            helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-5])])
    >>> fused, count = fuse_instance_norms_proto(helper.make_model(graph))
    >>> count, [node.op_type for node in fused.graph.node]
    (1, ['Reshape', 'Reshape', 'InstanceNormalization'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bumped whenever the fusion changes, so stale cache entries are never reused.
FUSION_VERSION = 2


@dataclass(frozen=True)
class _NormMatch:
    """One spelled-out norm: its input map, the (1, C, 1, 1) gamma and beta, epsilon, output,
    and the nodes that compute it (removed by the fusion; the last is the one writing ``output``)."""

    x: str
    gamma: str
    beta: str
    epsilon: float
    output: str
    nodes: tuple


class _Graph:
    """Producer / consumer / constant lookups over one ONNX graph."""

    def __init__(self, graph: "onnx.GraphProto") -> None:  # noqa: F821
        from onnx import numpy_helper

        self.producer = {name: node for node in graph.node for name in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in dict.fromkeys(node.input):  # a node reading x twice (x * x) counts once
                self.consumers.setdefault(name, []).append(node)
        self.constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.outputs = {value.name for value in graph.output}

    def only_consumer(self, name: str, op_type: str) -> "onnx.NodeProto | None":  # noqa: F821
        """The single consumer of ``name``, if there is exactly one and it is an ``op_type``."""
        users = self.consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self.outputs:
            return users[0]
        return None

    def scalar(self, name: str) -> float | None:
        value = self.constants.get(name)
        return float(np.asarray(value).reshape(())) if value is not None and np.size(value) == 1 else None

    def other_input(self, node: "onnx.NodeProto", name: str) -> str:  # noqa: F821
        rest = [value for value in node.input if value != name]
        return rest[0] if len(rest) == 1 else ""


def _inverse_std(graph: _Graph, square: "onnx.NodeProto") -> tuple[tuple, float, str] | None:  # noqa: F821
    """From ``square = centred * centred``: (its nodes, epsilon, the name of
    ``1 / sqrt(GlobalAveragePool(square) + eps)``), spelled ``Div(1, .)`` or ``Reciprocal``."""
    variance = graph.only_consumer(square.output[0], "GlobalAveragePool")
    add_eps = variance and graph.only_consumer(variance.output[0], "Add")
    epsilon = add_eps and graph.scalar(graph.other_input(add_eps, variance.output[0]))
    root = epsilon is not None and add_eps and graph.only_consumer(add_eps.output[0], "Sqrt")
    if not root:
        return None
    users = graph.consumers.get(root.output[0], [])
    if len(users) != 1:
        return None
    inverse = users[0]
    one_over = inverse.op_type == "Div" and inverse.input[1] == root.output[0] and graph.scalar(inverse.input[0]) == 1.0
    if not (one_over or inverse.op_type == "Reciprocal"):
        return None
    return (square, variance, add_eps, root, inverse), float(epsilon), inverse.output[0]


def _centring(graph: _Graph, sub: "onnx.NodeProto") -> tuple[str, tuple, str] | None:  # noqa: F821
    """For ``sub = x - [Reshape](GlobalAveragePool(x))``: (x, the pool [and reshape], the mean)."""
    if len(sub.input) != 2:
        return None
    x, mean = sub.input
    nodes = ()
    producer = graph.producer.get(mean)
    if producer is not None and producer.op_type == "Reshape" and graph.consumers.get(mean) == [sub]:
        nodes, mean = (producer,), producer.input[0]
        producer = graph.producer.get(mean)
    if producer is None or producer.op_type != "GlobalAveragePool" or producer.input[0] != x:
        return None
    return x, (producer, *nodes), mean


def _match(graph: _Graph, sub: "onnx.NodeProto") -> _NormMatch | None:  # noqa: F821
    """The norm whose centring is ``sub`` (``x - mean(x)``), in either spelling, or None."""
    centring = _centring(graph, sub)
    if centring is None:
        return None
    x, mean_nodes, mean = centring
    centred = sub.output[0]
    squares = [node for node in graph.consumers.get(centred, [])
               if node.op_type == "Mul" and list(node.input) == [centred, centred]]
    chain = len(squares) == 1 and _inverse_std(graph, squares[0])
    if not chain:
        return None
    variance_nodes, epsilon, inverse = chain
    scale = graph.only_consumer(inverse, "Mul")
    if scale is None:
        return None
    gamma, factor = graph.other_input(scale, inverse), scale.output[0]
    users = graph.consumers.get(centred, [])
    if len(users) == 2:  # ours: (x - m) * factor + beta
        found = _shifted(graph, centred, factor, users, (sub,))
    else:  # TensorFlow's batchnorm: x * factor + (beta - m * factor)
        found = _batchnorm_form(graph, x, mean, factor, users, (sub,))
    if found is None:
        return None
    beta, output, tail = found
    nodes = (*mean_nodes, *variance_nodes, scale, *tail)
    inside = {name for node in nodes for name in node.output} - {output}
    if any(user not in nodes for name in inside for user in graph.consumers.get(name, [])) \
            or inside & graph.outputs:
        return None  # an intermediate is used elsewhere: fusing would lose it
    return _NormMatch(x=x, gamma=gamma, beta=beta, epsilon=epsilon, output=output, nodes=nodes)


def _shifted(graph: _Graph, centred: str, factor: str, users: list, head: tuple) -> tuple | None:
    """``(x - m) * factor + beta``: (beta, output, nodes)."""
    scaled = graph.only_consumer(factor, "Mul")
    if scaled is None or centred not in scaled.input or scaled not in users:
        return None
    shift = graph.only_consumer(scaled.output[0], "Add")
    if shift is None:
        return None
    return graph.other_input(shift, scaled.output[0]), shift.output[0], (*head, scaled, shift)


def _batchnorm_form(graph: _Graph, x: str, mean: str, factor: str, users: list, head: tuple) -> tuple | None:
    """``x * factor + (beta - [Reshape](m * factor))``: (beta, output, nodes)."""
    if len(users) != 1:  # the centred map feeds only its square
        return None
    products = graph.consumers.get(factor, [])
    on_mean = [node for node in products if node.op_type == "Mul" and set(node.input) == {mean, factor}]
    on_x = [node for node in products if node.op_type == "Mul" and set(node.input) == {x, factor}]
    if len(products) != 2 or len(on_mean) != 1 or len(on_x) != 1:
        return None
    offset, extra = on_mean[0].output[0], ()
    reshape = graph.only_consumer(offset, "Reshape")
    if reshape is not None:
        offset, extra = reshape.output[0], (reshape,)
    bias = graph.only_consumer(offset, "Sub")
    if bias is None or list(bias.input)[1] != offset:
        return None
    shift = graph.only_consumer(on_x[0].output[0], "Add")
    if shift is None or graph.other_input(shift, on_x[0].output[0]) != bias.output[0]:
        return None
    return bias.input[0], shift.output[0], (*head, on_mean[0], *extra, bias, on_x[0], shift)


def spelled_out_norm(x: str, gamma: str, beta: str, output: str) -> list:
    """The nodes of one spelled-out norm as our exporter writes it (for tests and the example);
    needs scalar initializers ``one`` and ``eps``."""
    from onnx import helper

    prefix = f"{output}/"
    names = [prefix + name for name in ("mean", "centred", "square", "variance", "shifted", "root",
                                        "inverse", "scale", "scaled")]
    mean, centred, square, variance, shifted, root, inverse, scale, scaled = names
    return [helper.make_node("GlobalAveragePool", [x], [mean]),
            helper.make_node("Sub", [x, mean], [centred]),
            helper.make_node("Mul", [centred, centred], [square]),
            helper.make_node("GlobalAveragePool", [square], [variance]),
            helper.make_node("Add", [variance, "eps"], [shifted]),
            helper.make_node("Sqrt", [shifted], [root]),
            helper.make_node("Div", ["one", root], [inverse]),
            helper.make_node("Mul", [inverse, gamma], [scale]),
            helper.make_node("Mul", [centred, scale], [scaled]),
            helper.make_node("Add", [scaled, beta], [output])]


def _fused_nodes(match: _NormMatch, flat_shape: str) -> list:
    from onnx import helper

    gamma, beta = f"{match.output}/gamma_1d", f"{match.output}/beta_1d"
    return [helper.make_node("Reshape", [match.gamma, flat_shape], [gamma]),
            helper.make_node("Reshape", [match.beta, flat_shape], [beta]),
            helper.make_node("InstanceNormalization", [match.x, gamma, beta], [match.output],
                             epsilon=match.epsilon)]


def _bypass_identities(graph: "onnx.GraphProto") -> None:  # noqa: F821
    """Drop ``Identity`` nodes (the teacher's float graph keeps one per removed quantize step),
    reading their inputs directly, so the patterns above see the arithmetic; ONNX Runtime drops
    them too. One whose output is a graph output stays."""
    outputs = {value.name for value in graph.output}
    alias = {node.output[0]: node.input[0] for node in graph.node
             if node.op_type == "Identity" and node.output[0] not in outputs}
    if not alias:
        return

    def source(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in alias)]
    for node in kept:
        for index, name in enumerate(node.input):
            node.input[index] = source(name)
    del graph.node[:]
    graph.node.extend(kept)


def fuse_instance_norms_proto(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", int]:  # noqa: F821
    """``model`` with every spelled-out instance norm replaced by ``InstanceNormalization``
    (in place; ``Identity`` nodes are dropped first), and how many were fused."""
    from onnx import numpy_helper

    _bypass_identities(model.graph)
    graph = _Graph(model.graph)
    matches = [match for node in model.graph.node if node.op_type == "Sub"
               for match in [_match(graph, node)] if match is not None]
    if not matches:
        return model, 0
    flat_shape = "norm_fusion/flat_shape"
    model.graph.initializer.append(numpy_helper.from_array(np.array([-1], np.int64), flat_shape))
    removed = {id(node) for match in matches for node in match.nodes}
    # Each fused norm takes the place of its last node (the final Add), which already came after
    # everything the norm reads (x, gamma, beta): the graph stays in topological order.
    fused_at = {id(match.nodes[-1]): _fused_nodes(match, flat_shape) for match in matches}
    nodes = [new for node in model.graph.node
             for new in fused_at.get(id(node), () if id(node) in removed else (node,))]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, len(matches)


def fused_graph_key(key: str) -> str:
    """Cache key of the fused form of the graph cached under ``key``."""
    return f"{key}-innorm-v{FUSION_VERSION}"


def with_fused_instance_norms(data: bytes, key: str) -> tuple[bytes, str]:
    """(the serialised graph ``data`` with its norms fused, its cache key), cached like every
    load-time rewrite. A graph with no norm to fuse is cached as it is, so that later loads skip
    the ``onnx`` import and the search too."""
    from slimvision.graph.rewrite import cached_graph

    def build() -> "onnx.ModelProto":  # noqa: F821
        import onnx

        return fuse_instance_norms_proto(onnx.load_from_string(data))[0]

    fused_key = fused_graph_key(key)
    return cached_graph(fused_key, build), fused_key
