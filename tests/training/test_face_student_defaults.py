"""The face student's defaults are the measured recipe (docs/faces.md); "auto" settings resolve per
student and loss; runs saved under the old defaults load and resume as they were trained."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.training.checkpoint import FORMAT, CheckpointStore  # noqa: E402
from slimvision.training.face_student import (  # noqa: E402
    AUTO, LEGACY_DEFAULTS, RESUMABLE_CHANGES, FaceStudentConfig, saved_config,
)
from slimvision.training.trainer import check_same_config  # noqa: E402

#: The recipe docs/faces.md chose ("the chosen recipe": norms, centred, relational, hints, distance scale).
RECIPE = {"batch_norm": True, "target_space": "centred", "relational_weight": 1.0, "hint_weight": 1.0,
          "distance_scale": True}


def _settings(config: FaceStudentConfig) -> dict:
    return {key: getattr(config, key) for key in RECIPE}


def test_the_defaults_resolve_to_the_measured_recipe():
    config = FaceStudentConfig()
    assert (config.batch_norm, config.hint_weight, config.distance_scale) == (AUTO, AUTO, AUTO)
    assert _settings(config.resolved()) == RECIPE
    assert (config.faces, config.samples_per_face) == (2000, 8)  # at least the chosen run's 2,000 faces x 4


@pytest.mark.parametrize("student, init, loss, expected", [
    ("dlib", "pruned-teacher", "regression", (True, 1.0, True)),
    ("dlib", "pruned-teacher", "arcface", (True, 0.0, True)),  # hints work with the regression loss only
    ("dlib", "pruned-teacher", "margin-distillation", (True, 0.0, True)),
    ("dlib", "scratch", "regression", (True, 0.0, True)),  # hints need the teacher's channels
    ("mobilefacenet", "scratch", "regression", (False, 0.0, False)),  # its own norms, no embedding layer to scale
    ("mobilefacenet", "scratch", "cosface", (False, 0.0, False)),
])
def test_auto_resolves_per_student_and_loss(student, init, loss, expected):
    resolved = FaceStudentConfig(student=student, init=init, loss=loss).resolved()
    assert (resolved.batch_norm, resolved.hint_weight, resolved.distance_scale) == expected
    assert (resolved.target_space, resolved.relational_weight) == ("centred", 1.0)  # every student and loss
    assert resolved.resolved() == resolved  # nothing "auto" left


def test_the_off_switches_give_the_old_defaults_and_explicit_values_are_kept():
    old = FaceStudentConfig(**LEGACY_DEFAULTS).resolved()
    assert _settings(old) == LEGACY_DEFAULTS == {"batch_norm": False, "target_space": "raw", "relational_weight": 0.0,
                                                 "hint_weight": 0.0, "distance_scale": False}
    assert FaceStudentConfig(hint_weight=0.5).resolved().hint_weight == 0.5
    assert FaceStudentConfig(loss="arcface", batch_norm=False).resolved().batch_norm is False
    assert FaceStudentConfig(init="scratch", hint_weight=0).resolved().hint_weight == 0.0


@pytest.mark.parametrize("settings, message", [
    ({"batch_norm": "yes"}, "batch_norm: expected bool"),
    ({"distance_scale": "on"}, "distance_scale: expected bool"),
    ({"hint_weight": "sometimes"}, "hint_weight: expected float"),
    ({"hint_weight": -1.0}, "hint_weight must be at least 0"),
    ({"hint_weight": 1.0, "loss": "arcface"}, "hint_weight needs init='pruned-teacher'"),
    ({"hint_weight": 1.0, "init": "scratch"}, "hint_weight needs init='pruned-teacher'"),
    ({"student": "mobilefacenet", "init": "scratch", "batch_norm": True}, "batch_norm is for the dlib student"),
    ({"student": "mobilefacenet", "init": "scratch", "distance_scale": True}, "distance_scale scales the dlib"),
    ({"target_space": "whitened"}, "target_space must be one of"),
])
def test_bad_values_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as caught:
        FaceStudentConfig.from_dict(settings)
    assert "\n" not in str(caught.value)


def _old_run(tmp_path, config: dict) -> CheckpointStore:
    """A run folder as the trainer left it before the recipe became the defaults: one checkpoint
    whose trainer.json holds the config the old code saved (written by hand here)."""
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer.json").write_text(json.dumps(
        {"format": FORMAT, "step": 4, "optimizers": {}, "extra": {"config": config}, "history": {}}))
    return CheckpointStore(checkpoint.parent)


def _as_old_code_saved(*missing: str) -> dict:
    """The config the old code saved for a default run: every field, the old defaults, less ``missing``
    (fields that did not exist yet when it was saved)."""
    saved = FaceStudentConfig(**LEGACY_DEFAULTS, faces=6, samples_per_face=2, steps=4).to_dict()
    return {key: value for key, value in saved.items() if key not in missing}


@pytest.mark.parametrize("missing", [tuple(LEGACY_DEFAULTS), ("hint_weight", "distance_scale"), ()])
def test_a_run_saved_under_the_old_defaults_loads_and_resumes_with_them(tmp_path, missing):
    store = _old_run(tmp_path, _as_old_code_saved(*missing))
    loaded = saved_config(tmp_path / "run")
    assert _settings(loaded) == LEGACY_DEFAULTS and loaded.steps == 4  # not the new defaults
    assert _settings(loaded.resolved()) == LEGACY_DEFAULTS
    check_same_config(store, loaded.resolved().replace(steps=8), RESUMABLE_CHANGES, saved_defaults=LEGACY_DEFAULTS)
    # Resuming it with today's defaults is refused, naming what would change, rather than done silently.
    with pytest.raises(ConfigError, match="batch_norm, hint_weight, relational_weight, target_space differ"):
        check_same_config(store, FaceStudentConfig(faces=6, samples_per_face=2, steps=8).resolved(),
                          RESUMABLE_CHANGES, saved_defaults=LEGACY_DEFAULTS)


def test_a_folder_without_checkpoints_has_no_saved_config(tmp_path):
    assert saved_config(tmp_path / "nothing") is None
    assert not (tmp_path / "nothing").exists()
    assert FaceStudentConfig.from_saved({"loss": "arcface"}).batch_norm is False  # a key it lacks: the old value
