"""OnnxModel and SessionSettings: a tiny generated graph, settings checks, providers, caching."""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest

from slimvision.errors import SlimvisionError
from slimvision.graph.session import CPU, OnnxModel, SessionSettings, machine_fingerprint, resolve_providers


def add_model_bytes() -> bytes:
    """z = x + y over float32 [2, 3] tensors, built with onnx.helper."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "add", [x, y], [z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def add_bytes() -> bytes:
    return add_model_bytes()


def test_tiny_graph_runs_and_adds(add_bytes, tmp_path):
    path = tmp_path / "add.onnx"
    path.write_bytes(add_bytes)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y = np.full((2, 3), 0.5, dtype=np.float32)
    for source in (add_bytes, path, str(path)):
        model = OnnxModel(source, SessionSettings(threads=1))
        assert model.input_names == ["x", "y"] and model.output_names == ["z"]
        (z,) = model.run({"x": x, "y": y})
        np.testing.assert_array_equal(z, x + y)
        assert model.providers[-1] == CPU
    assert OnnxModel(path, SessionSettings(threads=1)).name == "add.onnx"
    assert model.input_shapes() == {"x": [2, 3], "y": [2, 3]}


def test_garbage_model_is_a_one_line_slimvision_error():
    with pytest.raises(SlimvisionError, match="broken: onnxruntime cannot load the model"):
        OnnxModel(b"this is not an onnx model", SessionSettings(threads=1), name="broken")


def test_settings_validation():
    with pytest.raises(SlimvisionError, match="threads must be >= 1, got 0"):
        SessionSettings(threads=0)
    with pytest.raises(SlimvisionError, match="threads must be >= 1"):
        SessionSettings(threads=-2)
    with pytest.raises(SlimvisionError, match="optimization must be one of disable, basic, extended, all"):
        SessionSettings(optimization="turbo")
    options = SessionSettings(threads=3, optimization="basic").session_options()
    assert options.intra_op_num_threads == 3
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert SessionSettings().session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert SessionSettings().session_options().enable_cpu_mem_arena
    assert not SessionSettings(memory_arena=False).session_options().enable_cpu_mem_arena
    spinning = "session.intra_op.allow_spinning"
    assert SessionSettings(allow_spinning=False).session_options().get_session_config_entry(spinning) == "0"
    with pytest.raises(RuntimeError):  # not set: ONNX Runtime's default, spinning
        SessionSettings().session_options().get_session_config_entry(spinning)


@pytest.mark.parametrize("level", ["disable", "basic", "extended", "all"])
def test_every_optimization_level_runs(add_bytes, level):
    model = OnnxModel(add_bytes, SessionSettings(threads=1, optimization=level))
    (z,) = model.run({"x": np.ones((2, 3), np.float32), "y": np.ones((2, 3), np.float32)})
    assert float(z.sum()) == 12.0


def test_auto_providers_end_with_the_cpu():
    providers = resolve_providers(("auto",))
    assert providers[-1] == CPU
    assert providers.count(CPU) == 1
    assert set(providers) <= set(ort.get_available_providers())
    assert resolve_providers((CPU,)) == [CPU]


def test_unavailable_provider_falls_back_to_cpu_with_a_warning(add_bytes, caplog):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    with caplog.at_level(logging.WARNING, logger="slimvision.graph.session"):
        assert resolve_providers(("CUDAExecutionProvider",)) == [CPU]
    assert any("CUDAExecutionProvider is not available" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="slimvision.graph.session"):
        model = OnnxModel(add_bytes, SessionSettings(threads=1, providers=("CUDAExecutionProvider", CPU)))
    assert model.providers == [CPU]
    assert any(r.levelno == logging.WARNING and "CUDA" in r.getMessage() for r in caplog.records)


def test_optimised_graph_is_cached_and_reused(add_bytes, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path / "cache"))
    feeds = {"x": np.ones((2, 3), np.float32), "y": np.full((2, 3), 2.0, np.float32)}
    first = OnnxModel(add_bytes, SessionSettings(threads=1), cache_key="add-test")
    (cached,) = (tmp_path / "cache").glob(f"add-test-cpu-{machine_fingerprint()}.optimized.*.onnx")  # .<crc32>.onnx
    assert cached.stat().st_size > 0
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]  # no temporary left
    second = OnnxModel(add_bytes, SessionSettings(threads=1), cache_key="add-test")
    np.testing.assert_array_equal(first.run(feeds)[0], second.run(feeds)[0])
    # A damaged entry is ignored and rebuilt, never an error.
    cached.write_bytes(b"garbage")
    third = OnnxModel(add_bytes, SessionSettings(threads=1), cache_key="add-test")
    np.testing.assert_array_equal(third.run(feeds)[0], np.full((2, 3), 3.0, np.float32))
    assert [p.read_bytes() != b"garbage" for p in cached.parent.iterdir()] == [True]


def test_no_cache_without_a_key_or_for_other_levels(add_bytes, tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMVISION_CACHE_DIR", str(tmp_path / "cache"))
    OnnxModel(add_bytes, SessionSettings(threads=1))
    OnnxModel(add_bytes, SessionSettings(threads=1, optimization="basic"), cache_key="basic")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_machine_fingerprint_is_stable():
    assert machine_fingerprint() == machine_fingerprint()
    assert len(machine_fingerprint()) == 12
