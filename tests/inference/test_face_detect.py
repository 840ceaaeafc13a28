"""The MTCNN face detector on ONNX Runtime: NMS on hand-made boxes, the pyramid, real photos
(checked against dlib's own detector where dlib-bin is installed), blank images, bad inputs,
the shipped graphs and their sidecars, and an inference path that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.assets import MTCNN_ONET, MTCNN_PNET, MTCNN_RNET, file_sha256, samples_dir
from slimvision.inference.face_detect import FaceDetector, nms, pyramid_scales
from slimvision.graph.session import SessionSettings


def _photo(name: str) -> np.ndarray:
    import matplotlib

    paths = {"astronaut": samples_dir() / "content" / "astronaut.jpg",
             "grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}
    with Image.open(paths[name]) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(SessionSettings(threads=2))


def _iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- NMS -------------------------------------------------------------------------------------


def test_nms_keeps_the_best_of_each_overlapping_group_best_first():
    boxes = np.array([[0, 0, 10, 10],      # 0: group A
                      [1, 0, 11, 10],      # 1: group A, IoU 0.82 with 0
                      [50, 50, 70, 70],    # 2: alone
                      [10, 0, 20, 10],     # 3: touches 0 and overlaps 1 by 1 px: IoU 0.053 with 1
                      [0, 1, 10, 11]], float)  # 4: group A, IoU 0.82 with 0
    scores = np.array([0.5, 0.9, 0.8, 0.3, 0.4])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.85).tolist() == [1, 2, 0, 4, 3]  # nothing overlaps that much
    assert nms(boxes, scores, 0.0).tolist() == [1, 2]            # any overlap at all goes


def test_nms_min_mode_also_drops_a_box_inside_a_larger_one():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [90, 90, 130, 130]], float)
    scores = np.array([0.9, 0.95, 0.5])
    # IoU of the small box with the big one is 0.09: union mode keeps both.
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]
    # Over the smaller area the inner box overlaps 1.0; the corner box 100/1600 only.
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [1, 2]


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert nms(np.array([[5, 5, 5, 9]], float), np.array([0.1]), 0.5).tolist() == [0]  # no area: kept, no NaN
    same = np.tile([[0, 0, 10, 10]], (3, 1)).astype(float)
    assert nms(same, np.array([0.2, 0.7, 0.7]), 0.5).tolist() == [1]  # ties: the first listed wins
    with pytest.raises(ValueError, match="'union' or 'min'"):
        nms(same, np.ones(3), 0.5, mode="max")  # type: ignore[arg-type]


def test_nms_matches_the_textbook_loop_on_many_random_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 300, (700, 2))
    boxes = np.hstack([corners, corners + rng.uniform(5, 80, (700, 2))])
    scores = rng.random(700)
    for mode in ("union", "min"):
        expected, order = [], np.argsort(-scores, kind="stable")
        while order.size:  # one box at a time, as MTCNN's reference code does
            best, rest = order[0], order[1:]
            expected.append(best)
            size = np.clip(np.minimum(boxes[best, 2:], boxes[rest, 2:]) - np.maximum(boxes[best, :2], boxes[rest, :2]),
                           0, None)
            inter = size[:, 0] * size[:, 1]
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            base = areas[best] + areas[rest] - inter if mode == "union" else np.minimum(areas[best], areas[rest])
            order = rest[inter / base <= 0.5]
        assert nms(boxes, scores, 0.5, mode=mode).tolist() == expected


def test_the_pyramid_runs_from_the_smallest_face_down_to_a_12_px_image():
    scales = pyramid_scales(480, 640, min_face_size=20)
    assert scales[0] == pytest.approx(0.6)
    assert np.allclose(np.diff(np.log(scales)), np.log(0.709))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert pyramid_scales(20, 300, min_face_size=20) == [pytest.approx(0.6)]
    assert pyramid_scales(19, 300, min_face_size=20) == []


# --- real photos -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_one_confident_face_per_photo_with_sensible_landmarks(detector, name):
    faces = detector.detect(_photo(name))
    confident = [face for face in faces if face.score > 0.9]
    assert len(confident) == 1, [(face.box, face.score) for face in faces]
    face = confident[0]
    x0, y0, x1, y1 = face.box
    assert 60 < x1 - x0 < 300 and 60 < y1 - y0 < 300
    (left_eye, right_eye, nose, mouth_left, mouth_right) = face.landmarks
    assert face.landmarks.shape == (5, 2)
    assert ((face.landmarks >= [x0, y0]) & (face.landmarks <= [x1, y1])).all()
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])  # y grows downwards
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_the_face_is_where_dlib_finds_it(detector, name):
    dlib = pytest.importorskip("dlib", reason="dlib-bin is a test dependency")
    image = _photo(name)
    rects, scores, _ = dlib.get_frontal_face_detector().run(image, 1, 0)
    best = rects[int(np.argmax(scores))]  # the astronaut photo also gets a weak hit on the suit
    theirs = (best.left(), best.top(), best.right() + 1, best.bottom() + 1)  # dlib's corners are inclusive
    (ours,) = [face for face in detector.detect(image) if face.score > 0.9]
    assert _iou(ours.box, theirs) > 0.5


def test_two_photos_side_by_side_give_two_faces_and_max_faces_keeps_the_best(detector):
    canvas = np.zeros((600, 1024, 3), np.uint8)
    canvas[:512, :512] = _photo("astronaut")
    canvas[:, 512:] = _photo("grace_hopper")
    faces = detector.detect(canvas)
    assert sorted(round(face.box[0]) // 512 for face in faces) == [0, 1]  # one in each half
    assert [face.score for face in faces] == sorted((face.score for face in faces), reverse=True)
    only = FaceDetector(SessionSettings(threads=2), max_faces=1)(canvas)
    assert len(only) == 1 and only[0].score == faces[0].score


@pytest.mark.parametrize("image", [np.zeros((480, 640, 3), np.uint8), np.full((300, 200, 3), 255, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)],
                         ids=["black", "white", "noise"])
def test_no_faces_is_an_empty_list(detector, image):
    assert detector.detect(image) == []


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 640, 3), np.uint8), "empty image"),
    (np.zeros((64, 64), np.uint8), r"\(H, W, 3\) RGB image, got shape \(64, 64\)"),
    (np.zeros((64, 64, 4), np.uint8), r"RGBA: image\[..., :3\]"),
    (np.zeros((64, 64, 3), np.float32), "uint8 pixels.*float32"),
    (np.zeros((15, 400, 3), np.uint8), "400x15 image is smaller than min_face_size=20"),
    (Image.new("RGB", (64, 64)), "numpy array, got Image"),
])
def test_bad_images_are_one_clear_value_error(detector, image, message):
    with pytest.raises(ValueError, match=message) as info:
        detector.detect(image)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("options, message", [({"min_face_size": 8}, "at least 12"),
                                              ({"thresholds": (0.6, 0.7)}, "3 scores"),
                                              ({"thresholds": (0.6, 0.7, 1.5)}, "3 scores"),
                                              ({"max_faces": 0}, "max_faces"),
                                              ({"scale_factor": 1.0}, "scale_factor")])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        FaceDetector(**options)


# --- what ships ------------------------------------------------------------------------------


@pytest.mark.parametrize("asset", [MTCNN_PNET, MTCNN_RNET, MTCNN_ONET], ids=["pnet", "rnet", "onet"])
def test_the_shipped_graphs_match_their_digests_and_cards(asset):
    from slimvision.export.card import card_path, read_card

    path = asset.path()
    assert file_sha256(path) == asset.sha256
    card = read_card(card_path(path))
    assert card.files == {"graph": path.name} and card.system == "faces"
    assert card.provenance["sha256"] == asset.sha256 and card.parity["max_abs_diff"] <= 1e-4
    # What _propose, _refine and _output feed: RGB pixels 0-255 as float32, NCHW, no mean or std.
    spec = card.preprocessing["image"]
    assert (spec["layout"], spec["channel_order"], spec["value_range"], spec["mean"]) == ("NCHW", "RGB", [0, 255], None)
    assert card.input("image").value_range == [0.0, 255.0]
    assert card.provenance["source_weights"][0]["distribution"] == "facenet-pytorch"


def test_the_crop_sizes_come_from_the_cards():
    detector = FaceDetector()
    assert (detector.rnet_size, detector.onet_size) == (24, 48)


NO_TORCH = r"""
import json, sys
import numpy as np
from slimvision.inference.face_detect import FaceDetector
FaceDetector().detect(np.zeros((64, 64, 3), np.uint8))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "cv2"))))
"""


def test_detection_never_imports_torch_or_opencv():
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
