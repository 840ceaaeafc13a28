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
    """

    input_size: int = DLIB_CHIP_SIZE
    stem_channels: int = 32
    levels: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
    embedding_dim: int = 128
    pixel_mean: tuple[float, float, float] = DLIB_PIXEL_MEAN
    pixel_scale: float = 256.0

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "input_size", "stem_channels", "embedding_dim")
        self.require_positive("pixel_scale")
        if not self.levels or any(min(level) < 1 for level in self.levels):
            raise ConfigError(f"DlibResNetConfig.levels must be (channels, blocks) pairs >= 1, got {self.levels}")
