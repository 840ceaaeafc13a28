"""``slimvision vae ...``: the medical-image VAE: train, export, denoise, evaluate, augment, sample."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_output, add_overwrite, add_quiet, bounded,
                                     check_folder_output, fraction, max_pixels, non_negative_float, non_negative_int,
                                     number_list, positive_float, positive_int, seed)
from slimvision.cli.config_flags import ConfigFlag, add_config_flags, build_config, shared_flag

_WINDOW = number_list("--window", -1e6, 1e6)  # raw values (CT: HU, -1024..3071) with room to spare
_MAX_IMAGES = 100_000  # images one augment/sample run writes
#: The registered artifacts (``slimvision models``) the commands run without --model: the U-Net
#: restores, the plain VAE also makes new slices. An export of your own runs through the same pipeline.
DENOISER, GENERATIVE = "vae-medmix128-unet", "vae-mni128"  # inference.vae.DENOISER


#: ``vae train``'s options that set VAETrainingConfig fields (defaults come from the config, or the
#: command's base).
_TRAIN_FLAGS = (
    ConfigFlag("--image-size", "model.image_size", bounded("--image-size", int, 32, 1024),
               "side of the network's square, 32..1024"),
    ConfigFlag("--latent-dim", "model.latent_dim", positive_int("--latent-dim", 65_536), "latent size",
               note="as in the paper"),
    ConfigFlag("--backbone", "model.backbone", choices=("efficientnet-lite0", "efficientnet-b1"),
               help="the pretrained encoder"),
    ConfigFlag("--skip-connections", "model.skip_connections", switch=True,
               help="U-Net skips: much sharper restoration, but the model cannot sample new images"),
    ConfigFlag("--mask-channel", "model.mask_channel", switch=True,
               help="the network is also told which pixels are intact (denoise --mask / --zeros-missing "
                    "pass it on); without it a removed pixel looks like black background"),
    shared_flag("epochs"),
    shared_flag("batch_size"),
    shared_flag("lr", "learning rate of the decoder and the new layers"),
    ConfigFlag("--backbone-lr", "backbone_lr", positive_float("--backbone-lr", 10),
               "learning rate of the pretrained backbone, lower so its ImageNet features are adjusted"),
    ConfigFlag("--constant-lr", "cosine_decay", switch=False,
               help="keep the learning rates fixed (default: they fall along a cosine to 0 at the last epoch)"),
    ConfigFlag("--beta", "beta", non_negative_float("--beta", 1e6), "weight of the KLD term",
               note="1: the paper's loss"),
    ConfigFlag("--l1", "l1_weight", non_negative_float("--l1", 1e6), "add WEIGHT x mean absolute error to the "
               "MSE; keeps edges sharp where MSE blurs them", metavar="WEIGHT", note="0: the paper's loss"),
    ConfigFlag("--keep", "corruption.keep_min corruption.keep_max", number_list("--keep", minimum=0, maximum=1),
               "each training image keeps a fraction of its pixels drawn from MIN..MAX", spread=True,
               metavar="MIN,MAX", note="1,1 trains a plain VAE"),
    ConfigFlag("--noise", "corruption.noise_max", non_negative_float("--noise", 1), "largest Gaussian noise std, 0..1"),
    ConfigFlag("--intact", "corruption.intact_probability", fraction("--intact"),
               "chance that a training image loses no pixels, only gets noise", metavar="P",
               note="keeps plain denoising working when --keep stops well below 1"),
    ConfigFlag("--blocks", "corruption.block_probability", fraction("--blocks"),
               "chance of 1-3 rectangular holes per training image"),
    ConfigFlag("--noise-kinds", "corruption.noise_kinds", None, "noise models drawn per image: some of "
               "gaussian,rician,poisson (std up to --noise)", metavar="KINDS"),
    ConfigFlag("--no-augment", "augment", switch=False, help="no random flips, rotations and scales"),
    ConfigFlag("--intensity-augment", "intensity_augment", switch=True,
               help="also redraw each training image's intensities: a random window, gamma and bias field"),
    ConfigFlag("--freeze-batchnorm", "freeze_batchnorm", switch=True,
               help="keep batch-norm statistics fixed while training (needed with --init-from)"),
    ConfigFlag("--freeze-backbone-steps", "finetune.freeze_backbone_steps",
               non_negative_int("--freeze-backbone-steps"),
               "steps at the start with the encoder's backbone frozen (weights and batch-norm statistics); the "
               "rest of the network trains"),
    ConfigFlag("--unfreeze", "finetune.unfreeze", bounded("--unfreeze", int, -1, 10_000),
               "backbone blocks (from the top; 17 in Lite0: the stem and 16 MBConv blocks) that train, at "
               "--backbone-lr, after the frozen steps", note="-1: all, 0: none"),
    shared_flag("checkpoint_every", "epochs between checkpoints"),
    ConfigFlag("--sample-every", "sample_every", positive_int("--sample-every"), "epochs between sample grids"),
    shared_flag("device"),
    shared_flag("seed"),
)


def add_commands(groups: argparse._SubParsersAction) -> None:
    vae = groups.add_parser("vae", help="variational autoencoder for grey medical images (MRI / CT)",
                            description="Train a VAE on MRI/CT slices (PNG, TIFF, DICOM, NIfTI), restore damaged "
                                        "slices, and make new slices for data augmentation.")
    commands = vae.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train (or resume) a VAE on slices",
        description="Train a VAE on every slice of DATA (files or folders; volumes are cut along --axis), or on "
                    "the MNI152 demo set (--mni152). Writes RUN/checkpoints/ (resumed on a rerun), RUN/samples/ "
                    "(rows: clean, 60%% of pixels removed, restored, reconstructed), RUN/losses.png, RUN/vae/ "
                    "(weights + config) and RUN/export/ (ONNX graphs for the other commands).")
    train.add_argument("data", type=Path, nargs="*", help="training files or folders")
    add_output(train, "run folder")
    train.add_argument("--mni152", action="store_true",
                       help="train on the MNI152 template's training slices (nilearn ships it); its held-out "
                            "slices are scored at every sample stop")
    train.add_argument("--sources", default=None, metavar="NAMES",
                       help="train on real scans that ship in installed packages (slimvision.data.medical_sources): "
                            "comma-separated source names, 'train' (every source not held out) or 'all'; random "
                            "crops at each slice's own resolution; 'generic' adds the photos and textures that ship "
                            "in installed packages, in grey (pretraining; never a medical image); without "
                            "--holdout, the held-out sources are scored")
    train.add_argument("--holdout", type=Path, nargs="+", default=None, help="held-out files or folders to score")
    train.add_argument("--init-from", type=Path, default=None, metavar="EXPORT",
                       help="start from an exported VAE's weights (a folder with autoencoder.onnx, e.g. a shipped "
                            "model's), same model settings; use with --freeze-batchnorm")
    train.add_argument("--backbone-weights", type=Path, default=None,
                       help="a state dict for the backbone (default: Lite0's shipped ImageNet weights; B1 starts "
                            "random without one)")
    add_config_flags(train, "slimvision.training.vae:VAETrainingConfig", _TRAIN_FLAGS,
                     base={"model": {"image_size": 128}})  # the command has always trained 128 px by default
    _intensity_arguments(train)
    add_quiet(train)
    train.set_defaults(run=run_train)

    export = commands.add_parser("export", help="export a trained VAE to ONNX (checked against torch)",
                                 description="Export RUN/vae to ONNX graphs (each with its .card.json) in RUN/export (or -o).")
    export.add_argument("run_dir", metavar="RUN", type=Path, help="the run folder")
    export.add_argument("-o", "--output", type=Path, default=None, help="export folder (default RUN/export)")
    export.add_argument("--int8-weights", action="store_true",
                        help="store weights as int8 (a quarter of the size; compute stays float)")
    add_overwrite(export)
    export.set_defaults(run=run_export)

    denoise = commands.add_parser(
        "denoise", help="restore noisy or incomplete slices (ONNX Runtime, no torch)",
        description="Restore every slice of INPUT (an image, DICOM or NIfTI file) at its own size and write PNGs: "
                    "OUTPUT.png for a single slice (OUTPUT.dcm for a DICOM input: its header, its stored values), "
                    "else OUTPUT/<name>.png per slice; 8-bit files give 8-bit PNGs, others 16-bit PNGs in the "
                    "file's own values where they fit. With --mask, only the masked pixels are replaced "
                    "(inpainting) and the others kept exactly; without, a pixel moves only by about the noise "
                    "the slice holds, so a clean slice passes through.")
    denoise.add_argument("input", type=Path, help="image, DICOM or NIfTI file")
    add_output(denoise, "a .png for a single slice, or a folder for several (a name with a suffix is a folder "
                        "only if it is one or ends with '/')")
    denoise.add_argument("--model", type=Path, default=None, help="exported VAE folder (default: the shipped one)")
    denoise.add_argument("--mask", type=Path, default=None,
                         help="image of the input's size: white (non-zero) marks pixels to fill in")
    denoise.add_argument("--zeros-missing", action="store_true",
                         help="treat pixels that are exactly 0 inside the body as missing (dropout damage); "
                              "black background outside it stays as it is")
    _flat_median_argument(denoise)
    _intensity_arguments(denoise)
    add_overwrite(denoise)
    denoise.set_defaults(run=run_denoise)

    evaluate = commands.add_parser(
        "eval", help="MSE, PSNR, SSIM and KLD of a VAE on slices",
        description="Score a VAE on DATA (or the MNI152 held-out slices): reconstruction MSE / PSNR / SSIM and "
                    "KLD on clean slices, and SSIM / PSNR after removing all but --keep of the pixels.")
    evaluate.add_argument("data", type=Path, nargs="*", help="files or folders (default: MNI152 held-out slices)")
    evaluate.add_argument("--model", type=Path, default=None, help="exported VAE folder (default: the shipped denoiser)")
    _flat_median_argument(evaluate)
    evaluate.add_argument("--keep", type=bounded("--keep", float, maximum=1, above=0), default=0.4,
                          help="fraction of pixels kept, more than 0 and at most 1 (default 0.4)")
    evaluate.add_argument("--seed", type=seed(), default=0)
    _intensity_arguments(evaluate)
    add_json(evaluate, "the scores")
    evaluate.set_defaults(run=run_eval)

    augment = commands.add_parser(
        "augment", help="write new slices made from a dataset, with a manifest that rebuilds them",
        description="Write N new slices made by the VAE from DATA's slices (vary: a latent drawn around one "
                    "slice's; interpolate: between two slices' latents; prior: a latent from N(0, I)) into OUTPUT, "
                    "with OUTPUT/manifest.json naming each image's operation, sources and seed. --replay "
                    "MANIFEST rebuilds the same images from DATA.")
    augment.add_argument("data", type=Path, nargs="*", help="source files or folders (default: MNI152 training slices)")
    augment.add_argument("-n", "--count", type=positive_int("--count", _MAX_IMAGES), default=16,
                         help="images to write (default 16)")
    add_output(augment, "output folder")
    augment.add_argument("--model", type=Path, default=None,
                         help="exported VAE folder without U-Net skips (default: the shipped generative one)")
    augment.add_argument("--operations", default="vary,interpolate", help="some of vary,interpolate,prior")
    augment.add_argument("--scale", type=non_negative_float("--scale", 100), default=1.0,
                         help="vary: latent noise in units of sigma (default 1)")
    augment.add_argument("--temperature", type=non_negative_float("--temperature", 100), default=1.0,
                         help="prior: std of the latents (default 1)")
    augment.add_argument("--replay", type=Path, default=None, help="a manifest.json to rebuild instead")
    augment.add_argument("--seed", type=seed(), default=0)
    _intensity_arguments(augment)
    add_overwrite(augment)
    augment.set_defaults(run=run_augment)

    sample = commands.add_parser("sample", help="draw new slices from the prior as one grid",
                                 description="Decode N latents drawn from N(0, temperature^2 I) into one PNG grid.")
    add_output(sample, "the grid .png")
    sample.add_argument("--model", type=Path, default=None, help="exported VAE folder (default: the shipped one)")
    sample.add_argument("-n", "--count", type=positive_int("--count", 10_000), default=16, help="images (default 16)")
    sample.add_argument("--columns", type=positive_int("--columns", MAX_SIDE), default=8, help="grid width (default 8)")
    sample.add_argument("--temperature", type=non_negative_float("--temperature", 100), default=1.0,
                        help="std of the latents (default 1)")
    sample.add_argument("--seed", type=seed(), default=0)
    add_overwrite(sample)
    sample.set_defaults(run=run_sample)


def _flat_median_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flat-median-below", type=non_negative_float("--flat-median-below", 1.0),
                        default=0.05, metavar="STD",  # inference.vae_native.FLAT_SPREAD
                        help="a removed pixel whose kept 5x5 neighbours vary less than this (std, in [0, 1] "
                             "intensity) takes their median instead of the network's fill; 0 turns it off "
                             "(default 0.05, chosen on held-out scan sources: docs/vae.md)")


def _intensity_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--axis", type=int, default=2, choices=(0, 1, 2),
                        help="NIfTI slicing axis: 0 sagittal, 1 coronal, 2 axial (default 2)")
    parser.add_argument("--window", type=_WINDOW, default=None, metavar="CENTER,WIDTH",
                        help="map raw values (CT: HU) through this window instead of the model's rule")
    parser.add_argument("--dicom-window", action="store_true", help="use each DICOM file's own window")
    parser.add_argument("--max-pixels", type=max_pixels(), default=100_000_000,  # io.images.DEFAULT_MAX_PIXELS
                        help="refuse files with a slice of more pixels than this, checked from the header before "
                             "decoding (default 100000000)")
    parser.add_argument("--max-voxels", type=positive_int("--max-voxels", 2**40), default=128 * 2**20,
                        help="refuse volumes (NIfTI, multi-frame DICOM) of more voxels than this, checked from the "
                             "header; reading takes 5-9 bytes per voxel (default 134217728: 512^3)")


def input_files(*paths: Path | None) -> list[Path]:
    """Every file the given inputs stand for (a folder: all files below it), to protect from outputs."""
    files: list[Path] = []
    for path in paths:
        if path is None:
            continue
        if path.is_dir():
            files += [child for child in path.rglob("*") if child.is_file()]
        else:
            files.append(path)
    return files


def _intensity(args: argparse.Namespace, default: Any = None) -> Any:
    from slimvision.errors import ConfigError
    from slimvision.io.medical import Intensity

    if args.window is not None and args.dicom_window:
        raise ConfigError("give --window or --dicom-window, not both")
    if args.window is not None:
        if len(args.window) != 2:
            raise ConfigError(f"--window takes CENTER,WIDTH, got {len(args.window)} numbers")
        return Intensity.window(*args.window)
    if args.dicom_window:
        return Intensity(mode="dicom-window")
    return default if default is not None else Intensity()


def run_train(args: argparse.Namespace) -> int:
    from slimvision.data.medical import load_slices, mni152_slices
    from slimvision.errors import ConfigError
    from slimvision.export.card import CARD_SUFFIX
    from slimvision.io.atomic import check_outside_inputs, plan_outputs
    from slimvision.models.weights import save_model
    from slimvision.plots import plot_vae_training
    from slimvision.export.vae import export_vae
    from slimvision.training.vae import metrics_history, train_vae

    given = [name for name, on in (("training DATA", bool(args.data)), ("--mni152", args.mni152),
                                   ("--sources", args.sources is not None)) if on]
    if len(given) != 1:
        raise ConfigError("give one of: training DATA, --mni152, --sources"
                          + (f" (got {' and '.join(given)}: one source of slices per run)" if given else ""))
    check_outside_inputs(args.output, [*args.data, *(args.holdout or [])])  # samples are PNG slices too
    # The files this run replaces at its end may not be any it reads (--backbone-weights RUN/vae/...).
    plan_outputs([args.output / "vae" / "model.safetensors", args.output / "vae" / "config.json",
                  args.output / "losses.png",
                  *(args.output / "export" / f"{graph}{suffix}" for graph in ("encoder", "decoder", "autoencoder")
                    for suffix in (".onnx", CARD_SUFFIX))],
                 overwrite=True, protected=input_files(*args.data, *(args.holdout or []), args.backbone_weights,
                                                       args.init_from))
    config = build_config(args)
    intensity = _intensity(args, default=config.intensity)  # --window / --dicom-window over a recipe's
    config = dataclasses.replace(config, intensity=intensity)
    image_size = config.model.image_size
    if args.sources is not None:
        from slimvision.data.generic_images import GENERIC, generic_slices
        from slimvision.data.medical_sources import CropPool, source_slices

        names = [name.strip() for name in args.sources.split(",") if name.strip()]
        medical = [name for name in names if name != GENERIC]
        found = source_slices(medical, split="train", intensity=intensity) if medical else {}
        if GENERIC in names:
            found.update(generic_slices(max_pixels=args.max_pixels))
        train = CropPool(found)
        holdout = (load_slices(args.holdout, image_size, intensity=intensity, axis=args.axis,
                               max_pixels=args.max_pixels, max_voxels=args.max_voxels) if args.holdout else
                   _held_out_squares(image_size, intensity))
    elif args.mni152:
        train, holdout = mni152_slices("train", image_size), mni152_slices("test", image_size)
    else:
        train = load_slices(args.data, image_size, intensity=intensity, axis=args.axis, progress=not args.quiet,
                            max_pixels=args.max_pixels, max_voxels=args.max_voxels)
        holdout = (load_slices(args.holdout, image_size, intensity=intensity, axis=args.axis,
                               max_pixels=args.max_pixels, max_voxels=args.max_voxels)
                   if args.holdout else None)
    vae, losses = train_vae(config, getattr(train, "images", train), args.output,
                            holdout=None if holdout is None else holdout.images,
                            backbone_weights=args.backbone_weights, progress=not args.quiet, init_from=args.init_from)
    save_model(vae, args.output / "vae", overwrite=True)
    drift = export_vae(vae, args.output / "export", intensity=intensity, source_weights=args.output / "vae",
                       overwrite=True)
    scores = metrics_history(args.output)
    if losses["step"]:  # the whole run's log; a run from checkpoints older than the log keeps its plot
        plot_vae_training(losses, args.output / "losses.png", metrics=scores, overwrite=True)
    held = (f"; held-out SSIM with 60% of pixels removed: {scores[-1]['inpainted_ssim']:.3f} (inpainted), "
            f"{scores[-1]['restored_ssim']:.3f} (restored)") if scores else ""
    print(f"trained on {len(train)} slices to epoch {config.epochs}{held}\nweights: {args.output / 'vae'}\n"
          f"ONNX: {args.output / 'export'} (max abs diff vs torch {max(drift.values()):.1e})\n"
          f"samples: {args.output / 'samples'}, curves: {args.output / 'losses.png'}")
    return 0


def _held_out_squares(size: int, intensity: Any) -> Any:
    """The held-out sources' slices (MNI152's test blocks and the sources kept out whole), each
    cut to a central square at its own resolution: what a --sources run scores while it trains."""
    from slimvision.data.medical import SliceSet
    from slimvision.data.medical_sources import CropPool, held_out_sources, source_slices

    found = source_slices(["mni152", *held_out_sources()], split="test", intensity=intensity)
    pool = CropPool(found)
    return SliceSet(pool.center_squares(size), pool.names)


def run_export(args: argparse.Namespace) -> int:
    from slimvision.errors import InputError
    from slimvision.export.card import CARD_SUFFIX
    from slimvision.io.atomic import plan_outputs
    from slimvision.models.vae import VariationalAutoencoder
    from slimvision.models.weights import load_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.export.vae import export_vae, export_vae_int8_weights
    from slimvision.training.vae import VAETrainingConfig

    weights = args.run_dir / "vae"
    vae = load_model(weights)
    if not isinstance(vae, VariationalAutoencoder):
        raise InputError(weights, f"holds a {type(vae).__name__}, not a VAE")
    saved = CheckpointStore(args.run_dir / "checkpoints").latest_extra().get("config")
    if saved is None:
        raise InputError(args.run_dir, "has no checkpoint with its training config (run 'slimvision vae train' there)")
    config = VAETrainingConfig.from_dict(saved)
    output = args.output or args.run_dir / "export"
    graphs = ["autoencoder"] if vae.config.skip_connections else ["encoder", "decoder"]
    files = [output / f"{graph}{suffix}" for graph in graphs for suffix in (".onnx", CARD_SUFFIX)]
    plan_outputs(files, overwrite=args.overwrite, protected=input_files(weights, args.run_dir / "checkpoints"))
    if not args.int8_weights:
        drift = export_vae(vae, output, intensity=config.intensity, source_weights=weights, overwrite=args.overwrite)
    else:
        drift = export_vae_int8_weights(vae, output, config.intensity, weights, args.overwrite)
    print(f"{output}: {', '.join(sorted(drift))} (max abs diff vs torch {max(drift.values()):.1e}"
          f"{' before int8 weight storage' if args.int8_weights else ''})")
    return 0


def _model(path: Path | None, generative: bool = False) -> Any:
    """The registered VAE pipeline (``slimvision models``) on the shipped export, or on ``path``."""
    from slimvision.errors import MissingAssetError
    from slimvision.registry import ARTIFACTS

    name = GENERATIVE if generative else DENOISER
    if path is None:
        path = ARTIFACTS.spec(name).paths()["model"]
        if not path.is_dir():
            raise MissingAssetError(f"this install has no shipped {path.name} model; train one ('make vae-demo', "
                                    "or 'slimvision vae train') and pass --model RUN/export")
    return ARTIFACTS.create(name, folder=path)


def run_denoise(args: argparse.Namespace) -> int:
    import numpy as np

    from slimvision.errors import InputError, OutputError, SlimvisionError
    from slimvision.inference.vae import kept_from_zeros, slice_png
    from slimvision.io.atomic import plan_outputs, write_files_atomic
    from slimvision.io.images import load_image, to_gray
    from slimvision.io.medical import (DICOM_SUFFIXES, NIFTI_SUFFIXES, dicom_with_pixels, medical_kind,
                                       nifti_with_slices, read_medical)

    vae = _model(args.model)
    vae.flat_spread = args.flat_median_below
    slices = read_medical(args.input, intensity=_intensity(args, vae.intensity), axis=args.axis,
                          max_pixels=args.max_pixels, max_voxels=args.max_voxels, keep_raw=True)
    if args.mask is not None and len(slices) > 1:
        raise SlimvisionError("--mask works on single-slice inputs; cut the volume into slices first")
    stem = args.input.name[:-len(".nii.gz")] if args.input.name.lower().endswith(".nii.gz") else args.input.stem
    as_nifti = args.output.name.lower().endswith(NIFTI_SUFFIXES) and not args.output_is_folder
    if as_nifti and medical_kind(args.input) != "nifti":
        raise OutputError(args.output, "a NIfTI volume is written only for a NIfTI input; give a folder for PNGs")
    into_folder = not as_nifti and (len(slices) > 1 or args.output_is_folder or args.output.is_dir())
    as_dicom = not into_folder and args.output.suffix.lower() in DICOM_SUFFIXES
    if as_dicom and medical_kind(args.input) != "dicom":
        raise OutputError(args.output, "a DICOM file is written only for a DICOM input; give a .png name")
    if not into_folder and not as_dicom and not as_nifti and args.output.suffix.lower() != ".png":
        raise OutputError(args.output, "a single slice is written as one .png, or as .dcm for a DICOM input "
                                       "(or give a folder ending with '/')")
    if into_folder:
        # Several slices never fit one .png: only a NIfTI input's volume is written whole as one file.
        check_folder_output(args.output, args.output_is_folder, len(slices),
                            file_suffixes=NIFTI_SUFFIXES if medical_kind(args.input) == "nifti" else ())
    targets = ([args.output] if not into_folder else
               [args.output / (f"{stem}.png" if len(slices) == 1 else f"{stem}_slice-{s.index:03d}.png")
                for s in slices])
    protected = input_files(args.input, args.mask, vae.folder)
    plan_outputs(targets, overwrite=args.overwrite, protected=protected)  # before the model runs
    mask = to_gray(load_image(args.mask, max_pixels=args.max_pixels)) if args.mask is not None else None
    if mask is not None and mask.shape != slices[0].pixels.shape:
        raise InputError(args.mask, f"is {mask.shape[1]}x{mask.shape[0]}, the input is "
                                    f"{slices[0].pixels.shape[1]}x{slices[0].pixels.shape[0]}")
    filled, encoded, notes, volume = 0, [], set(), {}
    for piece in slices:
        kept = mask == 0 if mask is not None else (kept_from_zeros(piece.pixels) if args.zeros_missing else None)
        filled += 0 if kept is None else int(np.sum(~kept))
        restored = vae.restore_slice(piece.pixels, kept=kept)
        missing = None if kept is None else ~kept
        if as_nifti:  # every slice goes back into one volume (in the file's own values), written below
            assert piece.index is not None
            volume[piece.index] = piece.to_raw(restored, missing)
            continue
        if as_dicom:  # the scan's own header and stored values, the pixels replaced
            encoded.append(dicom_with_pixels(args.input, piece.to_raw(restored, missing)))
            notes.add("DICOM in the input's stored values")
            continue
        png, note = slice_png(piece, restored, missing)  # the PNG `batch vae-denoise` writes too
        encoded.append(png)
        notes.add(note)
    if as_nifti:  # empty slices (skipped) keep their values
        gzipped = args.output.name.lower().endswith(".gz")
        encoded = [nifti_with_slices(args.input, args.axis, volume, gzipped)]
        notes.add("NIfTI volume in the input's values")
    # Every slice or none, each complete before it appears under its name.
    write_files_atomic(list(zip(targets, encoded)), overwrite=args.overwrite, protected=protected)
    only = f" ({filled} pixels filled in)" if mask is not None or args.zeros_missing else ""
    print(f"{len(slices)} slice(s) restored into {targets[0] if len(targets) == 1 else args.output}{only}; "
          f"{', '.join(sorted(notes))}")
    return 0


def _dataset(vae: Any, data: list[Path], args: argparse.Namespace, split: str, axis: int) -> Any:
    """The slices of ``data`` mapped by the model's intensity rule (or --window), or the MNI152 ``split``."""
    from slimvision.data.medical import load_slices, mni152_slices

    if not data:
        return mni152_slices(split, vae.image_size)
    return load_slices(data, vae.image_size, intensity=_intensity(args, vae.intensity), axis=axis,
                       max_pixels=args.max_pixels, max_voxels=args.max_voxels)


def run_eval(args: argparse.Namespace) -> int:
    from slimvision.bench.vae import score_native
    from slimvision.data.medical import mni152_native, native_slices

    vae = _model(args.model)
    vae.flat_spread = args.flat_median_below
    # Scored as denoise runs: each slice at its own size, not squared to the network's.
    if args.data:
        pieces = [piece.pixels for piece in native_slices(args.data, intensity=_intensity(args, vae.intensity),
                                                            axis=args.axis, max_pixels=args.max_pixels,
                                                            max_voxels=args.max_voxels)]
    else:
        pieces = [pixels for _, pixels in mni152_native("test")]
    scores = score_native(vae, pieces, keep=args.keep, seed=args.seed)
    if args.json:
        print(json.dumps({"slices": len(pieces), **scores}, indent=2))
        return 0
    print(f"{len(pieces)} slices at their own size, {vae.folder}\n"
          f"clean slices passed through: SSIM {scores['clean_ssim']:.4f}  PSNR {scores['clean_psnr']:.2f} dB\n"
          f"{1 - args.keep:.0%} of pixels removed: damaged SSIM {scores['damaged_ssim']:.4f} / "
          f"{scores['damaged_psnr']:.2f} dB -> inpainted {scores['inpainted_ssim']:.4f} / "
          f"{scores['inpainted_psnr']:.2f} dB")
    return 0


def run_augment(args: argparse.Namespace) -> int:
    from slimvision.errors import InputError, SlimvisionError
    from slimvision.inference.vae import AUGMENT_FORMAT, plan_augmentation, render_entry
    from slimvision.io.pixels import rint_to_uint8
    from slimvision.inference.batch import write_png_set
    from slimvision.io.atomic import check_outside_inputs, plan_outputs

    if args.replay is not None:
        try:
            manifest = json.loads(args.replay.read_text())
        except (OSError, ValueError) as error:
            raise InputError(args.replay, f"unreadable manifest ({error})") from None
        if manifest.get("format") != AUGMENT_FORMAT:
            raise InputError(args.replay, f"not an augmentation manifest (format {manifest.get('format')!r})")
        model, data, entries = Path(manifest["model"]), [Path(p) for p in manifest["data"]], manifest["entries"]
        axis = manifest["axis"]
    else:
        model, data, axis, entries = args.model, args.data, args.axis, None
    vae = _model(model, generative=True)
    if not vae.generative:
        raise InputError(vae.folder, "has U-Net skip connections and cannot make new images; use a plain VAE")
    slices = _dataset(vae, data, args, "train", axis)
    images = dict(zip(slices.names, slices.images))
    if entries is None:
        operations = tuple(part.strip() for part in args.operations.split(",") if part.strip())
        try:
            entries = plan_augmentation(args.count, slices.names, operations, seed=args.seed, scale=args.scale,
                                        temperature=args.temperature)
        except ValueError as error:
            raise SlimvisionError(str(error)) from None
    manifest_path = args.output / "manifest.json"
    check_outside_inputs(args.output, data)  # made slices there would be sources of the next run
    targets = [args.output / entry["file"] for entry in entries]
    protected = input_files(*map(Path, data), vae.folder, args.replay)
    # Every image and the manifest are checked before the first image is made.
    plan_outputs([*targets, manifest_path], overwrite=args.overwrite, protected=protected)
    made = [rint_to_uint8(render_entry(vae, entry, images)) for entry in entries]
    manifest = {"format": AUGMENT_FORMAT, "model": str(vae.folder.resolve()),
                "data": [str(Path(p).resolve()) for p in data], "axis": axis,
                "intensity": vae.intensity.to_dict(), "entries": entries}
    # The images and the manifest that rebuilds them appear together, or (on an error) none.
    write_png_set(made, targets, overwrite=args.overwrite, protected=protected,
                  also=[(manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())])
    print(f"{len(entries)} images and manifest.json in {args.output}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from slimvision.io.pixels import grey_grid
    from slimvision.io.atomic import plan_outputs
    from slimvision.io.images import save_image

    vae = _model(args.model, generative=True)
    protected = input_files(vae.folder)
    plan_outputs([args.output], overwrite=args.overwrite, protected=protected)
    images = vae.sample(args.count, seed=args.seed, temperature=args.temperature)
    save_image(grey_grid(images, args.columns), args.output, overwrite=args.overwrite, protected=protected)
    print(f"{args.count} samples in {args.output}")
    return 0
