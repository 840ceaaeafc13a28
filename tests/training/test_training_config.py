"""The training configs share TrainingConfig; what runs saved before still loads and resumes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the configs live beside their torch code

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.training.config import FIELD_HELP, TrainingConfig  # noqa: E402
from slimvision.training.gan import GANTrainingConfig  # noqa: E402
from slimvision.training.numerals import NumeralTrainingConfig  # noqa: E402
from slimvision.training.style_predictor import PredictorDistillConfig  # noqa: E402
from slimvision.training.style_transformer import TransformerDistillConfig  # noqa: E402
from slimvision.training.vae import VAETrainingConfig  # noqa: E402

HERE = Path(__file__).parent
WEIGHTS = HERE.parents[1] / "src" / "slimvision" / "weights"
TRAINER_RUN = (GANTrainingConfig, VAETrainingConfig, PredictorDistillConfig, TransformerDistillConfig)
ALL = (*TRAINER_RUN, NumeralTrainingConfig)
#: Every config's defaults as saved before TrainingConfig existed (each class's to_dict() then).
BEFORE = json.loads((HERE / "data" / "configs_before_training_config.json").read_text())


@pytest.mark.parametrize("config", TRAINER_RUN, ids=lambda c: c.__name__)
def test_every_trainer_run_config_inherits_the_shared_fields(config):
    assert issubclass(config, TrainingConfig)
    shared = {f.name for f in dataclasses.fields(TrainingConfig)}
    assert shared <= {f.name for f in dataclasses.fields(config)}


@pytest.mark.parametrize("config", ALL, ids=lambda c: c.__name__)
def test_a_config_saved_before_loads_with_the_same_values_and_keys(config):
    saved = BEFORE[config.__name__]
    loaded = config.from_dict(saved)
    assert loaded == config()
    # Every saved key comes back with its value; keys added since (nested ones too, such as
    # corruption.noise_kinds) come at their defaults only.
    def as_saved(values: dict, like: dict) -> dict:
        return {key: as_saved(value, like[key]) if isinstance(value, dict) and isinstance(like[key], dict) else value
                for key, value in values.items() if key in like}

    assert as_saved(loaded.to_dict(), saved) == saved
    assert set(saved) <= set(loaded.to_dict())


@pytest.mark.parametrize("config", TRAINER_RUN, ids=lambda c: c.__name__)
def test_a_run_checkpointed_before_fields_were_added_resumes_at_their_defaults(config, tmp_path):
    torch = pytest.importorskip("torch")
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import check_same_config

    saved = BEFORE[config.__name__]
    store = CheckpointStore(tmp_path / "checkpoints")
    model = torch.nn.Linear(1, 1)
    store.save(1, model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)}, extra={"config": saved})
    check_same_config(store, config())  # the added fields at their defaults: the same run
    added = sorted(set(config().to_dict()) - set(saved))
    for name in added:
        field = next(f for f in dataclasses.fields(config) if f.name == name)
        if isinstance(field.default, bool):
            changed = dataclasses.replace(config(), **{name: not field.default})
        elif isinstance(field.default, (int, float)):
            changed = dataclasses.replace(config(), **{name: field.default + 1})
        else:
            continue
        with pytest.raises(ConfigError, match=rf"\({name} differ\)"):
            check_same_config(store, changed)


@pytest.mark.parametrize(("config", "file", "key"), [
    (GANTrainingConfig, "gan-digits32/training.json", "training_config"),
    (NumeralTrainingConfig, "numerals-som/training.json", None),
    (PredictorDistillConfig, "style/predictor-mbv2-035.report.json", "config"),  # saved before stem_stride existed
    (PredictorDistillConfig, "style/predictor-patch4.report.json", "config"),
    (TransformerDistillConfig, "style/transform-phase.report.json", "config"),
], ids=lambda value: value if isinstance(value, str) else getattr(value, "__name__", None))
def test_the_shipped_models_saved_training_configs_still_load(config, file, key):
    saved = json.loads((WEIGHTS / file).read_text())
    saved = saved[key] if key else saved
    loaded = config.from_dict(saved)
    assert {k: v for k, v in loaded.to_dict().items() if k in saved} == saved


@pytest.mark.parametrize("config", TRAINER_RUN, ids=lambda c: c.__name__)
def test_unknown_keys_stay_errors_naming_the_key(config):
    with pytest.raises(ConfigError, match=rf"{config.__name__}: unknown key\(s\) 'batchsize'"):
        config.from_dict({"batchsize": 4})


@pytest.mark.parametrize("config", TRAINER_RUN, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", ["batch_size", "checkpoint_every", "log_every"])
def test_the_shared_checks_apply_to_every_system(config, name):
    with pytest.raises(ConfigError, match=rf"{config.__name__}\.{name} must be at least 1, got 0"):
        config(**{name: 0})


def test_each_shared_field_carries_its_one_help_text():
    for field in dataclasses.fields(TrainingConfig):
        assert field.metadata["help"] == FIELD_HELP[field.name]
