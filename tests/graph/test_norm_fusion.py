"""Fusing spelled-out instance norms into InstanceNormalization: same numbers, fewer nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from slimvision.artifacts import ARTIFACTS
from slimvision.assets import FAST_STYLE_TRANSFORM_P53B_INT8, STYLE_TEACHER_TRANSFORM
from slimvision.graph.norm_fusion import (
    fuse_instance_norms_proto,
    fused_graph_key,
    spelled_out_norm,
    with_fused_instance_norms,
)
from slimvision.graph.precision import float_graph_key, with_float_weights

# Measured on onnxruntime 1.32: the fused graphs differ from the unfused ones by at most
# 1.5e-5 on [0, 1] outputs (float summation order inside the kernel).
FUSED_ATOL = 1e-4


def _run(model: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _scalars() -> list:
    return [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-3])]


def _norm_model(nodes: list, extra_outputs: tuple[str, ...] = ()) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 5]),
              helper.make_tensor_value_info("gamma", TensorProto.FLOAT, [1, 4, 1, 1]),
              helper.make_tensor_value_info("beta", TensorProto.FLOAT, [1, 4, 1, 1])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, 6, 5]) for name in ("y", *extra_outputs)]
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [1, 4, 1, 1])
    graph = helper.make_graph(nodes, "norm", inputs, outputs, [*_scalars(), shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _batchnorm_form() -> list:
    """TensorFlow's spelling, as the teacher's float graph has it: Identity steps, a Reshape of
    the mean, Reciprocal, and x * a + (beta - m * a)."""
    make = helper.make_node
    return [make("GlobalAveragePool", ["x"], ["m"]), make("Identity", ["m"], ["m_id"]),
            make("Reshape", ["m_id", "shape"], ["m4"]), make("Sub", ["x", "m4"], ["d"]),
            make("Mul", ["d", "d"], ["d2"]), make("GlobalAveragePool", ["d2"], ["v"]),
            make("Add", ["v", "eps"], ["ve"]), make("Sqrt", ["ve"], ["sd"]), make("Reciprocal", ["sd"], ["rs"]),
            make("Mul", ["rs", "gamma"], ["a"]), make("Mul", ["m", "a"], ["ma"]),
            make("Reshape", ["ma", "shape"], ["ma4"]), make("Sub", ["beta", "ma4"], ["b"]),
            make("Mul", ["x", "a"], ["xa"]), make("Add", ["xa", "b"], ["y"])]


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.normal(2.0, 3.0, (1, 4, 6, 5)).astype(np.float32),
            "gamma": rng.normal(1.0, 0.5, (1, 4, 1, 1)).astype(np.float32),
            "beta": rng.normal(0.0, 1.0, (1, 4, 1, 1)).astype(np.float32)}


def _expected(feeds: dict[str, np.ndarray], eps: float = 1e-3) -> np.ndarray:
    x = feeds["x"].astype(np.float64)
    mean, variance = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * feeds["gamma"] + feeds["beta"]


@pytest.mark.parametrize("nodes", [spelled_out_norm("x", "gamma", "beta", "y"), _batchnorm_form()],
                         ids=["ours", "tensorflow"])
def test_each_spelling_fuses_into_one_instance_norm(nodes, feeds):
    model = _norm_model(nodes)
    before = _run(model, feeds)
    fused, count = fuse_instance_norms_proto(model)
    onnx.checker.check_model(fused)
    assert count == 1
    assert [node.op_type for node in fused.graph.node].count("InstanceNormalization") == 1
    assert not {"GlobalAveragePool", "Sub", "Sqrt", "Identity"} & {node.op_type for node in fused.graph.node}
    np.testing.assert_allclose(before, _expected(feeds), atol=1e-4)
    np.testing.assert_allclose(_run(fused, feeds), before, atol=1e-5)


def test_a_norm_whose_intermediate_is_used_elsewhere_is_left_alone(feeds):
    # The centred map is also a graph output: fusing would lose it.
    model = _norm_model(spelled_out_norm("x", "gamma", "beta", "y"), extra_outputs=("y/centred",))
    fused, count = fuse_instance_norms_proto(model)
    assert count == 0
    assert "InstanceNormalization" not in {node.op_type for node in fused.graph.node}
    np.testing.assert_allclose(_run(fused, feeds), _run(_norm_model(spelled_out_norm("x", "gamma", "beta", "y")),
                                                         feeds), atol=0)


def test_a_graph_without_norms_is_unchanged():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    fused, count = fuse_instance_norms_proto(model)
    assert count == 0 and [node.op_type for node in fused.graph.node] == ["Relu"]


@pytest.mark.parametrize("asset", [STYLE_TEACHER_TRANSFORM, FAST_STYLE_TRANSFORM_P53B_INT8],
                         ids=["teacher", "fast-v6"])
def test_shipped_transformers_fuse_every_norm_and_paint_the_same(asset):
    path: Path = asset.path()
    data = with_float_weights(path)
    fused, count = fuse_instance_norms_proto(onnx.load_from_string(data))
    assert count == 13  # the conditional norms of 5 residual blocks (2 each) and the 3 other convs
    assert "GlobalAveragePool" not in {node.op_type for node in fused.graph.node}
    rng = np.random.default_rng(1)
    feeds = {"content_image": rng.random((1, 72, 104, 3), dtype=np.float32),
             "style_vector": rng.normal(0.0, 0.5, (1, 1, 1, 100)).astype(np.float32)}
    names = [value.name for value in fused.graph.input]
    feeds = dict(zip(names, feeds.values()))
    np.testing.assert_allclose(_run(fused, feeds), _run(data, feeds), atol=FUSED_ATOL)


def test_the_fused_graph_is_cached_under_its_own_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path))
    path = FAST_STYLE_TRANSFORM_P53B_INT8.path()
    key = float_graph_key(path)
    data, fused_key = with_fused_instance_norms(with_float_weights(path), key)
    assert fused_key == fused_graph_key(key) != key
    assert [entry.name for entry in tmp_path.iterdir() if entry.name.startswith(fused_key)]
    assert with_fused_instance_norms(b"not read on a cache hit", key) == (data, fused_key)


def test_float_pipelines_paint_whole_images_with_fused_norms_and_int8_ones_do_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path))
    fast = ARTIFACTS.create("slimvision-fast-v6")
    assert fast.transform.cache_key == fused_graph_key(fast._transform_graph()[1])
    # the tiler still reads the norms' statistics from the unfused graph
    unfused = onnx.load_from_string(fast._transform_graph()[0])
    assert "InstanceNormalization" not in {node.op_type for node in unfused.graph.node}
    int8 = ARTIFACTS.create("magenta-arbitrary-v1-int8")  # fused int8 kernels: its graph stays as shipped
    assert int8.transform.cache_key == int8._transform_graph()[1]
