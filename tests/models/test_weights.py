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
