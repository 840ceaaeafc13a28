"""Argument types shared by command groups (standard library only: the CLI must start fast)."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from slimvision.errors import OutputError


def number_list(what: str, minimum: float | None = None,
                maximum: float | None = None) -> Callable[[str], list[float]]:
    """An argparse ``type`` for '0.7,0.3': a non-empty list of finite floats within the bounds given.

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
        if not all(value == value and abs(value) != float("inf") for value in values):
            raise argparse.ArgumentTypeError(f"{what} must be finite numbers, got {text!r}")
        if minimum is not None and min(values) < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum:g}, got {text!r}")
        if maximum is not None and max(values) > maximum:
            raise argparse.ArgumentTypeError(f"{what} must be at most {maximum:g}, got {text!r}")
        return values

    _describe(parse, what, float, minimum, maximum)
    return parse


def _describe(parse: Callable[[str], Any], what: str, kind: type, minimum: float | None,
              maximum: float | None, above: float | None = None) -> None:
    """Attach the bounds to a number type, so tests and help can tell what it accepts."""
    parse.numeric = True  # type: ignore[attr-defined]
    parse.what, parse.kind = what, kind  # type: ignore[attr-defined]
    parse.minimum, parse.maximum, parse.above = minimum, maximum, above  # type: ignore[attr-defined]


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

    _describe(parse, what, kind, minimum, maximum, above)
    return parse


def or_word(parse: Callable[[str], Any], *words: str) -> Callable[[str], Any]:
    """An argparse ``type`` that takes one of ``words`` as it is (``auto``), else what ``parse`` takes.

    Example:
        >>> weight = or_word(bounded("--hint-weight", float, 0), "auto")
        >>> weight("auto"), weight("0.5")
        ('auto', 0.5)
        >>> weight("-1")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: --hint-weight must be auto or at least 0, got '-1'
    """

    def parse_or_word(text: str) -> Any:
        if text in words:
            return text
        try:
            return parse(text)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(" must be ", f" must be {' or '.join(words)} or ", 1)) \
                from None

    parse_or_word.__dict__.update(parse.__dict__)  # the number's bounds, for tests and help
    parse_or_word.words = words  # type: ignore[attr-defined]
    return parse_or_word


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


def non_negative_float(what: str, maximum: float | None = None) -> Callable[[str], float]:
    """Finite number >= 0 (loss weights, noise levels, durations where 0 turns the thing off)."""
    return bounded(what, float, 0, maximum)


def threads(what: str = "--threads") -> Callable[[str], int]:
    """ONNX Runtime / torch threads: 1 .. 1024 (more is a typo, not a machine)."""
    return positive_int(what, 1024)


def max_pixels(what: str = "--max-pixels") -> Callable[[str], int]:
    """A pixel-count limit for decoding: at least 1, at most 2**31 (a 46k x 46k image)."""
    return positive_int(what, 2**31)


def fraction(what: str) -> Callable[[str], float]:
    """Finite number in [0, 1] (strengths, thresholds on scores, probabilities)."""
    return bounded(what, float, 0, 1)


def seed(what: str = "--seed") -> Callable[[str], int]:
    """A random seed: numpy and torch both take 0 .. 2**32 - 1."""
    return bounded(what, int, 0, 2**32 - 1)  # type: ignore[return-value]


def port(what: str = "--port") -> Callable[[str], int]:
    """A TCP port; 0 asks the system for a free one."""
    return bounded(what, int, 0, 65_535)  # type: ignore[return-value]


def run_folder() -> Callable[[str], Path]:
    """An argparse ``type`` for a run folder (made if missing): a file there, or a file where one of
    its parent folders would be made, is one line naming it, not an OSError after the settings
    were read.

    Example:
        >>> run_folder()("runs/first")
        PosixPath('runs/first')
    """

    def parse(text: str) -> Path:
        path = Path(text)
        for folder in (path, *path.parents):
            if folder.exists():
                if folder.is_dir():
                    return path
                where = "is a file" if folder == path else f"cannot be made: {folder} is a file"
                raise argparse.ArgumentTypeError(f"{text}: {where}; give a folder (made if missing)")
        return path

    return parse


def add_overwrite(parser: argparse.ArgumentParser, what: str = "outputs") -> None:
    """``--overwrite``: one spelling and one meaning everywhere (never replaces an input)."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} already there (never an input)")


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    """``--json``: always a switch that prints JSON to stdout instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout instead of text")


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet``: on every command that shows a progress bar."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_skip_existing(parser: argparse.ArgumentParser) -> None:
    """``--skip-existing``: resume a batch, leaving outputs that are already complete as they are."""
    parser.add_argument("--skip-existing", action="store_true",
                        help="resume a batch: keep outputs that already exist and are complete, write the rest")


class _OutputAction(argparse.Action):
    """Store ``-o`` as a Path and remember whether it was written as a folder (a trailing '/').

    ``Path("out/")`` drops the slash, so the wish is kept in ``<dest>_is_folder``.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        text = str(values)
        setattr(namespace, self.dest, Path(text))
        setattr(namespace, f"{self.dest}_is_folder", text.endswith(("/", os.sep)))


def add_output(parser: argparse.ArgumentParser, help: str, *, required: bool = True,
               default: Path | None = None, metavar: str | None = None) -> None:
    """``-o/--output`` as a Path, with ``args.output_is_folder`` set when it ends with '/'."""
    parser.add_argument("-o", "--output", action=_OutputAction, required=required, default=default,
                        metavar=metavar, help=help)
    parser.set_defaults(output_is_folder=False)


def check_folder_output(output: Path, is_folder: bool, outputs: int, *,
                        file_suffixes: Sequence[str] = ()) -> None:
    """Refuse ``-o x.png`` when a command would write several outputs into a folder named x.png.

    A name with a suffix reads as a file; turning it silently into a folder surprises. It is
    accepted as a folder only when it already is one or was written with a trailing '/'.

    Args:
        output: The ``-o`` path.
        is_folder: ``-o`` ended with '/'.
        outputs: How many files the command is about to write into the folder.
        file_suffixes: Suffixes the command itself treats as single-file outputs (named in the message).

    Raises:
        OutputError: ``output`` looks like a file name and is neither a folder nor written as one.
    """
    if is_folder or output.is_dir() or not output.suffix:
        return
    count = f"{outputs} outputs" if outputs > 1 else "outputs into a folder"
    hint = f"; a single file must end with {' or '.join(file_suffixes)}" if file_suffixes else ""
    raise OutputError(output, f"looks like a file name, but this run writes {count}: give a folder "
                              f"(end it with '/' to use this name){hint}")


_REPEATED_OPTION = re.compile(r"^argument (?P<names>[^:]+): (?P<what>\S+) ")
# What argparse takes for a value rather than an option: negative numbers with exponents and
# comma lists too ("--window -600,1500", "--lr -1e-3": the type then says what is wrong).
_NUMBER = r"(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_NEGATIVE_NUMBERS = re.compile(rf"^-{_NUMBER}(,\s*[-+]?{_NUMBER})*$")


class CommandParser(argparse.ArgumentParser):
    """argparse with options accepted anywhere between positionals, and one-line errors.

    * ``rename --gallery g a b`` and ``stylize a.jpg -s s.jpg b.jpg``: a leaf command (one with
      no sub-commands) parses with :meth:`parse_known_intermixed_args`, so an option between
      positionals no longer ends the positional list.
    * Errors are one line, ``error: ... (see 'PROG --help')``, exit 2, like every other error
      the CLI prints; the option is named once, not twice.
    * ``-600,1500`` and ``-1e-3`` are values, not unknown options, so a CT lung window can be
      given as ``--window -600,1500`` and ``--lr -1e-3`` is refused by its type, by name.
    """

    _intermixing = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBERS

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True  # parse_known_intermixed_args calls back into parse_known_args
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> Any:  # type: ignore[override]
        match = _REPEATED_OPTION.match(message)
        if match and match["what"] in match["names"].split("/"):
            message = message[len("argument ") + len(match["names"]) + 2:]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")
