"""``slimvision`` command line: one sub-command group per system.

Start-up matters for a CLI, so this module imports only the standard library; each command
imports the pipeline it needs when it runs (the inference path never imports torch).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from slimvision import __version__
from slimvision.errors import SlimvisionError

log = logging.getLogger("slimvision")


def build_parser() -> argparse.ArgumentParser:
    from slimvision.cli import batch, bench, compress, demo, faces, gan, models, numerals, serve, style, train, vae
    from slimvision.cli.arguments import CommandParser

    # Every sub-command parser inherits this class: options anywhere, one-line errors.
    parser = CommandParser(
        prog="slimvision",
        description="Small, fast neural image models on ONNX Runtime. "
                    "Run 'slimvision COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"slimvision {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", required=True)
    style.add_commands(groups)
    train.add_commands(groups)
    models.add_commands(groups)
    bench.add_commands(groups)
    compress.add_commands(groups)
    numerals.add_commands(groups)
    gan.add_commands(groups)
    vae.add_commands(groups)
    faces.add_commands(groups)
    serve.add_commands(groups)
    batch.add_commands(groups)
    demo.add_commands(groups, build_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except SlimvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout went away (`slimvision models --json | head`): stop quietly, no traceback, and
        # point stdout at nothing so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:
        # A folder that cannot be made, a disk that is full, a file without permission: one line
        # naming the path, as for every other bad input (-vv shows the traceback).
        if args.verbose >= 2:
            raise
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 1


def os_error_line(exc: OSError) -> str:
    """``path: what went wrong`` for an OSError that names a file, else its own text.

    Example:
        >>> os_error_line(FileNotFoundError(2, "No such file or directory", "/proc/nope"))
        '/proc/nope: no such file or directory'
    """
    if exc.filename is None or not exc.strerror:
        return str(exc)
    return f"{exc.filename}: {exc.strerror[0].lower()}{exc.strerror[1:]}"


def run() -> None:
    """Console-script entry point: ``main()``, then exit without the interpreter's teardown.

    Once a command has returned, every output is closed and renamed into place; what is left
    is finalising ONNX Runtime sessions, thread pools and modules, about 100 ms of a 0.7 s
    one-image run on our 2-core box. Streams and logging are flushed first. Unexpected
    exceptions (and argparse's exits) still leave the normal way, with their traceback.
    """
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # e.g. stdout piped into `head`, which has gone
        code = code or 1
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
