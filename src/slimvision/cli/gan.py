"""``slimvision gan ...``: generative models. So far: preparing the CAT dataset's head crops."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import number_list

_SIZES = number_list("--sizes", minimum=8)


def add_commands(groups: argparse._SubParsersAction) -> None:
    gan = groups.add_parser("gan", help="generative adversarial networks (DCGAN)",
                            description="DCGAN image generation: data preparation (training and sampling follow).")
    commands = gan.add_subparsers(dest="command", metavar="COMMAND", required=True)
    prepare = commands.add_parser(
        "prepare-cats", help="crop the CAT dataset's cat heads into size buckets",
        description="Read the unpacked CAT dataset (CAT_00 .. CAT_06 with their .cat annotations), apply the "
                    "two known annotation fixes, drop the known outliers, level the eyes, crop a square "
                    "head and write it into OUTPUT/<size>/ for every size the head reaches, with "
                    "report.json listing what was dropped and why.")
    prepare.add_argument("source", type=Path, help="the unpacked dataset folder")
    prepare.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    prepare.add_argument("--sizes", type=_SIZES, default=_SIZES("64,128"),
                         help="crop sides; a head goes into each size it is at least as wide as (default 64,128)")
    prepare.add_argument("--overwrite", action="store_true", help="replace crops that exist")
    prepare.add_argument("--json", action="store_true", help="print the report as JSON")
    prepare.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(run=run_prepare_cats)

    images = commands.add_parser(
        "prepare-images", help="crop any image folder into size buckets (centre squares)",
        description="Cut the centre square of every image under SOURCE (recursively) and write it into "
                    "OUTPUT/<size>/ for every size it is at least as wide as, with report.json. Unreadable "
                    "images are dropped and listed, not fatal.")
    images.add_argument("source", type=Path, help="a folder of images")
    images.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    images.add_argument("--sizes", type=_SIZES, default=_SIZES("64,128"),
                        help="crop sides (default 64,128)")
    images.add_argument("--overwrite", action="store_true", help="replace crops that exist")
    images.add_argument("--json", action="store_true", help="print the report as JSON")
    images.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    images.set_defaults(run=run_prepare_images)


def run_prepare_cats(args: argparse.Namespace) -> int:
    from slimvision.data.cats import prepare_cats

    return _print_report(args, prepare_cats)


def run_prepare_images(args: argparse.Namespace) -> int:
    from slimvision.data.cats import prepare_images

    return _print_report(args, prepare_images)


def _print_report(args: argparse.Namespace, prepare: Any) -> int:
    sizes = tuple(sorted({int(size) for size in args.sizes}))
    report = prepare(args.source, args.output, buckets=sizes, overwrite=args.overwrite,
                     progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    kept = ", ".join(f"{count} at {side} px" for side, count in report.kept.items())
    dropped = "; ".join(f"{len(names)} {reason}" for reason, names in report.dropped.items()) or "none"
    print(f"kept {kept}\ndropped: {dropped}\nreport: {args.output / 'report.json'}")
    return 0
