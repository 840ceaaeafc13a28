"""Face alignment: a similarity transform that takes 5 landmarks onto a template, and the chip it cuts.

An embedding network sees faces in one pose only: eyes level, at fixed places, a fixed size.
:func:`align_face` finds the rotation + uniform scale + shift that best takes the detected
landmarks (least squares, no reflection: Umeyama's method) onto a :class:`ChipTemplate`, and
samples the chip bilinearly, black outside the image as dlib does. When the face is more than
twice the chip's size the image is first box-averaged down by a whole factor, so the chip
does not alias (dlib uses an image pyramid for the same reason).

Templates:
- :data:`DLIB_CHIP`: dlib's 150 px chip with 0.25 padding, for the dlib ResNet teacher, from the
  landmarks of dlib's 5-point shape predictor: the outer and inner corner of the subject's
  left eye, of the right eye, and the base of the nose (dlib's ``get_face_chip_details``).
- :data:`MTCNN_DLIB_CHIP`: the same chip from MTCNN's landmarks (what the face pipeline uses).
- :data:`ARCFACE_CHIP`: the 112x112 crop that ArcFace-style mobile students are trained on
  (insightface's template for MTCNN's 5 points, no padding).

Example:
    >>> import numpy as np
    >>> image = np.zeros((480, 640, 3), np.uint8)
    >>> points = np.array([[400, 200], [360, 202], [260, 200], [300, 202], [330, 280]], float)
    >>> align_face(image, points, DLIB_CHIP).shape
    (150, 150, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChipTemplate:
    """Where the landmarks go in the chip: ``points`` on the unit square before padding, the chip
    side in pixels, and the margin added around the points as a fraction of their extent."""

    name: str
    points: tuple[tuple[float, float], ...]
    size: int
    padding: float
    #: The template's frame puts pixel centres at half-integers (dlib's) rather than whole numbers.
    half_pixel_centres: bool = True

    def pixel_points(self) -> np.ndarray:
        """(N, 2) x, y of each template point in chip pixels (pixel centres at whole numbers).

        dlib scales the unit square to [0, size] with pixel centres at half-integers, so its chip
        centre is size / 2 there and (size - 1) / 2 here: the 0.5 shift. Without it the chips
        differ from dlib's by 4-9 grey levels on average (2 with it)."""
        unit = (np.asarray(self.points, np.float64) + self.padding) / (1 + 2 * self.padding)
        return unit * self.size - (0.5 if self.half_pixel_centres else 0.0)


#: dlib's 5-point template (dlib/image_transforms/interpolation.h, ``get_face_chip_details``).
DLIB_TEMPLATE_5 = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                   (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                   (0.4901123135679, 0.6277975316475))
DLIB_CHIP = ChipTemplate("dlib-150", DLIB_TEMPLATE_5, 150, 0.25)

#: Where MTCNN's 5 points (eye centres, nose tip, mouth corners; image left first) sit in dlib's
#: chip, on average: measured by ``benchmarks/face_template.py`` on 32 faces (each photo also
#: mirrored) of the 11 real photos that ship in packages (docs/faces.md). With it MTCNN's
#: landmarks cut chips close to dlib's own: same/different-person decisions on those photos
#: agreed with dlib's pipeline on 119 of 120 pairs.
MTCNN_TEMPLATE_5 = ((0.236974, 0.200887), (0.766514, 0.195527), (0.497864, 0.544249),
                    (0.248335, 0.781681), (0.746688, 0.775782))
MTCNN_DLIB_CHIP = ChipTemplate("dlib-150-from-mtcnn", MTCNN_TEMPLATE_5, 150, 0.25)


#: insightface's 112x112 template (eye centres, nose tip, mouth corners in pixels), the crop that
#: ArcFace/CosFace face embedders expect; stored here on the unit square, without padding.
ARCFACE_TEMPLATE_5 = tuple((x / 112, y / 112) for x, y in ((38.2946, 51.6963), (73.5318, 51.5014),
                                                         (56.0252, 71.7366), (41.5493, 92.3655),
                                                         (70.7299, 92.2041)))
ARCFACE_CHIP = ChipTemplate("arcface-112", ARCFACE_TEMPLATE_5, 112, 0.0, half_pixel_centres=False)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix [sR | t] minimising sum |sR source_i + t - target_i|^2 over rotations R
    (no reflection), scales s > 0 and shifts t (Umeyama 1991)."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"need two matching (N >= 2, 2) point sets, got {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(0), target.mean(0)
    centred_source, centred_target = source - source_mean, target - target_mean
    variance = (centred_source ** 2).sum() / len(source)
    if variance <= 1e-12:
        raise ValueError("the source points all coincide")
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    scale = float((singular * np.diag(sign)).sum() / variance)
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, template: ChipTemplate = DLIB_CHIP) -> np.ndarray:
    """The (size, size, C) chip of ``image`` (H, W, C) uint8 with ``landmarks`` (N, 2 as x, y in
    pixels, in the template's order) moved onto the template; uint8, black outside the image."""
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"align_face needs an (H, W, C) image, got shape {image.shape}")
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (len(template.points), 2) or not np.isfinite(landmarks).all():
        raise ValueError(f"align_face: expected {len(template.points)} finite (x, y) landmarks for "
                         f"{template.name}, got shape {landmarks.shape}")
    to_image = similarity_transform(template.pixel_points(), landmarks)  # chip pixel -> image pixel
    zoom = float(np.hypot(*to_image[:, 0]))  # image pixels per chip pixel
    factor = int(zoom) if zoom >= 2 else 1  # leaves a zoom in [1, 2): bilinear copes
    if factor > 1:  # box-average first, so a large face does not alias in a small chip
        image = _reduce(image, factor)
        to_image = to_image / factor
        to_image[:, 2] += (1 - factor) / (2 * factor)  # pixel centres of the reduced image
    return _sample(image, to_image, template.size)


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    from PIL import Image

    channels = [np.asarray(Image.fromarray(image[..., c]).reduce(factor)) for c in range(image.shape[2])]
    return np.stack(channels, axis=-1)


def _sample(image: np.ndarray, to_image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear samples of ``image`` at ``to_image`` applied to every chip pixel; zero outside."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    x = to_image[0, 0] * xs + to_image[0, 1] * ys + to_image[0, 2]
    y = to_image[1, 0] * xs + to_image[1, 1] * ys + to_image[1, 2]
    height, width = image.shape[:2]
    inside = (x >= 0) & (y >= 0) & (x <= width - 1) & (y <= height - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(width - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(height - 2, 0))
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    pixels = image.astype(np.float32)
    top = pixels[y0, x0] * (1 - fx) + pixels[y0, x1] * fx
    bottom = pixels[y1, x0] * (1 - fx) + pixels[y1, x1] * fx
    chip = (top * (1 - fy) + bottom * fy) * inside[..., None]
    return np.clip(chip + 0.5, 0, 255).astype(np.uint8)
