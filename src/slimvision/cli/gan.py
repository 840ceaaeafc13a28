"""``slimvision gan ...``: DCGAN data preparation, training and sampling."""

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

    train = commands.add_parser(
        "train", help="train a DCGAN on a folder of square crops",
        description="Train (or resume) a DCGAN on the images in DATA (all RESOLUTION x RESOLUTION, e.g. a "
                    "bucket written by prepare-cats). Writes RUN/checkpoints/, a sample grid of the same noise "
                    "every --sample-every steps (RUN/samples/), RUN/losses.png and the generator (RUN/generator/).")
    train.add_argument("data", type=Path, help="folder of square images")
    train.add_argument("-o", "--output", type=Path, required=True, help="run folder (resumed if it holds checkpoints)")
    train.add_argument("--resolution", type=int, default=64, help="image side: 32, 64 or 128 (default 64)")
    train.add_argument("--base-channels", type=int, default=64, help="channels next to the image (default 64)")
    train.add_argument("--steps", type=int, default=10_000, help="steps of each network (default 10000)")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--generator-lr", type=float, default=2e-4)
    train.add_argument("--discriminator-lr", type=float, default=2e-4)
    train.add_argument("--sample-every", type=int, default=500, help="steps between sample grids (default 500)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=run_train)

    generate = commands.add_parser(
        "generate", help="draw images from a trained generator (ONNX Runtime, no torch)",
        description="Draw N images from RUN/generator.onnx (or any generator graph): one grid PNG, a folder of "
                    "PNGs, or with --interpolate a strip walking from one seed's image to another's.")
    generate.add_argument("model", type=Path, help="generator.onnx, or the run folder holding it")
    generate.add_argument("-o", "--output", type=Path, required=True,
                          help="a .png for one grid, or a folder for one PNG per image")
    generate.add_argument("-n", "--count", type=int, default=64, help="images to draw (default 64)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed: the same seed draws the same images")
    generate.add_argument("--columns", type=int, default=8, help="grid width (default 8)")
    generate.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"),
                          help="draw COUNT steps from SEED_A's image to SEED_B's instead")
    generate.add_argument("--overwrite", action="store_true", help="replace files that exist")
    generate.set_defaults(run=run_generate)


def _crop_arguments(parser: argparse.ArgumentParser, *, source_help: str, sizes_help: str) -> None:
    """The options prepare-cats and prepare-images share: where from, where to, which sizes."""
    parser.add_argument("source", type=Path, help=source_help)
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--sizes", type=_SIZES, default=_SIZES("64,128"), help=f"{sizes_help} (default 64,128)")
    parser.add_argument("--overwrite", action="store_true", help="replace crops that exist")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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


def run_train(args: argparse.Namespace) -> int:
    import numpy as np

    from slimvision.errors import InputError
    from slimvision.io.images import find_images, load_image
    from slimvision.models.gan import DCGANConfig
    from slimvision.models.weights import save_model
    from slimvision.plots import plot_gan_losses
    from slimvision.training.gan import GANTrainingConfig, export_generator, train_with_samples

    config = GANTrainingConfig(model=DCGANConfig(resolution=args.resolution, base_channels=args.base_channels),
                               steps=args.steps, batch_size=args.batch_size, generator_lr=args.generator_lr,
                               discriminator_lr=args.discriminator_lr, seed=args.seed)
    paths = find_images(args.data, recursive=True)
    if not paths:
        raise InputError(args.data, "no images found")
    images = []
    for path in paths:
        image = load_image(path)
        if image.shape[:2] != (args.resolution, args.resolution):
            raise InputError(path, f"is {image.shape[1]}x{image.shape[0]}, expected {args.resolution}x{args.resolution} "
                                   f"(crop with 'slimvision gan prepare-cats' or 'prepare-images' first)")
        images.append(image)
    generator, losses = train_with_samples(config, np.stack(images), args.output, sample_every=args.sample_every,
                                           progress=not args.quiet)
    save_model(generator, args.output / "generator", overwrite=True)
    report = export_generator(generator, args.output / "generator.onnx", overwrite=True,
                              source_weights=args.output / "generator")
    plot_gan_losses(losses, args.output / "losses.png", overwrite=True)
    print(f"trained on {len(images)} images to step {config.steps}: generator in {args.output / 'generator'} "
          f"and {args.output / 'generator.onnx'} (max abs diff vs torch {report.max_abs_diff:.2e}), "
          f"samples in {args.output / 'samples'}, losses in {args.output / 'losses.png'}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from slimvision.errors import OutputError, SlimvisionError
    from slimvision.inference.gan import GANSampler, tile
    from slimvision.io.images import save_image

    if args.count < 1 or args.columns < 1:
        raise SlimvisionError("--count and --columns must be at least 1")
    model = args.model / "generator.onnx" if args.model.is_dir() else args.model
    sampler = GANSampler(model)
    images = (sampler.interpolate(*args.interpolate, steps=args.count) if args.interpolate
              else sampler.sample(args.count, seed=args.seed))
    if args.output.suffix.lower() == ".png":
        columns = args.count if args.interpolate else args.columns
        save_image(tile(images, columns), args.output, overwrite=args.overwrite, protected=[model])
        print(f"{len(images)} images in {args.output}")
        return 0
    targets = [args.output / f"sample_{index:05d}.png" for index in range(len(images))]
    taken = next((target for target in targets if target.exists()), None)
    if taken is not None and not args.overwrite:
        raise OutputError(taken, "exists (pass --overwrite to replace it); nothing was written")
    for image, target in zip(images, targets):
        save_image(image, target, overwrite=args.overwrite, protected=[model])
    print(f"{len(images)} images in {args.output}")
    return 0
