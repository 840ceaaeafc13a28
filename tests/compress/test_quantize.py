"""Post-training quantization on tiny generated models: smaller files, outputs that still agree."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from slimvision.compress.quantize import (
    compare_models,
    cpu_has_vnni,
    convert_fp16,
    quantization_report,
    quantize_int8_dynamic,
    quantize_int8_static,
    quantize_weights_int8,
    store_weights_fp16,
)
from slimvision.errors import InputError, OutputError, SlimvisionError


def _conv_net(path, channels: int = 32, seed: int = 0):
    """conv3x3(3->C) -> relu -> conv3x3(C->C) -> relu -> conv1x1(C->3); filters of unequal scale."""
    rng = np.random.default_rng(seed)

    def weight(out_c, in_c, k, name):
        # Per-output-channel magnitudes spanning 30x: where per-channel scales matter.
        gains = np.geomspace(0.05, 1.5, out_c).astype(np.float32)[:, None, None, None]
        w = (rng.standard_normal((out_c, in_c, k, k)) * gains / np.sqrt(in_c * k * k)).astype(np.float32)
        return numpy_helper.from_array(w, name)

    inits = [weight(channels, 3, 3, "w1"), weight(channels, channels, 3, "w2"), weight(3, channels, 1, "w3"),
             numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32) * 0.1, "b1")]
    pads = [helper.make_attribute("pads", [1, 1, 1, 1])]
    conv1 = helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1")
    conv1.attribute.extend(pads)
    conv2 = helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2")
    conv2.attribute.extend(pads)
    nodes = [conv1, helper.make_node("Relu", ["c1"], ["r1"], name="relu1"), conv2,
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3"], ["out"], name="conv3")]
    graph = helper.make_graph(nodes, "tiny_conv",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _feeds(count: int, seed: int, size: int = 24):
    rng = np.random.default_rng(seed)
    return [{"image": rng.random((1, 3, size, size), dtype=np.float32)} for _ in range(count)]


@pytest.fixture()
def conv_net(tmp_path):
    return _conv_net(tmp_path / "float.onnx")


def test_static_int8_is_smaller_and_agrees(conv_net, tmp_path):
    out = quantize_int8_static(conv_net, _feeds(16, 1), tmp_path / "int8.onnx")
    model = onnx.load(str(out))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6  # QDQ format
    report = quantization_report(conv_net, out, _feeds(6, 2), method="static int8")
    assert report.size_ratio < 0.45  # int8 weights are a quarter of float32, plus scales
    assert report.agreement.mean_cosine > 0.99 and report.agreement.relative_max_diff < 0.1
    assert "static int8" in report.summary() and report.to_dict()["agreement"]["samples"] == 6


def test_per_channel_scales_follow_the_filters(conv_net, tmp_path):
    per_channel = quantize_int8_static(conv_net, _feeds(16, 1), tmp_path / "pc.onnx", reduce_range=True)
    per_tensor = quantize_int8_static(conv_net, _feeds(16, 1), tmp_path / "pt.onnx", per_channel=False,
                                      reduce_range=True)
    scales = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(per_channel)).graph.initializer}
    w2_scale = next(v for k, v in scales.items() if k.startswith("w2") and "scale" in k)
    assert w2_scale.shape == (32,) and w2_scale.max() / w2_scale.min() > 10  # one scale per filter
    test = _feeds(6, 3)
    assert (compare_models(conv_net, per_channel, test).mean_abs_diff
            < compare_models(conv_net, per_tensor, test).mean_abs_diff)


@pytest.mark.skipif(cpu_has_vnni(), reason="full-range int8 weights only saturate without VNNI")
def test_reduced_range_avoids_saturation_without_vnni(conv_net, tmp_path):
    """u8 x s8 pair sums saturate at 16 bits on AVX2: 7-bit weights keep the outputs right."""
    full = quantize_int8_static(conv_net, _feeds(16, 1), tmp_path / "full.onnx", reduce_range=False)
    auto = quantize_int8_static(conv_net, _feeds(16, 1), tmp_path / "auto.onnx")  # picks 7-bit here
    test = _feeds(6, 2)
    assert compare_models(conv_net, auto, test).mean_abs_diff < 0.5 * compare_models(conv_net, full, test).mean_abs_diff


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method_runs(conv_net, tmp_path, method):
    out = quantize_int8_static(conv_net, _feeds(8, 1), tmp_path / f"{method}.onnx", method=method)
    assert compare_models(conv_net, out, _feeds(2, 4)).mean_cosine > 0.97


def test_excluded_nodes_stay_float(conv_net, tmp_path):
    out = quantize_int8_static(conv_net, _feeds(8, 1), tmp_path / "ex.onnx", exclude_nodes=["conv3"])
    inputs_of_conv3 = next(n for n in onnx.load(str(out)).graph.node if n.name == "conv3").input
    assert "w3" in inputs_of_conv3  # the float weight, not a DequantizeLinear output


def test_fp16_halves_the_file_and_keeps_float32_io(conv_net, tmp_path):
    out = convert_fp16(conv_net, tmp_path / "fp16.onnx")
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    report = quantization_report(conv_net, out, _feeds(3, 5), method="fp16")
    assert 0.4 < report.size_ratio < 0.65
    assert report.agreement.relative_max_diff < 0.01


def test_int8_weight_storage_folds_back_to_float_at_load(conv_net, tmp_path):
    from pathlib import Path

    from slimvision.graph.precision import dequantize_qdq_proto

    out = quantize_weights_int8(conv_net, tmp_path / "w8.onnx")
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node].count("DequantizeLinear") == 3
    assert {i.data_type for i in model.graph.initializer if i.name.endswith("_int8")} == {TensorProto.INT8}
    assert "b1" in {i.name for i in model.graph.initializer}  # biases stay float
    report = quantization_report(conv_net, out, _feeds(3, 6), method="int8-weights")
    assert report.size_ratio < 0.4
    assert report.agreement.relative_max_diff < 0.02  # per-channel: the 30x-weaker filters keep their detail
    folded, counts = dequantize_qdq_proto(onnx.load(str(out)))
    assert counts == {"weights_folded": 3, "qdq_nodes_removed": 0}
    assert "DequantizeLinear" not in {n.op_type for n in folded.graph.node}
    # Per-channel scale: each filter's largest weight is stored as +-127.
    values = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1_int8"))
    assert (np.abs(values).reshape(values.shape[0], -1).max(axis=1) == 127).all()
    assert Path(conv_net).read_bytes() == Path(tmp_path / "float.onnx").read_bytes()


def test_fp16_weight_storage_keeps_float_compute(conv_net, tmp_path):
    out = store_weights_fp16(conv_net, tmp_path / "w16.onnx")
    model = onnx.load(str(out))
    assert [n.op_type for n in model.graph.node].count("Cast") == 3
    assert {i.data_type for i in model.graph.initializer if i.name.endswith("_fp16")} == {TensorProto.FLOAT16}
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    report = quantization_report(conv_net, out, _feeds(3, 7), method="fp16-weights")
    assert 0.45 < report.size_ratio < 0.6
    assert report.agreement.relative_max_diff < 2e-3


def test_dynamic_int8_on_a_matmul_head(tmp_path):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((128, 100)).astype(np.float32) / 11, "head_w")
    graph = helper.make_graph([helper.make_node("MatMul", ["features", "head_w"], ["vector"], name="head")], "head",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 128])],
                              [helper.make_tensor_value_info("vector", TensorProto.FLOAT, ["n", 100])], [weight])
    source = tmp_path / "head.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    out = quantize_int8_dynamic(source, tmp_path / "head.int8.onnx")
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(out)).graph.node}
    feeds = [{"features": rng.standard_normal((4, 128)).astype(np.float32)} for _ in range(3)]
    assert quantization_report(source, out, feeds).agreement.mean_cosine > 0.99


def test_bad_requests_fail_clearly_and_write_nothing(conv_net, tmp_path):
    with pytest.raises(InputError, match="missing.onnx: model file not found"):
        quantize_int8_static(tmp_path / "missing.onnx", _feeds(1, 0), tmp_path / "q.onnx")
    with pytest.raises(SlimvisionError, match="calibration method must be one of"):
        quantize_int8_static(conv_net, _feeds(1, 0), tmp_path / "q.onnx", method="magic")
    with pytest.raises(OutputError):  # never over the input
        quantize_int8_static(conv_net, _feeds(1, 0), conv_net, overwrite=True)
    (tmp_path / "exists.onnx").write_bytes(b"keep")
    with pytest.raises(OutputError, match="exists"):
        convert_fp16(conv_net, tmp_path / "exists.onnx")
    assert (tmp_path / "exists.onnx").read_bytes() == b"keep"
    with pytest.raises(SlimvisionError, match="at least one input"):
        compare_models(conv_net, conv_net, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.onnx", "float.onnx"]


# --------------------------------------------------------------------------- the static int8 card's parity
def _with_card(model):
    """Give ``model`` an artifact card (image in [0, 1], free size), as an export would."""
    from slimvision.export.card import ArtifactCard, TensorSpec, card_path, write_card

    image = TensorSpec("image", [1, 3, "h", "w"], "float32", "NCHW", [0.0, 1.0])
    out = TensorSpec("out", [1, 3, "h", "w"], "float32", "NCHW", None)
    write_card(ArtifactCard(name="tiny", system="style", task="test", files={"graph": model.name}, inputs=[image],
                            outputs=[out], preprocessing={}, licence="MIT", provenance={}, parity={}, remake="-"),
               card_path(model))
    return model


def _parity(path):
    from slimvision.export.card import card_path, read_card

    return read_card(card_path(path)).parity


def test_static_int8_card_parity_is_measured_on_a_seeded_held_out_draw(conv_net, tmp_path):
    from slimvision.compress.quantize import PARITY_FEEDS, PARITY_SEED, card_feeds
    from slimvision.export.card import card_path, read_card

    calibration = _feeds(16, 1)
    out = quantize_int8_static(_with_card(conv_net), calibration, tmp_path / "int8.onnx")
    parity = _parity(out)
    assert parity["inputs"].startswith(f"held out: {PARITY_FEEDS} random feeds (seed {PARITY_SEED})")
    assert parity["inputs"].endswith("none used for calibration")
    held_out = card_feeds(read_card(card_path(conv_net)), PARITY_FEEDS, seed=PARITY_SEED,
                          shapes={"image": (1, 3, 24, 24)})
    assert not any(np.array_equal(h["image"], c["image"]) for h in held_out for c in calibration)
    expected = compare_models(conv_net, out, held_out)
    assert (parity["max_abs_diff"], parity["mean_cosine"]) == (expected.max_abs_diff, expected.mean_cosine)
    on_calibration = compare_models(conv_net, out, calibration[:PARITY_FEEDS])
    assert parity["max_abs_diff"] != on_calibration.max_abs_diff  # not the calibration figures


def test_static_int8_card_parity_on_given_feeds_leaves_calibration_feeds_out(conv_net, tmp_path):
    calibration, held_out = _feeds(16, 1), _feeds(3, 2)
    out = quantize_int8_static(_with_card(conv_net), calibration, tmp_path / "int8.onnx",
                               parity=calibration[:2] + held_out)
    parity = _parity(out)
    assert parity["inputs"] == "held out: feeds given for the parity check; none used for calibration"
    assert parity["max_abs_diff"] == compare_models(conv_net, out, held_out).max_abs_diff
    with pytest.raises(SlimvisionError, match="every parity feed is also a calibration feed"):
        quantize_int8_static(conv_net, calibration, tmp_path / "again.onnx", parity=calibration[:4])
    assert not (tmp_path / "again.onnx").exists()
