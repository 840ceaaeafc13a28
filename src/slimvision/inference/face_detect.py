"""Face detection with 5 landmarks: MTCNN's three-stage cascade on ONNX Runtime (numpy + Pillow only).

1. Proposals. PNet scans an image pyramid: the first level is scaled so that a face of
   ``min_face_size`` px fills PNet's 12 px window, each next level is ``scale_factor`` (0.709)
   times smaller, down to a 12 px short side. Every window scoring at least ``thresholds[0]``
   becomes a box; NMS (IoU 0.5) within each level, then (IoU 0.7) across levels; each box is
   moved by its regressed offsets and made square.
2. Refinement. Every proposal is cut out at 24x24 (black outside the image) and RNet scores all
   of them in one batch; boxes over ``thresholds[1]`` go through NMS (IoU 0.7), are moved by
   RNet's offsets and made square again.
3. Output. 48x48 crops, ONet in one batch: scores (``thresholds[2]``), the final offsets and
   5 landmarks. The last NMS divides the overlap by the smaller box ("min", 0.7), so a box
   lying inside a larger detection of the same face goes too.

Resizing uses Pillow. The pyramid only shrinks the image, with the BOX filter: an area average,
as facenet-pytorch (torch's "area") and davidsandberg/facenet (OpenCV's INTER_AREA) resize.
Crops may grow or shrink, so they use BILINEAR: smooth when a small face is enlarged (an area
filter enlarges in blocks), and Pillow widens it when shrinking, so large faces do not alias.

Coordinates are in pixels of the input image. A box (x0, y0, x1, y1) is a crop box, as for
Pillow's ``crop`` and numpy slices: columns x0 <= x < x1. Landmarks are points with pixel centres
at whole numbers, as in :mod:`slimvision.data.face_align`. They are MTCNN's points (eye
centres, nose tip, mouth corners), not the eye corners and nose base of dlib's predictor that
``DLIB_CHIP`` expects. "Left" means the image's left: the first landmark is the eye with the
smaller x, the subject's right eye (dlib's 5 points start from the subject's left eye).

Example:
    >>> import numpy as np
    >>> detector = FaceDetector(SessionSettings(threads=2))
    >>> detector.detect(np.zeros((480, 640, 3), np.uint8))
    []
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from slimvision.assets import MTCNN_ONET, MTCNN_PNET, MTCNN_RNET, PackagedFile
from slimvision.errors import InputError
from slimvision.export.card import card_path, read_card
from slimvision.graph.session import OnnxModel, SessionSettings

#: PNet's window (px) and the stride of its output grid in the pyramid level's pixels.
PNET_WINDOW, PNET_STRIDE = 12, 2
#: What the cascade feeds every network (its cards must say the same: checked at load).
PIXEL_RANGE, INPUT_LAYOUT = [0.0, 255.0], "NCHW"
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)
#: NMS overlaps above which the lower-scoring box is dropped, per step of the cascade.
NMS_LEVEL, NMS_PROPOSALS, NMS_REFINED, NMS_FINAL = 0.5, 0.7, 0.7, 0.7
#: Boxes per vectorised step of :func:`nms`.
_NMS_BLOCK = 64
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)  # eq=False: comparing the landmark arrays would be ambiguous
class Face:
    """One detected face.

    Attributes:
        box: (x0, y0, x1, y1) in image pixels, a crop box (x1, y1 exclusive).
        score: ONet's face probability, in [0, 1].
        landmarks: (5, 2) x, y of :data:`LANDMARK_NAMES`, pixel centres at whole numbers.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
        mode: Literal["union", "min"] = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    The best remaining box is kept and every box overlapping it by more than ``threshold`` is
    dropped, until none remain. ``mode="union"`` measures overlap as intersection over union;
    ``"min"`` as intersection over the smaller area, which also drops a small box inside a big one.

    Args:
        boxes: (N, 4) x0, y0, x1, y1.
        scores: (N,) higher is better.

    Example:
        >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
        >>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[order]
    keep: list[int] = []
    remaining = np.arange(len(boxes))  # positions in score order, not yet kept or dropped
    # A block of the best remaining boxes gets its overlaps with all the remaining ones from one
    # numpy call; only the greedy walk through the block is Python (a loop of numpy calls per
    # kept box, the textbook way, was 3x slower on 100 boxes).
    while remaining.size:
        block = remaining[:max(1, min(_NMS_BLOCK, 2**21 // remaining.size))]  # matrices under 16 MB
        overlapping = _overlaps(boxes[block], boxes[remaining], mode) > threshold  # (block, remaining)
        dropped = np.zeros(remaining.size, bool)
        for row, index in enumerate(block.tolist()):
            if not dropped[row]:
                keep.append(index)
                dropped |= overlapping[row]
        dropped[:block.size] = True  # every box of the block is decided
        remaining = remaining[~dropped]
    return order[np.asarray(keep, np.int64)]


def _overlaps(first: np.ndarray, second: np.ndarray, mode: str) -> np.ndarray:
    """(len(first), len(second)) overlap of every pair: intersection over union, or over the smaller area."""
    width = np.minimum(first[:, None, 2], second[None, :, 2]) - np.maximum(first[:, None, 0], second[None, :, 0])
    height = np.minimum(first[:, None, 3], second[None, :, 3]) - np.maximum(first[:, None, 1], second[None, :, 1])
    intersection = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_first, area_second = (_area(boxes) for boxes in (first, second))
    if mode == "union":
        base = area_first[:, None] + area_second[None, :] - intersection
    else:
        base = np.minimum(area_first[:, None], area_second[None, :])
    return np.divide(intersection, base, out=np.zeros_like(intersection), where=base > 0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def pyramid_scales(height: int, width: int, min_face_size: float = 20, factor: float = 0.709) -> list[float]:
    """Scales of the pyramid levels, largest first: a face of ``min_face_size`` px fills PNet's
    12 px window at the first; each next is ``factor`` times smaller; the last keeps a short
    side of at least 12 px. Empty when the image is smaller than ``min_face_size``."""
    scale = PNET_WINDOW / min_face_size
    short = min(height, width)
    scales = []
    while short * scale >= PNET_WINDOW - 1e-9:  # the tolerance keeps a level of exactly 12 px
        scales.append(scale)
        scale *= factor
    return scales


class FaceDetector:
    """MTCNN face detector: an RGB image -> faces with boxes, scores and 5 landmarks.

    Args:
        settings: ONNX Runtime threads and providers (CPU fallback) for the three networks.
            Pool threads never spin here: the three sessions and the Pillow work between them
            take turns, and spinning threads slowed the whole cascade 2-3x on 2 cores.
        min_face_size: the smallest face looked for, in pixels (at least 12, PNet's window).
        thresholds: the score a box needs to pass PNet, RNet and ONet.
        max_faces: keep at most this many faces (the best scores); None keeps all.
        scale_factor: ratio between pyramid levels (0.709: about two levels per halving).
    """

    def __init__(self, settings: SessionSettings | None = None, min_face_size: float = 20,
                 thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS, max_faces: int | None = None,
                 scale_factor: float = 0.709) -> None:
        _check_options(min_face_size, thresholds, max_faces, scale_factor)
        self.min_face_size, self.thresholds = float(min_face_size), tuple(float(t) for t in thresholds)
        self.max_faces, self.scale_factor = max_faces, float(scale_factor)
        self.settings = replace(settings or SessionSettings(), allow_spinning=False)
        self.pnet, self.rnet, self.onet = (self._session(asset) for asset in (MTCNN_PNET, MTCNN_RNET, MTCNN_ONET))
        # The crop sides RNet and ONet take (24 and 48) come from their cards, not the graphs.
        self.rnet_size, self.onet_size = (_crop_side(asset) for asset in (MTCNN_RNET, MTCNN_ONET))

    def _session(self, asset: PackagedFile) -> OnnxModel:
        path = asset.path()
        return OnnxModel(path, self.settings, name=path.name)

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Same as :meth:`detect`."""
        return self.detect(image)

    def detect(self, image: np.ndarray) -> list[Face]:
        """The faces in ``image`` ((H, W, 3) uint8 RGB), best score first; [] when there are none.

        Raises:
            ValueError: the image is empty, not (H, W, 3) uint8, or smaller than ``min_face_size``.
        """
        self._check_image(image)
        picture = Image.fromarray(np.ascontiguousarray(image))
        boxes = self._propose(picture)
        if len(boxes):
            boxes = self._refine(picture, boxes)
        if not len(boxes):
            return []
        boxes, scores, landmarks = self._output(picture, boxes)
        return [Face(tuple(float(v) for v in box), float(score), points)
                for box, score, points in zip(boxes, scores, landmarks)]

    def _check_image(self, image: np.ndarray) -> None:
        if not isinstance(image, np.ndarray):
            raise ValueError(f"FaceDetector needs a numpy array, got {type(image).__name__} "
                             f"(for a PIL image: np.asarray(image.convert('RGB')))")
        if image.size == 0:
            raise ValueError(f"FaceDetector got an empty image (shape {image.shape})")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"FaceDetector needs an (H, W, 3) RGB image, got shape {image.shape} "
                             f"(grey: np.stack([image] * 3, axis=-1); RGBA: image[..., :3])")
        if image.dtype != np.uint8:
            raise ValueError(f"FaceDetector needs uint8 pixels (0-255), got {image.dtype}")
        height, width = image.shape[:2]
        if min(height, width) < self.min_face_size:
            raise ValueError(f"FaceDetector: a {width}x{height} image is smaller than min_face_size="
                             f"{self.min_face_size:g} px, so no face that size fits")

    def _propose(self, picture: Image.Image) -> np.ndarray:
        """PNet over the pyramid -> (N, 4) square proposals in image pixels."""
        width, height = picture.size
        found = []
        for scale in pyramid_scales(height, width, self.min_face_size, self.scale_factor):
            level_size = (max(math.ceil(width * scale), PNET_WINDOW), max(math.ceil(height * scale), PNET_WINDOW))
            level = np.asarray(picture.resize(level_size, Image.BOX), np.float32)
            score, offsets = self.pnet.run({"image": level.transpose(2, 0, 1)[None]})  # (1, R, C), (1, 4, R, C)
            rows, cols = np.nonzero(score[0] >= self.thresholds[0])
            # The window at grid cell (row, col) covers level pixels [2 col, 2 col + 12) across.
            sx, sy = level_size[0] / width, level_size[1] / height
            x0, y0 = PNET_STRIDE * cols / sx, PNET_STRIDE * rows / sy
            boxes = np.stack([x0, y0, x0 + PNET_WINDOW / sx, y0 + PNET_WINDOW / sy], axis=1)
            candidates = np.column_stack([boxes, score[0, rows, cols], offsets[0][:, rows, cols].T])
            found.append(candidates[nms(boxes, candidates[:, 4], NMS_LEVEL)])
        if not found:
            return np.zeros((0, 4))
        candidates = np.concatenate(found)
        candidates = candidates[nms(candidates[:, :4], candidates[:, 4], NMS_PROPOSALS)]
        return _square(_regress(candidates[:, :4], candidates[:, 5:9]))

    def _refine(self, picture: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """RNet on 24 px crops of the proposals -> (N, 4) square boxes."""
        boxes = _pixel_boxes(boxes, picture.size)
        if not len(boxes):
            return boxes
        score, offsets = self.rnet.run({"image": _crops(picture, boxes, self.rnet_size)})
        passed = score >= self.thresholds[1]
        boxes, score, offsets = boxes[passed], score[passed], offsets[passed]
        keep = nms(boxes, score, NMS_REFINED)
        return _square(_regress(boxes[keep], offsets[keep]))

    def _output(self, picture: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ONet on 48 px crops -> final boxes (N, 4), scores (N,) and landmarks (N, 5, 2), best first."""
        boxes = _pixel_boxes(boxes, picture.size)
        if not len(boxes):
            return boxes, np.zeros(0), np.zeros((0, 5, 2))
        score, offsets, relative = self.onet.run({"image": _crops(picture, boxes, self.onet_size)})
        passed = score >= self.thresholds[2]
        boxes, score, offsets, relative = boxes[passed], score[passed], offsets[passed], relative[passed]
        # Landmarks are fractions of the crop ONet saw, not of the regressed box.
        size = boxes[:, 2:] - boxes[:, :2]  # (N, 2) width, height
        landmarks = boxes[:, None, :2] + relative.astype(np.float64) * size[:, None, :]
        boxes = _regress(boxes, offsets)
        keep = nms(boxes, score, NMS_FINAL, mode="min")[:self.max_faces]
        return boxes[keep], score[keep], landmarks[keep]


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each edge by its offset times the box's width (x) or height (y)."""
    size = np.tile(boxes[:, 2:4] - boxes[:, 0:2], 2)  # (N, 4) w, h, w, h
    return boxes + offsets.astype(np.float64) * size


def _square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square of its longer side about the same centre (the crops are square)."""
    centre = (boxes[:, :2] + boxes[:, 2:4]) / 2
    half = np.max(boxes[:, 2:4] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.hstack([centre - half, centre + half])


def _pixel_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Square boxes rounded to whole pixels (the crops cut exactly these, and later stages measure
    from them); boxes of no size or wholly outside the image are dropped."""
    width, height = size
    corner = np.round(boxes[:, :2])
    side = np.round(boxes[:, 2] - boxes[:, 0])[:, None]
    boxes = np.hstack([corner, corner + side])
    inside = (side[:, 0] >= 1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
    return boxes[inside]


def _crop_side(asset: PackagedFile) -> int:
    """The square crop side an MTCNN stage's card gives its ``image`` input, after checking that the
    card asks for what the cascade feeds (NCHW pixels 0-255)."""
    card_file = card_path(asset.path())
    image = read_card(card_file).input("image")
    side = image.shape[-1]
    if image.layout != INPUT_LAYOUT or image.value_range != PIXEL_RANGE or not isinstance(side, int):
        raise InputError(card_file, f"input 'image' is {image.layout} in {image.value_range} with shape {image.shape}; "
                                    f"the face detector feeds fixed-size {INPUT_LAYOUT} crops in {PIXEL_RANGE}")
    return side


def _crops(picture: Image.Image, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, size, size) float32 pixels of each box, black where it leaves the image."""
    batch = np.empty((len(boxes), size, size, 3), np.uint8)
    for index, box in enumerate(boxes.astype(np.int64).tolist()):
        batch[index] = np.asarray(picture.crop(box).resize((size, size), Image.BILINEAR))
    return batch.transpose(0, 3, 1, 2).astype(np.float32)


def _check_options(min_face_size: float, thresholds: tuple[float, float, float], max_faces: int | None,
                   scale_factor: float) -> None:
    if not min_face_size >= PNET_WINDOW:
        raise ValueError(f"min_face_size must be at least {PNET_WINDOW} px (PNet's window), got {min_face_size}")
    if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
        raise ValueError(f"thresholds must be 3 scores in [0, 1) for PNet, RNet, ONet, got {thresholds}")
    if max_faces is not None and max_faces < 1:
        raise ValueError(f"max_faces must be at least 1 (or None for all), got {max_faces}")
    if not 0.1 <= scale_factor < 1:
        raise ValueError(f"scale_factor must be in [0.1, 1), got {scale_factor}")
