"""Argument types shared by command groups (standard library only: the CLI must start fast)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def number_list(what: str, minimum: float | None = None) -> Callable[[str], list[float]]:
    """An argparse ``type`` for '0.7,0.3': a non-empty list of floats, each >= ``minimum`` if given.

    Example:
        >>> number_list("levels", minimum=0)("0,0.5,1")
        [0.0, 0.5, 1.0]
    """

    def parse(text: str) -> list[float]:
        try:
            values = [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be numbers separated by commas, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        if minimum is not None and min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum:g}, got {text!r}")
        return values

    return parse


def _number(text: str, what: str, kind: type) -> float:
    """Parse ``text`` as ``kind`` (int or float), refusing NaN and infinities with a one-line reason."""
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{what} must be {noun}, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {text!r}")
    return value


def bounded(
    what: str,
    kind: type = float,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
) -> Callable[[str], float]:
    """An argparse ``type`` for one finite number within bounds (inclusive; ``above`` is exclusive).

    Every numeric option goes through this (or the shortcuts below), so negative, zero, NaN and
    huge values get one line naming the option instead of a traceback deep in a pipeline.

    Example:
        >>> bounded("--strength", float, 0, 1)("0.5")
        0.5
        >>> bounded("--workers", int, 1)("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: --workers must be at least 1, got '0'
    """

    def parse(text: str) -> float:
        value = _number(text, what, kind)
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum:g}, got {text!r}")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{what} must be more than {above:g}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{what} must be at most {maximum:g}, got {text!r}")
        return value

    return parse


# The limits every command shares. Counts and sizes are capped so that a typo (an extra zero or
# three) is refused at once rather than after allocating gigabytes.
MAX_COUNT = 10_000_000
MAX_SIDE = 65_536


def positive_int(what: str, maximum: int = MAX_COUNT) -> Callable[[str], int]:
    """Whole number >= 1 (steps, workers, image counts, sizes)."""
    return bounded(what, int, 1, maximum)  # type: ignore[return-value]


def non_negative_int(what: str, maximum: int = MAX_COUNT) -> Callable[[str], int]:
    """Whole number >= 0 (an interval where 0 turns the thing off)."""
    return bounded(what, int, 0, maximum)  # type: ignore[return-value]


def positive_float(what: str, maximum: float | None = None) -> Callable[[str], float]:
    """Finite number > 0 (learning rates, budgets in GB, timeouts)."""
    return bounded(what, float, above=0, maximum=maximum)


def fraction(what: str) -> Callable[[str], float]:
    """Finite number in [0, 1] (strengths, thresholds on scores, probabilities)."""
    return bounded(what, float, 0, 1)


def seed(what: str = "--seed") -> Callable[[str], int]:
    """A random seed: numpy and torch both take 0 .. 2**32 - 1."""
    return bounded(what, int, 0, 2**32 - 1)  # type: ignore[return-value]


def port(what: str = "--port") -> Callable[[str], int]:
    """A TCP port; 0 asks the system for a free one."""
    return bounded(what, int, 0, 65_535)  # type: ignore[return-value]


def add_overwrite(parser: argparse.ArgumentParser, what: str = "outputs") -> None:
    """``--overwrite``: one spelling and one meaning everywhere (never replaces an input)."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} that exist (never an input)")


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: always a switch that prints JSON to stdout instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout instead of text")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: on every command that shows a progress bar."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
