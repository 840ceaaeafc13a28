"""``slimvision compress``: ``search`` chooses a style student's size by measurement under a latency
budget; ``gptq`` stores the teacher style predictor's weights in 4 bits (no training)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (
    MAX_SIDE, add_json, add_output, add_overwrite, add_quiet, non_negative_int, positive_float, positive_int, run_folder,
    seed, threads,
)

_SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


def transformer_sizes(text: str) -> list[tuple[int, int]]:
    """An argparse ``type`` for '512,1280x720': square sides or WIDTHxHEIGHT, as (height, width).

    Example:
        >>> transformer_sizes("512,1280x720")
        [(512, 512), (720, 1280)]
    """
    sizes = []
    for part in (part.strip() for part in text.split(",")):
        match = _SIZE.match(part)
        if not match:
            raise argparse.ArgumentTypeError(f"--sizes must be sides or WIDTHxHEIGHT separated by commas, "
                                             f"like 512,1280x720; got {text!r}")
        width = int(match[1])
        height = int(match[2] or width)
        if not (16 <= width <= MAX_SIDE and 16 <= height <= MAX_SIDE):
            raise argparse.ArgumentTypeError(f"--sizes: each side must be 16 to {MAX_SIDE} px, got {part!r}")
        sizes.append((height, width))
    return sizes


def add_commands(groups: argparse._SubParsersAction) -> None:
    compress = groups.add_parser("compress", help="choose and measure compressed students")
    commands = compress.add_subparsers(dest="command", metavar="COMMAND", required=True)
    search = commands.add_parser(
        "search", help="latency-budgeted student search: time candidates, train the front runners, Pareto front",
        description="Times every candidate architecture of a style student in ONNX Runtime on this CPU (untrained "
                    "weights: the time depends on the architecture), next to the teacher's graph in the same "
                    "run; drops those over the budget; trains the front runners briefly with the distillation "
                    "recipe and scores them on held-out styles (predictor: vector R^2; transformer: output SSIM); "
                    "prints the table and writes DIR/search.json and DIR/front.png (fidelity vs latency, the "
                    "Pareto front joined). Each trained candidate's result is kept in DIR/candidates/NAME/: run "
                    "again into the same DIR and they are not trained again.")
    search.add_argument("--student", required=True, choices=("predictor", "transformer"),
                        help="which style student to size")
    search.add_argument("--budget-ms", required=True, type=positive_float("--budget-ms", 1e7), metavar="MS",
                        help="latency budget in ms on this CPU: the predictor at 256 px, the transformer at the "
                             "first of --sizes")
    search.add_argument("--front", type=non_negative_int("--front", 1000), default=3, metavar="N",
                        help="front runners to train and score (default 3; 0: time only)")
    search.add_argument("--train-steps", type=positive_int("--train-steps", 1_000_000), default=200, metavar="S",
                        help="training steps for each front runner (default 200)")
    add_output(search, "folder for search.json, front.png and each candidate's training run", metavar="DIR")
    search.add_argument("--candidates", type=Path, default=None, metavar="JSON",
                        help='a JSON list of candidates, each {"name": ..., knob: value}; default: the built-in '
                             "family (docs/compress.md lists both)")
    search.add_argument("--sizes", type=transformer_sizes, default=None,
                        help="transformer only: content sizes to time, sides or WIDTHxHEIGHT (default 512,1280x720)")
    search.add_argument("--repeats", type=positive_int("--repeats", 10_000), default=7,
                        help="timed runs of each graph per size, interleaved (default 7)")
    search.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    search.add_argument("--batch-size", type=positive_int("--batch-size", 4096), default=None,
                        help="training batch size (default: the recipe's, 24 for the predictor, 8 for the transformer)")
    add_json(search, "the full report")
    add_quiet(search)
    search.set_defaults(run=run_search)
    _add_gptq(commands)
    _add_face_int8(commands)


def _add_face_int8(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "face-int8", help="dlib's face ResNet (or a trained face student) as a static int8 graph, calibrated on "
                          "synthetic face chips",
        description="Builds dlib's face-recognition ResNet as an ONNX graph (or takes a face student's, --model), "
                    "quantizes it to int8 (static QDQ, "
                    "per-channel weights, activation ranges calibrated on augmented synthetic face chips from "
                    "gan-face-generate, aligned by MTCNN, cut as the model's card asks: no real photo), and writes "
                    "the graph with its card, "
                    "whose parity is measured against the float graph on other synthetic chips. The descriptors "
                    "keep the float model's gallery name: for dlib's they stay within a few hundredths of the float "
                    "ones (docs/faces.md). With --tune-steps a face student is first fine-tuned with int8 "
                    "rounding simulated (on its run's pictures and teacher descriptors) and that is quantized; "
                    "on the measured student it won back 1 of 105 real pairs, so it is off by default. "
                    "Needs the train extra (gan-face-generate and torch draw the faces).")
    add_output(parser, "the int8 graph (.onnx); its card goes beside it", metavar="ONNX")
    parser.add_argument("--model", type=Path, default=None, metavar="RUN_OR_ONNX",
                        help="a face student to quantize: its run folder (slimvision train face-student) or its "
                             "embedder.onnx, with the card beside it (default: dlib's ResNet)")
    parser.add_argument("--calibration", type=positive_int("--calibration", 100_000), default=128, metavar="N",
                        help="synthetic face chips to calibrate on (default 128)")
    parser.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax",
                        help="how activation ranges are chosen (default minmax)")
    parser.add_argument("--seed", type=seed(), default=0, help="which synthetic faces (default 0)")
    parser.add_argument("--tune-steps", type=non_negative_int("--tune-steps", 1_000_000), default=0, metavar="N",
                        help="first fine-tune the student N steps with int8 rounding simulated, on its run's own "
                             "pictures and teacher descriptors (--model must be a run folder; written to "
                             "RUN/int8-tune, which resumes), then quantize that (default 0: quantize as trained)")
    parser.add_argument("--tune-lr", type=positive_float("--tune-lr", 1.0), default=1e-4, metavar="RATE",
                        help="the fine-tune's peak learning rate, cosine-decayed (default 1e-4)")
    add_overwrite(parser, "the graph and its card")
    add_quiet(parser)
    parser.set_defaults(run=run_face_int8)


def synthetic_face_chips(count: int, seed: int, progress: bool = True, kind: str = "dlib") -> list[Any]:
    """``count`` augmented chips of synthetic faces, found and aligned by MTCNN: dlib's (150, 150, 3)
    uint8 chips, or the 112 px ArcFace chips (``kind="arcface"``)."""
    from slimvision.cli.faces import face_canvas_maker
    from slimvision.data.face_identities import FaceAugment, PseudoIdentities, synthetic_canvases

    # Some synthetic faces are not found: draw a quarter more than needed.
    canvases = synthetic_canvases(count + count // 4 + 4, seed, face_canvas_maker(), keep=count, progress=progress)
    data = PseudoIdentities(canvases, FaceAugment(), seed=seed, kinds=(kind,))
    return [data[index][kind] for index in range(count)]


def _face_int8_source(model: Path | None) -> tuple[Path | None, Any]:
    """The float graph to quantize (None: dlib's, built from its .dat) and its embedder card."""
    from slimvision.data.face_align import ARCFACE_CHIP, MTCNN_DLIB_CHIP
    from slimvision.errors import InputError
    from slimvision.export.card import card_path
    from slimvision.inference.face_embedder import EmbedderCard

    if model is None:
        return None, EmbedderCard.read(EmbedderCard.default_file())
    graph = model / "embedder.onnx" if model.is_dir() else model
    if not graph.is_file() or graph.suffix != ".onnx":
        raise InputError(model, "is not a face student's run folder or an embedder .onnx graph")
    if not card_path(graph).is_file():
        raise InputError(graph, f"has no card beside it ({card_path(graph).name}): the chips it reads are unknown")
    card = EmbedderCard.read(card_path(graph))
    # The chips synthetic faces are cut as (data.face_identities.chip_from_canvas), by the card's template.
    chip_sizes = {"dlib": MTCNN_DLIB_CHIP.size, "arcface": ARCFACE_CHIP.size}
    if chip_sizes.get(card.template) != card.chip_size:
        raise InputError(card.path, f"reads {card.chip_size} px {card.template} chips; synthetic faces can be cut "
                                    "as 150 px dlib or 112 px arcface chips only")
    return graph, card


def _tuned_source(args: argparse.Namespace) -> tuple[Path, Any]:
    """The float graph of the student fine-tuned with int8 rounding simulated (``--tune-steps``)."""
    from slimvision.cli.faces import face_canvas_maker
    from slimvision.errors import InputError
    from slimvision.export.faces import export_face_student
    from slimvision.training.face_qat import FaceInt8TuneConfig, tune_for_int8

    if args.model is None or not args.model.is_dir():
        raise InputError(args.model or "--model", "--tune-steps fine-tunes a face student: give its run folder "
                                                  "(slimvision train face-student --run-dir) as --model")
    report = tune_for_int8(args.model, FaceInt8TuneConfig(steps=args.tune_steps, learning_rate=args.tune_lr),
                           canvas_maker=face_canvas_maker(), export=export_face_student, progress=not args.quiet)
    return _face_int8_source(Path(report["graph"]))


def run_face_int8(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.compress.quantize import quantize_int8_static
    from slimvision.errors import OutputError
    from slimvision.export.card import card_path, read_card, write_card
    from slimvision.inference.face_graph import dlib_resnet_graph

    if args.output.suffix != ".onnx":
        raise OutputError(args.output, "the int8 graph's name must end in .onnx")
    if args.output.exists() and not args.overwrite:
        raise OutputError(args.output, "exists; pass --overwrite to replace it")
    graph, embedder = _face_int8_source(args.model)
    if args.tune_steps:
        graph, embedder = _tuned_source(args)
    chips = synthetic_face_chips(2 * args.calibration, args.seed, progress=not args.quiet, kind=embedder.template)
    feeds = [{embedder.input.name: embedder.to_input(chip[None])} for chip in chips]
    with tempfile.TemporaryDirectory() as folder:
        if graph is None:  # dlib's: its ONNX graph is built from the .dat, its card ships with slimvision
            graph = Path(folder) / "dlib-resnet.onnx"
            graph.write_bytes(dlib_resnet_graph(DLIB_FACE_RESNET.path()))
            shutil.copy(embedder.path, card_path(graph))
        float_bytes = (DLIB_FACE_RESNET.path() if args.model is None else graph).stat().st_size
        quantize_int8_static(graph, feeds[:args.calibration], args.output, method=args.method,
                             overwrite=args.overwrite, parity=feeds[args.calibration:])
    card = read_card(card_path(args.output))
    card.files = {"graph": args.output.name}
    model = "" if args.model is None else f" --model {args.model}"
    tune = f" --tune-steps {args.tune_steps} --tune-lr {args.tune_lr}" if args.tune_steps else ""
    card.remake = (f"slimvision compress face-int8 -o {args.output.name}{model} --calibration {args.calibration} "
                   f"--method {args.method} --seed {args.seed}{tune}")
    what = ("dlib's .dat built into an ONNX graph" if args.model is None
            else f"the face student's graph ({embedder.card.name})")
    if args.tune_steps:
        what += f" after {args.tune_steps} steps of int8-aware fine-tuning"
    card.provenance = {**card.provenance, "graph": f"{what}, then static int8 QDQ calibrated on synthetic face chips "
                                                   "(gan-face-generate)"}
    write_card(card, card_path(args.output))
    print(f"{args.output}: {args.output.stat().st_size / 1e6:.2f} MB (float {float_bytes / 1e6:.1f} "
          f"MB); against the float graph on {card.parity['samples']} other synthetic chips: max |diff| "
          f"{card.parity['max_abs_diff']:.4f}, mean cosine {card.parity['mean_cosine']:.5f}")
    return 0


def _add_gptq(commands: argparse._SubParsersAction) -> None:
    gptq = commands.add_parser(
        "gptq", help="the teacher style predictor with 4-bit weights (GPTQ, no training), scored on held-out styles",
        description="Quantizes every 1x1 conv and the head of Magenta's style predictor to 4-bit codes with GPTQ "
                    "(one scale and zero point per output channel and group of inputs, error compensation "
                    "calibrated on training-family styles), fine-tunes the scales and biases against the float "
                    "teacher on more training-family styles (codes fixed), exports the pipeline's graph RUN_DIR/predictor.int4w.onnx "
                    "(checked against torch) and writes RUN_DIR/report.json: R^2 and centred cosine against the "
                    "float teacher on held-out real files and held-out style families, and the paintings' SSIM. "
                    "About four minutes on 2 CPU cores.")
    gptq.add_argument("--run-dir", type=run_folder(), required=True, metavar="DIR",
                      help="folder for the graphs and report.json")
    gptq.add_argument("--group-size", type=positive_int("--group-size", 4096), default=64, metavar="N",
                      help="input channels per scale and zero point (default 64)")
    gptq.add_argument("--calibration", type=positive_int("--calibration", 100_000), default=128, metavar="N",
                      help="training-family style images to calibrate on (default 128)")
    gptq.add_argument("--seed", type=seed(), default=7, help="which calibration images (default 7)")
    gptq.add_argument("--tune-steps", type=non_negative_int("--tune-steps", 1_000_000), default=200, metavar="N",
                      help="then fine-tune the 4-bit scales and the biases for N steps against the float teacher "
                           "(codes fixed; default 200, about 3 minutes; 0: GPTQ alone)")
    gptq.add_argument("--wide-budget-kb", type=non_negative_int("--wide-budget-kb", 100_000), default=0, metavar="KB",
                      help="let the graph grow by up to KB kilobytes to store some layers at 8 bits: each layer "
                           "alone is rounded to 4 bits and the painting-space error it causes is measured, and "
                           "the budget goes to the most error per extra byte (default 0: every layer at 4 bits)")
    gptq.add_argument("--no-act-order", action="store_true",
                      help="quantize inputs in their order instead of by decreasing energy (worse; for comparison)")
    gptq.add_argument("--grid", choices=("minmax", "mse"), default="minmax",
                      help="each group's scale and zero point: its weights' range (minmax, default) or the range "
                           "clipped where rounding errs least, weighted by input energy (mse)")
    add_json(gptq, "the report")
    add_quiet(gptq)
    gptq.set_defaults(run=run_gptq)


def run_gptq(args: argparse.Namespace) -> int:
    from slimvision.errors import OutputError
    from slimvision.export.style import export_predictor_int4
    from slimvision.training.style_predictor_gptq import PredictorGPTQConfig, quantize_predictor

    if args.run_dir.exists() and not args.run_dir.is_dir():
        raise OutputError(args.run_dir, "is a file; give a folder for the quantized predictor")
    config = PredictorGPTQConfig(group_size=args.group_size, calibration=args.calibration,
                                 calibration_seed=args.seed, act_order=not args.no_act_order,
                                 tune_steps=args.tune_steps, wide_budget_kb=args.wide_budget_kb, grid=args.grid)
    config.validate()
    report = quantize_predictor(config, args.run_dir, progress=not args.quiet, export=export_predictor_int4)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    files, families = report["held_out"], report["held_out_families"]
    painted = families["output_space"]
    wide = report["wide_layers"]
    wide_text = (f", {len(wide['layers'])} layers at 8 bits instead (+{wide['extra_bytes'] / 1e3:.0f} kB)"
                 if wide else "")
    print(f"{report['layers_quantized']} layers, {report['weights_quantized']:,} of {report['weights_total']:,} "
          f"weights at 4 bits{wide_text}; {report['pipeline_model']['path']}: {report['pipeline_model']['bytes'] / 1e6:.2f} MB "
          f"(teacher {report['pipeline_model']['teacher_bytes'] / 1e6:.2f} MB)")
    print(f"held-out files ({files['images']}): R^2 {files['r2']:.3f}, centred cosine {files['centred_cosine']:.3f}")
    print(f"held-out families ({families['vectors']['images']}): R^2 {families['vectors']['r2']:.3f}, "
          f"centred cosine {families['vectors']['centred_cosine']:.3f}" + (
              f", paintings SSIM {painted['painting_ssim_mean']:.3f} mean / {painted['painting_ssim_min']:.3f} worst"
              if painted.get("paintings") else ""))
    print(f"report: {args.run_dir / 'report.json'}")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from slimvision.bench.search import SearchSettings, search, table
    from slimvision.bench.style_search import read_family, style_search_parts
    from slimvision.errors import ConfigError, OutputError

    if args.output.exists() and not args.output.is_dir():
        raise OutputError(args.output, "is a file; give a folder for the search's outputs")
    if args.sizes is not None and args.student != "transformer":
        raise ConfigError("--sizes is for --student transformer (the predictor is timed at its 256 px input)")
    settings = SearchSettings(budget_ms=args.budget_ms, front_runners=args.front, train_steps=args.train_steps,
                              repeats=args.repeats, threads=args.threads)
    family = read_family(args.candidates) if args.candidates is not None else None
    candidates, reference, train, score = style_search_parts(args.student, family, sizes=args.sizes,
                                                             batch_size=args.batch_size, progress=not args.quiet)
    result = search(candidates, reference, settings, train=train, score=score, folder=args.output,
                    progress=not args.quiet)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(table(result))
        print(f"report: {result.report_path}\nplot: {result.plot_path}")
    return 0
