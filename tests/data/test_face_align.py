"""Face alignment geometry: the similarity fit, the chip it cuts, and agreement with dlib's own chips."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.data.face_align import DLIB_CHIP, align_face, similarity_transform


def _rotation(degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def test_the_fit_recovers_a_known_similarity_and_never_reflects():
    source = DLIB_CHIP.pixel_points()
    truth = np.hstack([2.5 * _rotation(17), [[40.0], [-12.0]]])
    target = source @ truth[:, :2].T + truth[:, 2]
    assert np.allclose(similarity_transform(source, target), truth)
    mirrored = target * [-1, 1]  # a mirror image: the best similarity keeps the handedness
    fitted = similarity_transform(source, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.zeros((5, 2)), target)


@pytest.mark.parametrize("zoom", [0.6, 1.0, 3.7])
def test_landmarks_land_on_the_template(zoom):
    """Bright dots drawn where a rotated, scaled face's landmarks would be end up on the template
    points of the chip, at any face size (large faces go through the box-averaged path)."""
    template = DLIB_CHIP.pixel_points()
    place = np.hstack([zoom * _rotation(-20), [[300.0], [250.0]]])
    landmarks = template @ place[:, :2].T + place[:, 2]
    image = np.zeros((700, 800, 3), np.uint8)
    radius = max(1, int(round(2 * zoom)))
    for x, y in np.round(landmarks).astype(int):
        image[y - radius:y + radius + 1, x - radius:x + radius + 1] = 255
    chip = align_face(image, landmarks).astype(float)[..., 0]
    rows, cols = np.mgrid[0:chip.shape[0], 0:chip.shape[1]]
    for x, y in template:
        near = (np.abs(cols - x) < 6) & (np.abs(rows - y) < 6)
        weight = chip * near
        assert weight.max() > 60
        centre = (weight * cols).sum() / weight.sum(), (weight * rows).sum() / weight.sum()
        assert np.hypot(centre[0] - x, centre[1] - y) < 1.0


def test_outside_the_image_is_black_and_bad_landmarks_are_clear_errors():
    image = np.full((40, 40, 3), 200, np.uint8)
    landmarks = DLIB_CHIP.pixel_points() * 0.1 + 35  # a tiny face at the image's corner
    chip = align_face(image, landmarks)
    assert chip.shape == (150, 150, 3) and chip[-1, -1].max() == 0 and chip.max() == 200
    with pytest.raises(ValueError, match="expected 5 finite"):
        align_face(image, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="expected 5 finite"):
        align_face(image, np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="image"):
        align_face(np.zeros((10, 10)), landmarks)


def test_chips_agree_with_dlibs_own():
    dlib = pytest.importorskip("dlib", reason="dlib-bin is a test dependency")
    pytest.importorskip("face_recognition_models", reason="needs the faces extra")
    import matplotlib
    from pathlib import Path

    from PIL import Image

    from slimvision.assets import DLIB_FACE_RESNET

    models = DLIB_FACE_RESNET.path().parent
    landmarks5 = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    image = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    (box,) = dlib.get_frontal_face_detector()(image, 1)
    shape = landmarks5(image, box)
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], float)
    theirs = dlib.get_face_chip(image, shape, size=150, padding=0.25).astype(float)
    ours = align_face(image, points).astype(float)
    assert np.abs(theirs - ours).mean() < 3.0  # grey levels; 2.2 measured (dlib truncates, we round)
    # Through the teacher, our chip and dlib's give nearly the same descriptor (0.022 measured;
    # dlib calls two faces the same person below 0.6).
    import onnxruntime as ort

    from slimvision.inference.face_graph import dlib_resnet_graph

    session = ort.InferenceSession(dlib_resnet_graph(DLIB_FACE_RESNET.path()), providers=["CPUExecutionProvider"])
    chips = np.stack([theirs, ours]).astype(np.float32).transpose(0, 3, 1, 2) / 255
    (descriptors,) = session.run(None, {"face_chip": np.ascontiguousarray(chips)})
    assert np.linalg.norm(descriptors[0] - descriptors[1]) < 0.05


def test_the_arcface_template_is_insightfaces_112_px_crop():
    from slimvision.data.face_align import ARCFACE_CHIP

    points = ARCFACE_CHIP.pixel_points()
    assert ARCFACE_CHIP.size == 112 and np.allclose(points[0], [38.2946, 51.6963])
    assert np.allclose(points[4], [70.7299, 92.2041])
    image = np.zeros((300, 300, 3), np.uint8)
    image[100:200, 100:200] = 255
    chip = align_face(image, points * 2 + 50, ARCFACE_CHIP)  # a face at twice the template's size
    assert chip.shape == (112, 112, 3)
    assert chip[25:75, 25:75].min() == 255 and chip[:20].max() == 0  # the white square lands at 25..75
