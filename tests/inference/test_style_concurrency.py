"""One StyleTransferPipeline serving several threads, and the memory it plans for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from slimvision.graph.session import SessionSettings
from slimvision.inference.style import StyleTransferPipeline, default_memory_budget_mb
from tests.conftest import make_content


def test_threads_share_one_pipeline_and_get_what_they_would_alone(cache_dir, style_image):
    pipe = StyleTransferPipeline(settings=SessionSettings(threads=1))  # sessions not created yet
    vector = pipe.resolve_style(style_image).values
    images = [make_content(48 + 8 * i, 64) for i in range(6)]
    with ThreadPoolExecutor(3) as pool:  # the threads race to create the transformer session
        together = list(pool.map(lambda image: pipe.stylize_with_vector(image, vector, strength=0.7), images))
    alone = [pipe.stylize_with_vector(image, vector, strength=0.7) for image in images]
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)


def test_default_budget_is_a_quarter_of_ram_within_1_to_8_gb():
    budget = default_memory_budget_mb()
    assert 1024 <= budget <= 8192
    assert StyleTransferPipeline().memory_budget_mb == budget


@pytest.mark.parametrize("artifact, per_pixel", [("magenta-arbitrary-v1-fp32", 330), ("magenta-arbitrary-v1-int8", 260)])
def test_working_memory_estimate(artifact, per_pixel):
    pipe = StyleTransferPipeline(artifact, memory_budget_mb=4096)
    assert pipe.working_memory_mb(1024, 1024) == pytest.approx(per_pixel)  # 1 MP * bytes per pixel
    assert pipe.working_memory_mb(2048, 1024, max_side=1024) == pytest.approx(per_pixel / 2)
    assert pipe.working_memory_mb(10000, 10000) == 4096  # tiled down to the budget


def test_tiles_follow_the_precisions_memory_per_pixel():
    fp32 = StyleTransferPipeline("magenta-arbitrary-v1-fp32", memory_budget_mb=512)
    int8 = StyleTransferPipeline("magenta-arbitrary-v1-int8", memory_budget_mb=512)
    assert fp32.tile_size < int8.tile_size  # float activations take more room per pixel
    assert fp32.tile_size ** 2 * 330 <= 512 * 2**20 and int8.tile_size ** 2 * 260 <= 512 * 2**20


def test_tiler_sessions_keep_no_arena(pipeline_fp32):
    """Many tiler sessions each holding its own peak would defeat the memory budget."""
    tiler = pipeline_fp32.tiler
    sessions = [tiler.tail] + [segment for _, segment, _ in tiler.layers]
    assert all(not model.settings.memory_arena for model in sessions)
    assert pipeline_fp32.transform.settings.memory_arena  # the one-piece path keeps it (reused per image)


def test_a_side_just_over_the_tile_runs_untiled(monkeypatch, pipeline, style_vector):
    """137 px with 136 px tiles is one stretched tile: no need for the tiler's passes."""
    from tests.conftest import make_scene

    scene = make_scene()[:137, :120].copy()
    reference = pipeline.stylize_with_vector(scene, style_vector)
    monkeypatch.setattr(pipeline, "tile_size", 136)
    monkeypatch.setattr(type(pipeline), "tiler", property(lambda self: pytest.fail("the tiler was used")))
    np.testing.assert_array_equal(pipeline.stylize_with_vector(scene, style_vector), reference)


def test_pixel_conversions_match_the_plain_formulas():
    from slimvision.io.pixels import to_float, to_uint8

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    np.testing.assert_array_equal(to_float(image), image.astype(np.float32) * np.float32(1.0 / 255.0))
    painted = (rng.random((64, 48, 3), dtype=np.float32) * 1.4 - 0.2).astype(np.float32)  # out of range too
    expected = np.floor(np.clip(painted.astype(np.float64), 0, 1) * 255 + 0.5)
    assert np.abs(to_uint8(painted).astype(int) - expected).max() <= 1  # float32 vs float64 rounding
    assert to_uint8(np.array([[[-1.0, 0.0, 1.0]]], np.float32)).tolist() == [[[0, 0, 255]]]
    assert to_uint8(np.array([[[2.0, 0.5, 0.999]]], np.float32)).tolist() == [[[255, 128, 255]]]


def test_a_too_small_budget_names_the_budget_given_and_this_precisions_minimum():
    from slimvision.errors import SlimvisionError

    with pytest.raises(SlimvisionError, match=r"a memory budget of 3 MB is too small \(need >= 5.16 MB\)"):
        StyleTransferPipeline("magenta-arbitrary-v1-fp32", memory_budget_mb=3)  # 128^2 px * 330 bytes
    with pytest.raises(SlimvisionError, match=r"a memory budget of 3 MB is too small \(need >= 4.07 MB\)"):
        StyleTransferPipeline("magenta-arbitrary-v1-int8", memory_budget_mb=3)  # 128^2 px * 260 bytes
