"""Our numpy SSIM/PSNR agree with scikit-image's (the reference the benchmarks used to call)."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.metrics import psnr, ssim


def test_ssim_and_psnr_match_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(3)
    clean = rng.random((40, 52, 3))
    noisy = np.clip(clean + rng.normal(0, 0.08, clean.shape), 0, 1)
    assert ssim(clean, noisy) == pytest.approx(metrics.structural_similarity(clean, noisy, channel_axis=2,
                                                                              data_range=1.0), abs=1e-9)
    assert psnr(clean, noisy) == pytest.approx(metrics.peak_signal_noise_ratio(clean, noisy, data_range=1.0))
    assert ssim(clean[..., 0], noisy[..., 0]) == pytest.approx(
        metrics.structural_similarity(clean[..., 0], noisy[..., 0], data_range=1.0), abs=1e-9)


def test_ssim_rejects_mismatched_or_tiny_images() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match="at least 7 px"):
        ssim(np.zeros((5, 5)), np.zeros((5, 5)))
