"""``slimvision bench style``: every style model variant side by side (size, speed, fidelity);
``slimvision bench fidelity``: a student against its teacher in output space, worst cases first."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slimvision.cli.arguments import add_json, add_overwrite, add_quiet, bounded, positive_int, seed, threads
from slimvision.cli.compress import transformer_sizes



def add_commands(groups: argparse._SubParsersAction) -> None:
    bench = groups.add_parser("bench", help="measure model variants side by side")
    commands = bench.add_subparsers(dest="command", metavar="COMMAND", required=True)
    style = commands.add_parser(
        "style", help="teacher vs compressed style models: size, ms, vector cosine, output SSIM/PSNR",
        description="Runs every style variant (teacher int8 as shipped, teacher fp32, our students and their "
                    "int8/fp16 versions) on this machine, interleaved, and prints medians, ratios to the shipped "
                    "teacher, style-vector cosine on held-out style images and output SSIM/PSNR against the "
                    "teacher's output. Takes 1-3 minutes on 2 cores.")
    style.add_argument("--sizes", type=transformer_sizes, default=transformer_sizes("512,1024"),
                       help="transform sizes: square sides or WIDTHxHEIGHT in px, comma-separated, like "
                            "512,1280x720 (default 512,1024)")
    style.add_argument("--repeats", type=positive_int("--repeats", 10_000), default=7,
                       help="timed runs per variant and size (default 7)")
    style.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    style.add_argument("--sheet", type=Path, default=None, help="save a comparison sheet PNG here")
    style.add_argument("--report", type=Path, default=None, metavar="FILE",
                       help="also write the full report as JSON to FILE")
    add_json(style, "the full report")
    add_overwrite(style, "--report and --sheet files")
    style.set_defaults(run=run_style_bench)
    _add_fidelity(commands)


#: Metric names of the style fidelity harness (kept here: the CLI must not import the harness to parse).
_STYLE_METRICS = ("ssim", "lite0_pd", "colour_emd", "vector_ccos")


def _add_fidelity(commands: argparse._SubParsersAction) -> None:
    fidelity = commands.add_parser(
        "fidelity", help="a style student vs its teacher in output space, per pair, worst cases first",
        description="Paints content photos with held-out style images by the teacher and by the student (and, "
                    "unless --no-mixed, by each student half beside the teacher's other half) and scores each "
                    "pair against the teacher's output: SSIM, Lite0-PD (perceptual distance on frozen "
                    "EfficientNet-Lite0 features), colour EMD (earth mover's distance of the colour histograms) "
                    "and the centred cosine of the style vectors; over the set, vector R². Prints the per-pair "
                    "table, mean and worst per score, means per style family and content source, and the worst "
                    "pairs. Styles default to the held-out families of slimvision.data.style_families (plus the "
                    "held-out real images); contents to colour photos the installed packages ship. "
                    "About 1 s per pair on 2 cores.")
    fidelity.add_argument("--teacher", default=None,
                          help="registered style model to compare with (default: what --model teacher runs, "
                               "magenta-arbitrary-v1-fp32)")
    fidelity.add_argument("--student", default=None,
                          help="registered style model scored (default: what --model fast runs)")
    fidelity.add_argument("--student-predictor", type=Path, default=None, metavar="ONNX",
                          help="a predictor graph with its card in place of the student's own (slimvision "
                               "compress gptq's RUN/predictor.int4w.onnx): to check it inside the bundle")
    fidelity.add_argument("--no-mixed", dest="mixed", action="store_false",
                          help="score the student bundle only, not each half beside the teacher's other half")
    fidelity.add_argument("--styles", type=Path, default=None, metavar="DIR",
                          help="style images to use instead of the held-out families (each sub-folder a family)")
    fidelity.add_argument("--contents", type=Path, default=None, metavar="DIR",
                          help="content photos to use instead of the installed ones (each sub-folder a source)")
    fidelity.add_argument("--split", choices=("held-out", "training"), default="held-out",
                          help="held-out (default): the report's styles, families no student trains on plus the "
                               "held-out real images; training: new renders of the families students train on, in "
                               "training colours, no real images, for choosing between students without looking "
                               "at the held-out set (use a --seed other than 0)")
    fidelity.add_argument("--families", default=None, metavar="NAMES",
                          help="procedural style families: every family of --split (default), 'all' (held-out "
                               "split only), or names separated by commas (see "
                               "slimvision.data.style_families.FAMILIES)")
    fidelity.add_argument("--styles-per-family", type=positive_int("--styles-per-family", 10_000), default=8,
                          help="style images per family (default 8)")
    fidelity.add_argument("--photos", type=positive_int("--photos", 10_000), default=None, metavar="N",
                          help="content photos used (default 10 installed photos, or every image of --contents)")
    fidelity.add_argument("--pairs", type=positive_int("--pairs", 10_000_000), default=None,
                          help="score this many (content, style) pairs drawn under --seed (default: every pair)")
    fidelity.add_argument("--content-side", type=bounded("--content-side", int, 32, 4096), default=384,
                          help="content photos are centre squares of this side, px (default 384)")
    fidelity.add_argument("--style-side", type=bounded("--style-side", int, 32, 4096), default=256,
                          help="style images are made at / cut to this side, px (default 256)")
    fidelity.add_argument("--seed", type=seed(), default=0, help="picks styles, photos and pairs (default 0)")
    fidelity.add_argument("--rank-by", choices=_STYLE_METRICS, default="ssim",
                          help="score that orders the worst pairs (default ssim)")
    fidelity.add_argument("--worst", type=positive_int("--worst", 1000), default=8,
                          help="how many worst pairs to list and draw (default 8)")
    fidelity.add_argument("--sheet", type=Path, default=None, metavar="PNG",
                          help="save the worst pairs side by side: style | content | teacher | each student")
    fidelity.add_argument("--sheet-side", type=bounded("--sheet-side", int, 32, 1024), default=160,
                          help="side of each image on the sheet, px (default 160)")
    fidelity.add_argument("--report", type=Path, default=None, metavar="FILE",
                          help="also write the full report as JSON to FILE")
    fidelity.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    add_json(fidelity, "the full report")
    add_quiet(fidelity)
    add_overwrite(fidelity, "--report and --sheet files")
    fidelity.set_defaults(run=run_fidelity_bench)


def run_style_bench(args: argparse.Namespace) -> int:
    from slimvision.bench.style_compress import compare, table
    from slimvision.io.atomic import plan_outputs, write_text_atomic

    # Both files are checked before minutes of measuring, not after.
    plan_outputs([path for path in (args.report, args.sheet) if path is not None], overwrite=args.overwrite)
    report = compare(args.sizes, repeats=args.repeats, threads=args.threads, sheet=args.sheet)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))
        if args.sheet:
            print(f"comparison sheet: {args.sheet}")
    if args.report:
        write_text_atomic(args.report, json.dumps(report, indent=2) + "\n", overwrite=args.overwrite)
    return 0


def run_fidelity_bench(args: argparse.Namespace) -> int:
    from slimvision.bench.fidelity import format_report
    from slimvision.bench.style_fidelity import StyleFidelitySettings, run_style_fidelity
    from slimvision.inference.style import artifact_for
    from slimvision.io.atomic import plan_outputs, write_text_atomic

    # Both files are checked before minutes of measuring, not after.
    plan_outputs([path for path in (args.report, args.sheet) if path is not None], overwrite=args.overwrite)
    settings = StyleFidelitySettings(
        teacher=args.teacher or artifact_for("teacher"), student=args.student or artifact_for("fast"),
        student_predictor=args.student_predictor, mixed=args.mixed, styles=args.styles, contents=args.contents,
        families=_families(args.families), split=args.split, styles_per_family=args.styles_per_family, content_count=args.photos,
        pairs=args.pairs, content_side=args.content_side, style_side=args.style_side, seed=args.seed,
        rank_by=args.rank_by, worst=args.worst, sheet=args.sheet, sheet_side=args.sheet_side,
        overwrite=args.overwrite, threads=args.threads)
    report = run_style_fidelity(settings, progress=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if args.report:
        write_text_atomic(args.report, json.dumps(report, indent=2) + "\n", overwrite=args.overwrite)
    return 0


def _families(text: str | None) -> tuple[str, ...] | None:
    """``--families``: None for the split's families, every family for 'all', else the names (checked)."""
    from slimvision.data.style_families import FAMILIES, check_family_names

    if text is None or text == "held-out":  # 'held-out': what the default was called before --split
        return None
    if text == "all":
        return tuple(FAMILIES)
    return check_family_names(name.strip() for name in text.split(",") if name.strip())
