"""Edge-aware upsampling: the fast guided filter (He, Sun & Tang 2010; He & Sun 2015).

A picture computed at a reduced size (a stylization, a mask) is brought back to full size with
the full-resolution frame as the guide, so its edges land where the frame's edges are. In
every small window of the low-resolution pair the source is fitted as a linear function of
the guide's grey level, ``source ~ a * guide + b``; the coefficients ``a`` and ``b`` are
smoothed, upsampled (bilinear) and applied to the full-resolution guide: ``a * guide + b``.
Where the source follows the frame's edges, the result follows the full-resolution edges;
elsewhere it is the smooth low-resolution source.

:func:`upsample_residual` applies this to the *residual* ``stylized - content``: the result is
the full-resolution content plus the upsampled residual, so the frame's own fine edges stay
in the picture, and the style's change of colour and texture comes from the small painting.

Box filters use OpenCV when it is installed (``cv2.boxFilter``, ``cv2.resize``: multi-threaded
and SIMD), numpy cumulative sums otherwise; both reflect at the borders (``abc|cba``).

Example:
    >>> import numpy as np
    >>> guide = np.zeros((64, 64), np.float32); guide[:, 32:] = 1.0        # a sharp edge
    >>> small = guide.reshape(16, 4, 16, 4).mean(axis=(1, 3))              # 4x smaller
    >>> out = guided_upsample(guide, small, small[..., None], radius=1, eps=1e-4)
    >>> out[10, 29:35, 0].round(2)                # bilinear: 0.   0.12 0.38 0.62 0.88 1.
    array([0.  , 0.04, 0.13, 0.87, 0.96, 1.  ], dtype=float32)
"""

from __future__ import annotations

import numpy as np

try:  # optional: OpenCV's filters are several times faster than numpy's
    import cv2
except ImportError:  # pragma: no cover - depends on the install
    cv2 = None

_GREY = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601 luma, as the motion gate


def box_filter(image: np.ndarray, radius: int, *, use_cv2: bool = True) -> np.ndarray:
    """Mean over (2r+1) x (2r+1) windows, borders reflected; (H, W) or (H, W, C) float32."""
    image = np.asarray(image, np.float32)
    if radius < 1:
        return image.copy()
    if cv2 is not None and use_cv2 and (image.ndim == 2 or image.shape[2] <= 4):
        out = cv2.boxFilter(image, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
        return out if out.ndim == image.ndim else out[..., None]  # OpenCV drops a last axis of 1
    pad = [(radius, radius), (radius, radius)] + [(0, 0)] * (image.ndim - 2)
    padded = np.pad(image, pad, mode="symmetric").astype(np.float64)  # float64: cumsums stay exact enough
    size = 2 * radius + 1
    summed = np.cumsum(padded, axis=0)
    summed = np.concatenate([summed[size - 1:size], summed[size:] - summed[:-size]], axis=0)
    summed = np.cumsum(summed, axis=1)
    summed = np.concatenate([summed[:, size - 1:size], summed[:, size:] - summed[:, :-size]], axis=1)
    return (summed / (size * size)).astype(np.float32)


def resize_linear(image: np.ndarray, height: int, width: int, *, use_cv2: bool = True) -> np.ndarray:
    """Bilinear resize with pixel centres aligned (OpenCV's INTER_LINEAR), float32."""
    image = np.asarray(image, np.float32)
    if image.shape[:2] == (height, width):
        return image.copy()
    if cv2 is not None and use_cv2 and (image.ndim == 2 or image.shape[2] <= 4):
        out = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        return out if out.ndim == image.ndim else out[..., None]

    def axis_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(position).astype(np.intp)
        high = np.minimum(low + 1, size_in - 1)
        return low, high, (position - low).astype(np.float32)

    low, high, frac = axis_weights(image.shape[0], height)
    shape = (-1,) + (1,) * (image.ndim - 1)
    rows = image[low] * (1 - frac.reshape(shape)) + image[high] * frac.reshape(shape)
    low, high, frac = axis_weights(image.shape[1], width)
    shape = (1, -1) + (1,) * (image.ndim - 2)
    return rows[:, low] * (1 - frac.reshape(shape)) + rows[:, high] * frac.reshape(shape)


def resize_area(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Downscale a uint8 frame by averaging the pixels each output pixel covers."""
    if frame.shape[:2] == (height, width):
        return frame
    if cv2 is not None:
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BOX))


def grey(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an (H, W, 3) float32 image in [0, 1] -> (H, W) float32."""
    if cv2 is not None and image.dtype == np.float32:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.asarray(image, np.float32) @ _GREY


def guided_upsample(guide: np.ndarray, guide_small: np.ndarray, source_small: np.ndarray,
                    radius: int = 1, eps: float = 1e-2) -> np.ndarray:
    """The fast guided filter: ``source_small`` brought to ``guide``'s size along its edges.

    Args:
        guide: (H, W) float32 full-resolution guide (grey, [0, 1]).
        guide_small: (h, w) float32, the guide at the source's size.
        source_small: (h, w, C) float32 picture to upsample.
        radius: Window radius at the small size, px (1: 3x3 windows).
        eps: Regularisation: larger keeps less of the guide's contrast in flat regions.

    Returns:
        (H, W, C) float32.
    """
    if source_small.ndim != 3 or guide_small.shape != source_small.shape[:2]:
        raise ValueError(f"guided_upsample: source {source_small.shape} and small guide {guide_small.shape} differ")
    mean_guide = box_filter(guide_small, radius)  # (h, w)
    mean_source = box_filter(source_small, radius)  # (h, w, C)
    covariance = box_filter(guide_small[..., None] * source_small, radius) - mean_guide[..., None] * mean_source
    variance = box_filter(guide_small * guide_small, radius) - mean_guide * mean_guide
    a = covariance / (variance[..., None] + np.float32(eps))  # (h, w, C)
    b = mean_source - a * mean_guide[..., None]
    height, width = guide.shape[:2]
    a_full = resize_linear(box_filter(a, radius), height, width)  # (H, W, C)
    b_full = resize_linear(box_filter(b, radius), height, width)
    a_full *= guide[..., None]
    a_full += b_full
    return a_full


def upsample_residual(content: np.ndarray, content_small: np.ndarray, stylized_small: np.ndarray,
                      radius: int = 1, eps: float = 1e-2) -> np.ndarray:
    """Full-resolution stylization from one painted small: content + guided-upsampled residual.

    Args:
        content: (H, W, 3) float32 [0, 1], the full-resolution frame.
        content_small: (h, w, 3) float32 [0, 1], the frame as it was painted.
        stylized_small: (h, w, 3) float32, its painting.
        radius, eps: see :func:`guided_upsample`.

    Returns:
        (H, W, 3) float32 in [0, 1].
    """
    residual = guided_upsample(grey(content), grey(content_small), stylized_small - content_small, radius, eps)
    residual += content
    return np.clip(residual, 0.0, 1.0, out=residual)
