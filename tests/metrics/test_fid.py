"""FID-Lite0 / KID-Lite0: the distance formulas against closed forms, and the feature extractor's contract."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.metrics.fid import FeatureStats, Lite0Embedder, frechet_distance, kernel_distance
from slimvision.errors import InputError


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    # Diagonal covariances commute: FID = |m1 - m2|^2 + sum (s1 - s2)^2 over the standard deviations.
    a = FeatureStats(np.array([0.0, 1.0, 2.0]), np.diag([1.0, 4.0, 9.0]), 100)
    b = FeatureStats(np.array([1.0, 1.0, 0.0]), np.diag([4.0, 4.0, 1.0]), 100)
    assert frechet_distance(a, b) == pytest.approx(1 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_a_general_matrix_square_root_on_sampled_features():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(6, 6))
    a, b = FeatureStats.of(rng.normal(size=(400, 6)) @ mixing), FeatureStats.of(rng.normal(size=(400, 6)) + 0.5)
    values, vectors = np.linalg.eig(a.covariance @ b.covariance)     # tr sqrt(S_a S_b) from the eigenvalues
    expected = (np.sum((a.mean - b.mean) ** 2) + np.trace(a.covariance) + np.trace(b.covariance)
                - 2 * np.sqrt(values.real.clip(0)).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    same = kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)), subsets=20, subset_size=100)
    shifted = kernel_distance(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 1, subsets=20, subset_size=100)
    assert abs(same) < 0.05 < shifted


def test_stats_survive_a_save_and_load(tmp_path):
    stats = FeatureStats.of(np.random.default_rng(2).normal(size=(10, 4)))
    stats.save(tmp_path / "real.npz")
    loaded = FeatureStats.load(tmp_path / "real.npz")
    assert np.array_equal(loaded.mean, stats.mean) and np.array_equal(loaded.covariance, stats.covariance)
    assert loaded.count == 10


def test_the_embedder_gives_1280_features_and_treats_grey_as_repeated_rgb():
    from slimvision.models.layers.efficientnet_lite import EfficientNetLite0

    embed = Lite0Embedder(batch_size=2, net=EfficientNetLite0().eval())      # random weights: fast, same contract
    grey = np.random.default_rng(3).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    features = embed(grey)
    assert features.shape == (3, 1280) and features.dtype == np.float64
    assert np.allclose(features, embed(np.repeat(grey, 3, axis=3)), atol=1e-6)
    with pytest.raises(InputError, match="uint8"):
        embed(grey.astype(np.float32))
