"""GPTQ on tiny generated networks: valid codes, exact decoding, better than rounding, stored in ONNX."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from slimvision.compress.gptq import (
    GPTQSettings,
    GroupQuantized,
    choose_wide_layers,
    extra_bytes,
    layer_sensitivity,
    quantizable_layers,
    quantize_gptq,
    solve_gptq,
)
from slimvision.compress.quantize import store_weights_int4
from slimvision.errors import ConfigError, SlimvisionError
from slimvision.graph.precision import dequantize_qdq_proto


def _net(seed: int = 0) -> nn.Module:
    """A 3x3 stem, a depthwise conv, 1x1 convs (one with more inputs than a group) and a linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.Conv2d(24, 24, 3, padding=1, groups=24),
                         nn.Conv2d(24, 80, 1), nn.ReLU(), nn.Conv2d(80, 16, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def _inputs(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Correlated channels with unequal energy: where GPTQ's error compensation has something to use.
    base = torch.rand(count, 1, 12, 12, generator=generator)
    return torch.cat([base, base * 0.5 + 0.1 * torch.rand(count, 1, 12, 12, generator=generator),
                      torch.rand(count, 1, 12, 12, generator=generator) * 0.2], dim=1)


def _round_to_nearest(model: nn.Module, layers: list[GroupQuantized]) -> nn.Module:
    """The same grids as GPTQ chose, each weight rounded on its own (no error compensation)."""
    modules = dict(model.named_modules())
    for layer in layers:
        weight = modules[layer.name].weight.detach().reshape(layer.shape[0], -1).numpy()
        scales = np.repeat(layer.scales.astype(np.float32), layer.group_size, axis=1)[:, :weight.shape[1]]
        zeros = np.repeat(layer.zeros.astype(np.float32), layer.group_size, axis=1)[:, :weight.shape[1]]
        codes = np.clip(np.round(weight / scales) + zeros, 0, 15)
        with torch.no_grad():
            modules[layer.name].weight.copy_(torch.from_numpy((codes - zeros) * scales).reshape(layer.shape))
    return model


def test_only_dense_1x1_convs_and_linears_are_quantized() -> None:
    assert [name for name, _ in quantizable_layers(_net())] == ["3", "5", "9"]


def test_codes_are_4_bit_and_the_model_holds_exactly_what_they_decode_to() -> None:
    model = _net()
    layers = quantize_gptq(model, list(_inputs(32, 1).split(8)), GPTQSettings(group_size=16))
    modules = dict(model.named_modules())
    for layer in layers:
        assert layer.codes.dtype == np.uint8 and layer.codes.max() <= 15
        assert layer.scales.dtype == np.float16 and layer.zeros.max() <= 15
        assert layer.scales.shape == (layer.shape[0], -(-layer.codes.shape[1] // layer.group_size))
        np.testing.assert_array_equal(modules[layer.name].weight.detach().numpy(), layer.dequantized())
    # A layer with fewer inputs than the group size is one group.
    assert layers[2].group_size == 16 and layers[2].scales.shape == (10, 1)
    assert layers[0].stored_bytes == 80 * 24 // 2 + 2 * 80 * 2 + 80 * 2 // 2


def test_gptq_tracks_the_float_outputs_closer_than_rounding_each_weight() -> None:
    calibration, held_out = _inputs(64, 1), _inputs(32, 2)
    with torch.no_grad():
        reference = _net()(held_out)
    model = _net()
    layers = quantize_gptq(model, list(calibration.split(16)), GPTQSettings(group_size=8))
    rounded = _round_to_nearest(_net(), layers)
    with torch.no_grad():
        gptq_error = float(((model(held_out) - reference) ** 2).mean())
        rounding_error = float(((rounded(held_out) - reference) ** 2).mean())
    assert gptq_error < 0.7 * rounding_error, (gptq_error, rounding_error)


def test_solve_gptq_with_uncorrelated_inputs_is_rounding_to_nearest() -> None:
    # A diagonal H means no input's error can be moved onto another: GPTQ must round each weight.
    weight = torch.randn(6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    codes, scales, zeros = solve_gptq(weight, torch.diag(torch.linspace(1, 2, 8, dtype=torch.float64)),
                                      GPTQSettings(group_size=4))
    grid = np.repeat(scales.astype(np.float64), 4, axis=1)
    offset = np.repeat(zeros.astype(np.float64), 4, axis=1)
    np.testing.assert_array_equal(codes, np.clip(np.round(weight.numpy() / grid) + offset, 0, 15))


def test_a_dead_channel_gets_finite_codes_and_a_finite_sensitivity() -> None:
    # A row of zeros (a pruned or dead channel) and a row of near-zero weights with one exact 0:
    # a float16 scale of 0 would make their codes 0 / 0 = NaN, and GPTQ would spread the NaN.
    weight = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    weight[1] = 0.0
    weight[2] = 1e-9
    weight[2, 3] = 0.0
    inputs = torch.randn(64, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    codes, scales, zeros = solve_gptq(weight, inputs.T @ inputs, GPTQSettings(group_size=4))
    decoded = (codes.astype(np.float64) - np.repeat(zeros, 4, axis=1)) * np.repeat(scales.astype(np.float64), 4, axis=1)
    assert (scales > 0).all() and np.isfinite(decoded).all()
    np.testing.assert_allclose(decoded[1:3], 0.0, atol=1e-6)

    model, batches = _net(), list(_inputs(8, 1).split(8))
    with torch.no_grad():
        model[3].weight[5] = 0.0  # one dead output channel of the 24 -> 80 conv
        reference = model(batches[0])
    sensitivity = layer_sensitivity(model, batches, lambda net, batch: ((net(batch) - reference) ** 2).mean())
    assert all(np.isfinite(value) for value in sensitivity.values()), sensitivity


@pytest.mark.parametrize("settings", [{"bits": 1}, {"bits": 9}, {"group_size": 0}, {"damping": 0.0}, {"grid": "max"}])
def test_bad_settings_are_refused(settings) -> None:
    with pytest.raises(ConfigError):
        GPTQSettings(**settings)


def test_a_model_without_layers_or_calibration_is_refused() -> None:
    with pytest.raises(ConfigError, match="no Linear or 1x1 Conv2d"):
        quantize_gptq(nn.Sequential(nn.Conv2d(3, 3, 3)), [torch.rand(1, 3, 8, 8)])
    with pytest.raises(ConfigError, match="calibration"):
        quantize_gptq(_net(), [])


def _export(model: nn.Module, path) -> None:
    torch.onnx.export(model.eval(), (torch.rand(1, 3, 12, 12),), str(path), input_names=["image"],
                      output_names=["scores"], opset_version=17, dynamo=False)


def test_the_stored_graph_computes_what_the_quantized_module_does(tmp_path) -> None:
    model = _net()
    layers = quantize_gptq(model, list(_inputs(16, 1).split(8)), GPTQSettings(group_size=16))
    with torch.no_grad():  # what the graph stores as float16 must already be float16 in torch
        for index in (0, 2):
            model[index].weight.copy_(model[index].weight.half().float())
    _export(model, tmp_path / "float.onnx")
    stored = store_weights_int4(tmp_path / "float.onnx", tmp_path / "int4.onnx", layers)
    proto = onnx.load(str(stored))
    assert max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")) >= 21
    types = {init.name: init.data_type for init in proto.graph.initializer}
    assert sum(kind == onnx.TensorProto.UINT4 for kind in types.values()) == 2 * len(layers)  # codes + zero points
    x = _inputs(1, 5).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    graph = ort.InferenceSession(str(stored)).run(None, {"image": x})[0]
    folded_graph, counts = dequantize_qdq_proto(onnx.load(str(stored)))  # what the pipeline loads
    assert counts["weights_folded"] == len(layers)
    folded = ort.InferenceSession(folded_graph.SerializeToString()).run(None, {"image": x})[0]
    np.testing.assert_allclose(graph, expected, atol=1e-5)
    np.testing.assert_allclose(folded, expected, atol=1e-5)
    assert stored.stat().st_size < (tmp_path / "float.onnx").stat().st_size


def test_wide_layers_get_8_bit_codes_and_store_beside_4_bit_ones(tmp_path) -> None:
    model = _net()
    calibration = list(_inputs(16, 1).split(8))
    narrow = quantize_gptq(_net(), calibration, GPTQSettings(group_size=16))
    layers = quantize_gptq(model, calibration, GPTQSettings(group_size=16, layer_bits=(("5", 8),)))
    assert [layer.bits for layer in layers] == [4, 8, 4] and layers[1].codes.max() > 15
    held_out = _inputs(16, 2)
    with torch.no_grad():  # the wide layer brings the outputs closer to the float network's
        reference, narrow_model = _net()(held_out), _net()
        quantize_gptq(narrow_model, calibration, GPTQSettings(group_size=16))
        errors = [float(((net(held_out) - reference) ** 2).mean()) for net in (model, narrow_model)]
    assert errors[0] < errors[1], errors
    assert layers[1].stored_bytes - narrow[1].stored_bytes == extra_bytes(layers[1].shape, 16, 4, 8)
    with torch.no_grad():
        for index in (0, 2):
            model[index].weight.copy_(model[index].weight.half().float())
    _export(model, tmp_path / "float.onnx")
    stored = store_weights_int4(tmp_path / "float.onnx", tmp_path / "mixed.onnx", layers)
    types = [init.data_type for init in onnx.load(str(stored)).graph.initializer]
    assert types.count(onnx.TensorProto.UINT4) == 4 and types.count(onnx.TensorProto.UINT8) == 2
    x = _inputs(1, 5).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    folded_graph, _ = dequantize_qdq_proto(onnx.load(str(stored)))
    np.testing.assert_allclose(ort.InferenceSession(str(stored)).run(None, {"image": x})[0], expected, atol=1e-5)
    np.testing.assert_allclose(ort.InferenceSession(folded_graph.SerializeToString()).run(None, {"image": x})[0],
                               expected, atol=1e-5)
    with pytest.raises(ConfigError, match="no quantizable layer"):
        quantize_gptq(_net(), calibration, GPTQSettings(layer_bits=(("2", 8),)))


def test_sensitivity_is_measured_in_output_space_and_leaves_the_model_as_it_was() -> None:
    model, batches = _net(), list(_inputs(16, 1).split(8))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        reference = [model(batch) for batch in batches]
    lookup = {id(batch): target for batch, target in zip(batches, reference)}

    def loss(net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return ((net(batch) - lookup[id(batch)]) ** 2).mean()

    coarse = layer_sensitivity(model, batches, loss, bits=2, group_size=16)
    fine = layer_sensitivity(model, batches, loss, bits=8, group_size=16)
    assert list(coarse) == ["3", "5", "9"] and all(value > 0 for value in coarse.values())
    assert all(fine[name] < coarse[name] for name in coarse)  # finer rounding hurts less
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


def test_the_budget_goes_to_the_most_sensitivity_per_byte() -> None:
    sensitivity = {"a": 4.0, "b": 3.0, "c": 1.0, "d": 0.0}
    costs = {"a": 400, "b": 100, "c": 50, "d": 1}
    assert choose_wide_layers(sensitivity, costs, 160) == ["b", "c"]  # 0.03 and 0.02 per byte beat 0.01
    assert choose_wide_layers(sensitivity, costs, 600) == ["a", "b", "c"]  # d does not hurt: never chosen
    assert choose_wide_layers(sensitivity, costs, 0) == []
    assert extra_bytes((8, 32, 1, 1), 16, 4, 8) == 8 * 32 // 2 + 8 * 2 // 2


def test_codes_pack_two_per_byte_low_nibble_first(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 5, 1, bias=False))  # 15 codes: an odd count pads the last byte
    layers = quantize_gptq(model, [torch.rand(2, 3, 4, 4)], GPTQSettings(group_size=3))
    torch.onnx.export(model, (torch.rand(1, 3, 4, 4),), str(tmp_path / "f.onnx"), input_names=["x"],
                      opset_version=17, dynamo=False)
    proto = onnx.load(str(store_weights_int4(tmp_path / "f.onnx", tmp_path / "q.onnx", layers)))
    codes = next(init for init in proto.graph.initializer if init.name.endswith("_uint4"))
    raw = np.frombuffer(codes.raw_data, np.uint8)
    flat = layers[0].codes.ravel()
    assert raw.size == 8
    np.testing.assert_array_equal(raw & 0x0F, np.append(flat[0::2], [])[:8])
    np.testing.assert_array_equal(raw[:7] >> 4, flat[1::2])


def test_a_graph_not_exported_from_the_quantized_module_is_refused_and_nothing_written(tmp_path) -> None:
    model = _net()
    layers = quantize_gptq(model, [_inputs(4, 1)], GPTQSettings(group_size=16))
    _export(_net(seed=1), tmp_path / "other.onnx")
    with pytest.raises(SlimvisionError, match="no Conv/Gemm weight equals"):
        store_weights_int4(tmp_path / "other.onnx", tmp_path / "int4.onnx", layers)
    assert not (tmp_path / "int4.onnx").exists()


def test_tune_scales_lowers_the_loss_and_leaves_codes_and_a_storable_model(tmp_path) -> None:
    from slimvision.compress.gptq import tune_scales

    calibration, held_out = _inputs(32, 1), _inputs(16, 2)
    reference = _net()
    with torch.no_grad():
        target = reference(held_out)
    model = _net()
    layers = quantize_gptq(model, list(calibration.split(8)), GPTQSettings(group_size=8))
    codes_before = [layer.codes.copy() for layer in layers]
    with torch.no_grad():
        error_before = float(((model(held_out) - target) ** 2).mean())

    def loss(student: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = reference(batch)
        return ((student(batch) - wanted) ** 2).mean()

    losses = tune_scales(model, layers, [calibration[i % 4 * 8:(i % 4 + 1) * 8] for i in range(60)], loss, 1e-3)
    assert len(losses) == 60 and np.mean(losses[-5:]) < np.mean(losses[:5])
    with torch.no_grad():
        error_after = float(((model(held_out) - target) ** 2).mean())
    assert error_after < error_before  # on inputs the tuning never saw
    modules = dict(model.named_modules())
    for layer, codes in zip(layers, codes_before):
        np.testing.assert_array_equal(layer.codes, codes)  # only the scales moved
        assert layer.scales.dtype == np.float16
        assert not hasattr(modules[layer.name], "parametrizations")
        np.testing.assert_array_equal(modules[layer.name].weight.detach().numpy(), layer.dequantized())
    assert all(parameter.requires_grad for parameter in model.parameters())  # flags restored
    with torch.no_grad():
        for index in (0, 2):
            model[index].weight.copy_(model[index].weight.half().float())
    _export(model, tmp_path / "float.onnx")
    store_weights_int4(tmp_path / "float.onnx", tmp_path / "int4.onnx", layers)  # every tuned layer still matches


def test_tune_scales_moves_an_8_bit_layer_no_further_than_a_4_bit_one_relative_to_its_scales() -> None:
    from slimvision.compress.gptq import tune_scales

    calibration = _inputs(32, 1)
    reference = _net()
    model = _net()
    layers = quantize_gptq(model, list(calibration.split(8)), GPTQSettings(group_size=8, layer_bits=(("3", 8),)))
    before = {layer.name: layer.scales.astype(np.float32) for layer in layers}

    def loss(student: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            wanted = reference(batch)
        return ((student(batch) - wanted) ** 2).mean()

    tune_scales(model, layers, [calibration[:8]] * 10, loss, 1e-4)
    moved = {layer.name: float(np.median(np.abs(layer.scales / before[layer.name] - 1))) for layer in layers}
    # Adam's steps are about the learning rate in absolute terms: without a step scaled to the
    # code range, the 8-bit layer's tiny scales would move ~17x further, relatively, than the rest.
    assert {layer.name: layer.bits for layer in layers}["3"] == 8
    assert moved["3"] < 3 * max(moved[name] for name in moved if name != "3")


def test_the_mse_grid_never_rounds_a_group_worse_and_clips_an_outlier() -> None:
    from slimvision.compress.gptq import _clipped_group_grids, _decode, _group_grids

    torch.manual_seed(0)
    weight = torch.randn(16, 128, dtype=torch.float64)
    weight[:, 5] *= 10.0  # one outlier input stretches every row's first group
    energy = torch.rand(128, dtype=torch.float64) + 0.5

    def rounded_error(scales, zeros):  # round to nearest on the grid, energy-weighted, per row and group
        scales, zeros = scales.numpy(), zeros.numpy()
        codes = np.clip(np.round(weight.numpy() / np.repeat(scales, 64, 1)) + np.repeat(zeros, 64, 1), 0, 15)
        decoded = _decode(codes.astype(np.uint8), scales.astype(np.float16), zeros.astype(np.uint8), 64)
        return ((weight.numpy() - decoded) ** 2 * energy.numpy()).reshape(16, 2, 64).sum(2)

    plain, clipped = _group_grids(weight, 4, 64), _clipped_group_grids(weight, energy, 4, 64)
    before, after = rounded_error(*plain), rounded_error(*clipped)
    assert (after <= before * (1 + 1e-9)).all() and after.sum() < 0.97 * before.sum()
    assert (clipped[0][:, 0] < plain[0][:, 0]).any()  # the outlier's group was clipped somewhere


def test_gptq_on_the_mse_grid_tracks_the_float_outputs_at_least_as_well() -> None:
    torch.manual_seed(1)
    weight = torch.randn(32, 128, dtype=torch.float64)
    weight[:, 3] *= 8.0
    inputs = torch.randn(1000, 128, dtype=torch.float64) * torch.linspace(0.2, 2.0, 128, dtype=torch.float64)
    errors = {}
    for grid in ("minmax", "mse"):
        codes, scales, zeros = solve_gptq(weight, inputs.T @ inputs, GPTQSettings(grid=grid))
        decoded = torch.from_numpy(GroupQuantized("w", codes, scales, zeros, 4, 64, (32, 128)).dequantized()).double()
        errors[grid] = float(((inputs @ (weight - decoded).T) ** 2).mean())
    assert errors["mse"] < errors["minmax"]
