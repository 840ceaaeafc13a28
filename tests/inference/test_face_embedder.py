"""The face pipeline takes the embedder's chip, input and descriptor settings from its card."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slimvision.errors import InputError
from slimvision.graph.session import SessionSettings
from slimvision.data.face_align import DLIB_CHIP, MTCNN_DLIB_CHIP, MTCNN_TEMPLATE_5, ChipTemplate, align_face
from slimvision.inference.face_detect import Face
from slimvision.inference.face_embedder import EmbedderCard
from slimvision.inference.face_gallery import DLIB_RESNET_V1, EmbedderInfo

CARD = EmbedderCard.default_file()


def _card_data() -> dict[str, Any]:
    return json.loads(CARD.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict[str, Any], name: str = "embedder.card.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _chip_card(tmp_path: Path, size: int, layout: str = "NCHW", **chip: Any) -> Path:
    """dlib's card with another chip size / layout / chip settings (a 4-d descriptor)."""
    data = _card_data()
    data["inputs"][0].update(layout=layout, shape=["batch", 3, size, size] if layout == "NCHW"
                             else ["batch", size, size, 3])
    data["outputs"][0]["shape"] = ["batch", 4]
    data["preprocessing"]["face_chip"].update(size=size, **chip)
    return _write(tmp_path, data, f"chip-{size}-{layout}.card.json")


def _tiny_embedder(size: int, layout: str = "NCHW", input_name: str = "face_chip", dim: int = 4) -> bytes:
    """A real (small) embedding graph: per-channel means of the chip times a fixed (3, dim) matrix."""
    from onnx import TensorProto, helper, numpy_helper

    shape = ["batch", 3, size, size] if layout == "NCHW" else ["batch", size, size, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    weights = np.arange(3 * dim, dtype=np.float32).reshape(3, dim) / 10
    nodes = [helper.make_node("ReduceMean", [input_name], ["pooled"], axes=axes, keepdims=0),
             helper.make_node("MatMul", ["pooled", "weights"], ["descriptor"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", dim])],
                              [numpy_helper.from_array(weights, "weights")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


# --------------------------------------------------------------------------- the shipped card
def test_the_shipped_card_gives_dlibs_chip_input_and_descriptor():
    card = EmbedderCard.read(CARD)
    assert (card.chip_size, card.padding, card.layout, card.value_range) == (150, 0.25, "NCHW", (0.0, 1.0))
    assert (card.channel_order, card.mean, card.std) == ("RGB", None, None)
    # Galleries are opened with DLIB_RESNET_V1 by the CLI and the server: the card must agree.
    assert card.embedder == DLIB_RESNET_V1
    assert (card.chip_size, card.padding) == (DLIB_CHIP.size, DLIB_CHIP.padding)


def test_the_shipped_card_agrees_with_dlibs_file():
    """Chip side, descriptor length and threshold as dlib's .dat stores them."""
    pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.io.dlib import read_dlib_network

    network = read_dlib_network(DLIB_FACE_RESNET.path())
    card = EmbedderCard.read(CARD)
    assert card.chip_size == network.input["rows"] == network.input["cols"]
    assert card.embedder.dim == network.layers[-1].fields["outputs"]
    assert card.embedder.threshold == round(float(network.loss["distance_threshold"]), 6)


def test_chips_become_the_input_the_card_asks_for():
    chips = np.random.default_rng(0).integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    card = EmbedderCard.read(CARD)
    # dlib's: NCHW RGB pixel / 255, exactly as the pipeline always computed it.
    expected = np.ascontiguousarray(chips.astype(np.float32).transpose(0, 3, 1, 2) / 255.0)
    assert card.to_input(chips).tobytes() == expected.tobytes()
    other = EmbedderCard(card.path, card.card, 6, 0.0, "NHWC", (-1.0, 1.0), "BGR", (0.5, 0.25, 0.0),
                         (0.5, 0.5, 2.0), card.embedder)
    batch = other.to_input(chips)
    assert batch.shape == (2, 6, 6, 3) and batch.dtype == np.float32 and batch.flags.c_contiguous
    scaled = chips[..., ::-1].astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(batch, (scaled - [0.5, 0.25, 0.0]) / [0.5, 0.5, 2.0], atol=1e-6)


# --------------------------------------------------------------------------- cards that cannot be used
@pytest.mark.parametrize("change, problem", [
    (lambda d: d["preprocessing"].pop("descriptor"), "no 'descriptor' object"),
    (lambda d: d["preprocessing"].pop("face_chip"), "no 'face_chip' object"),
    (lambda d: d["preprocessing"]["face_chip"].update(size=112), "has shape"),
    (lambda d: d["preprocessing"]["face_chip"].pop("padding"), "padding must be a number"),
    (lambda d: d["preprocessing"]["face_chip"].update(mean=[0.5, 0.5, 0.5]), "both mean and std"),
    (lambda d: d["inputs"][0].update(layout="CHW"), "layout 'CHW'"),
    (lambda d: d["inputs"][0].update(value_range=None), "no value range"),
    (lambda d: d["outputs"][0].update(shape=["batch"]), "descriptors are [batch, dim]"),
    (lambda d: d["preprocessing"]["descriptor"].update(distance="manhattan"), "distance must be one of"),
    (lambda d: d["preprocessing"]["descriptor"].pop("threshold"), "threshold must be > 0"),
    (lambda d: d["preprocessing"]["descriptor"].update(gallery_version=1), "gallery_version must be"),
])
def test_a_card_the_pipeline_cannot_use_is_an_error_naming_it(tmp_path, change, problem):
    data = _card_data()
    change(data)
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match=f"embedder card: .*{re.escape(problem)}") as error:
        EmbedderCard.read(path)
    assert error.value.path == str(path)


# --------------------------------------------------------------------------- the pipeline follows the card
def test_the_recognizer_cuts_and_feeds_chips_as_its_card_says(tmp_path):
    """A 112 px NHWC card: the template is MTCNN's points at 112 px and the card's padding, and the
    network gets those chips in NHWC, scaled into the card's range."""
    from slimvision.inference.faces import FaceRecognizer

    card = _chip_card(tmp_path, 112, "NHWC", padding=0.1)
    data = json.loads(card.read_text())
    data["inputs"][0]["value_range"] = [-1.0, 1.0]
    card = _write(tmp_path, data, "nhwc.card.json")
    recognizer = FaceRecognizer(SessionSettings(threads=1), model=_tiny_embedder(112, "NHWC"), card=card)
    assert recognizer.template == ChipTemplate("dlib-face-resnet-v1-chip-from-mtcnn", MTCNN_TEMPLATE_5, 112, 0.1)
    assert recognizer.embedder == EmbedderInfo("dlib-resnet", "1", 4, "euclidean", 0.6)
    image = np.random.default_rng(1).integers(0, 256, (200, 220, 3), dtype=np.uint8)
    points = np.array([[80, 90], [130, 88], [105, 120], [85, 145], [128, 143]], float)
    face = Face((60, 60, 150, 170), 0.99, points)
    descriptor = recognizer.embed(image, [face])
    chip = align_face(image, points, recognizer.template).astype(np.float64)
    expected = (chip / 255 * 2 - 1).mean(axis=(0, 1)) @ (np.arange(12).reshape(3, 4) / 10)
    np.testing.assert_allclose(descriptor[0], expected, atol=1e-5)


def test_the_default_recognizer_is_dlibs_chip_and_gallery_identity():
    pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")
    from slimvision.inference.faces import FaceRecognizer

    recognizer = FaceRecognizer(SessionSettings(threads=1))
    assert (recognizer.template.points, recognizer.template.size, recognizer.template.padding) == \
        (MTCNN_DLIB_CHIP.points, MTCNN_DLIB_CHIP.size, MTCNN_DLIB_CHIP.padding)
    assert recognizer.embedder == DLIB_RESNET_V1 and recognizer.threshold == 0.6


@pytest.mark.parametrize("graph, problem", [
    (lambda: _tiny_embedder(112), "input 'face_chip' is float32 ['batch', 3, 112, 112]; its card says float32 "
                                  "['batch', 3, 150, 150]"),
    (lambda: _tiny_embedder(150, input_name="image"), "inputs are ['image']; its card says ['face_chip']"),
    (lambda: _tiny_embedder(150, dim=4), "output 'descriptor' is float32 ['batch', 4]; its card says float32 "
                                         "['batch', 128]"),
])
def test_a_graph_that_differs_from_its_card_is_an_error_naming_the_card(graph, problem):
    from slimvision.inference.faces import FaceRecognizer

    with pytest.raises(InputError) as error:
        FaceRecognizer(SessionSettings(threads=1), model=graph())
    assert error.value.path == str(CARD) and problem in str(error.value)


def test_a_template_or_embedder_that_differs_from_the_card_is_refused(tmp_path):
    from slimvision.inference.faces import FaceRecognizer

    graph = _tiny_embedder(150, dim=128)
    with pytest.raises(InputError, match="cuts 112 px chips; the card's network takes 150 px"):
        FaceRecognizer(model=graph, template=ChipTemplate("small", MTCNN_TEMPLATE_5, 112, 0.25))
    with pytest.raises(InputError, match="makes 512-d cosine descriptors; the card's network makes 128-d euclidean"):
        FaceRecognizer(model=graph, embedder=EmbedderInfo("arcface", "1", 512, "cosine", 0.4))
    # A calibration of one's own (same length and metric) is kept.
    mine = EmbedderInfo("dlib-resnet", "1", 128, "euclidean", 0.5)
    assert FaceRecognizer(model=graph, embedder=mine).threshold == 0.5
