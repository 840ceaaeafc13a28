"""Graph surgery on exported ONNX models: shorter names, zero pads folded into convolutions.

Both run on a freshly exported graph (``export.onnx`` and the style exporters call them);
they need ``onnx`` and numpy only, so compress, export and inference can all use them.

Example:
    >>> saved = compact_names("out/predictor.onnx")                        # doctest: +SKIP
    >>> folded = fold_pads_into_convs(onnx.load("out/predictor.onnx"))     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimvision.graph.rewrite import drop_dead_nodes
from slimvision.io.atomic import write_bytes_atomic


def compact_names(path: str | Path) -> int:
    """Shorten an ONNX file in place: node names dropped, intermediate tensors renamed ``t0, t1, ...``.

    The torch exporter names every node and tensor by its module path (``/predictor/blocks.1/
    expand/expand.0/Conv_output_0``), about a sixth of a small model's file. Graph inputs,
    outputs and initializers (the weights, named after the torch parameters) keep their names.
    Returns the bytes saved.
    """
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    graph = model.graph
    keep = {value.name for value in (*graph.input, *graph.output)} | {init.name for init in graph.initializer}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for node in graph.node:
        node.name = ""
        node.input[:] = [short(name) for name in node.input]
        node.output[:] = [short(name) for name in node.output]
    del graph.value_info[:]
    before = path.stat().st_size
    write_bytes_atomic(path, model.SerializeToString(), overwrite=True)
    return before - path.stat().st_size


def fold_pads_into_convs(model: "onnx.ModelProto") -> int:  # noqa: F821
    """Merge zero ``Pad`` nodes into the ``Conv`` they feed (in place); returns how many were folded.

    torch has no asymmetric conv padding, so TensorFlow-style "SAME" stride-2 convs (nothing
    before, one pixel after) export as Pad + unpadded Conv, and ONNX Runtime then copies the
    whole feature map twice more (the pad, and a layout reorder around it): about a quarter of
    a MobileNetV2 student's time at 256 px. ONNX's Conv takes begin and end pads apart, so the
    Pad folds into it. Only pads that are constant, zero-valued, spatial and feed nothing but
    convs are folded. Pads computed from a feature map's shape count as constant where shape
    inference knows that shape (a graph with fixed input sizes); with a free H/W they stay.
    """
    total = 0
    # Each fold lets shape inference see one layer further (a Pad whose pads are computed has
    # an unknown output shape), so fold in rounds until nothing changes.
    while folded := _fold_known_pads(model):
        total += folded
    return total


def _fold_known_pads(model: Any) -> int:
    """One round of :func:`fold_pads_into_convs`."""
    import onnx

    _freeze_static_shapes(model)
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {value.name for value in graph.output}
    candidates = [node for node in graph.node
                  if node.op_type == "Pad" and _pad_foldable(node, consumers, outputs, constants, producers)]
    if not candidates:
        return 0
    fills = [node.input[2] if len(node.input) > 2 else "" for node in candidates]
    values = _evaluate_constants(model, [node.input[1] for node in candidates] + [f for f in fills if f], producers,
                                 constants)
    folded = 0
    for pad, fill in zip(candidates, fills):
        if fill and np.any(values[fill] != 0):
            continue  # padding with a value other than zero
        pads = [int(v) for v in values[pad.input[1]].reshape(-1)]
        rank = len(pads) // 2
        begins, ends = pads[:rank], pads[rank:]
        if rank < 3 or any(begins[:2]) or any(ends[:2]) or min(pads) < 0:
            continue  # batch or channel padding, or cropping: not a conv's job
        for conv in consumers[pad.output[0]]:
            attribute = next((a for a in conv.attribute if a.name == "pads"), None)
            current = list(attribute.ints) if attribute is not None else [0] * (2 * (rank - 2))
            merged = [a + b for a, b in zip(current, begins[2:] + ends[2:])]
            if attribute is None:
                conv.attribute.append(onnx.helper.make_attribute("pads", merged))
            else:
                attribute.ints[:] = merged
            conv.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded += 1
    if folded:
        drop_dead_nodes(graph)  # the shape arithmetic that computed the folded pads
    return folded


def _freeze_static_shapes(model: Any) -> None:
    """Replace every ``Shape`` node whose input's shape is fully known by a Constant of it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    for index, node in enumerate(model.graph.node):
        if node.op_type != "Shape" or node.input[0] not in shapes:
            continue
        shape = shapes[node.input[0]]
        start = next((a.i for a in node.attribute if a.name == "start"), 0)
        end = next((a.i for a in node.attribute if a.name == "end"), len(shape))
        value = np.asarray(shape[start:end], dtype=np.int64)
        constant = onnx.helper.make_node("Constant", [], list(node.output),
                                         value=onnx.numpy_helper.from_array(value))
        model.graph.node[index].CopyFrom(constant)


def _pad_foldable(pad: Any, consumers: dict[str, list[Any]], outputs: set[str], constants: set[str],
                  producers: dict[str, Any]) -> bool:
    """A constant-mode Pad with zero fill and constant pads, read only by plain-padded convs."""
    mode = next((a.s for a in pad.attribute if a.name == "mode"), b"constant")
    if mode != b"constant" or len(pad.input) < 2 or pad.output[0] in outputs:
        return False
    if len(pad.input) > 3 and pad.input[3]:
        return False  # an axes input: rare, not worth the bookkeeping
    if len(pad.input) > 2 and pad.input[2] and not _is_constant(pad.input[2], producers, constants):
        return False
    readers = consumers.get(pad.output[0], [])
    if not readers or any(reader.op_type != "Conv" or reader.input[0] != pad.output[0] for reader in readers):
        return False
    if any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for reader in readers for a in reader.attribute):
        return False
    return _is_constant(pad.input[1], producers, constants)


def _evaluate_constants(model: Any, names: list[str], producers: dict[str, Any],
                        constants: set[str]) -> dict[str, np.ndarray]:
    """Values of tensors that depend on initializers and Constant nodes only (checked by the caller)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    needed = _constant_ancestry(names, producers, constants)
    assert needed is not None, "only constant tensors can be evaluated"
    nodes = [node for node in graph.node if id(node) in needed]
    outputs = [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in dict.fromkeys(names)]
    sub = onnx.helper.make_graph(nodes, "constants", [], outputs, initializer=list(graph.initializer))
    values = ReferenceEvaluator(onnx.helper.make_model(sub, opset_imports=model.opset_import)).run(None, {})
    return {output.name: np.asarray(value) for output, value in zip(outputs, values)}


def _is_constant(name: str, producers: dict[str, Any], constants: set[str]) -> bool:
    """Whether ``name`` depends on initializers and Constant nodes only (no graph input)."""
    return _constant_ancestry([name], producers, constants) is not None


def _constant_ancestry(names: list[str], producers: dict[str, Any], constants: set[str]) -> set[int] | None:
    """ids of the nodes that compute ``names``; None if any of them reads a graph input."""
    needed: set[int] = set()
    stack = list(names)
    while stack:
        current = stack.pop()
        if not current or current in constants:
            continue
        node = producers.get(current)
        if node is None:
            return None  # a graph input
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.input)
    return needed
