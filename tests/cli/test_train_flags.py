"""Training flags come from config fields: one default (the config's), recipes, one --overwrite/--json."""

from __future__ import annotations

import argparse
import json
import re
import typing
from pathlib import Path

import pytest

pytest.importorskip("torch")  # the training configs live beside their torch code

from slimvision.cli.config_flags import build_config, flag_default, starting_values  # noqa: E402
from slimvision.cli.main import build_parser, main  # noqa: E402
from slimvision.errors import ConfigError, InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
WEIGHTS = ROOT / "src" / "slimvision" / "weights"

#: Each training command with the least it needs to parse.
COMMANDS = {
    "gan train": ["gan", "train", "data", "-o", "run"],
    "vae train": ["vae", "train", "--mni152", "-o", "run"],
    "numerals train": ["numerals", "train", "-o", "run"],
    "train style-predictor": ["train", "style-predictor", "--run-dir", "run"],
    "train style-transformer": ["train", "style-transformer", "--run-dir", "run"],
    "train face-student": ["train", "face-student", "--run-dir", "run"],
}

#: Config fields a command deliberately has no flag for (set them in a recipe): tuning that the
#: shipped runs never changed, and what the model's data decides.
NOT_FLAGS = {
    "gan train": {"model.latent_dim", "model.kernel_size", "model.leaky_slope", "model.init_std", "beta1",
                  "real_label", "log_every"},
    "vae train": {"model.in_channels", "model.out_channels", "model.reduce_channels", "intensity.mode",
                  "intensity.low", "intensity.high",  # --window / --dicom-window, shared with the other commands
                  "corruption.block_max_side", "log_every",
                  "finetune.backbone_lr_scale"},  # the VAE's backbone trains at --backbone-lr
    "numerals train": {"som.dim", "som.batch_steps", "som.learning_rate", "som.learning_rate_end", "som.radius",
                       "som.radius_end", "noise.rotation_degrees", "noise.blur_sigma", "noise.ink_noise",
                       "noise.stroke_weight", "noise.stain_probability", "noise.stain_size",
                       "noise.jpeg_quality_min", "noise.paper_grey", "noise.scale", "validation_families",
                       "validation_samples", "calibration_families", "unknown_quantile", "lvq_learning_rate"},
    "train style-predictor": {"weight_decay", "held_out_fraction", "texture_fraction", "checkpoint_every",
                              "log_every", "teacher", "image_every", "image_batch", "image_size", "eval_contents",
                              "eval_painting_size"},
    "train style-transformer": {"style_bank", "blend_fraction", "held_out_fraction", "eval_size",
                                "checkpoint_every", "log_every", "teacher"},
    "train face-student": {"checkpoint_every", "log_every", "augment.rotation", "augment.scale",
                           "augment.shift", "augment.mirror", "augment.light", "augment.gamma", "augment.blur",
                           "augment.blur_sigma", "augment.noise", "augment.noise_sigma", "augment.jpeg",
                           "augment.jpeg_quality", "augment.grey", "augment.sharpen", "augment.sharpen_percent"},
}

#: Each shipped model's recipe, its command, and the config its run recorded (file, key inside).
SHIPPED = {
    "gan-digits32": ("gan train", "gan-digits32/training.json", "training_config"),
    "numerals-som": ("numerals train", "numerals-som/training.json", None),
    "style-predictor-patch4": ("train style-predictor", "style/predictor-patch4.report.json", "config"),
    "style-predictor-mbv2-035": ("train style-predictor", "style/predictor-mbv2-035.report.json", "config"),
    "style-transform-phase": ("train style-transformer", "style/transform-phase.report.json", "config"),
    "style-transform-p53-families": ("train style-transformer", "style/transform-phase53.report.json", "config"),
    "style-transform-p53b-families": ("train style-transformer", "style/transform-phase53b.report.json", "config"),
    "vae-mni128-unet": ("vae train", None, None),
    "vae-mni128": ("vae train", None, None),
    "vae-medmix128-unet": ("vae train", None, None),
}


def _command_parser(words: list[str]) -> argparse.ArgumentParser:
    parser = build_parser()
    for word in words:
        if word.startswith("-"):
            break
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            break
        parser = sub.choices[word]
    return parser


def _config_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if hasattr(action, "config_flag")]


def _leaves(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        if isinstance(value, dict) and value:
            keys |= _leaves(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def _training_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every command whose parser builds a config, found by walking the CLI (not from a list)."""
    found = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        if "config:class" in parser._defaults:
            found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for word, sub in action.choices.items():
                    walk(sub, f"{name} {word}".strip())

    walk(build_parser(), "")
    return found


def test_every_training_command_is_covered_here():
    assert set(_training_parsers()) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_flags_give_the_configs_defaults(command):
    args = build_parser().parse_args(COMMANDS[command])
    parser = _command_parser(COMMANDS[command])
    reference, base = parser._defaults["config:class"], parser._defaults["config:base"]
    config = build_config(args)
    assert config.to_dict() == starting_values(reference, base)
    # The base only lays the command's long-standing starting point over the config (64 px GANs,
    # 128 px VAEs); everything else is the config's own default.
    assert set(_leaves(base)) <= {"model.resolution", "model.image_size"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_states_each_flags_default_as_the_config_holds_it(command, capsys):
    parser = _command_parser(COMMANDS[command])
    values = starting_values(parser._defaults["config:class"], parser._defaults["config:base"])
    with pytest.raises(SystemExit):
        main([*command.split(), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    checked = 0
    for action in _config_actions(parser):
        spec = action.config_flag
        if spec.switch is not None or not spec.show_default:
            continue
        shown = _as_help_shows(flag_default(values, spec))
        assert f"{spec.help} (default {shown}" in text, (spec.flag, shown)
        checked += 1
    assert checked >= 5


def _as_help_shows(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(_as_help_shows, value)) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "none"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_config_field_has_a_flag_or_is_listed_as_not_one(command):
    parser = _command_parser(COMMANDS[command])
    values = starting_values(parser._defaults["config:class"], parser._defaults["config:base"])
    flagged = {key for action in _config_actions(parser) for key in action.config_flag.keys}
    fields = _leaves(values)
    assert flagged <= fields, flagged - fields  # a flag naming a field the config lacks
    assert fields - flagged == NOT_FLAGS[command]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flags_and_switches_reach_the_config(command):
    parser = _command_parser(COMMANDS[command])
    args = build_parser().parse_args(COMMANDS[command])
    plain = build_config(args).to_dict()
    for action in _config_actions(parser):
        spec = action.config_flag
        if spec.switch is None:
            continue
        changed = build_config(build_parser().parse_args([*COMMANDS[command], spec.flag])).to_dict()
        for key in spec.keys:
            node_plain, node_changed = plain, changed
            for part in key.split("."):
                node_plain, node_changed = node_plain[part], node_changed[part]
            assert node_changed == spec.switch and node_plain != spec.switch, spec.flag
    given = build_config(build_parser().parse_args([*COMMANDS[command], "--seed", "7"]))
    assert given.seed == 7


def test_a_recipe_sets_fields_and_flags_beside_it_win(tmp_path):
    recipe = tmp_path / "run.json"
    recipe.write_text(json.dumps({"about": "a test run", "steps": 12, "model": {"resolution": 32}, "seed": 3}))
    config = build_config(build_parser().parse_args(["gan", "train", "d", "-o", "r", "--config", str(recipe),
                                                     "--seed", "5"]))
    assert (config.steps, config.model.resolution, config.seed) == (12, 32, 5)
    assert config.model.base_channels == 64  # untouched fields keep their defaults


def test_a_recipe_with_an_unknown_key_names_the_file_and_the_key(tmp_path, capsys):
    recipe = tmp_path / "run.json"
    recipe.write_text(json.dumps({"model": {"resolutoin": 32}}))
    with pytest.raises(ConfigError, match=re.escape(str(recipe)) + r".*'resolutoin'"):
        build_config(build_parser().parse_args(["gan", "train", "d", "-o", "r", "--config", str(recipe)]))
    recipe.write_text(json.dumps({"step": 3}))
    assert main(["numerals", "train", "-o", str(tmp_path / "map"), "--config", str(recipe)]) != 0
    err = capsys.readouterr().err
    assert str(recipe) in err and "'step'" in err and "\n" not in err.strip()
    assert not (tmp_path / "map").exists()


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '{"about": 3}'])
def test_a_recipe_that_is_no_json_object_is_an_input_error(tmp_path, content):
    recipe = tmp_path / "run.json"
    recipe.write_text(content)
    with pytest.raises(InputError, match="run.json"):
        build_config(build_parser().parse_args(["vae", "train", "--mni152", "-o", "r", "--config", str(recipe)]))


#: Recipes for runs not shipped (yet): they must still parse into their command's config.
UNSHIPPED = {"style-predictor-output": "train style-predictor", "style-predictor-wide": "train style-predictor",
              "style-transform-families": "train style-transformer"}


def test_every_checked_in_recipe_is_listed_here():
    assert {path.stem for path in RECIPES.glob("*.json")} == set(SHIPPED) | set(UNSHIPPED)


@pytest.mark.parametrize("name", sorted(UNSHIPPED))
def test_an_unshipped_recipe_parses_into_its_commands_config(name):
    recipe = json.loads((RECIPES / f"{name}.json").read_text())
    config = build_config(build_parser().parse_args([*COMMANDS[UNSHIPPED[name]], "--config",
                                                     str(RECIPES / f"{name}.json")]))
    def same(got, value) -> bool:  # a nested config (model, corruption) holds at least the recipe's fields
        if isinstance(value, dict):
            return all(same(getattr(got, key), item) for key, item in value.items())
        return got == (tuple(value) if isinstance(value, list) else value)

    assert all(same(getattr(config, key), value) for key, value in recipe.items() if key != "about")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_models_recipe_gives_the_config_its_run_recorded(name):
    command, recorded, key = SHIPPED[name]
    config = build_config(build_parser().parse_args([*COMMANDS[command], "--config", str(RECIPES / f"{name}.json")]))
    if recorded is None:  # the VAE exports keep the model, not the training run: compare that
        graph = "autoencoder" if (WEIGHTS / name / "autoencoder.onnx").is_file() else "encoder"
        card = WEIGHTS / name / f"{graph}.card.json"
        shipped = json.loads(card.read_text())["preprocessing"]["model"]  # the graph's card holds the model config
        assert config.model.to_dict() == shipped
        return
    saved = json.loads((WEIGHTS / recorded).read_text())
    saved = saved[key] if key else saved
    expected = type(config).from_dict(saved)
    if name in ("style-transform-phase", "style-transform-p53-families"):  # 3000 steps, resumed to 6000
        config = config.replace(steps=6000)
    if name == "gan-digits32":  # the run stretched checkpoints to its --sample-every 250
        config = config.replace(checkpoint_every=250)
    assert config == expected


def _all_parsers() -> list[argparse.ArgumentParser]:
    found, todo = [], [build_parser()]
    while todo:
        parser = todo.pop()
        found.append(parser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return found


def test_overwrite_json_and_quiet_have_one_definition_each():
    """Each comes from cli.arguments' add_overwrite / add_json / add_quiet, on every command."""
    source = ROOT / "src" / "slimvision"
    defined = re.compile(r"add_argument\([^)]*[\"'](--overwrite|--json|--quiet)[\"']")
    for path in source.rglob("*.py"):
        if path.name != "arguments.py":
            assert not defined.search(path.read_text(encoding="utf-8")), path.relative_to(ROOT)
    seen = set()
    for parser in _all_parsers():
        for action in parser._actions:
            if "--overwrite" in action.option_strings:
                assert action.help.startswith("replace ") and action.help.endswith("(never an input)")
            elif "--json" in action.option_strings:
                assert action.help.endswith("as JSON on stdout instead of text")
            elif "--quiet" in action.option_strings:
                assert action.option_strings == ["-q", "--quiet"] and action.help == "no progress bar"
            else:
                continue
            assert isinstance(action, argparse._StoreTrueAction)
            seen.add(action.option_strings[-1])
    assert seen == {"--overwrite", "--json", "--quiet"}


def _field_type(config: type, key: str) -> object:
    """The declared type of a dotted config field (``model.resolution``); ``X | None`` counts as X
    (None is the field's "not set", which no flag gives)."""
    import typing

    *parents, name = key.split(".")
    for parent in parents:
        config = typing.get_type_hints(config)[parent]
    declared = typing.get_type_hints(config)[name]
    kinds = [kind for kind in typing.get_args(declared) if kind is not type(None)]
    return kinds[0] if type(None) in typing.get_args(declared) and len(kinds) == 1 else declared


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_flags_type_is_a_checked_type_of_its_fields_type(command):
    """A number field takes a bounded number type from cli.arguments, of the field's kind."""
    parser = _command_parser(COMMANDS[command])
    config = __import__("slimvision.cli.config_flags", fromlist=["config_class"]).config_class(
        parser._defaults["config:class"])
    for action in _config_actions(parser):
        spec = action.config_flag
        if spec.switch is not None or spec.convert is not None:
            continue
        field_type = _field_type(config, spec.keys[0])
        words = [arg for arg in typing.get_args(field_type) if typing.get_origin(arg) is typing.Literal]
        if words:  # ``float | Literal["auto"]``: a number type that also takes those words (cli.arguments.or_word)
            assert set(getattr(spec.type, "words", ())) == {w for arg in words for w in typing.get_args(arg)}, spec.flag
            (field_type,) = [arg for arg in typing.get_args(field_type) if arg not in words]
        if spec.choices is not None:
            assert all(isinstance(choice, field_type) for choice in spec.choices), spec.flag
        elif field_type in (int, float):
            assert getattr(spec.type, "numeric", False), f"{spec.flag}: use a checked type from cli.arguments"
            assert spec.type.kind is field_type or (spec.spread and spec.type.kind is float), spec.flag
        else:
            assert field_type is str and spec.type is None, spec.flag
