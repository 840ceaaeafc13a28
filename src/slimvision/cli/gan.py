"""``slimvision gan ...``: DCGAN data preparation, training and sampling."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_output, add_overwrite, add_quiet, bounded,
                                     check_folder_output, non_negative_int, number_list, positive_float,
                                     positive_int, seed)
from slimvision.cli.config_flags import ConfigFlag, add_config_flags, build_config, shared_flag

_SIZES = number_list("--sizes", minimum=8, maximum=4096)
#: The registered artifact ``generate`` draws from without a MODEL (``slimvision models``); a
#: generator graph of your own runs through its pipeline too.
GENERATOR = "dcgan-digits32-int8"
_MAX_IMAGES = 100_000  # images one generate run draws


#: ``gan train``'s options that set GANTrainingConfig fields (defaults come from the config).
_TRAIN_FLAGS = (
    ConfigFlag("--resolution", "model.resolution", bounded("--resolution", int, 16, 1024),
               "image side: 8 x a power of two, e.g. 32, 64 or 128"),
    ConfigFlag("--base-channels", "model.base_channels", positive_int("--base-channels", 4096),
               "channels next to the image"),
    ConfigFlag("--grey", "model.image_channels", switch=1,
               help="train on one grey channel (colour images are converted)"),
    shared_flag("steps", "steps of each network"),
    shared_flag("batch_size", "real images per step (and as many fakes)"),
    ConfigFlag("--generator-lr", "generator_lr", positive_float("--generator-lr", 10),
               "Adam's learning rate of the generator"),
    ConfigFlag("--discriminator-lr", "discriminator_lr", positive_float("--discriminator-lr", 10),
               "Adam's learning rate of the discriminator"),
    ConfigFlag("--ema-decay", "ema_decay", bounded("--ema-decay", float, 0, 0.999999),
               "decay of the averaged generator that samples and is exported", note="0: none"),
    ConfigFlag("--diff-augment", "diff_augment", metavar="POLICIES",
               help='DiffAugment for small datasets, e.g. "color,translation,cutout"'),
    replace(shared_flag("checkpoint_every"), note="a run also checkpoints at every sample grid and FID "
                                                  "measurement, and keeps the last two"),
    shared_flag("seed", "seed of the networks' start and of the batches"),
)


def add_commands(groups: argparse._SubParsersAction) -> None:
    gan = groups.add_parser("gan", help="generative adversarial networks (DCGAN)",
                            description="DCGAN image generation: prepare square crops, train (resumable), draw images.")
    commands = gan.add_subparsers(dest="command", metavar="COMMAND", required=True)
    prepare = commands.add_parser(
        "prepare-cats", help="crop the CAT dataset's cat heads into size buckets",
        description="Read the unpacked CAT dataset (CAT_00 .. CAT_06 with their .cat annotations), apply the "
                    "two known annotation fixes, drop the known outliers, level the eyes, crop a square "
                    "head and write it into OUTPUT/<size>/ for every size the head reaches, with "
                    "report.json listing what was dropped and why.")
    _crop_arguments(prepare, source_help="the unpacked dataset folder",
                    sizes_help="crop sides; a head goes into each size it is at least as wide as")
    prepare.set_defaults(run=run_prepare_cats)

    images = commands.add_parser(
        "prepare-images", help="crop any image folder into size buckets (centre squares)",
        description="Cut the centre square of every image under SOURCE (recursively) and write it into "
                    "OUTPUT/<size>/ for every size it is at least as wide as, with report.json. Unreadable "
                    "images are dropped and listed, not fatal.")
    _crop_arguments(images, source_help="a folder of images", sizes_help="crop sides")
    images.set_defaults(run=run_prepare_images)

    digits = commands.add_parser(
        "prepare-digits", help="write OpenCV's 5,000 handwritten digits as grey PNGs (a dataset that ships offline)",
        description="Cut the 5,000 20x20 digits out of Debian's opencv-doc digits.png (apt-get install opencv-doc), "
                    "resize them to SIZE and write OUTPUT/digit<label>_<index>.png: the data of the demo generator.")
    add_output(digits, "output folder")
    digits.add_argument("--size", type=bounded("--size", int, 8, 1024), default=32, help="image side, 8..1024 (default 32)")
    digits.add_argument("--sheet", type=Path, default=None, help="the digits.png sheet (default: opencv-doc's)")
    add_overwrite(digits)
    digits.set_defaults(run=run_prepare_digits)

    train = commands.add_parser(
        "train", help="train a DCGAN on a folder of square crops",
        description="Train (or resume) a DCGAN on the images in DATA (all RESOLUTION x RESOLUTION, e.g. a "
                    "bucket written by prepare-cats). Writes RUN/checkpoints/, a sample grid of the same noise "
                    "every --sample-every steps (RUN/samples/), RUN/losses.png and the generator (RUN/generator/).")
    train.add_argument("data", type=Path, help="folder of square images")
    add_output(train, "run folder (resumed if it holds checkpoints)")
    add_config_flags(train, "slimvision.training.gan:GANTrainingConfig", _TRAIN_FLAGS,
                     base={"model": {"resolution": 64}})  # the command has always trained 64 px by default
    train.add_argument("--sample-every", type=positive_int("--sample-every"), default=500,
                       help="steps between sample grids (default 500)")
    train.add_argument("--fid-every", type=non_negative_int("--fid-every"), default=0,
                       help="steps between FID-Lite0 measurements (default 0: never; slow on a CPU)")
    train.add_argument("--fid-samples", type=bounded("--fid-samples", int, 2, _MAX_IMAGES), default=1000,
                       help="images per FID-Lite0 measurement (default 1000)")
    add_quiet(train)
    train.set_defaults(run=run_train)

    export = commands.add_parser(
        "export", help="export a trained generator to ONNX (float, or int8 for fast CPU sampling)",
        description="Export RUN/generator (the weights 'gan train' saves) to ONNX, checked against torch. With "
                    "--int8: transposed convs rewritten as per-phase convs with channels-last shuffles, batch norms "
                    "folded, then static int8 (calibrated on noise); prints its agreement with the float graph.")
    export.add_argument("run_dir", metavar="RUN", type=Path, help="the run folder (or its generator/ weights folder)")
    add_output(export, "the .onnx to write (default RUN/generator.onnx, or RUN/generator.int8.onnx with --int8)",
               required=False)
    export.add_argument("--int8", action="store_true",
                        help="static int8: a quarter of the size; at 64 px 4.5x the float graph's images/s on a "
                             "2-core CPU with VNNI")
    add_overwrite(export, "the .onnx")
    export.set_defaults(run=run_export)

    generate = commands.add_parser(
        "generate", help="draw images from a trained generator (ONNX Runtime, no torch)",
        description="Draw N images from RUN/generator.onnx (or any generator graph; without one, the shipped "
                    "digits generator): one grid PNG, a folder of PNGs, or with --interpolate a strip (.png) or an "
                    "animation (.gif) walking from one seed's image to another's.")
    generate.add_argument("model", type=Path, nargs="?", default=None,
                          help="generator.onnx, or the run folder holding it (default: the shipped 32 px digits "
                               "generator)")
    add_output(generate, "a .png for one grid, a .gif for an animated --interpolate walk, or a folder for one "
                         "PNG per image (another name with a suffix is a folder only if it is one or ends with '/')")
    generate.add_argument("-n", "--count", type=positive_int("--count", _MAX_IMAGES), default=64,
                          help="images to draw (default 64)")
    generate.add_argument("--seed", type=seed(), default=0, help="noise seed: the same seed draws the same images")
    generate.add_argument("--columns", type=positive_int("--columns", MAX_SIDE), default=8, help="grid width (default 8)")
    generate.add_argument("--interpolate", type=seed("--interpolate"), nargs=2, metavar=("SEED_A", "SEED_B"),
                          help="draw COUNT steps from SEED_A's image to SEED_B's instead (a .gif output animates them)")
    add_overwrite(generate)
    generate.set_defaults(run=run_generate)


def _crop_arguments(parser: argparse.ArgumentParser, *, source_help: str, sizes_help: str) -> None:
    """The options prepare-cats and prepare-images share: where from, where to, which sizes."""
    parser.add_argument("source", type=Path, help=source_help)
    add_output(parser, "output folder")
    parser.add_argument("--sizes", type=_SIZES, default=_SIZES("64,128"), help=f"{sizes_help} (default 64,128)")
    add_overwrite(parser, "crops")
    add_json(parser, "the report")
    add_quiet(parser)


def run_prepare_cats(args: argparse.Namespace) -> int:
    from slimvision.data.cats import prepare_cats

    return _print_report(args, prepare_cats)


def run_prepare_images(args: argparse.Namespace) -> int:
    from slimvision.data.cats import prepare_images

    return _print_report(args, prepare_images)


def _print_report(args: argparse.Namespace, prepare: Any) -> int:
    from slimvision.io.atomic import check_outside_inputs

    check_outside_inputs(args.output, [args.source])  # SOURCE is searched recursively: crops would be re-read
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


def run_prepare_digits(args: argparse.Namespace) -> int:
    from slimvision.data.digits import load_opencv_digits
    from slimvision.inference.batch import write_png_set

    digits, labels = load_opencv_digits(args.sheet, size=args.size)
    targets = [args.output / f"digit{label}_{index:04d}.png" for index, label in enumerate(labels)]
    protected = [args.sheet] if args.sheet is not None else []
    write_png_set(digits[..., 0], targets, overwrite=args.overwrite, protected=protected)  # all 5,000 or none
    print(f"{len(targets)} digits at {args.size} px in {args.output}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import numpy as np

    from slimvision.errors import InputError
    from slimvision.io.atomic import check_outside_inputs
    from slimvision.io.images import find_images, load_image, to_gray
    from slimvision.models.weights import save_model
    from slimvision.plots import plot_gan_losses
    from slimvision.export.gan import export_generator
    from slimvision.training.gan import fid_history, train_with_samples

    config = build_config(args)
    resolution, grey = config.model.resolution, config.model.image_channels == 1
    check_outside_inputs(args.output, [args.data])  # its sample grids would become training images
    paths = find_images(args.data, recursive=True)
    if not paths:
        raise InputError(args.data, "no images found")
    images = []
    for path in paths:
        image = load_image(path)
        if image.shape[:2] != (resolution, resolution):
            raise InputError(path, f"is {image.shape[1]}x{image.shape[0]}, expected {resolution}x{resolution} "
                                   f"(crop with 'slimvision gan prepare-cats' or 'prepare-images' first)")
        images.append(to_gray(image)[..., None] if grey else image)
    generator, losses = train_with_samples(config, np.stack(images), args.output, sample_every=args.sample_every,
                                           fid_every=args.fid_every, fid_samples=args.fid_samples,
                                           progress=not args.quiet)
    save_model(generator, args.output / "generator", overwrite=True)
    report = export_generator(generator, args.output / "generator.onnx", overwrite=True,
                              source_weights=args.output / "generator")
    measured = fid_history(args.output)
    if losses["step"]:  # the whole run's log; a run from checkpoints older than the log keeps its plot
        plot_gan_losses(losses, args.output / "losses.png", overwrite=True, fid=measured)
    fid = f", FID-Lite0 {measured[-1]['fid_lite0']:.2f} at step {measured[-1]['step']}" if measured else ""
    print(f"trained on {len(images)} images to step {config.steps}{fid}: generator in {args.output / 'generator'} "
          f"and {args.output / 'generator.onnx'} (max abs diff vs torch {report.max_abs_diff:.2e}), "
          f"samples in {args.output / 'samples'}, losses in {args.output / 'losses.png'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from slimvision.errors import InputError
    from slimvision.io.atomic import plan_outputs
    from slimvision.models.gan import DCGANGenerator
    from slimvision.models.weights import load_model
    from slimvision.export.gan import export_generator, export_generator_int8

    weights = args.run_dir / "generator" if (args.run_dir / "generator").is_dir() else args.run_dir
    generator = load_model(weights)
    if not isinstance(generator, DCGANGenerator):
        raise InputError(weights, f"holds a {type(generator).__name__}, not a DCGAN generator")
    run_dir = weights.parent
    output = args.output or run_dir / ("generator.int8.onnx" if args.int8 else "generator.onnx")
    plan_outputs([output], overwrite=args.overwrite, protected=[p for p in weights.rglob("*") if p.is_file()])
    if args.int8:
        exported = export_generator_int8(generator, output, overwrite=args.overwrite, source_weights=weights)
        print(f"{output}: {exported.summary()}")
    else:
        report = export_generator(generator, output, overwrite=args.overwrite, source_weights=weights)
        print(f"{output}: max abs diff vs torch {report.max_abs_diff:.2e}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from slimvision.errors import SlimvisionError
    from slimvision.export.card import card_path
    from slimvision.io.pixels import tile
    from slimvision.io.atomic import plan_outputs
    from slimvision.inference.batch import write_png_set
    from slimvision.io.images import save_animation, save_image
    from slimvision.registry import ARTIFACTS

    if args.model is None:
        model = ARTIFACTS.spec(GENERATOR).paths()["generator"]
    else:
        model = args.model / "generator.onnx" if args.model.is_dir() else args.model
    kind = _generate_output(args)
    if kind == "gif" and not args.interpolate:
        raise SlimvisionError("a .gif output animates an --interpolate walk; pass --interpolate SEED_A SEED_B")
    targets = ([args.output] if kind != "folder" else
               [args.output / f"sample_{index:05d}.png" for index in range(args.count)])
    protected = [model, card_path(model)]  # the graph and the card the sampler reads
    plan_outputs(targets, overwrite=args.overwrite, protected=protected)  # before drawing anything
    sampler = ARTIFACTS.create(GENERATOR, path=model)  # the registered sampler, on the shipped graph or yours
    images = (sampler.interpolate(*args.interpolate, steps=args.count) if args.interpolate
              else sampler.sample(args.count, seed=args.seed))
    if kind == "gif":
        save_animation(list(images), args.output, overwrite=args.overwrite, protected=protected)
        print(f"{len(images)} frames in {args.output}")
    elif kind == "png":
        columns = args.count if args.interpolate else args.columns
        save_image(tile(images, columns), args.output, overwrite=args.overwrite, protected=protected)
        print(f"{len(images)} images in {args.output}")
    else:
        write_png_set(images, targets, overwrite=args.overwrite, protected=protected)  # every image or none
        print(f"{len(images)} images in {args.output}")
    return 0


def _generate_output(args: argparse.Namespace) -> str:
    """"png" (one grid), "gif" (an animation) or "folder" (one PNG each); -o x.jpg is refused."""
    suffix = args.output.suffix.lower()
    if not (args.output_is_folder or args.output.is_dir()) and suffix in (".png", ".gif"):
        return suffix[1:]
    check_folder_output(args.output, args.output_is_folder, args.count, file_suffixes=(".png", ".gif"))
    return "folder"
