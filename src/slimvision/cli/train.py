"""``slimvision train ...``: the commands that train (and distil) the students we ship.

torch is imported only when a command runs, so ``slimvision --help`` stays fast and the
inference-only install (without the ``train`` extra) still starts; a training command there
says which extra to install.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_overwrite, add_quiet, bounded, non_negative_float,
                                     non_negative_int, or_word, positive_float, positive_int, run_folder, seed)
from slimvision.cli.config_flags import ConfigFlag, add_config_flags, build_config, shared_flag
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
                    "(safetensors + config), RUN_DIR/student.onnx (+ its .card.json) and RUN_DIR/report.json.")
    _add_run_options(predictor, "the report")
    add_config_flags(predictor, "slimvision.training.style_predictor:PredictorDistillConfig", _PREDICTOR_FLAGS)
    predictor.set_defaults(run=run_style_predictor)
    _add_style_transformer(commands)
    _add_style_data(commands)
    _add_face_student(commands)


def _add_run_options(parser: argparse.ArgumentParser, json_help: str) -> None:
    """What every distillation command takes besides its config: where it runs and how it reports."""
    parser.add_argument("--run-dir", type=run_folder(), required=True, help="folder for checkpoints, cache and results")
    add_json(parser, json_help)
    add_quiet(parser)


def _training_module(name: str) -> Any:
    """``slimvision.training.<name>``, or a clear error when the train extra (torch) is missing."""
    import importlib

    try:
        return importlib.import_module(f"slimvision.training.{name}")
    except ImportError as exc:
        raise SlimvisionError(f"training needs torch: pip install 'slimvision[train]' ({exc})") from None


def _int_pair(text: str, option: str = "--edge-kernels") -> tuple[int, int]:
    """'3,9' -> (3, 9); anything else is a one-line error naming the option."""
    parts = text.split(",")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ConfigError(f"{option} takes two whole numbers like 3,9; got {text!r}")
    return int(parts[0]), int(parts[1])


def _int_list(text: str, option: str = "--stage-repeats") -> tuple[int, ...]:
    """'1,2,3' -> (1, 2, 3); '' -> (); anything else is a one-line error naming the option."""
    parts = [part.strip() for part in text.split(",")] if text.strip() else []
    if not all(part.isdigit() for part in parts):
        raise ConfigError(f"{option} takes whole numbers separated by commas like 1,2,3; got {text!r}")
    return tuple(int(part) for part in parts)


def _style_data_flag() -> ConfigFlag:
    """``--style-data``: the style samples both style distillations can train on."""
    return ConfigFlag("--style-data", "style_data", choices=("files", "families"),
                      help="style samples: files (installed images, augmented; the shipped students) or "
                           "families (procedural families + real crops; see 'train style-data')")


def _absolute_paths(paths: list[str]) -> tuple[str, ...]:
    """Paths as the run saves them: absolute, so a run resumed from another folder finds them."""
    return tuple(os.path.abspath(path) for path in paths)


def _parts(text: str) -> tuple[str, ...]:
    """'contract, residual' -> ("contract", "residual"); '' -> () (the config checks the names)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


#: ``train style-predictor``'s options that set PredictorDistillConfig fields (defaults from the config).
_PREDICTOR_FLAGS = (
    ConfigFlag("--width", "width_multiplier", bounded("--width", float, maximum=4, above=0),
               "width multiplier, more than 0 and at most 4"),
    ConfigFlag("--last-channels", "last_channels", positive_int("--last-channels", 65_536),
               "channels of the last 1x1 conv"),
    shared_flag("steps"),
    shared_flag("batch_size"),
    shared_flag("lr", "peak learning rate, cosine-decayed", key="learning_rate"),
    ConfigFlag("--samples", "samples", positive_int("--samples"), "distinct style samples"),
    ConfigFlag("--init", "init", choices=("pruned-teacher", "scratch"),
               help="start from the teacher's strongest channels or from random weights"),
    shared_flag("seed", "seed of the samples and the student's init"),
    ConfigFlag("--stem-stride", "stem_stride", int, choices=(2, 4),
               help="2: MobileNetV2's 3x3 stem; 4: a 4x4 stride-4 stem, no half-resolution layers"),
    ConfigFlag("--stage-repeats", "stage_repeats", convert=_int_list, show_default=False,
               help="blocks kept per stage, 7 numbers like 1,2,3,2,2,2,1 (default: all, 1,2,3,4,3,3,1)"),
    _style_data_flag(),
    ConfigFlag("--norm-param-weight", "norm_param_weight", non_negative_float("--norm-param-weight", 1e6),
               "weight of the error in the teacher transformer's conditional-norm scales and offsets",
               note="0: vector MSE only"),
    ConfigFlag("--image-weight", "image_weight", non_negative_float("--image-weight", 1e6),
               "weight of the MSE between the teacher transformer's paintings from both vectors",
               note="0: no painting loss"),
    shared_flag("device"),
)

#: ``train style-transformer``'s options that set TransformerDistillConfig fields (defaults from the config).
_TRANSFORMER_FLAGS = (
    ConfigFlag("--separable", "separable", convert=_parts, metavar="PARTS",
               help="comma-separated parts made separable, among contract,residual,expand,first,last"),
    ConfigFlag("--edge-kernels", "edge_kernels", convert=_int_pair, metavar="FIRST,LAST",
               help="kernels of the first and the last conv (teacher: 9,9)"),
    ConfigFlag("--padding", "padding", choices=("zeros", "reflect"),
               help="zeros: padding inside the convs, no pad passes; reflect: as the teacher"),
    shared_flag("steps"),
    shared_flag("batch_size", "pairs per step"),
    ConfigFlag("--crop-size", "crop_size", bounded("--crop-size", int, 16, MAX_SIDE),
               "content crop side in pixels, at least 16"),
    shared_flag("lr", "peak learning rate, cosine-decayed", key="learning_rate"),
    ConfigFlag("--samples", "samples", positive_int("--samples"), "distinct training pairs"),
    ConfigFlag("--contents", "contents", non_negative_int("--contents"),
               "distinct content crops, each painted with several style vectors when below --samples",
               note="0: one per pair"),
    ConfigFlag("--feature-weight", "feature_weight", non_negative_float("--feature-weight", 1e6),
               "weight of the EfficientNet-Lite0 feature L1", note="0: pixels only"),
    ConfigFlag("--init", "init", choices=("teacher", "scratch", "shipped"),
               help="start from the teacher's weights, from random weights, or from the shipped student's "
                    "(to fine-tune it)"),
    ConfigFlag("--init-from", "init_from", metavar="FOLDER",
               help="with --init shipped: the saved student folder (config.json + model.safetensors) to "
                    "fine-tune instead of the shipped v3 student, e.g. a run's RUN_DIR/student"),
    shared_flag("seed", "seed of the pairs and the student's init"),
    ConfigFlag("--ssim-weight", "ssim_weight", non_negative_float("--ssim-weight", 1e6),
               "weight of a 1 - SSIM term against the teacher's image"),
    ConfigFlag("--residual-width", "residual_width", positive_int("--residual-width", 4096),
               "channels of the residual blocks"),
    ConfigFlag("--residual-blocks", "residual_blocks", non_negative_int("--residual-blocks", 1024),
               "number of residual blocks"),
    ConfigFlag("--space-to-depth", "space_to_depth", int, choices=(1, 2),
               help="2: the teacher's layers on 2x2 phase planes, every conv at half resolution or below (edge "
                    "kernels then count half-resolution pixels: 5 holds the teacher's 9x9); 1: the teacher's layout"),
    ConfigFlag("--online-teacher", "online_teacher", switch=True,
               help="run the float teacher's torch port on --device for every batch instead of caching "
                    "ONNX Runtime outputs (for a GPU)"),
    ConfigFlag("--workers", "workers", non_negative_int("--workers", 1024),
               "processes that cut all content crops up front into RUN_DIR/contents-*.npy (for a GPU)",
               note="0: each crop is cut when a batch needs it"),
    ConfigFlag("--time-budget", "time_budget_s", non_negative_float("--time-budget", _MAX_SECONDS),
               "train for about this long instead of --steps: the step count comes from the speed of the "
               "first steps and is recorded in report.json", metavar="SECONDS", note="0: use --steps"),
    _style_data_flag(),
    shared_flag("device"),
)


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
    add_config_flags(parser, "slimvision.training.style_transformer:TransformerDistillConfig", _TRANSFORMER_FLAGS)
    parser.set_defaults(run=run_style_transformer)


def run_style_transformer(args: argparse.Namespace) -> int:
    training = _training_module("style_transformer")
    config = build_config(args)
    from slimvision.export.style import export_transformer

    report = training.distill_transformer(config, args.run_dir, progress=not (args.quiet or args.json),
                                          export=export_transformer)
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
    config = build_config(args)
    from slimvision.export.style import export_predictor

    report = training.distill_predictor(config, args.run_dir, progress=not (args.quiet or args.json),
                                        export=export_predictor)
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


def _add_style_data(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "style-data", help="list the procedural style families and their held-out split; draw a preview sheet",
        description="List the procedural style families that '--style-data families' trains on "
                    "(slimvision.data.style_families), which of them are held out of every training set, and "
                    "what each draws. With --sheet, also write a preview: one labelled row per family. Needs no torch.")
    parser.add_argument("--sheet", type=Path, metavar="IMAGE", help="write a preview sheet (.png, .jpg, .webp)")
    parser.add_argument("--per-family", type=positive_int("--per-family", 64), default=6,
                        help="images per family row (default 6)")
    parser.add_argument("--tile", type=bounded("--tile", int, 16, 512), default=96,
                        help="side of each image on the sheet in pixels (default 96)")
    parser.add_argument("--seed", type=seed(), default=0, help="which images each family shows (default 0)")
    parser.add_argument("--real-palettes", action="store_true",
                        help="draw half the palettes from the training images' colours, as training does "
                             "(default: harmonious palettes only, the same on every machine)")
    parser.add_argument("--colours", type=bounded("--colours", int, 0, 256), default=0,
                        help="quantise the sheet to this many colours, for a small PNG (default 0: full colour)")
    add_overwrite(parser, "the sheet")
    add_json(parser, "the families and their split")
    parser.set_defaults(run=run_style_data)


def run_style_data(args: argparse.Namespace) -> int:
    from slimvision.data import style_families as families

    train, held_out = families.split_families()
    if args.sheet is not None:
        _write_family_sheet(args, families)
    if args.json:
        print(json.dumps({"train": list(train), "held_out": list(held_out),
                          "about": {name: family.about for name, family in families.FAMILIES.items()},
                          "sheet": str(args.sheet) if args.sheet else None}, indent=2))
        return 0
    for name, family in families.FAMILIES.items():
        print(f"{name:<16} {'held out' if name in held_out else 'train':<9} {family.about}")
    print(f"{len(train)} training families, {len(held_out)} held out" +
          (f"; sheet written to {args.sheet}" if args.sheet else ""))
    return 0


def _write_family_sheet(args: argparse.Namespace, families: Any) -> None:
    import io

    from PIL import Image

    from slimvision.data.style_images import find_style_sources
    from slimvision.io.atomic import write_bytes_atomic
    from slimvision.io.images import save_image

    if args.colours and args.sheet.suffix.lower() != ".png":
        raise ConfigError(f"--colours writes a palette PNG; {args.sheet} is no .png")
    palettes = None
    if args.real_palettes:
        palettes = families.PaletteBank(families.split_real_sources(find_style_sources())[0])
    sheet = families.family_sheet(per_family=args.per_family, tile=args.tile, seed=args.seed, palettes=palettes)
    if not args.colours:
        save_image(sheet, args.sheet, overwrite=args.overwrite, png_level=9)
        return
    buffer = io.BytesIO()  # a palette PNG: about a third of the bytes of a full-colour one
    Image.fromarray(sheet).quantize(colors=args.colours, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True)
    write_bytes_atomic(args.sheet, buffer.getvalue(), overwrite=args.overwrite)


_FACE_STUDENT_FLAGS = (
    ConfigFlag("--student", "student", choices=("dlib", "mobilefacenet"),
               help="dlib's ResNet at --width x its channels (150 px dlib chips), or MobileFaceNet (112 px ArcFace "
                    "chips; needs --init scratch)"),
    ConfigFlag("--width", "width", bounded("--width", float, 0.05, 1.0),
               "the student's channels as a fraction of the teacher's"),
    ConfigFlag("--init", "init", choices=("pruned-teacher", "scratch"),
               help="start from the teacher's most important channels, or from random weights"),
    ConfigFlag("--faces", "faces", non_negative_int("--faces", 1_000_000),
               "synthetic source faces drawn (each one found becomes a pseudo-identity)",
               note="0: the faces of --photos alone"),
    ConfigFlag("--photos", "photos", str, append=True, convert=_absolute_paths, metavar="PATH",
               help="your own photos, unlabelled: an image file or a folder (sub-folders too); every face of "
                    "40 px or more found in them becomes a pseudo-identity beside the synthetic faces; "
                    "repeat for more (real faces close the gap the synthetic ones leave, docs/faces.md)",
               show_default=False),
    ConfigFlag("--samples-per-face", "samples_per_face", positive_int("--samples-per-face", 10_000),
               "augmented pictures of each face in the fixed training set"),
    shared_flag("steps"),
    shared_flag("batch_size", "chips per step"),
    shared_flag("lr", "peak learning rate, cosine-decayed", key="learning_rate"),
    ConfigFlag("--loss", "loss", choices=("regression", "arcface", "cosface", "margin-distillation"),
               help="regression to the teacher's descriptors; arcface or cosface: a margin softmax over the "
                    "pseudo-identities; margin-distillation: the teacher's class centres, fixed, with a margin "
                    "per class that follows the teacher (the margin losses add --regression-weight x the "
                    "regression)"),
    ConfigFlag("--mse-weight", "mse_weight", non_negative_float("--mse-weight", 1e6),
               "weight of the squared distance to the teacher's descriptor"),
    ConfigFlag("--cosine-weight", "cosine_weight", non_negative_float("--cosine-weight", 1e6),
               "weight of 1 - cosine to the teacher's descriptor"),
    ConfigFlag("--target-space", "target_space", choices=("raw", "centred", "standardised"),
               help="where the regression compares descriptors: raw (the default before the measured recipe), "
                    "centred (less the teacher's mean descriptor, so the cosine sees identity, not the mean all "
                    "faces share) or standardised (centred, each dimension over its std); the student outputs the "
                    "teacher's descriptors in all three"),
    ConfigFlag("--relational-weight", "relational_weight", non_negative_float("--relational-weight", 1e6),
               "weight of the relational term (RKD distances): each pair's distance in the batch against the "
               "teacher's", note="0: none"),
    ConfigFlag("--batch-norm", "batch_norm", switch=True,
               help="train the dlib student with a batch norm after every conv, started at the teacher's channel "
                    "statistics and folded into the convs for export (default auto: on for the dlib student, off "
                    "for MobileFaceNet, which has its own)"),
    ConfigFlag("--no-batch-norm", "batch_norm", switch=False,
               help="train the dlib student without batch norms, as dlib's folded layout is (the default before "
                    "the measured recipe; the pruned student then stays near the teacher's mean descriptor)"),
    ConfigFlag("--hint-weight", "hint_weight", or_word(non_negative_float("--hint-weight", 1e6), "auto"),
               "weight of the level hints: the pruned student's feature map at the end of each residual level "
               "against the teacher channels it holds (runs the teacher on every batch; only --init "
               "pruned-teacher with --loss regression)",
               note="auto: 1 for the dlib student from the pruned teacher with --loss regression, else 0; 0: none"),
    ConfigFlag("--distance-scale", "distance_scale", switch=True,
               help="after training, scale the dlib student's descriptors by the factor that best matches its pair "
                    "distances to the teacher's on training pictures (for the 0.6 threshold); a finished run rerun "
                    "with it re-exports the scaled student (default auto: on for the dlib student, off for "
                    "MobileFaceNet)"),
    ConfigFlag("--no-distance-scale", "distance_scale", switch=False,
               help="export the student as trained, without the distance scale; a finished run rerun with it "
                    "re-exports the plain student"),
    ConfigFlag("--margin", "margin", bounded("--margin", float, 0, 1.5),
               "the margin loss's margin: radians for arcface and margin-distillation (its largest per-class "
               "margin), a cosine difference for cosface",
               note="None: the loss's own, arcface 0.3, cosface 0.2, margin-distillation 0.4"),
    ConfigFlag("--min-margin", "min_margin", bounded("--min-margin", float, 0, 1.5),
               "margin-distillation's smallest per-class margin, radians"),
    ConfigFlag("--scale", "scale", positive_float("--scale", 1024), "the margin losses' logit scale s"),
    ConfigFlag("--regression-weight", "regression_weight", non_negative_float("--regression-weight", 1e6),
               "the margin losses' weight of the regression to the teacher's descriptors, which keeps the "
               "student in the teacher's space (its threshold, its galleries)", note="0: the margin alone"),
    shared_flag("seed", "seed of the synthetic faces, their augmentations and the batches"),
    ConfigFlag("--freeze-backbone-steps", "finetune.freeze_backbone_steps",
               non_negative_int("--freeze-backbone-steps"),
               "steps at the start that train the head only, the backbone frozen"),
    ConfigFlag("--unfreeze", "finetune.unfreeze", bounded("--unfreeze", int, -1, 10_000),
               "backbone blocks (from the top) that train after the frozen steps", note="-1: all, 0: none"),
    ConfigFlag("--backbone-lr-scale", "finetune.backbone_lr_scale", bounded("--backbone-lr-scale", float, 1e-6, 1.0),
               "the unfrozen blocks' learning rate as a fraction of the head's"),
    shared_flag("device"),
)


def _add_face_student(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "face-student", help="distil dlib's face ResNet into a narrower copy (half the channels by default) or a "
                             "MobileFaceNet",
        description="Distil dlib's face-recognition ResNet into the same network at --width x its channels, "
                    "started from the teacher's most important channels (or into a MobileFaceNet on 112 px "
                    "ArcFace chips, --student mobilefacenet --init scratch), on synthetic faces "
                    "(gan-face-generate) aligned by MTCNN and augmented (pose, light, blur, noise, JPEG, grey), "
                    "each face a pseudo-identity. The loss: regression to the teacher's descriptors, or a margin "
                    "softmax over the pseudo-identities beside it (--loss arcface, cosface, margin-distillation). "
                    "The defaults are the recipe measured in docs/faces.md: batch norms while training (dlib "
                    "student), the regression measured from the teacher's mean descriptor (--target-space "
                    "centred), the relational term (--relational-weight 1), level hints (--hint-weight auto: with "
                    "--loss regression) and the distance scale after training (dlib student); --no-batch-norm "
                    "--target-space raw --relational-weight 0 --hint-weight 0 --no-distance-scale trains as the "
                    "defaults before it did. --photos adds every face in your own photos (no names needed); no photo that "
                    "ships with slimvision is trained on. Resumes from RUN_DIR if it holds "
                    "checkpoints, with the settings the run was trained with (flags given change them, where a "
                    "resumed run may change them). Writes "
                    "RUN_DIR/student/ (safetensors + config), RUN_DIR/embedder.onnx (+ its card, which the face "
                    "pipeline reads) and RUN_DIR/report.json.")
    _add_run_options(parser, "the report")
    add_config_flags(parser, "slimvision.training.face_student:FaceStudentConfig", _FACE_STUDENT_FLAGS)
    parser.set_defaults(run=run_face_student)


def face_student_config(args: argparse.Namespace) -> Any:
    """The ``FaceStudentConfig`` a ``train face-student`` command line asks for. A run folder that
    holds checkpoints is resumed from the settings it was trained with (a run saved under older
    defaults keeps them; ``FaceStudentConfig.from_saved``), with the recipe and the flags given
    laid over them; a new run starts from the defaults."""
    training = _training_module("face_student")
    saved = training.saved_config(args.run_dir)
    if saved is None:
        return build_config(args)
    try:
        return build_config(args, start=saved.to_dict())
    except ConfigError as exc:  # e.g. --loss arcface on a run that trained with the regression loss's hints
        raise ConfigError(f"{args.run_dir} resumes with the settings it was trained with, which the flags given "
                          f"do not fit ({exc}); use a new run folder for other settings") from None


def _face_sources(config: Any) -> str:
    if not config.photos:
        return "synthetic faces"
    return "faces from your photos" if config.faces == 0 else "faces (synthetic and from your photos)"


def run_face_student(args: argparse.Namespace) -> int:
    training = _training_module("face_student")
    config = face_student_config(args)
    from slimvision.cli.faces import face_canvas_maker
    from slimvision.export.faces import export_face_student

    report = training.train_face_student(config, args.run_dir, canvas_maker=face_canvas_maker(),
                                         export=export_face_student, progress=not (args.quiet or args.json))
    summary = {key: report[key] for key in ("steps_done", "params", "teacher_params", "faces_aligned", "pictures",
                                            "loss", "exports")}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"student: {report['params']:,} parameters ({report['params'] / report['teacher_params']:.2f} of the "
              f"teacher's), trained {report['steps_done']} steps ({config.loss}) on {report['pictures']:,} pictures of "
              f"{report['faces_aligned']:,} {_face_sources(config)}\nresults in {args.run_dir}/ (report.json, student/, "
              "embedder.onnx)")
    return 0
