"""The classical inpainting baselines the VAE benchmark compares against."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.bench.vae import baseline_scores, masked_median, telea_inpaint
from slimvision.data.corruption import drop_pixels_each


def _ramp(size: int = 32) -> np.ndarray:
    return np.tile(np.linspace(0.1, 0.9, size, dtype=np.float32), (size, 1))


def test_the_masked_median_fills_only_the_removed_pixels_from_the_surviving_ones():
    image = _ramp()
    (damaged,), (kept,) = drop_pixels_each(image[None], keep=0.4, seed=0)
    filled = masked_median(damaged, kept)
    assert np.array_equal(filled[kept], image[kept])
    assert np.abs(filled - image).max() < 0.06                  # a ramp: neighbours' median is close
    lonely = np.zeros((9, 9), bool)
    lonely[0, 0] = True                                         # one survivor: 7x7 fallback, then 0 beyond it
    result = masked_median(np.where(lonely, 0.5, 0).astype(np.float32), lonely)
    assert result[2, 2] == 0.5 and result[8, 8] == 0.0


def test_telea_and_the_score_table():
    pytest.importorskip("cv2")
    image = _ramp()
    (damaged,), (kept,) = drop_pixels_each(image[None], keep=0.4, seed=0)
    filled = telea_inpaint(damaged, kept)
    assert np.array_equal(filled[kept], damaged[kept]) and np.abs(filled - image).max() < 0.1
    scores = baseline_scores(np.stack([image, image[::-1]]), keep=0.4)
    assert scores["damaged_ssim"] < scores["telea_ssim"] and scores["damaged_psnr"] < scores["median_psnr"]
