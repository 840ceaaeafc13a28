"""The float variant of the int8 QDQ transformer: what the rewrite folds, and what it computes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from PIL import Image
from skimage.metrics import structural_similarity

from slimvision.assets import STYLE_TEACHER_TRANSFORM, samples_dir
from slimvision.errors import SlimvisionError
from slimvision.graph.precision import dequantize_qdq_proto, float_graph_key, with_float_weights
from slimvision.io.images import load_image
from tests.conftest import plain_session, transform_feeds
from slimvision.inference.style import StyleTransferPipeline, StyleVector, artifact_for



def _tiny_qdq_conv(per_channel: bool) -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 w), DQ(int32 b)) -> y, small enough to check by hand."""
    weight = np.array([[[[2]]], [[[-3]]]], dtype=np.int8)  # (2, 1, 1, 1)
    scale = np.array([0.5, 0.25] if per_channel else 0.5, dtype=np.float32)
    zero = np.zeros_like(scale, dtype=np.int8)
    bias = np.array([4, -8], dtype=np.int32)
    inits = [numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(scale, "w_scale"),
             numpy_helper.from_array(zero, "w_zero"), numpy_helper.from_array(bias, "b_q"),
             numpy_helper.from_array(np.array([0.125, 0.0625], dtype=np.float32) if per_channel
                                     else np.array(0.125, dtype=np.float32), "b_scale"),
             numpy_helper.from_array(np.array(0.1, dtype=np.float32), "x_scale"),
             numpy_helper.from_array(np.array(0, dtype=np.uint8), "x_zero")]
    axis = [helper.make_attribute("axis", 0)] if per_channel else []
    dq_w = helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dq_w")
    dq_w.attribute.extend(axis)
    dq_b = helper.make_node("DequantizeLinear", ["b_q", "b_scale"], ["b"], name="dq_b")
    dq_b.attribute.extend([helper.make_attribute("axis", 0)] if per_channel else [])
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="q_x"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dq_x"),
             dq_w, dq_b, helper.make_node("Conv", ["x_dq", "w", "b"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_dequantize_folds_weights_and_removes_activation_rounding(per_channel):
    model, counts = dequantize_qdq_proto(_tiny_qdq_conv(per_channel))
    assert counts == {"weights_folded": 2, "qdq_nodes_removed": 2}
    assert {n.op_type for n in model.graph.node} == {"Identity", "Conv"}
    onnx.checker.check_model(model)
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    expected_w = np.array([1.0, -0.75] if per_channel else [1.0, -1.5], dtype=np.float32).reshape(2, 1, 1, 1)
    np.testing.assert_array_equal(weights["w"], expected_w)
    np.testing.assert_array_equal(weights["b"], [0.5, -0.5] if per_channel else [0.5, -1.0])
    assert not {"w_q", "b_q", "w_scale"} & set(weights)  # the int8 constants are gone
    # The activation is no longer rounded to steps of 0.1: 0.123 passes through exactly.
    x = np.full((1, 1, 2, 2), 0.123, dtype=np.float32)
    (y,) = plain_session(model.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(y[0, :, 0, 0], 0.123 * expected_w.ravel() + weights["b"], rtol=1e-6)


@pytest.fixture(scope="module")
def float_fixed_384() -> bytes:
    """The float variant *without* freed H/W, to prove freeing them changes nothing."""
    model, counts = dequantize_qdq_proto(onnx.load(str(STYLE_TEACHER_TRANSFORM.path())))
    assert counts["weights_folded"] > 10 and counts["qdq_nodes_removed"] > 10
    return model.SerializeToString()


def test_float_graph_has_no_quantization_left(cache_dir):
    model = onnx.load_from_string(with_float_weights(STYLE_TEACHER_TRANSFORM.path()))
    ops = {node.op_type for node in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"}
    assert all(init.data_type != onnx.TensorProto.INT8 for init in model.graph.initializer)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == [1, "height", "width", 3]
    assert len(list(cache_dir.glob(f"{float_graph_key(STYLE_TEACHER_TRANSFORM.path())}.*.onnx"))) == 1  # .<crc32>.onnx


def test_float_pipeline_matches_the_fixed_float_graph_at_384(pipeline_fp32, float_fixed_384):
    fixed = plain_session(float_fixed_384)
    feeds = transform_feeds(fixed, 7)
    (expected,) = fixed.run(None, feeds)
    (got,) = pipeline_fp32.transform.run(feeds)
    assert np.abs(got - expected).max() < 1e-5


def test_float_and_int8_paint_the_same_picture(pipeline, pipeline_fp32):
    # On real pictures (the bundled samples) the two agree at SSIM 0.84-0.95 with a mean
    # difference of 3-9 levels in 255; synthetic noise textures differ more (0.66).
    photo = load_image(samples_dir() / "content" / "chelsea_cat.jpg")
    photo = np.asarray(Image.fromarray(photo).resize((256, 256), Image.Resampling.BILINEAR))
    vector = pipeline.resolve_style(samples_dir() / "styles" / "starry_night.jpg").values
    int8 = pipeline.stylize_with_vector(photo, vector)
    fp32 = pipeline_fp32.stylize_with_vector(photo, vector)
    assert int8.shape == fp32.shape == photo.shape
    assert not np.array_equal(int8, fp32)  # the float variant really runs a different graph
    similarity = structural_similarity(int8, fp32, channel_axis=2, data_range=255)
    assert similarity > 0.85, similarity  # 0.905 here


def test_the_teacher_defaults_to_the_float_variant_and_vectors_mix(pipeline, pipeline_fp32, style_image):
    assert artifact_for("teacher") == "magenta-arbitrary-v1-fp32" == pipeline_fp32.artifact.name
    assert pipeline.artifact.precision == "int8" and pipeline_fp32.artifact.precision == "fp32"
    from_int8 = pipeline.style_vector(style_image)
    from_fp32 = pipeline_fp32.style_vector(style_image)
    # One predictor file serves both: the float teacher runs it without rounding its activations
    # (what the students were made against), so the vectors differ a little, in one space.
    assert not np.array_equal(from_int8.values, from_fp32.values)
    cosine = from_int8.values @ from_fp32.values / np.linalg.norm(from_int8.values) / np.linalg.norm(from_fp32.values)
    assert cosine > 0.99, cosine
    assert from_int8.model == from_fp32.model == "magenta-arbitrary-v1"
    assert pipeline_fp32.resolve_style(StyleVector(from_int8.values, {"model": "magenta-arbitrary-v1-int8"}))
    assert pipeline.resolve_style(StyleVector(from_int8.values, {"model": "magenta-arbitrary-v1-fp32"}))
    with pytest.raises(SlimvisionError, match="computed by 'some-other-model'"):
        pipeline_fp32.resolve_style(StyleVector(from_int8.values, {"model": "some-other-model"}))


def test_unknown_artifact_names_the_known_ones():
    with pytest.raises(SlimvisionError, match="magenta-arbitrary-v1-fp32"):
        StyleTransferPipeline("magenta-arbitrary-v1-int4")
