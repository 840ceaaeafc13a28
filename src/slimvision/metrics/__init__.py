"""Metrics shared by training and bench (a layer below training): image quality here,
FID-Lite0 / KID-Lite0 in :mod:`slimvision.metrics.fid`, the Lite0-PD perceptual distance in
:mod:`slimvision.metrics.perceptual` and the colour-histogram EMD in :mod:`slimvision.metrics.colour`
(the fidelity harness's scores besides :func:`ssim`).

Image quality metrics are plain numpy (the inference install has no scipy or scikit-image).

:func:`ssim` follows Wang et al. 2004 with scikit-image's defaults (7x7 uniform window, sample
covariance, K1 = 0.01, K2 = 0.03, mean over channels and over the valid window positions), so
figures compare with ``skimage.metrics.structural_similarity(..., channel_axis=2)``.

Example:
    >>> import numpy as np
    >>> a = np.random.default_rng(0).random((32, 32, 3))
    >>> round(ssim(a, a), 6), psnr(a, a)
    (1.0, inf)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slimvision.data.corruption import drop_pixels_each


def psnr(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (inf for identical images)."""
    error = float(np.mean((np.asarray(reference, np.float64) - np.asarray(image, np.float64)) ** 2))
    return float("inf") if error == 0 else float(10 * np.log10(data_range ** 2 / error))


def ssim(reference: np.ndarray, image: np.ndarray, data_range: float = 1.0, window: int = 7) -> float:
    """Mean structural similarity of two (H, W) or (H, W, C) images with values in [0, data_range]."""
    a, b = np.asarray(reference, np.float64), np.asarray(image, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < window:
        raise ValueError(f"ssim: images must be at least {window} px on each side, got {a.shape[:2]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c], data_range, window) for c in range(a.shape[2])]))


def _ssim_channel(a: np.ndarray, b: np.ndarray, data_range: float, window: int) -> float:
    count = window * window
    mean_a, mean_b = _box_mean(a, window), _box_mean(b, window)
    # Sample (not population) covariance, as scikit-image does by default.
    correction = count / (count - 1)
    var_a = (_box_mean(a * a, window) - mean_a ** 2) * correction
    var_b = (_box_mean(b * b, window) - mean_b ** 2) * correction
    cov = (_box_mean(a * b, window) - mean_a * mean_b) * correction
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    index = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    return float(index.mean())


def _box_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over every window x window block fully inside ``x`` (integral image)."""
    total = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = total[window:, window:] - total[:-window, window:] - total[window:, :-window] + total[:-window, :-window]
    return sums / (window * window)


def restoration_scores(clean: np.ndarray, results: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean SSIM and PSNR of each named stack of results (N, H, W) against the clean stack:
    {"<name>_ssim": ..., "<name>_psnr": ...}."""
    scores = {}
    for name, result in results.items():
        scores[f"{name}_ssim"] = float(np.mean([ssim(a, b) for a, b in zip(clean, result)]))
        scores[f"{name}_psnr"] = float(np.mean([psnr(a, b) for a, b in zip(clean, result)]))
    return scores


def damage_scores(images: np.ndarray, restore: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                  keep: float = 0.4, seed: int = 0) -> dict[str, float]:
    """Remove all but ``keep`` of the pixels of ``images`` (N, H, W) (seeded, as the baselines
    do), restore them with ``restore(damaged, kept)``, and score against the clean images the
    damaged stack, the restoration as is ("restored") and with the kept pixels pasted back
    ("inpainted")."""
    damaged, kept = drop_pixels_each(images, keep, seed)
    restored = restore(damaged, kept)
    results = {"damaged": damaged, "restored": restored, "inpainted": np.where(kept, images, restored)}
    return {"keep": keep, **restoration_scores(images, results)}
