"""Graph surgery on exported graphs: zero pads folded into convs, names compacted, outputs unchanged."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from slimvision.graph.surgery import compact_names, fold_pads_into_convs


def _pad_conv_graph(pads: list[int], mode: str = "constant", fill: float | None = None):
    """input (1, 2, 6, 6) -> Pad -> 3x3 Conv (2 -> 2 channels, its own pads 1 on every side)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.asarray(pads, np.int64), "pads"),
             numpy_helper.from_array(rng.normal(size=(2, 2 + pads[1] + pads[5], 3, 3)).astype(np.float32), "w")]
    pad_inputs = ["x", "pads"]
    if fill is not None:
        inits.append(numpy_helper.from_array(np.asarray(fill, np.float32), "fill"))
        pad_inputs.append("fill")
    nodes = [helper.make_node("Pad", pad_inputs, ["padded"], mode=mode),
             helper.make_node("Conv", ["padded", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 6, 6])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_fold_pads_merges_zero_spatial_pads_and_leaves_the_rest():
    x = np.random.default_rng(1).normal(size=(1, 2, 6, 6)).astype(np.float32)
    model = _pad_conv_graph([0, 0, 0, 2, 0, 0, 1, 0], fill=0.0)
    expected = _run(model, x)
    assert fold_pads_into_convs(model) == 1
    assert [node.op_type for node in model.graph.node] == ["Conv"]
    assert list(model.graph.node[0].attribute[0].ints) == [1, 3, 2, 1]  # (h, w) begins, then ends
    np.testing.assert_allclose(_run(model, x), expected, atol=1e-5)
    for unchanged in (_pad_conv_graph([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect"),
                      _pad_conv_graph([0, 0, 1, 1, 0, 0, 1, 1], fill=0.5),
                      _pad_conv_graph([0, 1, 0, 0, 0, 0, 0, 0])):  # a channel pad
        expected = _run(unchanged, x)
        fold_pads_into_convs(unchanged)
        assert "Pad" in [node.op_type for node in unchanged.graph.node]
        np.testing.assert_allclose(_run(unchanged, x), expected, atol=1e-6)



def test_compact_names_shortens_inner_names_and_keeps_inputs_outputs_and_weights(tmp_path):
    x = np.random.default_rng(2).normal(size=(1, 2, 6, 6)).astype(np.float32)
    model = _pad_conv_graph([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect")
    model.graph.node[0].name = "/a/very/long/module/path/Pad"
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    expected = _run(model, x)
    saved = compact_names(path)
    compacted = onnx.load(str(path))
    assert saved > 0
    assert [node.name for node in compacted.graph.node] == ["", ""]
    assert list(compacted.graph.node[0].output) == ["t0"]  # "padded" renamed
    assert list(compacted.graph.node[1].input) == ["t0", "w"]  # the weight keeps its name
    assert [value.name for value in compacted.graph.output] == ["y"]
    np.testing.assert_array_equal(_run(compacted, x), expected)
