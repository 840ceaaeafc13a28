"""The dlib face-embedding teacher without dlib: the .dat reader, the torch port and the torch-free
ONNX graph, each checked against dlib itself (dlib-bin, a test dependency) on real face chips."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")

from slimvision.assets import DLIB_FACE_RESNET, samples_dir  # noqa: E402
from slimvision.io.dlib import DlibFormatError, read_dlib_network  # noqa: E402
from slimvision.models.faces.dlib_port import load_dlib_resnet  # noqa: E402
from slimvision.models.faces.dlib_resnet import add_zero_padded  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    torch.set_flush_denormal(True)  # dlib's weights hold denormals: 10x slower without this
    return load_dlib_resnet(DLIB_FACE_RESNET.path())


@pytest.fixture(scope="module")
def dlib_chips():
    """(150 px face chips cut by dlib itself, dlib's descriptors) for the real photos we have."""
    dlib = pytest.importorskip("dlib", reason="dlib-bin is a test dependency")
    import matplotlib
    from PIL import Image

    models = DLIB_FACE_RESNET.path().parent
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(DLIB_FACE_RESNET.path()))
    photos = [samples_dir() / "content" / "astronaut.jpg",
              Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]
    chips, descriptors = [], []
    for photo in photos:
        image = np.asarray(Image.open(photo).convert("RGB"))
        for box in detector(image, 1):
            chip = dlib.get_face_chip(image, landmarks(image, box), size=150, padding=0.25)
            chips.append(chip)
            descriptors.append(np.array(recogniser.compute_face_descriptor(chip), np.float32))
    assert len(chips) >= 2
    return np.stack(chips), np.stack(descriptors)


def _as_input(chips: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((chips.astype(np.float32) / 255).transpose(0, 3, 1, 2))


def test_the_reader_reads_every_layer_and_every_byte():
    network = read_dlib_network(DLIB_FACE_RESNET.path())
    kinds = [layer.kind for layer in network.layers]
    assert kinds.count("con") == kinds.count("affine") == kinds.count("relu") == 29
    assert kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5 and kinds[-1] == "fc"
    assert network.input["rows"] == network.input["cols"] == 150
    assert network.input["pixel_mean"] == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert network.loss["distance_threshold"] == pytest.approx(0.6)
    stem = network.layers[0]
    assert stem.fields["filters_shape"] == (32, 3, 7, 7) and stem.params.size == 32 * 3 * 49 + 32


@pytest.mark.parametrize("damage, message", [(lambda data: data[: len(data) // 2], "ends early"),
                                             (lambda data: data + b"\x01\x00", "bytes left"),
                                             (lambda data: b"\x01\x01\x01\x05hello" + data[20:], "loss layer")])
def test_a_damaged_file_is_one_clear_error_naming_it(tmp_path, damage, message):
    broken = tmp_path / "broken.dat"
    broken.write_bytes(damage(DLIB_FACE_RESNET.path().read_bytes()))
    with pytest.raises(DlibFormatError, match=f"broken.dat.*{message}"):
        read_dlib_network(broken)


def test_shortcuts_add_with_zero_padding_like_dlib():
    block = torch.ones(1, 4, 3, 3)
    pooled = torch.full((1, 2, 4, 4), 10.0)
    out = add_zero_padded(block, pooled)
    assert out.shape == (1, 4, 4, 4)
    assert out[0, 0, 0, 0] == 11 and out[0, 0, 3, 3] == 10 and out[0, 3, 0, 0] == 1 and out[0, 3, 3, 3] == 0


def test_the_torch_port_matches_dlib_on_real_faces(teacher, dlib_chips, record_property):
    chips, expected = dlib_chips
    with torch.no_grad():
        ours = teacher(torch.from_numpy(_as_input(chips))).numpy()
    difference = float(np.abs(ours - expected).max())
    record_property("max_abs_diff_vs_dlib", difference)
    assert difference <= 1e-4
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999


def test_the_torch_free_graph_matches_dlib_and_the_port(teacher, dlib_chips):
    import onnxruntime as ort

    from slimvision.inference.face_graph import dlib_resnet_graph

    session = ort.InferenceSession(dlib_resnet_graph(DLIB_FACE_RESNET.path()), providers=["CPUExecutionProvider"])
    chips, expected = dlib_chips
    (ours,) = session.run(None, {"face_chip": _as_input(chips)})
    assert np.abs(ours - expected).max() <= 1e-4
    noise = np.random.default_rng(0).random((2, 3, 150, 150), dtype=np.float32)
    with torch.no_grad():
        ported = teacher(torch.from_numpy(noise)).numpy()
    assert np.abs(session.run(None, {"face_chip": noise})[0] - ported).max() <= 1e-4
    # The preprocessing is on the card (tests/inference/test_face_embedder.py), not in the graph.
    assert "slimvision.preprocessing" not in {prop.key for prop in __import__("onnx").load_from_string(
        dlib_resnet_graph(DLIB_FACE_RESNET.path())).metadata_props}


def test_the_port_registers_by_name():
    from slimvision.registry import create_model

    import slimvision.models.faces  # noqa: F401  (registers the face models)

    net = create_model("face-embedder-dlib-resnet")
    assert net(torch.rand(1, 3, 150, 150)).shape == (1, 128)
    assert os.path.basename(DLIB_FACE_RESNET.path()) == "dlib_face_recognition_resnet_model_v1.dat"
