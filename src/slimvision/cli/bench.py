"""``slimvision bench style``: every style model variant side by side (size, speed, fidelity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimvision.cli.arguments import add_json, add_overwrite, number_list, positive_int, threads

_SIZES = number_list("--sizes", minimum=64, maximum=8192)


def add_commands(groups: argparse._SubParsersAction) -> None:
    bench = groups.add_parser("bench", help="measure model variants side by side")
    commands = bench.add_subparsers(dest="command", metavar="COMMAND", required=True)
    style = commands.add_parser(
        "style", help="teacher vs compressed style models: size, ms, vector cosine, output SSIM/PSNR",
        description="Runs every style variant (teacher int8 as shipped, teacher fp32, our students and their "
                    "int8/fp16 versions) on this machine, interleaved, and prints medians, ratios to the shipped "
                    "teacher, style-vector cosine on held-out style images and output SSIM/PSNR against the "
                    "teacher's output. Takes 1-3 minutes on 2 cores.")
    style.add_argument("--sizes", type=_SIZES, default=_SIZES("512,1024"),
                       help="transform sizes in px, whole numbers 64..8192, comma-separated (default 512,1024)")
    style.add_argument("--repeats", type=positive_int("--repeats", 10_000), default=7,
                       help="timed runs per variant and size (default 7)")
    style.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    style.add_argument("--sheet", type=Path, default=None, help="save a comparison sheet PNG here")
    style.add_argument("--report", type=Path, default=None, metavar="FILE",
                       help="also write the full report as JSON to FILE")
    add_json(style, "the full report (instead of the table)")
    add_overwrite(style, "--report and --sheet files")
    style.set_defaults(run=run_style_bench)


def run_style_bench(args: argparse.Namespace) -> int:
    from slimvision.bench.style_compress import compare, table
    from slimvision.errors import ConfigError
    from slimvision.io.atomic import plan_outputs, write_text_atomic

    if any(size != int(size) for size in args.sizes):
        raise ConfigError(f"--sizes must be whole numbers of pixels from 64 to 8192, got {args.sizes}")
    sizes = [int(size) for size in args.sizes]
    # Both files are checked before minutes of measuring, not after.
    plan_outputs([path for path in (args.report, args.sheet) if path is not None], overwrite=args.overwrite)
    report = compare(sizes, repeats=args.repeats, threads=args.threads, sheet=args.sheet)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
        if args.sheet:
            print(f"comparison sheet: {args.sheet}")
    if args.report:
        write_text_atomic(args.report, json.dumps(report, indent=2) + "\n", overwrite=args.overwrite)
    return 0
