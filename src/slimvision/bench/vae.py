"""Scoring a VAE against classical restoration on slices with pixels removed (numpy + ONNX Runtime).

The baselines fill only the removed pixels and keep the rest, as inpainting does:

* :func:`telea_inpaint`: OpenCV's fast marching method (Telea 2004), radius 3; needs
  ``opencv-python-headless`` (the ``bench`` extra);
* :func:`masked_median`: each removed pixel becomes the median of the surviving pixels in its
  5 x 5 neighbourhood (7 x 7 where none survive). A plain median filter would count the removed
  pixels as black and erase the image at 60% removal, which is no fair opponent.

Example:
    >>> images = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    >>> damaged, kept = drop_pixels_each(images, keep=0.4)
    >>> masked_median(damaged[0], kept[0]).shape
    (32, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from slimvision.data.corruption import drop_pixels, drop_pixels_each
from slimvision.errors import MissingAssetError
from slimvision.inference.vae_native import masked_median  # the baseline lives beside the gate that uses it
from slimvision.metrics import damage_scores, psnr, restoration_scores, ssim


def score_vae(vae: Any, images: np.ndarray, *, keep: float = 0.4, seed: int = 0) -> dict[str, float]:
    """A :class:`~slimvision.inference.vae.MedicalVAE` on clean slices (MSE, PSNR, SSIM, KLD of
    their reconstructions) and on the same slices with all but ``keep`` of their pixels removed."""
    reconstruction, mean, log_var = vae.autoencode(images)
    kld = -0.5 * np.sum(1 + log_var - mean ** 2 - np.exp(log_var), axis=1)
    scores = {"mse": float(np.mean((reconstruction - images) ** 2)),
              "psnr": float(np.mean([psnr(a, b) for a, b in zip(images, reconstruction)])),
              "ssim": float(np.mean([ssim(a, b) for a, b in zip(images, reconstruction)])),
              "kld": float(np.mean(kld))}
    # A model with a mask channel is told which pixels survived.
    return {**scores, **damage_scores(images, lambda damaged, kept: vae.autoencode(damaged, kept)[0],
                                      keep=keep, seed=seed)}


def score_native(vae: Any, slices: Sequence[np.ndarray], *, keep: float = 0.4, seed: int = 0,
                 baselines: bool = False) -> dict[str, float]:
    """A VAE scored as ``slimvision vae denoise`` runs it: each (H, W) slice at its own size.

    ``clean_*``: the slice passed through with no mask (a clean slice should come back as it
    is); ``damaged_*`` / ``inpainted_*``: all but ``keep`` of its pixels removed (seeded per
    slice), then restored with the true mask (the kept pixels stay). With ``baselines``, the
    masked 5x5 median and Telea on the same damage. Mean SSIM and PSNR over the slices.
    """
    results: dict[str, list[np.ndarray]] = {}
    clean = [np.asarray(pixels, np.float32) for pixels in slices]
    for index, pixels in enumerate(clean):
        damaged, kept = drop_pixels(pixels, keep, np.random.default_rng([seed, index, 7]))
        made = {"clean": vae.restore_slice(pixels), "damaged": damaged, "inpainted": vae.restore_slice(damaged, kept)}
        if baselines:
            made.update(median=masked_median(damaged, kept), telea=telea_inpaint(damaged, kept))
        for name, image in made.items():
            results.setdefault(name, []).append(image)
    scores = {f"{name}_{metric}": float(np.mean([score(a, b) for a, b in zip(clean, images)]))
              for name, images in results.items() for metric, score in (("ssim", ssim), ("psnr", _psnr))}
    return {"keep": keep, **scores}


def _psnr(clean: np.ndarray, result: np.ndarray) -> float:
    """PSNR, capped at 100 dB: a slice passed through unchanged has no error at all."""
    return min(psnr(clean, result), 100.0)


def telea_inpaint(damaged: np.ndarray, kept: np.ndarray, radius: int = 3) -> np.ndarray:
    """OpenCV's Telea inpainting of the removed pixels of a (H, W) image in [0, 1] (8-bit inside)."""
    try:
        import cv2
    except ImportError:
        raise MissingAssetError("the Telea baseline needs OpenCV: pip install 'slimvision[bench]'") from None
    pixels = np.clip(np.rint(damaged * 255), 0, 255).astype(np.uint8)
    filled = cv2.inpaint(pixels, (~kept).astype(np.uint8), radius, cv2.INPAINT_TELEA).astype(np.float32) / 255
    return np.where(kept, damaged, filled).astype(np.float32)


def baseline_scores(images: np.ndarray, *, keep: float = 0.4, seed: int = 0) -> dict[str, float]:
    """SSIM / PSNR of the damaged slices and of both baselines' repairs (same damage as :func:`score_vae`)."""
    damaged, kept = drop_pixels_each(images, keep, seed)
    results = {"damaged": damaged,
               "median": np.stack([masked_median(d, k) for d, k in zip(damaged, kept)]),
               "telea": np.stack([telea_inpaint(d, k) for d, k in zip(damaged, kept)])}
    return restoration_scores(images, results)

