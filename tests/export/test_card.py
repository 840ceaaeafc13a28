"""The artifact card: round trip, strict reading, errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimvision.errors import InputError, OutputError
from slimvision.export.card import CARD_SUFFIX, ArtifactCard, TensorSpec, card_path, copy_graph, read_card, write_card


def _card() -> ArtifactCard:
    return ArtifactCard(
        name="gan-test",
        system="gan",
        task="generation",
        files={"graph": "generator.onnx"},
        inputs=[TensorSpec("z", ["batch", 16], "float32", "N,D", None, "latent vector")],
        outputs=[TensorSpec("image", ["batch", 1, 32, 32], "float32", "NCHW", [-1.0, 1.0])],
        preprocessing={"latent_dim": 16},
        licence="MIT",
        provenance={"training_run": "runs/gan"},
        parity={"max_abs_diff": 1.5e-7, "reference": "torch"},
        remake="make gan",
    )


def test_card_path_sits_beside_the_graph() -> None:
    assert card_path(Path("w/generator.int8.onnx")) == Path("w/generator.int8" + CARD_SUFFIX)
    assert card_path(Path("w/model.onnx")) == Path("w/model.card.json")


def test_round_trip_gives_an_equal_card_and_sorted_json(tmp_path: Path) -> None:
    path = card_path(tmp_path / "generator.onnx")
    write_card(_card(), path)
    assert read_card(path) == _card()
    text = path.read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_lookup_by_tensor_name() -> None:
    card = _card()
    assert card.input("z").shape == ["batch", 16]
    assert card.output("image").value_range == [-1.0, 1.0]
    with pytest.raises(KeyError, match="'missing'"):
        card.output("missing")


def _write_raw(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "bad.card.json"
    path.write_text(json.dumps(data))
    return path


def test_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    data = json.loads(json.dumps(_card().__dict__, default=lambda spec: spec.__dict__))
    data["latent_size"] = 16
    path = _write_raw(tmp_path, data)
    with pytest.raises(InputError, match="'latent_size'") as error:
        read_card(path)
    assert str(path) in str(error.value)


def test_unknown_key_in_a_tensor_is_refused_naming_it(tmp_path: Path) -> None:
    data = json.loads(json.dumps(_card().__dict__, default=lambda spec: spec.__dict__))
    data["outputs"][0]["range"] = [0, 1]
    with pytest.raises(InputError, match=r"'range' in outputs\[0\]"):
        read_card(_write_raw(tmp_path, data))


def test_missing_key_and_wrong_type_are_refused(tmp_path: Path) -> None:
    data = json.loads(json.dumps(_card().__dict__, default=lambda spec: spec.__dict__))
    del data["licence"]
    with pytest.raises(InputError, match="missing key 'licence'"):
        read_card(_write_raw(tmp_path, data))
    data["licence"] = "MIT"
    data["outputs"][0]["value_range"] = [0]
    with pytest.raises(InputError, match="value_range"):
        read_card(_write_raw(tmp_path, data))


def test_bad_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.card.json"
    path.write_text('{"name": ')
    with pytest.raises(InputError, match="not valid JSON") as error:
        read_card(path)
    assert error.value.path == str(path)


def test_missing_card_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as error:
        read_card(tmp_path / "nothing.card.json")
    assert error.value.path == str(tmp_path / "nothing.card.json")


def test_write_refuses_a_card_read_would_refuse(tmp_path: Path) -> None:
    card = _card()
    card.system = "audio"
    with pytest.raises(InputError, match="system"):
        write_card(card, tmp_path / "x.card.json")
    assert not (tmp_path / "x.card.json").exists()


def test_card_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, slimvision.export.card; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_copy_graph_renames_the_card_with_the_file_and_keeps_the_source(tmp_path: Path) -> None:
    run, weights = tmp_path / "run", tmp_path / "weights"
    run.mkdir()
    weights.mkdir()
    source = run / "g.onnx"
    source.write_bytes(b"graph bytes")
    card = _card()
    card.files = {"graph": "g.onnx"}
    write_card(card, card_path(source))
    copied = copy_graph(source, weights / "gan-shipped.onnx")
    assert copied.read_bytes() == b"graph bytes" and source.read_bytes() == b"graph bytes"
    shipped = read_card(card_path(copied))
    assert shipped.name == "gan-shipped" and shipped.files["graph"] == "gan-shipped.onnx"
    assert read_card(card_path(source)) == card
    with pytest.raises(OutputError, match="exists"):  # an existing file is only replaced when asked
        copy_graph(source, copied)
    copy_graph(source, copied, overwrite=True)
