"""What the CLI tests share: running the real entry point and reading its one-line errors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slimvision.cli.main import main


def exit_code(argv: Sequence[str | Path]) -> int:
    """``main(argv)``'s exit code, argparse's refusals (SystemExit) included."""
    try:
        return main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return int(exit_.code or 0)


def one_line_error(capsys) -> str:
    """The captured stderr, asserted to be one ``error: ...`` line."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err
