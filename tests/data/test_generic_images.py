"""Generic grey pictures for pretraining: decoded in grey at their own size, never a medical image."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from slimvision.data.generic_images import generic_folders, generic_slices
from slimvision.data.medical_sources import CropPool, public_check_images
from slimvision.errors import ConfigError

pytest.importorskip("pydicom")  # the public check's images come from pydicom and matplotlib


def _texture(path, size=(60, 90), seed=0, colour=False):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (*size, 3) if colour else size).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def test_pictures_are_grey_at_their_own_size_and_bad_or_medical_files_are_left_out(tmp_path, caplog):
    folder = tmp_path / "pkg"
    folder.mkdir()
    _texture(folder / "brick.png", colour=True)
    _texture(folder / "grass.jpg", (40, 33), seed=1)
    _texture(folder / "copy.png", colour=True)                             # the same picture again
    _texture(folder / "phantom.png", seed=2)                                # medical by name
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")    # does not decode
    (folder / "notes.txt").write_text("not a picture")
    mri = next(iter(public_check_images().values()))                        # the public check's MRI, as a PNG
    Image.fromarray((mri / mri.max() * 255).astype(np.uint8)).save(folder / "innocent.png")
    with caplog.at_level(logging.WARNING):
        found = generic_slices([("pkg", folder)])
    assert list(found) == ["generic-pkg"]
    names = [name for name, _ in found["generic-pkg"]]
    assert names == ["brick.png", "grass.jpg"]
    brick, grass = (pixels for _, pixels in found["generic-pkg"])
    assert brick.shape == (60, 90) and grass.shape == (40, 33) and brick.dtype == np.float32
    assert 0 <= brick.min() and brick.max() <= 1
    assert "broken.png: skipped" in caplog.text and "innocent.png matches a public held-out image" in caplog.text
    crops = CropPool(found).crops(np.random.default_rng(0), 3, 32)         # crops like any source
    assert crops.shape == (3, 32, 32)


def test_an_empty_pool_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no generic pictures to train on") as caught:
        generic_slices([("pkg", tmp_path / "empty")])
    assert "\n" not in str(caught.value)


def test_the_installed_packages_give_no_medical_picture():
    found = generic_slices()
    taken = {name for pictures in found.values() for name, _ in pictures}
    assert taken and not taken & {"phantom.png", "retina.jpg", "microaneurysms.png", "ihc.png", "s1045.ima.gz"}
    assert all(source.startswith("generic-") for source in found)
    assert {package for package, _ in generic_folders()} >= {f[len("generic-"):] for f in found}
