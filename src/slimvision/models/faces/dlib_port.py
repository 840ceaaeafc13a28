"""dlib's face-recognition network (``.dat``) -> :class:`DlibResNet`, checked layer by layer.

Each ``affine`` layer (dlib's batch norm at inference) is folded into the conv before it. Before
any weight is copied the layer sequence is checked against the architecture the module
computes (kernels, strides, paddings, pools), so a different dlib network fails with the layer
that differs instead of computing something else.

Example:
    >>> from slimvision.assets import DLIB_FACE_RESNET      # doctest: +SKIP
    >>> net = load_dlib_resnet(DLIB_FACE_RESNET.path())     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimvision.io.dlib import DlibFormatError, DlibLayer, DlibNetwork, read_dlib_network
from slimvision.models.faces.config import DlibResNetConfig
from slimvision.models.faces.dlib_resnet import DlibResNet


def _expect(network: DlibNetwork, index: int, kind: str, name: str, **fields: int) -> DlibLayer:
    layers = network.layers
    layer = layers[index] if index < len(layers) else None
    if layer is None or layer.kind != kind or any(layer.fields.get(k) != v for k, v in fields.items()):
        found = f"{layer.tag} {layer.fields}" if layer else "the end of the network"
        raise DlibFormatError(f"{name}: layer {index} should be {kind} {fields or ''}, found {found}")
    return layer


@torch.no_grad()
def _set_conv(conv: torch.nn.Conv2d, con: DlibLayer, affine: DlibLayer, name: str) -> None:
    """Copy a dlib conv into ``conv`` with the affine layer after it folded in: y = g (W x + b) + beta."""
    shape = con.fields["filters_shape"]
    if tuple(conv.weight.shape) != tuple(shape):
        raise DlibFormatError(f"{name}: a conv has filters {tuple(shape)}, the module wants {tuple(conv.weight.shape)}")
    count = int(np.prod(shape))
    weight, bias = con.params.reshape(-1)[:count].reshape(shape), con.params.reshape(-1)[count:]
    gamma, beta = np.split(affine.params.reshape(-1), 2)
    conv.weight.copy_(torch.from_numpy(weight * gamma[:, None, None, None]))
    conv.bias.copy_(torch.from_numpy(bias * gamma + beta))


def load_dlib_resnet(path: str | Path, config: DlibResNetConfig | None = None) -> DlibResNet:
    """A :class:`DlibResNet` holding the weights of dlib's ``.dat`` file at ``path`` (checked layer by layer)."""
    network = read_dlib_network(path)
    config = config or DlibResNetConfig(input_size=network.input["rows"],
                                        pixel_mean=tuple(round(m, 4) for m in network.input["pixel_mean"]))
    module = DlibResNet(config)
    name = str(path)
    at = 0

    def conv(target: torch.nn.Conv2d, stride: int, padding: int) -> None:
        nonlocal at
        con = _expect(network, at, "con", name, stride_y=stride, stride_x=stride, padding_y=padding, padding_x=padding)
        _set_conv(target, con, _expect(network, at + 1, "affine", name), name)
        at += 2

    def simple(kind: str, **fields: int) -> None:
        nonlocal at
        _expect(network, at, kind, name, **fields)
        at += 1

    conv(module.stem, 2, 0)
    simple("relu")
    simple("max_pool", rows=3, cols=3, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
    for block in module.blocks:
        conv(block.conv1, 2 if block.downsample else 1, 0 if block.downsample else 1)
        simple("relu")
        conv(block.conv2, 1, 1)
        if block.downsample:
            simple("avg_pool", rows=2, cols=2, stride_y=2, stride_x=2, padding_y=0, padding_x=0)
        simple("add_prev")
        simple("relu")
    simple("avg_pool", rows=0, cols=0)  # dlib's avg_pool_everything
    fc = _expect(network, at, "fc", name, inputs=module.embedding.in_features, outputs=config.embedding_dim)
    if at + 1 != len(network.layers):
        raise DlibFormatError(f"{name}: {len(network.layers) - at - 1} layers after the embedding")
    weights = fc.params.reshape(fc.fields["inputs"], -1)  # (inputs, outputs): dlib computes x @ W
    with torch.no_grad():
        module.embedding.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights.T)))
    return module.eval()
