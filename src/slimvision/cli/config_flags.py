"""Training flags made from config fields, and ``--config RUN.json`` recipes.

Every training command builds one config dataclass (``GANTrainingConfig``, ...). Its flags are
declared here as :class:`ConfigFlag` rows naming the field they set, so a default lives in one
place, the config (or, where a command has always started from other values, the command's
``base``, an overlay of the config's defaults that this module shows and tests check):

* a flag left out is not in the namespace (``argparse.SUPPRESS``), so the config's own default
  applies; ``--help`` shows that default, read from the config class when help is printed
  (importing it then costs torch's start-up, which a plain command run never pays here);
* ``--config RUN.json`` reads a recipe: JSON of config fields, nested configs as nested objects,
  e.g. ``{"about": "what it makes", "steps": 3000, "model": {"resolution": 32}}`` (``about`` is
  the one key that is no field); flags given beside it override it; an unknown key is an error
  naming the file and the key (:class:`slimvision.config.BaseConfig` is strict). The recipes of
  the shipped models are in ``recipes/``.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_config_flags(parser, "slimvision.data.corruption:Corruption",
    ...                  [ConfigFlag("--noise", "noise_max", float, "noise level")])
    >>> args = parser.parse_args(["--noise", "0.2"])
    >>> build_config(args).noise_max
    0.2
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slimvision.errors import ConfigError, InputError

#: Namespace attributes that carry config values are named ``config:<key>`` (no flag can clash).
_PREFIX = "config:"


@dataclass(frozen=True)
class ConfigFlag:
    """One command-line option that sets one or more config fields.

    Attributes:
        flag: the option, e.g. ``"--steps"``.
        key: the field it sets, dotted into nested configs (``"model.resolution"``); several
            keys separated by spaces are all set (``"seed som.seed"``), or set item by item
            from a list value when ``spread`` is true (``--keep MIN,MAX``).
        type: a checked argparse type from :mod:`slimvision.cli.arguments`.
        help: what the field means (the default is appended from the config).
        note: what a special value means, shown after the default: ``"0: none"``.
        choices: allowed values, as argparse takes them.
        switch: for an option without a value: the value the field takes when it is given
            (``--no-augment`` sets ``augment`` to False).
        convert: turns the parsed value into the field's value (a '1,2,3' list into a tuple).
        spread: set the keys item by item from a sequence value.
        metavar: argparse's metavar.
        show_default: False where the help says the default better itself (an empty tuple meaning "all").
        append: the option may be given again, each value one more item of the field's tuple
            (``--photos a --photos b``); given on a resumed run, the list replaces the saved one.
    """

    flag: str
    key: str
    type: Callable[[str], Any] | None = None
    help: str = ""
    note: str = ""
    choices: Sequence[Any] | None = None
    switch: Any = None
    convert: Callable[[Any], Any] | None = None
    spread: bool = False
    metavar: str | None = None
    show_default: bool = True
    append: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.key.split())


def add_config_flags(parser: argparse.ArgumentParser, config: str, flags: Sequence[ConfigFlag],
                     base: dict[str, Any] | None = None) -> None:
    """Add ``--config`` and one option per :class:`ConfigFlag` to a training command.

    Args:
        parser: the command's parser.
        config: ``"module:Class"`` of the config the command builds (imported only when it runs
            or prints help, so a torch-backed module does not slow the CLI's start).
        flags: the options.
        base: values the command starts from instead of the config's defaults, as a nested dict
            (``{"model": {"resolution": 64}}``); a recipe and flags override them.
    """
    parser.add_argument("--config", type=Path, metavar="RUN.json", dest=f"{_PREFIX}file",
                        help="a recipe: JSON of config fields (see recipes/); flags given beside it override it")
    switched = [spec.key for spec in flags if spec.switch is not None]
    # Switches that set one field to different values (--batch-norm / --no-batch-norm) exclude each other.
    groups = {key: parser.add_mutually_exclusive_group() for key in set(switched) if switched.count(key) > 1}
    for spec in flags:
        shown = f"{spec.help} ({spec.note})" if spec.note else spec.help  # replaced by the one with the default
        options: dict[str, Any] = {"dest": _PREFIX + spec.flag, "default": argparse.SUPPRESS, "help": shown}
        if spec.switch is not None:
            options.update(action="store_const", const=spec.switch)
        else:
            metavar = spec.metavar or (None if spec.choices else spec.flag.lstrip("-").upper().replace("-", "_"))
            options.update(type=spec.type, choices=spec.choices, metavar=metavar)
            if spec.append:
                options.update(action="append")
        action = groups.get(spec.key, parser).add_argument(spec.flag, **options)
        action.config_flag = spec  # type: ignore[attr-defined]
    parser.set_defaults(**{_PREFIX + "class": config, _PREFIX + "base": base or {},
                           _PREFIX + "flags": tuple(flags)})
    parser.formatter_class = _ConfigDefaultsFormatter


def config_class(reference: str) -> type:
    """The class a ``"module:Class"`` reference names."""
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


def starting_values(reference: str, base: dict[str, Any]) -> dict[str, Any]:
    """The config's defaults with the command's ``base`` laid over them, as a nested dict."""
    values = config_class(reference)().to_dict()
    _merge(values, copy.deepcopy(base))
    return values


def build_config(args: argparse.Namespace, start: dict[str, Any] | None = None) -> Any:
    """The config a command line asks for: defaults < command base < ``--config`` recipe < flags.

    Args:
        args: the parsed command line.
        start: values to start from instead of the defaults and the command's base, e.g. the
            config a run folder was trained with, when the command resumes it (so a run keeps
            its settings when the defaults change); the recipe and the flags still override it.

    Raises:
        InputError: the recipe cannot be read or is not a JSON object.
        ConfigError: a key the config does not know (named with the recipe's file), or a bad value.
    """
    namespace = vars(args)
    reference = namespace[_PREFIX + "class"]
    cls = config_class(reference)
    values = copy.deepcopy(start) if start is not None else starting_values(reference, namespace[_PREFIX + "base"])
    recipe_path = namespace.get(_PREFIX + "file")
    if recipe_path is not None:
        _merge(values, read_recipe(recipe_path))
        try:  # the recipe alone first, so a wrong key is named with its file
            cls.from_dict(values)
        except ConfigError as exc:
            raise ConfigError(f"{recipe_path}: {exc}") from None
    for spec in namespace[_PREFIX + "flags"]:
        if _PREFIX + spec.flag in namespace:
            _set_flag(values, spec, namespace[_PREFIX + spec.flag])
    return cls.from_dict(values)


#: The one key of a recipe that is no config field: a line saying what the recipe makes.
ABOUT = "about"


def read_recipe(path: Path) -> dict[str, Any]:
    """A recipe file's config fields (its ``"about"`` line, the one key that is no field, dropped)."""
    try:
        recipe = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(path, f"cannot read the recipe ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(recipe, dict):
        raise InputError(path, f"a recipe is a JSON object of config fields, got {type(recipe).__name__}")
    if not isinstance(recipe.pop(ABOUT, ""), str):
        raise InputError(path, f"{ABOUT!r} is a line of text saying what the recipe makes")
    return recipe


def _set_flag(values: dict[str, Any], spec: ConfigFlag, value: Any) -> None:
    if spec.convert is not None:
        value = spec.convert(value)
    if spec.spread:
        if len(value) != len(spec.keys):
            raise ConfigError(f"{spec.flag} takes {len(spec.keys)} values, got {len(value)}")
        for key, item in zip(spec.keys, value):
            _set(values, key, item)
    else:
        for key in spec.keys:
            _set(values, key, value)


def _set(values: dict[str, Any], key: str, value: Any) -> None:
    *parents, name = key.split(".")
    for parent in parents:
        values = values[parent]
    values[name] = value


def _get(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        values = values[part]
    return values


def _merge(into: dict[str, Any], overlay: dict[str, Any]) -> None:
    """Lay ``overlay`` over ``into`` in place; nested objects merge key by key (unknown keys are
    kept, for the config to reject by name)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def flag_default(values: dict[str, Any], spec: ConfigFlag) -> Any:
    """What a flag's field(s) hold before the flag is given (a list for several keys)."""
    found = [_get(values, key) for key in spec.keys]
    if spec.switch is not None or not spec.spread:
        return found[0]
    return found


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_show(item) for item in value) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value or "none"
    return str(value)


class _ConfigDefaultsFormatter(argparse.HelpFormatter):
    """Help that appends each config flag's default, read from the config when help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        spec = getattr(action, "config_flag", None)
        if spec is None or spec.switch is not None or not spec.show_default:
            return text
        values = self._values(action)
        if values is None:
            return text
        shown = _show(flag_default(values, spec)).replace("%", "%%")
        if spec.note.startswith(f"{shown}:"):  # "0: none" about a default of 0 reads "(default 0: none)"
            return f"{spec.help} (default {spec.note})".lstrip()
        note = f"; {spec.note}" if spec.note else ""
        return f"{spec.help} (default {shown}{note})".lstrip()

    def _values(self, action: argparse.Action) -> dict[str, Any] | None:
        reference, base = action.container._defaults[_PREFIX + "class"], action.container._defaults[_PREFIX + "base"]
        try:
            return starting_values(reference, base)
        except ImportError:  # no torch: help still lists the options
            return None


def shared_flag(name: str, help: str | None = None, key: str | None = None) -> ConfigFlag:
    """The flag every training command spells alike (``steps``, ``batch_size``, ``seed``, ...).

    ``help`` replaces the shared wording where a command counts differently (a GAN's steps are
    per network); ``key`` where the command's config names the field otherwise.
    """
    spec = _shared_flags()[name]
    return replace(spec, help=help or spec.help, key=key or spec.key)


def _shared_flags() -> dict[str, ConfigFlag]:
    from slimvision.cli.arguments import positive_float, positive_int, seed
    from slimvision.training.config import FIELD_HELP  # torch-free: the one help text of each knob

    return {flag.key: replace(flag, help=FIELD_HELP[flag.key]) for flag in (
        ConfigFlag("--steps", "steps", positive_int("--steps")),
        ConfigFlag("--epochs", "epochs", positive_int("--epochs", 1_000_000)),
        ConfigFlag("--batch-size", "batch_size", positive_int("--batch-size", 65_536)),
        ConfigFlag("--lr", "lr", positive_float("--lr", 10)),
        ConfigFlag("--seed", "seed", seed()),
        ConfigFlag("--checkpoint-every", "checkpoint_every", positive_int("--checkpoint-every")),
        ConfigFlag("--device", "device", None),
    )}
