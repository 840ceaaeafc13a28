"""``slimvision train ...``: the commands that train (and distil) the students we ship.

torch is imported only when a command runs, so ``slimvision --help`` stays fast and the
inference-only install (without the ``train`` extra) still starts; a training command there
says which extra to install.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_quiet, bounded, non_negative_float, non_negative_int,
                                     positive_float, positive_int, seed)
from slimvision.errors import ConfigError, SlimvisionError

_MAX_BATCH = 65_536
_MAX_SECONDS = 30 * 24 * 3600  # a training time budget beyond a month is a typo


def add_commands(groups: argparse._SubParsersAction) -> None:
    train = groups.add_parser("train", help="train or distil models (needs the 'train' extra: torch)",
                              description="Train or distil models. Needs: pip install 'slimvision[train]'.")
    commands = train.add_subparsers(dest="command", metavar="COMMAND", required=True)
    predictor = commands.add_parser(
        "style-predictor", help="distil the style predictor into a narrower MobileNetV2",
        description="Distil the shipped style predictor (MobileNetV2 1.0, int8) into a narrower MobileNetV2 by "
                    "MSE between style vectors, on style samples from installed packages plus procedural "
                    "textures. Resumes from RUN_DIR if it holds checkpoints. Writes RUN_DIR/student/ "
                    "(safetensors + config), RUN_DIR/student.onnx (+ .json) and RUN_DIR/report.json.")
    _add_run_options(predictor, "the report")
    predictor.add_argument("--width", type=bounded("--width", float, maximum=4, above=0), default=0.35,
                           help="width multiplier, more than 0 and at most 4 (default 0.35)")
    predictor.add_argument("--last-channels", type=positive_int("--last-channels", 65_536), default=1280,
                           help="channels of the last 1x1 conv (default 1280)")
    predictor.add_argument("--steps", type=positive_int("--steps"), default=3000, help="optimiser steps (default 3000)")
    predictor.add_argument("--batch-size", type=positive_int("--batch-size", _MAX_BATCH), default=32,
                           help="images per step (default 32)")
    predictor.add_argument("--lr", type=positive_float("--lr", 10), default=2e-3,
                           help="peak learning rate, cosine-decayed (default 2e-3)")
    predictor.add_argument("--samples", type=positive_int("--samples"), default=20_000,
                           help="distinct style samples (default 20000)")
    predictor.add_argument("--init", choices=("pruned-teacher", "scratch"), default="pruned-teacher",
                           help="start from the teacher's strongest channels (default) or from random weights")
    predictor.add_argument("--seed", type=seed(), default=0, help="seed of the samples and the student's init")
    predictor.add_argument("--stem-stride", type=int, choices=(2, 4), default=2,
                           help="2: MobileNetV2's 3x3 stem (default); 4: a 4x4 stride-4 stem, no half-resolution layers")
    predictor.add_argument("--stage-repeats", default="",
                           help="blocks kept per stage, 7 numbers like 1,2,3,2,2,2,1 (default: all, 1,2,3,4,3,3,1)")
    predictor.set_defaults(run=run_style_predictor)
    _add_style_transformer(commands)


def _add_run_options(parser: argparse.ArgumentParser, json_help: str) -> None:
    """What every training command takes: where it runs, on which device, and how it reports."""
    parser.add_argument("--run-dir", type=Path, required=True, help="folder for checkpoints, cache and results")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    add_json(parser, json_help)
    add_quiet(parser)


def _training_module(name: str) -> Any:
    """``slimvision.training.<name>``, or a clear error when the train extra (torch) is missing."""
    import importlib

    try:
        return importlib.import_module(f"slimvision.training.{name}")
    except ImportError as exc:
        raise SlimvisionError(f"training needs torch: pip install 'slimvision[train]' ({exc})") from None


def _int_pair(text: str, option: str) -> tuple[int, int]:
    """'3,9' -> (3, 9); anything else is a one-line error naming the option."""
    parts = text.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ConfigError(f"{option} takes two whole numbers like 3,9; got {text!r}")
    return int(parts[0]), int(parts[1])


def _int_list(text: str, option: str) -> tuple[int, ...]:
    """'1,2,3' -> (1, 2, 3); '' -> (); anything else is a one-line error naming the option."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"{option} takes whole numbers separated by commas like 1,2,3; got {text!r}")
    return tuple(int(part) for part in parts)


def _add_style_transformer(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "style-transformer", help="distil the style transformer into a depthwise-separable student",
        description="Distil the shipped style transformer into a faster student, by L1 (+ EfficientNet-Lite0 "
                    "features, + 1 - SSIM) to the teacher's stylizations of (content crop, style vector) pairs. "
                    "By default the student's inner convolutions are depthwise-separable and its 9x9 edge "
                    "convolutions smaller; --space-to-depth 2 --separable '' builds the one that ships: the "
                    "teacher's own layers on 2x2 phase planes at half resolution. Starts from the teacher's "
                    "weights. Resumes from RUN_DIR if it holds checkpoints. Writes RUN_DIR/student/ (safetensors "
                    "+ config), RUN_DIR/transform.fp16w.onnx (what ships) and other exports, and "
                    "RUN_DIR/report.json with held-out SSIM/PSNR against the teachers.")
    _add_run_options(parser, "the held-out scores")
    parser.add_argument("--separable", default="contract,residual,expand",
                        help="comma-separated parts made separable, among contract,residual,expand,first,last "
                             "(default contract,residual,expand)")
    parser.add_argument("--edge-kernels", default="3,3", metavar="FIRST,LAST",
                        help="kernels of the first and the last conv (teacher: 9,9; default 3,3)")
    parser.add_argument("--padding", choices=("zeros", "reflect"), default="zeros",
                        help="zeros: padding inside the convs, no pad passes (default); reflect: as the teacher")
    parser.add_argument("--steps", type=positive_int("--steps"), default=3000, help="optimiser steps (default 3000)")
    parser.add_argument("--batch-size", type=positive_int("--batch-size", _MAX_BATCH), default=8,
                        help="pairs per step (default 8)")
    parser.add_argument("--crop-size", type=bounded("--crop-size", int, 16, MAX_SIDE), default=128,
                        help="content crop side in pixels, at least 16 (default 128)")
    parser.add_argument("--lr", type=positive_float("--lr", 10), default=2e-3,
                        help="peak learning rate, cosine-decayed (default 2e-3)")
    parser.add_argument("--samples", type=positive_int("--samples"), default=12_000,
                        help="distinct training pairs (default 12000)")
    parser.add_argument("--contents", type=non_negative_int("--contents"), default=0,
                        help="distinct content crops, each painted with several style vectors when below "
                             "--samples (default 0: one per pair)")
    parser.add_argument("--feature-weight", type=non_negative_float("--feature-weight", 1e6), default=0.02,
                        help="weight of the EfficientNet-Lite0 feature L1 (0: pixels only; default 0.02)")
    parser.add_argument("--init", choices=("teacher", "scratch"), default="teacher",
                        help="start from the teacher's weights (default) or from random weights")
    parser.add_argument("--seed", type=seed(), default=0, help="seed of the pairs and the student's init")
    parser.add_argument("--ssim-weight", type=non_negative_float("--ssim-weight", 1e6), default=0.0,
                        help="weight of a 1 - SSIM term against the teacher's image (default 0)")
    parser.add_argument("--residual-width", type=positive_int("--residual-width", 4096), default=32,
                        help="channels of the residual blocks (default 32)")
    parser.add_argument("--residual-blocks", type=non_negative_int("--residual-blocks", 1024), default=5,
                        help="number of residual blocks (default 5)")
    parser.add_argument("--space-to-depth", type=int, choices=(1, 2), default=1,
                        help="2: the teacher's layers on 2x2 phase planes, every conv at half resolution or "
                             "below (edge kernels then count half-resolution pixels: 5 holds the teacher's 9x9); "
                             "1: the teacher's layout (default)")
    parser.add_argument("--online-teacher", action="store_true",
                        help="run the float teacher's torch port on --device for every batch instead of caching "
                             "ONNX Runtime outputs (for a GPU)")
    parser.add_argument("--workers", type=non_negative_int("--workers", 1024), default=0,
                        help="processes that cut all content crops up front into RUN_DIR/contents-*.npy "
                             "(for a GPU; default 0: each crop is cut when a batch needs it)")
    parser.add_argument("--time-budget", type=non_negative_float("--time-budget", _MAX_SECONDS), default=0.0,
                        metavar="SECONDS",
                        help="train for about this long instead of --steps: the step count comes from the "
                             "speed of the first steps and is recorded in report.json (default 0: use --steps)")
    parser.set_defaults(run=run_style_transformer)


def run_style_transformer(args: argparse.Namespace) -> int:
    training = _training_module("style_transformer")
    parts = tuple(part.strip() for part in args.separable.split(",") if part.strip())
    config = training.TransformerDistillConfig(separable=parts, edge_kernels=_int_pair(args.edge_kernels, "--edge-kernels"),
                                      padding=args.padding,
                                      steps=args.steps, batch_size=args.batch_size, crop_size=args.crop_size,
                                      learning_rate=args.lr, samples=args.samples, feature_weight=args.feature_weight,
                                      init=args.init, seed=args.seed, device=args.device,
                                      ssim_weight=args.ssim_weight, residual_width=args.residual_width,
                                      residual_blocks=args.residual_blocks, space_to_depth=args.space_to_depth,
                                      online_teacher=args.online_teacher, workers=args.workers,
                                      time_budget_s=args.time_budget, contents=args.contents)
    report = training.distill_transformer(config, args.run_dir, progress=not (args.quiet or args.json))
    held = report["held_out"]
    if args.json:
        print(json.dumps({"steps_done": report["steps_done"], "params": report["params"],
                          "exports": report["exports"], "held_out": held}, indent=2))
        return 0
    ships = held["fp16_weights"]
    print(f"student: {report['params']:,} parameters, {report['exports']['fp16_weights']['bytes'] / 1e6:.2f} MB "
          f"(fp16 weights); held-out SSIM over {held['pairs']} pairs: "
          f"{ships['vs_fp32_teacher']['ssim_mean']:.3f} vs the fp32 teacher, "
          f"{ships['vs_int8_teacher']['ssim_mean']:.3f} vs the int8 teacher (the two teachers: "
          f"{held['int8_teacher_vs_fp32_teacher']['ssim_mean']:.3f})\nresults in {args.run_dir}/ "
          "(report.json, student/, transform.fp16w.onnx)")
    return 0


def run_style_predictor(args: argparse.Namespace) -> int:
    training = _training_module("style_predictor")
    config = training.PredictorDistillConfig(width_multiplier=args.width, last_channels=args.last_channels,
                                    steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                                    samples=args.samples, seed=args.seed, device=args.device,
                                    init=args.init, stem_stride=args.stem_stride,
                                    stage_repeats=_int_list(args.stage_repeats, "--stage-repeats"))
    report = training.distill_predictor(config, args.run_dir, progress=not (args.quiet or args.json))
    held = report["held_out"]
    summary = {key: report[key] for key in ("steps_done", "resumed_from", "params", "onnx_bytes", "export_max_abs_diff")}
    summary["held_out_mean_cosine"], summary["held_out_min_cosine"] = held["mean_cosine"], held["min_cosine"]
    for key in ("baseline_mean_vector_cosine", "centred_cosine", "r2"):
        summary[f"held_out_{key}"] = held.get(key)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"student: {report['params']:,} parameters, {report['onnx_bytes'] / 1e6:.2f} MB ONNX; "
              f"held-out cosine to the teacher: mean {held['mean_cosine']:.4f}, min {held['min_cosine']:.4f} "
              f"over {held['images']} images (predicting the mean vector: "
              f"{held.get('baseline_mean_vector_cosine', float('nan')):.4f}; centred cosine "
              f"{held.get('centred_cosine', float('nan')):.4f}, R^2 {held.get('r2', float('nan')):.3f})\nresults in {args.run_dir}/ (report.json, student/, student.onnx)")
    return 0
