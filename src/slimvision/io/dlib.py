"""Read dlib's serialized face-recognition network (``.dat``) without dlib: numpy only.

dlib writes a network with its own serializer (``dlib/serialize.h``, ``dlib/dnn/core.h``):
- an integer is a control byte (low 4 bits: how many little-endian bytes follow; bit 7: the
  sign) and then those bytes; a float is two integers, mantissa and base-2 exponent; a string
  is its length and its bytes; a bool is the character ``'0'`` or ``'1'``;
- a tensor is a version, its four dimensions (samples, k, rows, columns) and raw little-endian
  float32s; an alias tensor (a view into a layer's ``params``) is a version and four dimensions;
- the loss layer comes first, then every wrapper's version from the outside in (2 for a
  layer, 1 for a tag or skip layer, 3 for the innermost layer, which holds the input layer),
  then each layer's details from the inside out: a tag string such as ``con_4`` and the
  layer's fields, three bools and three (empty) gradient/cache tensors. Tag and skip layers
  write nothing after their version, so their position is known only from the architecture.

:func:`read_dlib_network` turns the file into a flat list of :class:`DlibLayer` from the input to
the output and checks that every byte was consumed. The torch port
(:mod:`slimvision.models.faces.dlib_port`) and the ONNX graph builder
(:mod:`slimvision.inference.face_graph`) both start from it.

Example:
    >>> from slimvision.assets import DLIB_FACE_RESNET                 # doctest: +SKIP
    >>> [layer.kind for layer in read_dlib_network(DLIB_FACE_RESNET.path()).layers][:4]  # doctest: +SKIP
    ['con', 'affine', 'relu', 'max_pool']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.errors import SlimvisionError

#: Wrapper versions in dlib's serializer: a layer, a tag/skip layer, the layer on the input.
_LAYER, _TAG, _INNERMOST = 2, 1, 3


class DlibFormatError(SlimvisionError):
    """The file is not a dlib network of the expected kind (names the file and the problem)."""


@dataclass
class DlibLayer:
    """One layer as dlib stored it: ``kind`` is the tag without its version (``con``, ``affine``,
    ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``), ``params`` its flat float32
    parameters, ``fields`` its settings (kernel, stride, padding, shapes of the parameter views)."""

    kind: str
    tag: str
    params: np.ndarray | None = None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """What :func:`read_dlib_network` finds: the input layer, the layers from input to output, the loss."""

    input: dict[str, Any]
    layers: list[DlibLayer]
    loss: dict[str, Any]


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name, self.pos = data, name, 0

    def fail(self, problem: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: not a dlib face-recognition network: {problem} (at byte {self.pos})")

    def take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise self.fail("the file ends early")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(mantissa) * 2.0 ** exponent

    def string(self) -> str:
        length = self.int()
        if not 0 <= length < 1 << 16:
            raise self.fail(f"bad string length {length}")
        return self.take(length).decode("latin-1")

    def bool(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad bool {char!r}")
        return char == b"1"

    def dims(self) -> tuple[int, int, int, int]:
        self.int()  # version
        return self.int(), self.int(), self.int(), self.int()

    def tensor(self) -> np.ndarray:
        shape = self.dims()
        if min(shape) < 0:
            raise self.fail(f"bad tensor shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)


def _con(reader: _Reader) -> dict[str, Any]:
    params = reader.tensor()
    names = ("filters", "kernel_rows", "kernel_cols", "stride_y", "stride_x", "padding_y", "padding_x")
    fields: dict[str, Any] = {name: reader.int() for name in names}
    fields["filters_shape"], fields["bias_shape"] = reader.dims(), reader.dims()
    fields["multipliers"] = [reader.float() for _ in range(4)]
    return {"params": params, **fields}


def _affine(reader: _Reader) -> dict[str, Any]:
    params = reader.tensor()
    return {"params": params, "gamma_shape": reader.dims(), "beta_shape": reader.dims(), "mode": reader.int()}


def _pool(reader: _Reader) -> dict[str, Any]:
    names = ("rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
    return {name: reader.int() for name in names}


def _fc(reader: _Reader) -> dict[str, Any]:
    outputs, inputs = reader.int(), reader.int()
    params = reader.tensor()
    fields = {"outputs": outputs, "inputs": inputs, "weights_shape": reader.dims(), "bias_shape": reader.dims(),
              "bias_mode": reader.int()}
    fields["multipliers"] = [reader.float() for _ in range(4)]
    return {"params": params, **fields}


#: Readers of each layer's fields, by tag (dlib appends a format version to most tags).
_DETAILS = {"con_4": _con, "affine_": _affine, "relu_": lambda reader: {}, "max_pool_2": _pool,
            "avg_pool_2": _pool, "add_prev_": lambda reader: {}, "fc_2": _fc}


def _layer(reader: _Reader) -> DlibLayer:
    tag = reader.string()
    if tag not in _DETAILS:
        raise reader.fail(f"unsupported layer {tag!r}")
    fields = _DETAILS[tag](reader)
    params = fields.pop("params", None)
    kind = re.sub(r"_\d*$", "", tag)
    return DlibLayer(kind, tag, params, fields)


def _layer_state(reader: _Reader) -> None:
    """The flags and gradient/cache tensors every layer wrapper stores after its details."""
    for _ in range(3):
        reader.bool()
    for _ in range(3):
        reader.tensor()


def read_dlib_network(path: str | Path) -> DlibNetwork:
    """Parse a dlib metric-learning network file (``loss_metric`` over ``input_rgb_image_sized``)."""
    path = Path(path)
    try:
        reader = _Reader(path.read_bytes(), str(path))
    except OSError as error:
        raise DlibFormatError(f"{path}: cannot read: {error.strerror}") from None
    reader.int()  # the loss wrapper's version
    loss_tag = reader.string()
    if loss_tag != "loss_metric_2":
        raise reader.fail(f"expected the loss layer 'loss_metric_2', found {loss_tag[:40]!r}")
    loss = {"margin": reader.float(), "distance_threshold": reader.float()}
    wrappers = []
    while (version := reader.int()) != _INNERMOST:
        if version not in (_LAYER, _TAG) or len(wrappers) > 10_000:
            raise reader.fail(f"unexpected layer wrapper version {version}")
        wrappers.append(version)
    input_tag = reader.string()
    if input_tag != "input_rgb_image_sized":
        raise reader.fail(f"expected the input layer 'input_rgb_image_sized', found {input_tag[:40]!r}")
    mean = (reader.float(), reader.float(), reader.float())
    network_input = {"pixel_mean": mean, "rows": reader.int(), "cols": reader.int()}
    layers = [_layer(reader)]
    _layer_state(reader)
    reader.int()  # the input wrapper's sample expansion factor
    for version in reversed(wrappers):
        if version == _LAYER:
            layers.append(_layer(reader))
            _layer_state(reader)
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} bytes left after the last layer")
    return DlibNetwork(network_input, layers, loss)
