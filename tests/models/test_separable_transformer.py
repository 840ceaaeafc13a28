"""The depthwise-separable transformer student: same interface, a fraction of the work."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from slimvision.compress.prune import count_params_and_macs  # noqa: E402
from slimvision.errors import ConfigError  # noqa: E402
from slimvision.models.style import StyleTransformer, StyleTransformerConfig  # noqa: E402
from slimvision.models.style.transformer import ReflectConv  # noqa: E402
from slimvision.models.weights import load_model, save_model  # noqa: E402


def test_separable_student_is_smaller_and_cheaper_with_the_same_interface():
    content, style = torch.rand(1, 3, 64, 48), torch.randn(1, 100)
    teacher = StyleTransformer(StyleTransformerConfig())
    student = StyleTransformer(StyleTransformerConfig(separable=("contract", "residual", "expand")))
    out = student(content, style)
    assert out.shape == teacher(content, style).shape == (1, 3, 64, 48)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    teacher_params, teacher_macs = count_params_and_macs(teacher, (content, style))
    student_params, student_macs = count_params_and_macs(student, (content, style))
    assert student_macs < 0.6 * teacher_macs and student_params < teacher_params


def test_edges_stay_standard_and_the_rest_splits():
    student = StyleTransformer(StyleTransformerConfig(separable=("contract", "residual", "expand")))
    assert not student.contract[0].separable and all(layer.separable for layer in student.contract[1:])
    assert all(conv.conv.separable for block in student.residual for conv in (block.conv1, block.conv2))
    assert not student.expand[-1].conv.separable and all(layer.conv.separable for layer in student.expand[:-1])
    only_residual = StyleTransformer(StyleTransformerConfig(separable=("residual",)))
    assert not any(layer.separable for layer in only_residual.contract)
    with pytest.raises(ValueError, match="separable"):
        student.main_convs()
    with_edges = StyleTransformer(StyleTransformerConfig(separable=("residual", "first", "last")))
    assert with_edges.contract[0].separable and with_edges.expand[-1].conv.separable
    assert not with_edges.contract[1].separable and not with_edges.expand[0].conv.separable


def test_separable_conv_matches_its_definition():
    torch.manual_seed(0)
    layer = ReflectConv(4, 6, 3, stride=2, separable=True)
    x = torch.rand(1, 4, 9, 9)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    expected = layer.pointwise(torch.nn.functional.conv2d(padded, layer.depthwise.weight, stride=2, groups=4))
    torch.testing.assert_close(layer(x), expected)
    assert layer.depthwise.weight.shape == (4, 1, 3, 3)


def test_config_round_trip_and_validation(tmp_path):
    config = StyleTransformerConfig(separable=("residual", "expand"))
    model = StyleTransformer(config)
    loaded = load_model(save_model(model, tmp_path / "student"))
    assert loaded.config == config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="separable parts must be"):
        StyleTransformerConfig(separable=("decoder",))
