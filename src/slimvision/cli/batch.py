"""``slimvision batch style|faces-embed|vae-denoise SOURCE -o DEST [--ray [ADDRESS]]``.

One command for a whole library of images, locally (the worker pool) or on Ray Data (one
machine or a cluster): the same reading, writing and manifest either way
(:mod:`slimvision.inference.batch_jobs`). A rerun resumes: what the manifest marks done is
skipped. A file that fails is a manifest row with its error; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_output, add_overwrite, add_quiet, bounded, fraction,
                                     max_pixels, number_list, positive_int, threads)
from slimvision.errors import ConfigError

SOURCE_HELP = "a folder of images, a glob ('photos/**/*.jpg', quoted) or a .parquet/.csv list of paths"


def add_commands(groups: argparse._SubParsersAction) -> None:
    batch = groups.add_parser("batch", help="run a pipeline over many images, locally or on Ray (resumable)",
                              description="Run one ONNX pipeline over a folder, a glob or a Parquet/CSV list of "
                                          "images into DEST, with DEST/manifest.jsonl recording each input's output, "
                                          "status and error. A rerun skips what the manifest marks done. --ray runs "
                                          "the same jobs on Ray Data actors (docs/scale.md).")
    tasks = batch.add_subparsers(dest="command", metavar="TASK", required=True)

    style = tasks.add_parser("style", help="stylize every image with one style (or blend)",
                             description="Paint every image in one style; outputs are PNG.")
    style.add_argument("-s", "--style", type=Path, action="append", required=True,
                       help="style image or saved .npy vector; repeat to blend several")
    style.add_argument("--weights", type=number_list("--weights", minimum=0, maximum=1e6),
                       help="blend weights, one per --style")
    style.add_argument("--strength", type=fraction("--strength"), default=1.0, help="0-1 (default 1)")
    style.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    style.add_argument("--max-side", type=bounded("--max-side", int, 16, MAX_SIDE), default=None,
                       help="downscale content so its longer side is at most N pixels")
    _style_model_option(style)
    _common(style)

    faces = tasks.add_parser("faces-embed", help="every face's box, landmarks and descriptor, one JSON per image",
                             description="Detect, align and embed every face; one JSON file per image.")
    faces.add_argument("--model", default="face-embedder-dlib-resnet", metavar="NAME_OR_ONNX",
                       help="face embedder: a registered name or an exported embedder.onnx (or its folder)")
    faces.add_argument("--min-face", type=bounded("--min-face", float, 12, MAX_SIDE), default=40.0,
                       help="smallest face searched, px (default 40)")
    faces.add_argument("--min-score", type=fraction("--min-score"), default=0.9,
                       help="face probability kept, 0-1 (default 0.9)")
    _common(faces)

    denoise = tasks.add_parser("vae-denoise", help="restore single grey slices with the medical VAE",
                               description="Restore each single-slice image (PNG/JPEG/TIFF/DICOM); outputs are PNG.")
    denoise.add_argument("--model", type=Path, default=None, help="exported VAE folder (default: the shipped one)")
    _common(denoise)


def _style_model_option(parser: argparse.ArgumentParser) -> None:
    from slimvision.cli.style import _precision_option

    _precision_option(parser)  # --model teacher|fast|NAME and --precision, as on 'style stylize'


def _ray_address(text: str) -> str:
    from slimvision.inference.batch_ray import check_address

    try:
        return check_address(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--ray: ")) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help=SOURCE_HELP)
    add_output(parser, "destination folder (made if missing; holds the outputs and manifest.jsonl)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, type=_ray_address, metavar="ADDRESS",
                        help="run on Ray Data: a local Ray without ADDRESS, else auto, ray://HOST:10001 or "
                             "HOST:6379 (write --ray=ADDRESS before SOURCE)")
    parser.add_argument("--workers", type=positive_int("--workers", 4096), default=None,
                        help="jobs at once: threads locally, actors on Ray (default: one per CPU here)")
    parser.add_argument("--threads", type=threads(), default=1,
                        help="ONNX Runtime threads per worker (default 1: one image per core beats one image "
                             "on all cores)")
    parser.add_argument("--batch-size", type=positive_int("--batch-size", 4096), default=None,
                        help="images per Ray batch (default 4)")
    parser.add_argument("--recursive", action="store_true", help="a folder SOURCE: also its sub-folders")
    parser.add_argument("--max-pixels", type=max_pixels(), default=None,
                        help="refuse inputs larger than this many pixels (default 100 million)")
    add_overwrite(parser, "outputs (and redo what the manifest marks done)")
    add_json(parser, "a summary")
    add_quiet(parser)
    parser.set_defaults(run=run_batch_command)


def _spec(args: argparse.Namespace) -> Any:
    from slimvision.inference.batch_tasks import TaskSpec
    from slimvision.io.images import DEFAULT_MAX_PIXELS

    limits = {"threads": args.threads, "max_pixels": args.max_pixels or DEFAULT_MAX_PIXELS}
    if args.command == "faces-embed":
        from slimvision.inference.batch_tasks import face_model

        face_model(args.model)  # refused here, before any folder is touched
        return TaskSpec("faces-embed", {"model": args.model, "min_face": args.min_face, "min_score": args.min_score},
                        **limits)
    if args.command == "vae-denoise":
        return TaskSpec("vae-denoise", {"model": str(args.model) if args.model else None}, **limits)
    return TaskSpec("style", _style_options(args), **limits)


def _style_options(args: argparse.Namespace) -> dict[str, Any]:
    """The style vector, computed once here (the predictor never runs on the workers)."""
    from slimvision.cli.style import _check_style_args
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import artifact_for
    from slimvision.registry import ARTIFACTS

    _check_style_args(args)
    artifact = artifact_for(args.model, args.precision)
    pipe = ARTIFACTS.create(artifact, settings=SessionSettings())
    vector = pipe.target_vector(args.style, args.weights)
    return {"vector": [float(value) for value in vector.values], "strength": args.strength,
            "preserve_color": args.preserve_color, "max_side": args.max_side, "artifact": artifact}


def run_batch_command(args: argparse.Namespace) -> int:
    from slimvision.inference.batch_jobs import run_batch
    from slimvision.progress import progress_bar

    spec = _spec(args)
    engine, name = None, "local"
    if args.ray is not None:
        from slimvision.inference.batch_ray import DEFAULT_BATCH_SIZE, ray_engine

        engine, name = ray_engine(None if args.ray == "local" else args.ray, args.batch_size or DEFAULT_BATCH_SIZE), \
            f"ray ({args.ray})"
    bar: list[Any] = []
    show = not (args.quiet or args.json)

    def on_plan(todo: int, skipped: int) -> None:
        bar.append(progress_bar(todo, enabled=show and todo > 1, unit="img", desc=f"batch {args.command}",
                                leave=False))

    try:
        summary = run_batch(spec, args.source, args.output, workers=args.workers, engine=engine, engine_name=name,
                            recursive=args.recursive, overwrite=args.overwrite, protected=_protected(args),
                            on_plan=on_plan, on_row=lambda row: bar[0].update())
    finally:
        for shown in bar:
            shown.close()
    _report(args, summary)
    return 1 if summary.failed else 0


def _protected(args: argparse.Namespace) -> list[Path]:
    """Files the job reads besides its sources: never outputs."""
    files = list(getattr(args, "style", None) or [])
    files += [path.with_suffix(".json") for path in files if path.suffix.lower() == ".npy"]
    return files


def _report(args: argparse.Namespace, summary: Any) -> None:
    import sys

    manifest = Path(args.output) / "manifest.jsonl"
    if args.json:
        print(json.dumps({**summary.as_dict(), "manifest": str(manifest)}, indent=2))
        return
    rate = f", {summary.done / summary.seconds:.2f} images/s" if summary.done and summary.seconds > 0 else ""
    print(f"{summary.done} done, {summary.skipped} skipped (done before), {len(summary.failed)} failed "
          f"in {summary.seconds:.2f} s on {summary.engine} x{summary.workers}{rate}; manifest: {manifest}")
    for row in summary.failed:
        print(f"failed: {row.error}", file=sys.stderr)
