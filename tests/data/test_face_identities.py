"""Face canvases: the dlib chip is cut exactly, the ArcFace chip from the same canvas, augmentations by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.data.face_align import ARCFACE_CHIP, MTCNN_DLIB_CHIP, align_face
from slimvision.data.face_identities import (
    CANVAS, FaceAugment, FaceCanvasMaker, PseudoIdentities, augment_canvas, chip_from_canvas, photo_canvases,
    photo_files, photo_stamps,
)
from slimvision.errors import ConfigError, InputError, SlimvisionError

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


def _two_hoppers(hopper):
    """One photo of two people: Hopper, and Hopper again to her right, with the landmarks of both."""
    photo = np.concatenate([hopper, hopper[:, ::-1]], axis=1)
    mirrored = HOPPER_POINTS.copy()
    mirrored[:, 0] = 2 * hopper.shape[1] - 1 - mirrored[:, 0]
    return photo, [HOPPER_POINTS, mirrored[[1, 0, 2, 4, 3]]]  # mirrored: left and right swap


def test_every_face_of_a_photo_becomes_a_canvas(hopper, canvas, tmp_path):
    photo, points = _two_hoppers(hopper)
    Image.fromarray(photo).save(tmp_path / "group.png")
    Image.fromarray(hopper).save(tmp_path / "b-one.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    maker = FaceCanvasMaker(lambda image: None,
                            lambda image: points if image.shape[1] == photo.shape[1] else points[:1])
    files = photo_files([tmp_path])
    assert [path.name for path in files] == ["b-one.png", "group.png"]
    canvases = photo_canvases(files, maker, progress=False)
    assert canvases.shape == (3, CANVAS.size, CANVAS.size, 3)
    assert np.array_equal(canvases[0], canvas) and np.array_equal(canvases[1], canvas)
    # the second person is the mirror image of the first, aligned as such
    assert np.abs(canvases[2].astype(float) - canvas[:, ::-1].astype(float)).mean() < 3


def test_photos_are_named_in_order_each_once_and_stamped_by_name_size_and_time(hopper, tmp_path):
    Image.fromarray(hopper).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(hopper).save(tmp_path / "sub" / "b.png")
    files = photo_files([tmp_path / "sub" / "b.png", tmp_path])
    assert [path.relative_to(tmp_path).as_posix() for path in files] == ["sub/b.png", "a.png"]
    stamps = photo_stamps(files)
    assert [stamp[:2] for stamp in stamps] == [["b.png", files[0].stat().st_size], ["a.png", files[1].stat().st_size]]
    (tmp_path / "sub" / "b.png").write_bytes(b"changed")
    assert photo_stamps(files)[0] != stamps[0] and photo_stamps(files)[1] == stamps[1]
    with pytest.raises(InputError, match="gone.png: cannot be read"):
        photo_stamps([tmp_path / "gone.png"])


def test_photo_sources_that_cannot_be_used_are_one_line_naming_them(hopper, tmp_path):
    with pytest.raises(InputError, match="missing.*does not exist"):
        photo_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: holds no images"):
        photo_files([tmp_path / "empty"])
    Image.fromarray(hopper).save(tmp_path / "face.png")
    with pytest.raises(SlimvisionError, match="no face was found in the 1 photo"):
        photo_canvases([tmp_path / "face.png"], FaceCanvasMaker(lambda image: None, lambda image: []), progress=False)
    with pytest.raises(SlimvisionError, match="give it every_face"):
        photo_canvases([tmp_path / "face.png"], FaceCanvasMaker(lambda image: None), progress=False)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(InputError, match="broken.jpg"):
        photo_canvases([tmp_path / "broken.jpg"], FaceCanvasMaker(lambda image: None, lambda image: []),
                       progress=False)


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


def _detail(image):
    grey = image.astype(float).mean(-1)
    return np.abs(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]).mean()


def test_sharpening_adds_detail_and_when_off_draws_nothing(canvas):
    still = dict(rotation=0, scale=0, shift=0, mirror=0, light=0, gamma=0, blur=0, noise=0, jpeg=0, grey=0)
    plain = augment_canvas(canvas, np.random.default_rng(5), FaceAugment(**still))
    sharp = augment_canvas(canvas, np.random.default_rng(5), FaceAugment(**still, sharpen=1.0))
    assert _detail(sharp) > 1.3 * _detail(plain)
    # Off, it takes no number from the generator: the JPEG quality drawn after it is the same.
    jpeg = dict(still, jpeg=1.0)
    rng_off, rng_plain = np.random.default_rng(6), np.random.default_rng(6)
    augment_canvas(canvas, rng_off, FaceAugment(**jpeg, sharpen=0.0, sharpen_percent=500))
    augment_canvas(canvas, rng_plain, FaceAugment(**jpeg))
    assert rng_off.random() == rng_plain.random()
    # ... and stays out of the fingerprint that caches the teacher's descriptors of the pictures.
    assert "sharpen" not in FaceAugment().fingerprint() and FaceAugment(sharpen=0.5).fingerprint()["sharpen"] == 0.5
    for bad in (dict(sharpen=1.5), dict(sharpen_percent=20)):
        with pytest.raises(ConfigError):
            FaceAugment(**bad).validate()


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
