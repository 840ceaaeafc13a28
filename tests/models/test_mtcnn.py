"""MTCNN's networks in torch: the loader against facenet-pytorch's own computation (re-written here
from its state dicts, its code is never imported), the shipped ONNX graphs against the modules,
the regenerating export, and damaged weights rejected by name."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("facenet_pytorch") is None:  # find_spec: its code is never run
    pytest.skip("needs facenet-pytorch's weights: pip install --no-deps facenet-pytorch==2.6.0",
                allow_module_level=True)

import torch.nn.functional as F  # noqa: E402

from slimvision.assets import MTCNN_ONET, MTCNN_PNET, MTCNN_RNET  # noqa: E402
from slimvision.models.faces.mtcnn import (MtcnnWeightsError, PNet, load_mtcnn,  # noqa: E402
                                           source_weights)
from tests.models.conftest import ort_session  # noqa: E402

SHIPPED = {"pnet": MTCNN_PNET, "rnet": MTCNN_RNET, "onet": MTCNN_ONET}
INPUTS = {"pnet": (2, 3, 57, 81), "rnet": (6, 3, 24, 24), "onet": (6, 3, 48, 48)}


@pytest.fixture(scope="module")
def networks() -> dict:
    return {stage: load_mtcnn(stage) for stage in SHIPPED}


def _facenet_forward(stage: str, state: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What facenet-pytorch's PNet/RNet/ONet compute, in its own layout: the features of RNet and
    ONet transposed to (B, W, H, C) before the dense layer; ONet's landmarks as 5 x then 5 y."""
    def conv(x, n):
        return F.prelu(F.conv2d(x, state[f"conv{n}.weight"], state[f"conv{n}.bias"]), state[f"prelu{n}.weight"])

    def dense(x, name):
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    def face(logits):
        return F.softmax(logits, dim=1)[:, 1]

    x = (x - 127.5) * 0.0078125
    if stage == "pnet":
        x = conv(conv(F.max_pool2d(conv(x, 1), 2, 2, ceil_mode=True), 2), 3)
        return face(F.conv2d(x, state["conv4_1.weight"], state["conv4_1.bias"])), \
            F.conv2d(x, state["conv4_2.weight"], state["conv4_2.bias"])
    x = F.max_pool2d(conv(x, 1), 3, 2, ceil_mode=True)
    x = F.max_pool2d(conv(x, 2), 3, 2, ceil_mode=True)
    if stage == "rnet":
        x = conv(x, 3).permute(0, 3, 2, 1).reshape(len(x), -1)
        x = F.prelu(dense(x, "dense4"), state["prelu4.weight"])
        return face(dense(x, "dense5_1")), dense(x, "dense5_2")
    x = conv(F.max_pool2d(conv(x, 3), 2, 2, ceil_mode=True), 4).permute(0, 3, 2, 1).reshape(len(x), -1)
    x = F.prelu(dense(x, "dense5"), state["prelu5.weight"])
    points = dense(x, "dense6_3")
    return face(dense(x, "dense6_1")), dense(x, "dense6_2"), torch.stack([points[:, :5], points[:, 5:]], dim=-1)


@pytest.mark.parametrize("stage", list(SHIPPED))
def test_the_loaded_modules_compute_what_facenet_pytorch_computes(networks, stage):
    state = torch.load(source_weights(stage), weights_only=True)
    x = torch.rand(INPUTS[stage], generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        ours, theirs = networks[stage](x), _facenet_forward(stage, state, x)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-5


@pytest.mark.parametrize("stage", list(SHIPPED))
def test_the_shipped_onnx_graphs_match_the_modules(networks, stage, record_property):
    session = ort_session(str(SHIPPED[stage].path()))
    x = torch.rand(INPUTS[stage], generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        expected = networks[stage](x)
    produced = session.run(None, {"image": x.numpy()})
    difference = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(expected, produced))
    record_property("max_abs_diff", difference)
    assert difference <= 1e-4


def test_pnet_has_a_free_size_and_a_stride_2_grid(networks):
    session = ort_session(str(MTCNN_PNET.path()))
    for height, width in [(12, 12), (13, 40), (300, 201)]:
        score, offsets = session.run(None, {"image": np.zeros((1, 3, height, width), np.float32)})
        rows, columns = (-(-(side - 2) // 2) - 4 for side in (height, width))  # ceil((side - 2) / 2) - 4
        assert score.shape == (1, rows, columns) and offsets.shape == (1, 4, rows, columns)


def test_the_export_regenerates_the_shipped_graph(tmp_path):
    from slimvision.export.card import card_path, read_card
    from slimvision.export.faces import export_mtcnn

    report = export_mtcnn(tmp_path, stages=["pnet"])["pnet"]
    assert report.max_abs_diff <= 1e-4 and [check.name for check in report.checks][-1] == "given[0]"
    card = read_card(tmp_path / "mtcnn-pnet.card.json")
    shipped = read_card(card_path(MTCNN_PNET.path()))
    assert card.provenance["source_weights"] == shipped.provenance["source_weights"]
    assert card.input("image").shape == ["batch", 3, "height", "width"]
    assert (card.inputs, card.outputs, card.preprocessing) == (shipped.inputs, shipped.outputs, shipped.preprocessing)
    if card.provenance["torch"] == shipped.provenance["torch"]:  # another torch may write other bytes
        assert (tmp_path / "mtcnn-pnet.onnx").read_bytes() == MTCNN_PNET.path().read_bytes()


def test_the_models_register_by_name():
    from slimvision.registry import create_model

    rnet = create_model("face-detector-mtcnn-rnet")
    onet = create_model("face-detector-mtcnn-onet")
    scores, offsets, landmarks = onet(torch.rand(3, 3, 48, 48) * 255)
    assert landmarks.shape == (3, 5, 2) and offsets.shape == (3, 4) and scores.shape == (3,)
    assert rnet(torch.rand(2, 3, 24, 24) * 255)[0].shape == (2,)
    assert isinstance(create_model("face-detector-mtcnn-pnet"), PNet)


@pytest.mark.parametrize("damage, message", [
    (lambda state: state.pop("prelu2.weight"), "no tensor 'prelu2.weight'"),
    (lambda state: state.update({"conv9.weight": torch.zeros(1)}), r"\['conv9.weight'\] have no place"),
    (lambda state: state.update({"dense4.weight": torch.zeros(128, 575)}),
     r"dense4.weight has shape \(128, 575\); .* needs 576 inputs"),
    (lambda state: state.update({"conv1.weight": torch.zeros(28, 3, 5, 5)}), "conv1.weight has shape"),
])
def test_damaged_weights_are_one_error_naming_the_tensor(tmp_path, damage, message):
    state = torch.load(source_weights("rnet"), weights_only=True)
    damage(state)
    torch.save(state, tmp_path / "rnet.pt")
    with pytest.raises(MtcnnWeightsError, match=f"rnet.pt: .*{message}"):
        load_mtcnn("rnet", tmp_path / "rnet.pt")


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="pnet, rnet, onet"):
        load_mtcnn("qnet")


def test_a_loaded_network_saves_and_loads_with_its_config(networks, tmp_path):
    from slimvision.models.weights import load_model, save_model

    loaded = load_model(save_model(networks["onet"], tmp_path / "onet"))
    assert loaded.config == networks["onet"].config
    x = torch.rand(2, 3, 48, 48) * 255
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x), networks["onet"](x)))


def test_missing_weights_name_the_no_deps_install(monkeypatch):
    from slimvision.assets import MTCNN_TORCH_WEIGHTS, PackagedFile
    from slimvision.errors import MissingAssetError

    absent = PackagedFile("facenet-pytorch", "2.6.0", "slimvision_no_such_package", "data/pnet.pt", "0" * 64, "MIT")
    monkeypatch.setitem(MTCNN_TORCH_WEIGHTS, "pnet", absent)
    with pytest.raises(MissingAssetError, match=r"data/pnet.pt .* pip install --no-deps 'facenet-pytorch==2.6.0'$"):
        source_weights("pnet")
