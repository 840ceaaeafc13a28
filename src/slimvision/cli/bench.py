"""``slimvision bench style``: every style model variant side by side (size, speed, fidelity)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(groups: argparse._SubParsersAction) -> None:
    bench = groups.add_parser("bench", help="measure model variants side by side")
    commands = bench.add_subparsers(dest="command", metavar="COMMAND", required=True)
    style = commands.add_parser(
        "style", help="teacher vs compressed style models: size, ms, vector cosine, output SSIM/PSNR",
        description="Runs every style variant (teacher int8 as shipped, teacher fp32, our students and their "
                    "int8/fp16 versions) on this machine, interleaved, and prints medians, ratios to the shipped "
                    "teacher, style-vector cosine on held-out style images and output SSIM/PSNR against the "
                    "teacher's output. Takes 1-3 minutes on 2 cores.")
    style.add_argument("--sizes", default="512,1024", help="transform sizes in px, comma-separated (default 512,1024)")
    style.add_argument("--repeats", type=int, default=7, help="timed runs per variant and size (default 7)")
    style.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    style.add_argument("--sheet", type=Path, default=None, help="save a comparison sheet PNG here")
    style.add_argument("--json", type=Path, default=None, help="also write the full report as JSON here")
    style.set_defaults(run=run_style_bench)


def run_style_bench(args: argparse.Namespace) -> int:
    from slimvision.bench.style_compress import compare, table
    from slimvision.errors import SlimvisionError
    from slimvision.io.atomic import write_text_atomic

    try:
        sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    except ValueError:
        raise SlimvisionError(f"--sizes must be integers separated by commas, got {args.sizes!r}") from None
    if not sizes or min(sizes) < 64 or args.repeats < 1:
        raise SlimvisionError("--sizes must be >= 64 px and --repeats >= 1")
    report = compare(sizes, repeats=args.repeats, threads=args.threads, sheet=args.sheet)
    print(table(report))
    if args.sheet:
        print(f"comparison sheet: {args.sheet}")
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n", overwrite=True)
    return 0
