"""``slimvision compress search``: choose a style student's size by measurement under a latency budget."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from slimvision.cli.arguments import (
    MAX_SIDE, add_json, add_output, add_quiet, non_negative_int, positive_float, positive_int, threads,
)

_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


def transformer_sizes(text: str) -> list[tuple[int, int]]:
    """An argparse ``type`` for '512,1280x720': square sides or WIDTHxHEIGHT, as (height, width).

    Example:
        >>> transformer_sizes("512,1280x720")
        [(512, 512), (720, 1280)]
    """
    sizes = []
    for part in (part.strip() for part in text.split(",")):
        match = _SIZE.match(part)
        if not match:
            raise argparse.ArgumentTypeError(f"--sizes must be sides or WIDTHxHEIGHT separated by commas, "
                                             f"like 512,1280x720; got {text!r}")
        width = int(match[1])
        height = int(match[2] or width)
        if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
            raise argparse.ArgumentTypeError(f"--sizes: each side must be 16 to {MAX_SIDE} px, got {part!r}")
        sizes.append((height, width))
    return sizes


def add_commands(groups: argparse._SubParsersAction) -> None:
    compress = groups.add_parser("compress", help="choose and measure compressed students")
    commands = compress.add_subparsers(dest="command", metavar="COMMAND", required=True)
    search = commands.add_parser(
        "search", help="latency-budgeted student search: time candidates, train the front runners, Pareto front",
        description="Times every candidate architecture of a style student in ONNX Runtime on this CPU (untrained "
                    "weights: the time depends on the architecture), next to the teacher's graph in the same "
                    "run; drops those over the budget; trains the front runners briefly with the distillation "
                    "recipe and scores them on held-out styles (predictor: vector R^2; transformer: output SSIM); "
                    "prints the table and writes DIR/search.json and DIR/front.png (fidelity vs latency, the "
                    "Pareto front joined). Each trained candidate's result is kept in DIR/candidates/NAME/: run "
                    "again into the same DIR and they are not trained again.")
    search.add_argument("--student", required=True, choices=("predictor", "transformer"),
                        help="which style student to size")
    search.add_argument("--budget-ms", required=True, type=positive_float("--budget-ms", 1e7), metavar="MS",
                        help="latency budget in ms on this CPU: the predictor at 256 px, the transformer at the "
                             "first of --sizes")
    search.add_argument("--front", type=non_negative_int("--front", 1000), default=3, metavar="N",
                        help="front runners to train and score (default 3; 0: time only)")
    search.add_argument("--train-steps", type=positive_int("--train-steps", 1_000_000), default=200, metavar="S",
                        help="training steps for each front runner (default 200)")
    add_output(search, "folder for search.json, front.png and each candidate's training run", metavar="DIR")
    search.add_argument("--candidates", type=Path, default=None, metavar="JSON",
                        help='a JSON list of candidates, each {"name": ..., knob: value}; default: the built-in '
                             "family (docs/compress.md lists both)")
    search.add_argument("--sizes", type=transformer_sizes, default=None,
                        help="transformer only: content sizes to time, sides or WIDTHxHEIGHT (default 512,1280x720)")
    search.add_argument("--repeats", type=positive_int("--repeats", 10_000), default=7,
                        help="timed runs of each graph per size, interleaved (default 7)")
    search.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    search.add_argument("--batch-size", type=positive_int("--batch-size", 4096), default=None,
                        help="training batch size (default: the recipe's, 24 for the predictor, 8 for the transformer)")
    add_json(search, "the full report")
    add_quiet(search)
    search.set_defaults(run=run_search)


def run_search(args: argparse.Namespace) -> int:
    from slimvision.bench.search import SearchSettings, search, table
    from slimvision.bench.style_search import read_family, style_search_parts
    from slimvision.errors import ConfigError, OutputError

    if args.output.exists() and not args.output.is_dir():
        raise OutputError(args.output, "is a file; give a folder for the search's outputs")
    if args.sizes is not None and args.student != "transformer":
        raise ConfigError("--sizes is for --student transformer (the predictor is timed at its 256 px input)")
    settings = SearchSettings(budget_ms=args.budget_ms, front_runners=args.front, train_steps=args.train_steps,
                              repeats=args.repeats, threads=args.threads)
    family = read_family(args.candidates) if args.candidates is not None else None
    candidates, reference, train, score = style_search_parts(args.student, family, sizes=args.sizes,
                                                             batch_size=args.batch_size, progress=not args.quiet)
    result = search(candidates, reference, settings, train=train, score=score, folder=args.output,
                    progress=not args.quiet)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(table(result))
        print(f"report: {result.report_path}\nplot: {result.plot_path}")
    return 0
