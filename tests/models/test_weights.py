"""Saving a model as safetensors + config.json and loading it back, with clear errors for bad folders."""

from __future__ import annotations

import json

import pytest

from tests.models.conftest import torch

from slimvision.errors import ConfigError, InputError
from slimvision.models.style import StyleTransformer, StyleTransformerConfig
from slimvision.models.weights import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model

TINY = StyleTransformerConfig(contract_channels=(4, 8, 8), expand_channels=(8, 4, 3), residual_blocks=1)


def test_save_then_load_gives_the_same_config_weights_and_output(tmp_path):
    model = StyleTransformer(TINY).eval()
    folder = save_model(model, tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp files left
    loaded = load_model(folder)
    assert type(loaded) is StyleTransformer and loaded.config == TINY and not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    content, style = torch.rand(1, 3, 24, 32), torch.randn(1, 100)
    with torch.no_grad():
        assert torch.equal(model(content, style), loaded(content, style))


def test_existing_folder_needs_overwrite(tmp_path):
    save_model(StyleTransformer(TINY), tmp_path)
    with pytest.raises(Exception, match="exists"):
        save_model(StyleTransformer(TINY), tmp_path)
    save_model(StyleTransformer(TINY), tmp_path, overwrite=True)


def test_weights_that_do_not_fit_the_config_are_an_input_error(tmp_path):
    save_model(StyleTransformer(TINY), tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "residual_blocks": 2}))
    with pytest.raises(InputError, match=r"missing \['residual.1"):
        load_model(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "contract_channels": [4, 8, 16]}))
    with pytest.raises(InputError, match="size mismatch|does not fit"):
        load_model(tmp_path)


def test_unknown_config_keys_and_foreign_files_are_rejected(tmp_path):
    save_model(StyleTransformer(TINY), tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "widht": 3}))
    with pytest.raises(ConfigError, match="'widht'"):
        load_model(tmp_path)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / WEIGHTS_FILE))
    with pytest.raises(InputError, match="no 'slimvision-model-v1' header"):
        load_model(tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a slimvision safetensors file"):
        load_model(tmp_path)


def _with_header(path, header: bytes) -> None:
    """Replace a safetensors file's JSON header (8-byte little-endian length, then the JSON)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    path.write_bytes(len(header).to_bytes(8, "little") + header + data[8 + size:])


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a slimvision safetensors file"),
    (lambda p: p.write_bytes(p.read_bytes()[:6]), "not a slimvision safetensors file (file too short)"),
    (lambda p: _with_header(p, b"[1, 2, 3]"), "not a slimvision safetensors file"),
    (lambda p: _with_header(p, b'{"__metadata__": [1]}'), "not a slimvision safetensors file"),
    (lambda p: _rename_model(p, "style-nonexistent"), "names model 'style-nonexistent', which is not registered"),
])
def test_damaged_weights_are_one_line_input_errors_naming_the_file(tmp_path, damage, problem):
    save_model(StyleTransformer(TINY), tmp_path)
    damage(tmp_path / WEIGHTS_FILE)
    with pytest.raises(InputError) as caught:
        load_model(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / WEIGHTS_FILE}: {problem}") and "\n" not in str(caught.value)


def _rename_model(path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    from slimvision.models.weights import _metadata

    metadata = {**_metadata(path.read_bytes()), "model": name}
    save_file(load_file(str(path)), str(path), metadata=metadata)
