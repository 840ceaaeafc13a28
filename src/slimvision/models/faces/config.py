"""Configuration of the face-embedding networks."""

from __future__ import annotations

from dataclasses import dataclass

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError

#: dlib's face chip: 150 px, the face filling the middle with 0.25 padding on each side.
DLIB_CHIP_SIZE = 150
#: The per-channel means (R, G, B) that dlib's ``input_rgb_image`` subtracts before dividing by 256.
DLIB_PIXEL_MEAN = (122.782, 117.001, 104.298)


@dataclass
class DlibResNetConfig(BaseConfig):
    """dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``): 29 conv layers.

    A 7x7 stride-2 conv (no padding) + max pool 3x3/2, then residual levels of two 3x3 convs per
    block. Every level but the first opens with a downsampling block: its first conv has stride
    2 and no padding, and its shortcut is a 2x2 average pool, added with zero padding where the
    two differ in channels or size (dlib's ``add_prev``). Global average pool, then a linear
    layer without bias to the embedding. dlib trained it with a metric loss: two faces of one
    person lie within 0.6 (Euclidean) of each other.

    Attributes:
        input_size: side of the square face chip in pixels.
        stem_channels: filters of the 7x7 conv.
        levels: (channels, blocks) of each residual level, from the input up.
        embedding_dim: length of the face descriptor.
        pixel_mean / pixel_scale: the input is RGB in [0, 1]; the network computes
            (255 x - mean) / scale, as dlib does on 8-bit pixels.
        batch_norm: a batch norm after every conv, for training only (dlib's own network has
            them folded into its convs; ``dlib_resnet.fold_batch_norm`` folds them for export).
    """

    input_size: int = DLIB_CHIP_SIZE
    stem_channels: int = 32
    levels: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
    embedding_dim: int = 128
    pixel_mean: tuple[float, float, float] = DLIB_PIXEL_MEAN
    pixel_scale: float = 256.0
    batch_norm: bool = False

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "input_size", "stem_channels", "embedding_dim")
        self.require_positive("pixel_scale")
        if not self.levels or any(min(level) < 1 for level in self.levels):
            raise ConfigError(f"DlibResNetConfig.levels must be (channels, blocks) pairs >= 1, got {self.levels}")


@dataclass
class MobileFaceNetConfig(BaseConfig):
    """MobileFaceNet (Chen et al., "MobileFaceNets", 2018, table 1): a MobileNetV2-style face
    embedder for 112 px ArcFace chips, about 1M parameters.

    A 3x3 stride-2 conv and a depthwise 3x3, then inverted-residual bottlenecks given as
    (expansion, channels, repeats, stride), a 1x1 conv to ``feature_channels``, a *global
    depthwise* 7x7 conv (each channel weighs every position of the 7x7 map instead of averaging
    them: the face's parts are at fixed places), and a linear 1x1 to the embedding. PReLU after
    every conv but the linear ones; batch norm after every conv.

    Attributes:
        input_size: side of the chip (112: 7x7 before the global depthwise conv).
        stem_channels: channels of the first two convs.
        bottlenecks: (expansion, channels, repeats, stride) of each stage.
        feature_channels: channels of the last 1x1 conv.
        embedding_dim: length of the descriptor.
    """

    input_size: int = 112
    stem_channels: int = 64
    bottlenecks: tuple[tuple[int, int, int, int], ...] = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1),
                                                          (4, 128, 1, 2), (2, 128, 2, 1))
    feature_channels: int = 512
    embedding_dim: int = 128

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "stem_channels", "feature_channels", "embedding_dim")
        if not self.bottlenecks or any(len(b) != 4 or min(b) < 1 for b in self.bottlenecks):
            raise ConfigError(f"MobileFaceNetConfig.bottlenecks must be (expansion, channels, repeats, stride) "
                              f"tuples of ints >= 1, got {self.bottlenecks}")
        stride = 2 * 2 ** sum(1 for b in self.bottlenecks if b[3] == 2)
        if self.input_size % stride:
            raise ConfigError(f"MobileFaceNetConfig.input_size must be a multiple of {stride} (the total stride), "
                              f"got {self.input_size}")
