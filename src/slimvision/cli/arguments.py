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
