"""Load-time graph rewrites: free height/width on the shipped transform, and the norm split."""

from __future__ import annotations

import logging
import sys
import zlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from slimvision.assets import STYLE_TEACHER_TRANSFORM, file_sha256
from slimvision.errors import SlimvisionError
from slimvision.graph.rewrite import (
    REWRITE_VERSION,
    cache_dir,
    free_spatial_dims_proto,
    split_norm_statistics,
    with_free_spatial_dims,
)
from slimvision.graph.session import OnnxModel, SessionSettings
from slimvision.inference.style_tiling import TileStore
from slimvision.inference.tiling import tile_grid
from tests.conftest import plain_session, transform_feeds

# Measured on onnxruntime 1.32 (2 threads): the rewritten graph is bit-identical at 384x384
# (max abs diff 0.0), and the split graphs fed with one whole-image tile's moments reproduce the
# untiled output exactly (0.0). The bounds leave room for other ORT builds fusing differently.
PARITY_ATOL = 1e-5
SPLIT_ATOL = 0.02



@pytest.fixture(scope="module")
def transform_path():
    return STYLE_TEACHER_TRANSFORM.path()


@pytest.fixture(scope="module")
def free_bytes(transform_path) -> bytes:
    return with_free_spatial_dims(transform_path)


def test_shipped_transform_is_fixed_384(transform_path):
    shipped = plain_session(str(transform_path))
    assert shipped.get_inputs()[0].shape == [1, 384, 384, 3]
    assert shipped.get_inputs()[1].shape == [1, 1, 1, 100]


def test_rewrite_matches_the_shipped_graph_at_384(transform_path, free_bytes, pipeline):
    shipped = plain_session(str(transform_path))
    rewritten = plain_session(free_bytes)
    feeds = transform_feeds(shipped, 384)
    (expected,) = shipped.run(None, feeds)
    (got,) = rewritten.run(None, feeds)
    assert got.shape == expected.shape == (1, 384, 384, 3)
    assert np.abs(got - expected).max() < PARITY_ATOL
    # The pipeline's own session (CPU-optimised graph cache) computes the same.
    (via_pipeline,) = pipeline.transform.run(feeds)
    assert np.abs(via_pipeline - expected).max() < PARITY_ATOL


@pytest.mark.parametrize("height, width", [(96, 128), (256, 320), (100, 100)])
def test_rewrite_runs_at_other_sizes(free_bytes, height, width):
    model = OnnxModel(free_bytes, SessionSettings(threads=2))
    assert model.input_shapes()[model.input_names[0]] == [1, "height", "width", 3]
    assert model.input_shapes()[model.input_names[1]] == [1, 1, 1, 100]
    rng = np.random.default_rng(0)
    (out,) = model.run({model.input_names[0]: rng.random((1, height, width, 3), dtype=np.float32),
                        model.input_names[1]: rng.standard_normal((1, 1, 1, 100)).astype(np.float32)})
    assert out.shape == (1, height, width, 3)
    assert np.all(np.isfinite(out)) and 0.0 <= out.min() and out.max() <= 1.0  # sigmoid output


def test_rewrite_is_cached_on_disk(transform_path, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    first = with_free_spatial_dims(transform_path)
    # <key>.<crc32 of the bytes>.onnx: the checksum that catches a damaged entry travels in the name.
    expected_name = (f"{transform_path.stem}-{file_sha256(transform_path)[:16]}-freehw-v{REWRITE_VERSION}"
                     f".{zlib.crc32(first):08x}.onnx")
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert entries == [expected_name]  # the entry and no temporary file
    assert (tmp_path / "cache" / expected_name).read_bytes() == first
    # The second call is served from the cache: it must not need the onnx package at all.
    monkeypatch.setitem(sys.modules, "onnx", None)
    second = with_free_spatial_dims(transform_path)
    assert second == first


@pytest.mark.parametrize("damage", [
    lambda data: data[: len(data) // 2],                                  # truncated (killed while copying)
    lambda data: data[:-100] + bytes(b ^ 0x40 for b in data[-100:]),      # flipped bits in the weights
    lambda data: b"",                                                     # emptied
    lambda data: b"garbage",
], ids=["truncated", "flipped-bits", "empty", "garbage"])
def test_a_damaged_cached_graph_is_rebuilt_with_a_log_line(transform_path, tmp_path, monkeypatch, caplog, damage):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path / "cache"))
    good = with_free_spatial_dims(transform_path)
    (entry,) = (tmp_path / "cache").iterdir()
    entry.write_bytes(damage(entry.read_bytes()))
    with caplog.at_level(logging.INFO, logger="slimvision.graph.rewrite"):
        again = with_free_spatial_dims(transform_path)
    assert again == good                                              # rebuilt, not the damaged bytes
    assert f"cached graph {entry} is damaged" in caplog.text and "rebuilding it" in caplog.text
    assert [p.read_bytes() for p in (tmp_path / "cache").iterdir()] == [good]


def test_a_style_run_with_damaged_cached_graphs_rebuilds_them_and_succeeds(tmp_path, monkeypatch, capsys):
    """Through the CLI: every cached graph (rewrites and CPU-optimised sessions) damaged between two runs."""
    from slimvision.cli.main import main
    from tests.conftest import make_content, make_style, save_png

    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path / "cache"))
    content, style = save_png(make_content(), tmp_path / "c.png"), save_png(make_style(), tmp_path / "s.png")
    assert main(["style", "stylize", str(content), "--style", str(style), "-o", str(tmp_path / "a.png")]) == 0
    entries = sorted((tmp_path / "cache").glob("*.onnx"))
    assert entries and all(p.name.count(".") >= 2 for p in entries)
    for path in entries:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    assert main(["style", "stylize", str(content), "--style", str(style), "-o", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert "error" not in capsys.readouterr().err


def test_cache_dir_defaults_to_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("SLIMVISION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "slimvision"


def _model(inputs, outputs, nodes) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "toy", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_free_dims_refuses_a_model_without_a_square_image():
    flat = _model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                  [helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(SlimvisionError, match="no fixed NHWC image input or output to free"):
        free_spatial_dims_proto(flat)
    oblong = _model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 48, 3])],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 48, 3])],
                    [helper.make_node("Relu", ["x"], ["y"])])
    with pytest.raises(SlimvisionError):
        free_spatial_dims_proto(oblong)


def test_free_dims_on_a_toy_model_leaves_vectors_alone():
    toy = _model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 3]),
                  helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 1, 1, 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 3])],
                 [helper.make_node("Add", ["x", "v"], ["y"])])
    toy.graph.value_info.append(helper.make_tensor_value_info("stale", TensorProto.FLOAT, [1, 8, 8, 3]))
    freed = free_spatial_dims_proto(toy)
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(freed.graph.input[0]) == [1, "height", "width", 3]
    assert dims(freed.graph.input[1]) == [1, 1, 1, 3]
    assert dims(freed.graph.output[0]) == [1, "height", "width", 3]
    assert len(freed.graph.value_info) == 0


@pytest.fixture(scope="module")
def split(free_bytes):
    return split_norm_statistics(onnx.load_from_string(free_bytes))


def test_split_finds_thirteen_norm_layers(split):
    assert len(split.layers) == 13
    assert all("/moments/mean" in layer.mean and "/moments/variance" in layer.variance for layer in split.layers)
    assert len({layer.mean for layer in split.layers}) == 13
    segments = [onnx.load_from_string(layer.segment).graph for layer in split.layers]
    segments.append(onnx.load_from_string(split.tail).graph)
    moments = [(layer.mean, layer.variance) for layer in split.layers]
    for k, segment in enumerate(segments):
        fed = {value.name for value in segment.input}
        # Segment k normalises with the moments of layer k - 1 and never sees a later layer's.
        assert all(set(pair) <= fed for pair in moments[k - 1:k])
        assert not fed & {name for pair in moments[k:] for name in pair}
        assert (split.image in fed) == (k == 0)
    # Only int8 codes cross between segments of the int8 graph (1 byte per value).
    handed = {value.name: value.type.tensor_type.elem_type for segment in segments[1:] for value in segment.input
              if value.name not in {split.style} | {name for pair in moments for name in pair}}
    assert handed and set(handed.values()) == {TensorProto.INT8}


def test_split_refuses_a_model_without_moments():
    toy = _model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1, 1])],
                 [helper.make_node("GlobalAveragePool", ["x"], ["y"])])
    with pytest.raises(SlimvisionError, match="no instance-norm moments found"):
        split_norm_statistics(toy)


def _toy_norm(variance_nodes) -> onnx.ModelProto:
    """x = relu(image), a style input v unused -> (x - mean) + variance, the variance pool averaging what ``variance_nodes``
    make of d = x - mean."""
    nodes = [helper.make_node("Relu", ["image"], ["x"]),
             helper.make_node("GlobalAveragePool", ["x"], ["n/moments/mean"]),
             helper.make_node("Sub", ["x", "n/moments/mean"], ["d"]),
             *variance_nodes,
             helper.make_node("GlobalAveragePool", ["pooled"], ["n/moments/variance"]),
             helper.make_node("Add", ["d", "n/moments/variance"], ["y"])]
    return _model([helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8]),
                   helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 1, 1, 3])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], nodes)


def test_float_split_pools_sums_of_a_squared_difference():
    split = split_norm_statistics(_toy_norm([helper.make_node("Mul", ["d", "d"], ["square"]),
                                             helper.make_node("Identity", ["square"], ["pooled"])]))
    (layer,) = split.layers
    assert layer.normalised == "x" and layer.levels is None and layer.variance_table is None
    image = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    (out,) = plain_session(layer.segment).run(None, {"image": image})
    np.testing.assert_array_equal(out, np.maximum(image, 0))
    # The rest normalises x with the fed moments, reading x from the first segment.
    feeds = {"x": out, "n/moments/mean": np.ones((1, 3, 1, 1), np.float32),
             "n/moments/variance": np.full((1, 3, 1, 1), 2, np.float32)}
    (y,) = plain_session(split.tail).run(None, feeds)
    np.testing.assert_array_equal(y, out - 1 + 2)


def test_float_split_refuses_a_variance_that_is_not_a_squared_difference():
    with pytest.raises(SlimvisionError, match="not the mean of"):
        split_norm_statistics(_toy_norm([helper.make_node("Abs", ["d"], ["pooled"])]))


def test_whole_image_moments_reproduce_the_untiled_output(pipeline, content_image, style_vector, tmp_path):
    content = content_image.astype(np.float32) / 255.0
    height, width = content.shape[:2]
    style = style_vector.reshape(1, 1, 1, 100).astype(np.float32)
    tiler = pipeline.tiler
    tiles = list(tile_grid(height, width, max(height, width), 16))
    assert len(tiles) == 1
    ticks = []
    store = TileStore(tmp_path)
    moments = tiler.moments(content, style, tiles, lambda: ticks.append(1), store)
    assert len(ticks) == 13 and len(moments) == 26  # one segment run per layer gives both its moments
    assert all(m.shape[:1] == (1,) and m.shape[2:] == (1, 1) and np.all(np.isfinite(m)) for m in moments.values())
    split_out = tiler.paint(content, style, tiles, moments, store, 16, lambda: ticks.append(1))
    assert len(ticks) == 14
    untiled = pipeline.transform_array(content, style_vector)
    diff = np.abs(split_out - untiled).max()
    assert diff < SPLIT_ATOL, diff
    # The moments matter: quartering the last layer's variance visibly changes the picture.
    layer = tiler.layers[-1][0]
    wrong = {**moments, layer.variance: moments[layer.variance] * 0.25}
    off = tiler.paint(content, style, tiles, wrong, store, 16, lambda: None)
    assert np.abs(off - untiled).max() > 5 * SPLIT_ATOL
