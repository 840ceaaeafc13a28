"""torch -> ONNX export: parity checks, dynamic sizes, atomic writes and the artifact card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_flush_denormal(True)  # denormals slow CPU convolutions many times over

import onnxruntime as ort  # noqa: E402
from torch import nn  # noqa: E402

import slimvision  # noqa: E402
from slimvision.export.card import read_card  # noqa: E402
from slimvision.export.onnx import (  # noqa: E402
    CardInfo, ExportError, ExportParityError, ImageInput, export_onnx,
)
from slimvision.errors import ConfigError, OutputError  # noqa: E402


class TinyNet(nn.Module):
    """Conv + instance norm + nearest upsampling: the ops the style networks export."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.out = nn.Conv2d(4, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W), H and W even
        x = torch.relu(nn.functional.instance_norm(self.conv(image)))
        return torch.sigmoid(self.out(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")))


class ShapeSensitive(nn.Module):
    """Adds a constant that the tracer bakes in at the example's width: wrong at any other width."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image + float(image.shape[-1])


IMAGE = {"image": ImageInput(layout="NCHW")}
CARD = CardInfo(system="style", task="test-image", remake="pytest",
                layouts={"image": "NCHW", "output": "NCHW", "style_image": "NCHW", "style_vector": "N,1,1,D"})
DYNAMIC = {"image": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}


def _export(*args, **kwargs):
    """export_onnx with this file's card words (tests that check the card pass their own)."""
    return export_onnx(*args, card=kwargs.pop("card", CARD), **kwargs)


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_tiny_model_exports_with_dynamic_sizes_and_a_card(tmp_path):
    torch.manual_seed(0)
    model = TinyNet()
    photo = np.random.default_rng(1).random((1, 3, 20, 30), dtype=np.float32)
    report = _export(model, tmp_path / "tiny.onnx", {"image": torch.rand(1, 3, 16, 24)},
                         dynamic_axes=DYNAMIC, preprocessing=IMAGE, check_inputs=[{"image": photo}])
    assert [c.name for c in report.checks] == ["example", "random", "random-resized", "given[0]"]
    assert report.checks[2].shapes == {"image": [2, 3, 27, 41]}  # batch and both sides changed
    assert report.max_abs_diff <= 1e-5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.card.json", "tiny.onnx"]  # no temp files

    # The written graph runs at a size and batch no check used.
    x = torch.rand(3, 3, 8, 12)
    with torch.no_grad():
        np.testing.assert_allclose(_session(report.onnx_path).run(None, {"image": x.numpy()})[0], model(x).numpy(),
                                   atol=1e-5)

    card = read_card(report.card_path)
    assert (card.name, card.system, card.task, card.remake) == ("tiny", "style", "test-image", "pytest")
    assert card.files == {"graph": "tiny.onnx"}
    image = card.input("image")
    assert (image.shape, image.dtype, image.layout, image.value_range) == (
        ["batch", 3, "height", "width"], "float32", "NCHW", [0.0, 1.0])
    assert card.output("output").layout == "NCHW" and card.output("output").value_range is None
    assert card.preprocessing["image"] == {"layout": "NCHW", "size": "any", "value_range": [0.0, 1.0],
                                           "channel_order": "RGB", "mean": None, "std": None, "size_multiple": 1}
    provenance = card.provenance
    assert provenance["slimvision"] == slimvision.__version__ and provenance["torch"] == torch.__version__
    assert provenance["opset"] == 17 and provenance["source_weights"] is None
    assert provenance["model_class"].endswith("TinyNet")
    assert card.parity["max_abs_diff"] == report.max_abs_diff and card.parity["reference"] == "torch"
    import hashlib

    assert provenance["sha256"] == hashlib.sha256(report.onnx_path.read_bytes()).hexdigest()


def test_a_tensor_without_a_layout_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ExportError, match="layout of 4-d tensor 'output'"):
        _export(TinyNet(), tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)}, preprocessing=IMAGE,
                card=CardInfo(system="style", task="test-image", layouts={"image": "NCHW"}))
    assert list(tmp_path.iterdir()) == []


def test_a_size_baked_into_the_graph_fails_parity_and_writes_nothing(tmp_path):
    with pytest.raises(ExportParityError, match="random-resized"):
        _export(ShapeSensitive(), tmp_path / "bad.onnx", {"image": torch.rand(1, 3, 8, 8)},
                    dynamic_axes={"image": {2: "height", 3: "width"}}, preprocessing=IMAGE)
    assert list(tmp_path.iterdir()) == []


def test_tolerance_is_enforced(tmp_path):
    model = TinyNet()
    with pytest.raises(ExportParityError, match="tolerance 0"):
        _export(model, tmp_path / "m.onnx", {"image": torch.rand(1, 3, 16, 16) * 50}, tolerance=0.0)
    assert list(tmp_path.iterdir()) == []


def test_existing_files_need_overwrite_and_model_mode_is_restored(tmp_path):
    model = TinyNet().train()
    _export(model, tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)})
    assert model.training
    with pytest.raises(OutputError, match="exists"):
        _export(model, tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)})
    _export(model, tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)}, overwrite=True)


def test_source_weights_are_hashed_into_the_provenance(tmp_path):
    from slimvision.assets import file_sha256

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 64)
    report = _export(TinyNet(), tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)}, source_weights=weights)
    assert read_card(report.card_path).provenance["source_weights"] == [
        {"path": str(weights.resolve()), "sha256": file_sha256(weights)}]


@pytest.mark.parametrize("kwargs, message", [
    ({"dynamic_axes": {"imgae": {0: "batch"}}}, "imgae"),
    ({"preprocessing": {"other": ImageInput()}}, "preprocessing names"),
    ({"source_weights": "/no/such/weights"}, "neither a file nor a folder"),
])
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ExportError, match=message):
        _export(TinyNet(), tmp_path / "m.onnx", {"image": torch.rand(1, 3, 8, 8)}, **kwargs)
    assert not (tmp_path / "m.onnx").exists()


def test_image_input_rejects_bad_values():
    with pytest.raises(ConfigError, match="'any'"):
        ImageInput(size="auto")
    with pytest.raises(ConfigError, match="low < high"):
        ImageInput(value_range=(1.0, 0.0))
    assert ImageInput.from_dict({"size": [256, 256]}).size == (256, 256)


def test_ported_transformer_exports_as_a_drop_in_for_the_shipped_graph(tmp_path, cache_dir):
    """NHWC in/out like arbitrary_transform.onnx; checked against torch and against the shipped float graph."""
    from PIL import Image

    from slimvision.assets import STYLE_TEACHER_TRANSFORM, samples_dir
    from slimvision.graph.precision import with_float_weights
    from slimvision.models.style import NHWCStyleTransformer
    from slimvision.models.style.port import port_transformer
    from slimvision.models.weights import save_model

    teacher = port_transformer()
    folder = save_model(teacher, tmp_path / "teacher")
    with Image.open(samples_dir() / "content" / "coffee.jpg") as image:
        photo = (np.asarray(image.convert("RGB").resize((90, 60)), dtype=np.float32) / 255)[None]
    vector = np.random.default_rng(0).standard_normal((1, 1, 1, 100)).astype(np.float32)
    report = _export(
        NHWCStyleTransformer(teacher), tmp_path / "transformer.onnx",
        {"content_image": torch.rand(1, 64, 48, 3), "style_vector": torch.from_numpy(vector)},
        output_names=["stylized_image"],
        dynamic_axes={"content_image": {0: "batch", 1: "height", 2: "width"}, "style_vector": {0: "batch"},
                      "stylized_image": {0: "batch", 1: "height", 2: "width"}},
        preprocessing={"content_image": ImageInput(layout="NHWC")},
        check_inputs=[{"content_image": photo, "style_vector": vector}],
        source_weights=folder,
        card=CardInfo(system="style", task="style-transfer", layouts={"style_vector": "N,1,1,D", "stylized_image": "NHWC"}),
    )
    assert report.max_abs_diff <= 1e-4, report.summary()
    provenance = read_card(report.card_path).provenance
    assert provenance["config"]["residual_blocks"] == 5
    assert {Path(f["path"]).name for f in provenance["source_weights"]} == {"config.json",
                                                                                     "model.safetensors"}
    # Same interface and same numbers as the shipped transformer with float weights.
    shipped = _session_bytes(with_float_weights(STYLE_TEACHER_TRANSFORM.path()))
    expected = shipped.run(None, {"content_image": photo, "mobilenet_conv/Conv/BiasAdd": vector})[0]
    ours = _session(report.onnx_path).run(None, {"content_image": photo, "style_vector": vector})[0]
    assert np.abs(ours - expected).max() <= 1e-4


def _session_bytes(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])





def test_predictor_exports_with_dynamic_batch_and_refuses_dynamic_sizes(tmp_path):
    """TF "SAME" padding depends on the input's parity, which the TorchScript tracer freezes: the
    predictor exports at a fixed size (256 for the teacher) with a free batch, and the resized
    parity check refuses a free height/width instead of writing a wrong graph."""
    from slimvision.models.style import StylePredictor, StylePredictorConfig

    model = StylePredictor(StylePredictorConfig(width_multiplier=0.35, last_channels=64))
    example = {"style_image": torch.rand(1, 3, 64, 64)}
    report = _export(model, tmp_path / "predictor.onnx", example, output_names=["style_vector"],
                         preprocessing={"style_image": ImageInput(size=(64, 64))},
                         dynamic_axes={"style_image": {0: "batch"}, "style_vector": {0: "batch"}})
    assert report.checks[2].shapes == {"style_image": [2, 3, 64, 64]}
    assert report.max_abs_diff <= 1e-4, report.summary()
    assert read_card(report.card_path).preprocessing["style_image"]["size"] == [64, 64]
    with pytest.raises(ExportParityError, match="random-resized"):
        _export(model, tmp_path / "free.onnx", example,
                    dynamic_axes={"style_image": {0: "batch", 2: "height", 3: "width"}})


def test_same_padding_folds_into_the_convs_at_a_fixed_size(tmp_path):
    """At a fixed input size the stride-2 convs' TF "SAME" pads are known, so the export has no
    Pad nodes left (export_onnx has already checked the folded graph against torch)."""
    import onnx

    from slimvision.models.style import StylePredictor, StylePredictorConfig

    model = StylePredictor(StylePredictorConfig(width_multiplier=0.35, last_channels=64))
    report = _export(model, tmp_path / "predictor.onnx", {"style_image": torch.rand(1, 3, 64, 64)})
    assert report.max_abs_diff <= 1e-4, report.summary()
    ops = [node.op_type for node in onnx.load(str(report.onnx_path)).graph.node]
    assert "Pad" not in ops and "Shape" not in ops
    strided = [node for node in onnx.load(str(report.onnx_path)).graph.node
               if node.op_type == "Conv" and list(next(a.ints for a in node.attribute if a.name == "strides")) == [2, 2]]
    assert strided and all(list(next(a.ints for a in node.attribute if a.name == "pads")) == [0, 0, 1, 1]
                           for node in strided)


def test_a_size_multiple_keeps_the_resized_check_on_sizes_the_model_takes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, 12, 3, padding=1), nn.PixelShuffle(2))
    report = _export(model, tmp_path / "phases.onnx", {"image": torch.rand(1, 3, 16, 24)}, dynamic_axes=DYNAMIC,
                         preprocessing={"image": ImageInput(layout="NCHW", size_multiple=2)})
    resized = report.checks[2].shapes["image"]
    assert resized[2] % 2 == 0 and resized[3] % 2 == 0 and resized[2:] != [16, 24]
    assert read_card(report.card_path).preprocessing["image"]["size_multiple"] == 2
    with pytest.raises(ConfigError, match="size_multiple"):
        ImageInput(size_multiple=0)
