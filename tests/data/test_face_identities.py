"""Face canvases: the dlib chip is cut exactly, the ArcFace chip from the same canvas, augmentations by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.data.face_align import ARCFACE_CHIP, MTCNN_DLIB_CHIP, align_face
from slimvision.data.face_identities import (
    CANVAS, FaceAugment, FaceCanvasMaker, PseudoIdentities, augment_canvas, chip_from_canvas,
)
from slimvision.errors import ConfigError, SlimvisionError

#: Grace Hopper's MTCNN landmarks in matplotlib's grace_hopper.jpg (eye centres, nose tip, mouth corners), as found.
HOPPER_POINTS = np.array([[219.8, 191.8], [311.1, 186.6], [269.7, 239.8], [231.5, 281.1], [306.9, 276.1]])


@pytest.fixture(scope="module")
def hopper():
    import matplotlib

    return np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def canvas(hopper):
    return FaceCanvasMaker(lambda image: HOPPER_POINTS)(hopper)


def test_the_dlib_chip_is_the_canvas_middle_exactly(hopper, canvas):
    assert canvas.shape == (CANVAS.size, CANVAS.size, 3)
    assert np.array_equal(chip_from_canvas(canvas, "dlib"), align_face(hopper, HOPPER_POINTS, MTCNN_DLIB_CHIP))


def test_the_arcface_chip_from_the_canvas_matches_aligning_directly(hopper, canvas):
    chip = chip_from_canvas(canvas, "arcface").astype(float)
    direct = align_face(hopper, HOPPER_POINTS, ARCFACE_CHIP).astype(float)
    assert chip.shape == (112, 112, 3)
    assert np.abs(chip - direct).mean() < 10  # two fits and two resamplings instead of one: near, not equal
    assert chip[:8].mean() > 20  # the canvas is wide enough: no black band over the forehead
    with pytest.raises(ConfigError, match="chip kind"):
        chip_from_canvas(canvas, "vgg")


def test_a_face_the_finder_misses_gives_no_canvas(hopper):
    assert FaceCanvasMaker(lambda image: None)(hopper) is None


def test_augmentations_are_fixed_by_their_seed_and_change_the_picture(canvas):
    augment = FaceAugment()
    first = augment_canvas(canvas, np.random.default_rng(3), augment)
    assert np.array_equal(first, augment_canvas(canvas, np.random.default_rng(3), augment))
    assert not np.array_equal(first, augment_canvas(canvas, np.random.default_rng(4), augment))
    assert first.shape == canvas.shape and first.dtype == np.uint8
    nothing = FaceAugment(rotation=0, scale=0, shift=0, mirror=0, light=0, gamma=0, blur=0, noise=0, jpeg=0, grey=0)
    assert np.abs(augment_canvas(canvas, np.random.default_rng(0), nothing).astype(int) - canvas).max() <= 1
    grey = FaceAugment(grey=1.0, jpeg=0, noise=0)
    out = augment_canvas(canvas, np.random.default_rng(0), grey)
    assert (out[..., 0] == out[..., 1]).all()
    with pytest.raises(ConfigError):
        FaceAugment(mirror=1.5).validate()


def test_pseudo_identities_cycle_through_the_faces(canvas):
    canvases = np.stack([canvas, canvas[:, ::-1]])
    data = PseudoIdentities(canvases, FaceAugment(), seed=1, kinds=("arcface",), length=6)
    assert len(data) == 6
    items = [data[i] for i in range(6)]
    assert [item["identity"] for item in items] == [0, 1, 0, 1, 0, 1]
    assert data.identities().tolist() == [item["identity"] for item in items]  # without drawing pictures
    assert items[0]["dlib"].shape == (150, 150, 3) and items[0]["arcface"].shape == (112, 112, 3)
    assert np.array_equal(data[2]["dlib"], items[2]["dlib"])  # the same index, the same picture
    assert not np.array_equal(items[0]["dlib"], items[2]["dlib"])  # another picture of the same face
    assert np.array_equal(PseudoIdentities(canvases, None)[0]["dlib"], chip_from_canvas(canvas))
    with pytest.raises(SlimvisionError, match="canvases"):
        PseudoIdentities(canvases[:, :100], None)


def test_synthetic_faces_come_from_the_packaged_gan():
    pytest.importorskip("gan_face_generate", reason="the train extra installs gan-face-generate")
    from slimvision.data.face_identities import synthetic_faces

    faces = synthetic_faces(4, seed=0)
    assert faces.shape == (4, 64, 64, 3) and faces.dtype == np.uint8
    assert np.array_equal(faces, synthetic_faces(4, seed=0))
    assert faces.std() > 20 and not np.array_equal(faces[0], faces[1])
