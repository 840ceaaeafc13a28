"""Every command's options, walked from the real parser: numbers, switches, option order.

One table of hostile numbers (negative, zero, NaN, infinities, huge) is fed to every option with
a numeric type in every command. Each value must be accepted as something meaningful (finite,
within the bounds the option declares) or refused by argparse: exit 2 and one line naming the
option, never a traceback. A few cheap commands also run with the extreme values they accept.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from slimvision.cli.main import build_parser
from tests.cli.helpers import exit_code

HOSTILE = ["-1", "-1e-3", "0", "nan", "inf", "-inf", "1e30", "99999999999999999999", ""]
NON_FINITE = {"nan", "inf", "-inf"}


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                                               argparse.ArgumentParser]]:
    """(command words, parser) for every command that runs something (no sub-commands of its own)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
        return
    seen: set[int] = set()
    for group in groups:
        for name, sub in group.choices.items():
            if id(sub) not in seen:  # aliases share a parser
                seen.add(id(sub))
                yield from leaf_parsers(sub, (*path, name))


PARSER = build_parser()  # parse_args leaves a parser as it was, so one serves every case
LEAVES = list(leaf_parsers(PARSER))


def is_numeric(action: argparse.Action) -> bool:
    return action.type in (int, float) or getattr(action.type, "numeric", False)


NUMERIC = [(path, action) for path, parser in LEAVES for action in parser._actions if is_numeric(action)]


def value_count(action: argparse.Action) -> int:
    return action.nargs if isinstance(action.nargs, int) else 1


def filler(action: argparse.Action) -> list[str]:
    """A harmless value for an argument the parser requires (never the one under test)."""
    if action.choices:
        value = str(next(iter(action.choices)))
    elif is_numeric(action):
        value = "1"
    else:
        value = "out.png" if "-o" in action.option_strings else "in.png"
    return [*action.option_strings[:1], *[value] * value_count(action)]


def required_args(parser: argparse.ArgumentParser, skip: argparse.Action | None = None) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:
        if action is skip or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        positional = not action.option_strings
        if action.required or (positional and action.nargs not in ("?", "*")):
            argv += filler(action)
    return argv


def parse(path: tuple[str, ...], argv: list[str]) -> argparse.Namespace:
    return PARSER.parse_args([*path, *argv])


def name(path: tuple[str, ...], action: argparse.Action) -> str:
    return " ".join([*path, action.option_strings[-1] if action.option_strings else action.dest])


def test_the_walk_finds_every_command_group():
    groups = {path[0] for path, _ in LEAVES}
    assert groups >= {"style", "train", "models", "bench", "numerals", "gan", "vae", "faces", "serve"}
    assert len(NUMERIC) > 60  # sanity: the walk reaches the options


@pytest.mark.parametrize("path, action", NUMERIC, ids=[name(p, a) for p, a in NUMERIC])
def test_every_numeric_option_declares_its_bounds(path, action):
    """A plain type=int/float lets -5, 0 and 1e30 through: every number goes through cli.arguments."""
    if action.choices:
        return  # a fixed set of values is a bound
    kind = action.type
    assert getattr(kind, "numeric", False), f"{name(path, action)}: use a type from slimvision.cli.arguments"
    assert kind.minimum is not None or kind.above is not None, f"{name(path, action)}: no lower bound"
    assert kind.maximum is not None, f"{name(path, action)}: no upper bound (a typo with extra zeros gets through)"


CASES = [(path, action, value) for path, action in NUMERIC for value in HOSTILE]


@pytest.mark.parametrize("path, action, value", CASES, ids=[f"{name(p, a)}={v}" for p, a, v in CASES])
def test_hostile_numbers_are_refused_in_one_line_or_accepted_as_meaningful(path, action, value, capsys):
    parser = dict(LEAVES)[path]
    option = [*action.option_strings[:1], *[value] * value_count(action)]
    if not action.option_strings:
        option = [value] * value_count(action)
    argv = [*option, *required_args(parser, skip=action)]
    try:
        namespace = parse(path, argv)
    except SystemExit as exit_:
        err = capsys.readouterr().err
        assert exit_.code == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "Traceback" not in err
        assert any(spelling in lines[0] for spelling in [*action.option_strings, action.dest]), lines[0]
        return
    parsed = getattr(namespace, action.dest)
    values = parsed if isinstance(parsed, list) else [parsed]
    assert value.lower() not in NON_FINITE, f"{name(path, action)} accepted {value!r} as {parsed!r}"
    for number in values:
        assert number == number and abs(number) != float("inf"), f"{name(path, action)} accepted {parsed!r}"
        if action.choices:
            assert number in action.choices
            continue
        kind = action.type
        if getattr(kind, "minimum", None) is not None:
            assert number >= kind.minimum
        if getattr(kind, "above", None) is not None:
            assert number > kind.above
        if getattr(kind, "maximum", None) is not None:
            assert number <= kind.maximum


# --------------------------------------------------------------------------- switches and spellings
JSON = [(path, action) for path, parser in LEAVES for action in parser._actions if "--json" in action.option_strings]


@pytest.mark.parametrize("path, action", JSON, ids=[name(p, a) for p, a in JSON])
def test_json_is_always_a_switch(path, action):
    assert action.nargs == 0 and action.option_strings == ["--json"], f"{name(path, action)} takes a value"


# Commands that show a progress bar: each takes -q/--quiet.
WITH_A_BAR = [("style", "stylize"), ("style", "video"), ("vae", "train"), ("gan", "train"),
              ("gan", "prepare-cats"), ("gan", "prepare-images"), ("train", "style-predictor"),
              ("train", "style-transformer"), ("numerals", "render"), ("numerals", "train"), ("numerals", "eval"),
              ("numerals", "read"), ("faces", "detect"), ("faces", "enroll"), ("faces", "identify"),
              ("faces", "video"), ("faces", "eval"), ("faces", "gallery", "add")]


@pytest.mark.parametrize("path", WITH_A_BAR, ids=" ".join)
def test_quiet_on_every_command_with_a_bar(path):
    options = {string for action in dict(LEAVES)[path]._actions for string in action.option_strings}
    assert {"-q", "--quiet"} <= options


@pytest.mark.parametrize("path", [path for path, _ in LEAVES if path[0] == "style"], ids=" ".join)
def test_model_on_every_style_command(path):
    options = {string for action in dict(LEAVES)[path]._actions for string in action.option_strings}
    assert "--model" in options


def _between_positionals(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]] | None:
    """argv with a switch placed between two positional values, and the same with it at the end."""
    positionals: list[str] = []
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            if action.choices:
                positionals += [str(next(iter(action.choices)))] * value_count(action)
            else:
                positionals += [f"p{len(positionals)}.png"] * (2 if action.nargs in ("+", "*") else value_count(action))
    switch = next((action for action in parser._actions if action.nargs == 0 and action.option_strings
                   and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))), None)
    if len(positionals) < 2 or switch is None:
        return None
    options = [argument for action in parser._actions if action.option_strings and action.required
               for argument in filler(action)]
    flag = switch.option_strings[-1]
    return ([positionals[0], flag, *positionals[1:], *options], [*positionals, *options, flag])


ORDERED = [(path, parser) for path, parser in LEAVES if _between_positionals(parser) is not None]


@pytest.mark.parametrize("path, parser", ORDERED, ids=[" ".join(p) for p, _ in ORDERED])
def test_options_may_sit_between_positionals(path, parser):
    between, at_end = _between_positionals(parser)
    assert vars(parse(path, between)) == vars(parse(path, at_end))


def test_negative_numbers_and_lists_are_values_not_options():
    """A CT lung window is -600,1500; argparse alone took "-600,1500" for an unknown option."""
    assert parse(("vae", "denoise"), ["in.png", "-o", "out.png", "--window", "-600,1500"]).window == [-600, 1500]
    assert parse(("vae", "denoise"), ["in.png", "--window", "-1e3,4e3", "-o", "out.png"]).window == [-1000, 4000]


def test_the_walk_checks_option_order_where_it_matters():
    paths = {path for path, _ in ORDERED}
    assert {("style", "stylize"), ("style", "vector"), ("faces", "verify")} <= paths


# --------------------------------------------------------------------------- cheap runs at the edges
@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from tests.conftest import make_content, save_png

    return save_png(make_content(64, 64), tmp_path_factory.mktemp("options") / "photo.png")


@pytest.mark.parametrize("argv, code", [
    (["style", "stylize", "{photo}", "-s", "{photo}", "-o", "{out}/a.png", "--strength", "0", "--max-side", "16",
      "--workers", "1", "--threads", "1", "--max-pixels", "4096"], 0),
    (["style", "stylize", "{photo}", "-s", "{photo}", "-o", "{out}/b.png", "--max-pixels", "1"], 2),
    (["style", "stylize", "{photo}", "-s", "{photo}", "-o", "{out}/c.png", "--memory-budget", "1e-9"], 2),
    (["gan", "generate", "-o", "{out}/g.png", "-n", "1", "--columns", "1", "--seed", str(2**32 - 1)], 0),
    (["vae", "sample", "-o", "{out}/v.png", "-n", "1", "--columns", "1", "--temperature", "0",
      "--seed", str(2**32 - 1)], 0),
], ids=["style-edges", "style-max-pixels-1", "style-tiny-budget", "gan-largest-seed", "vae-zero-temperature"])
def test_edge_values_run_or_fail_in_one_line(argv, code, photo, tmp_path, capsys):
    argv = [part.format(photo=photo, out=tmp_path) for part in argv]
    assert exit_code(argv) == code
    err = capsys.readouterr().err.strip()
    if code:
        assert err.startswith("error: ") and "\n" not in err, err
