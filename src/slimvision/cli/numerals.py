"""``slimvision numerals ...``: render data, train and evaluate the map, read pages, draw the map."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import number_list
from slimvision.errors import InputError, SlimvisionError

log = logging.getLogger(__name__)

DEFAULT_LEVELS = "0,0.5,1,1.5,2"
_LEVELS = number_list("levels", minimum=0)


def add_commands(groups: argparse._SubParsersAction) -> None:
    numerals = groups.add_parser("numerals", help="Roman numerals with a Kohonen self-organising map",
                                 description="Read Roman numerals (I V X L C D M) off page images with a "
                                             "self-organising map; render data, train, evaluate and draw maps.")
    commands = numerals.add_subparsers(dest="command", metavar="COMMAND", required=True)

    render = commands.add_parser("render", help="render labelled numeral images (data to look at or test with)",
                                 description="Render symbols, whole numerals or pages with known numerals, "
                                             "plus truth.json describing each file.")
    render.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    render.add_argument("--kind", choices=["symbols", "numerals", "pages"], default="numerals")
    render.add_argument("--count", type=int, default=20, help="images to render (default 20)")
    render.add_argument("--fonts", choices=["train", "held-out", "all"], default="held-out",
                        help="which fonts to draw with (default: the held-out ones)")
    _noise_option(render)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--overwrite", action="store_true", help="replace files that exist")
    render.set_defaults(run=run_render)

    train = commands.add_parser("train", help="train a numeral map on rendered symbols",
                                description="Render symbols with the training fonts, fit a map, label its "
                                            "nodes and score it on held-out fonts. Writes the map "
                                            "(config.json + map.npz), training.json, report.json and errors.png.")
    train.add_argument("-o", "--output", type=Path, required=True, help="folder for the map")
    # Defaults left as None come from NumeralTrainingConfig when the command runs (importing it
    # here would slow every command's start-up); the numbers in the help are checked by a test.
    train.add_argument("--rows", type=int, help="lattice rows (default 30)")
    train.add_argument("--cols", type=int, help="lattice columns (default 30)")
    train.add_argument("--lattice", choices=["rect", "hex"], default="rect")
    train.add_argument("--neighbourhood", choices=["gaussian", "bubble", "mexican_hat"], default="gaussian")
    train.add_argument("--rule", choices=["batch", "online"], default="batch")
    train.add_argument("--decay", choices=["linear", "exponential", "inverse"], default="linear")
    train.add_argument("--init", choices=["pca", "random"], default="pca")
    train.add_argument("--epochs", type=int, help="SOM epochs (default 10)")
    train.add_argument("--samples", type=int, help="rendered training symbols (default 35000)")
    train.add_argument("--other-samples", type=int,
                       help="rendered letters and digits that are no numerals, the map's 'other' class "
                            "(default 21000; 0: a map of the seven symbols alone)")
    train.add_argument("--lvq-epochs", type=int, help="epochs of LVQ1 fine-tuning after labelling (default 6; 0: none)")
    _noise_option(train)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--overwrite", action="store_true", help="replace a map that exists")
    _quiet_json(train)
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("eval", help="accuracy on held-out fonts against the noise level",
                                   description="Symbol and whole-numeral accuracy of a map on fonts it never "
                                               "saw, at several noise levels; optionally plotted.")
    _map_option(evaluate)
    evaluate.add_argument("--levels", type=_LEVELS, default=_LEVELS(DEFAULT_LEVELS),
                          help=f"noise levels, comma-separated (default {DEFAULT_LEVELS}; 1 = default noise)")
    evaluate.add_argument("--symbols", type=int, default=2100, help="symbols rendered per level (default 2100)")
    evaluate.add_argument("--numerals", type=int, default=1000,
                          help="whole numerals read per level, spread over 1..3999 (default 1000; 3999 = all); "
                               "also up to 500 lines like 'Chapter XIV'")
    evaluate.add_argument("--seed", type=int, default=1)
    evaluate.add_argument("--plot", type=Path, help="save the accuracy curve as a PNG")
    evaluate.add_argument("--overwrite", action="store_true", help="replace a plot that exists")
    _quiet_json(evaluate)
    evaluate.set_defaults(run=run_eval)

    read = commands.add_parser("read", help="read the Roman numerals on page images",
                               description="Find the Roman numerals on each page: text, value, box and "
                                           "confidence; non-standard tokens (IIII) are reported as such.")
    read.add_argument("pages", nargs="+", type=Path, help="page images")
    _map_option(read)
    read.add_argument("-a", "--annotate", type=Path,
                      help="save the page with boxes and values drawn on it (a folder for several pages)")
    read.add_argument("--max-pixels", type=int, default=None, help="refuse pages larger than this (default 100 MP)")
    read.add_argument("--overwrite", action="store_true", help="replace annotated images that exist")
    _quiet_json(read)
    read.set_defaults(run=run_read)

    draw = commands.add_parser("map", help="save the U-matrix, labelled map and prototypes as PNGs",
                               description="Draw a map: umatrix.png (cluster borders), labels.png (node "
                                           "labels and confidence) and prototypes.png (each node's glyph).")
    _map_option(draw)
    draw.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    draw.add_argument("--overwrite", action="store_true", help="replace pictures that exist")
    draw.set_defaults(run=run_map)


def _noise_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noise", type=float, default=1.0,
                        help="print wear: 0 clean, 1 the default worn scan, 2 badly damaged (default 1)")


def _map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--map", type=Path, default=None,
                        help="map folder from 'numerals train' (default: the map that ships with slimvision)")


def _quiet_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _load_map(path: Path | None) -> Any:
    from slimvision.inference.numerals import DEFAULT_MAP
    from slimvision.models.som import SelfOrganizingMap

    folder = DEFAULT_MAP if path is None else path
    if path is not None and not path.is_dir():
        raise InputError(path, "not a map folder (expected config.json and map.npz from 'numerals train')")
    som = SelfOrganizingMap.load(folder)
    if som.node_labels is None:
        raise InputError(folder, "this map has no node labels: train it with 'slimvision numerals train'")
    return som


def _noise(level: float) -> Any:
    from slimvision.data.numerals import NoiseConfig

    return NoiseConfig(level=level)


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise SlimvisionError(f"{flag} must be at least 1, got {value}")
    return value


# --------------------------------------------------------------------------- commands
def run_render(args: argparse.Namespace) -> int:
    from slimvision.data.numerals import find_fonts, render_numerals, render_page, render_symbols, split_fonts
    from slimvision.data.glyphs import glyph_image
    from slimvision.data.roman import SYMBOLS
    from slimvision.io.atomic import write_text_atomic
    from slimvision.io.images import save_image
    from slimvision.training.numerals import evaluation_numbers

    count = _positive(args.count, "--count")
    train, held_out = split_fonts(find_fonts())
    fonts = {"train": train, "held-out": held_out, "all": train + held_out}[args.fonts]
    noise, truth = _noise(args.noise), []
    if args.kind == "symbols":
        vectors, labels = render_symbols(fonts, count, seed=args.seed, noise=noise)
        for index, (vector, label) in enumerate(zip(vectors, labels)):
            name = f"symbol_{index:05d}.png"
            save_image(glyph_image(vector), args.output / name, overwrite=args.overwrite)
            truth.append({"file": name, "symbol": SYMBOLS[int(label)]})
    elif args.kind == "numerals":
        for index, (patch, number) in enumerate(render_numerals(fonts, evaluation_numbers(count, args.seed),
                                                                 seed=args.seed, noise=noise)):
            name = f"numeral_{index:05d}.png"
            save_image(patch, args.output / name, overwrite=args.overwrite)
            truth.append({"file": name, "value": number})
    else:
        for index in range(count):
            numbers = evaluation_numbers(6, args.seed * 7919 + index)
            page, placed = render_page(numbers, fonts, seed=args.seed * 7919 + index, noise=noise)
            name = f"page_{index:05d}.png"
            save_image(page, args.output / name, overwrite=args.overwrite)
            truth.append({"file": name, "numerals": [{"value": value, "box": list(box)} for value, box in placed]})
    write_text_atomic(args.output / "truth.json", json.dumps(truth, indent=1) + "\n", overwrite=args.overwrite)
    print(f"wrote {len(truth)} {args.kind} and truth.json into {args.output}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from slimvision.io.atomic import write_text_atomic
    from slimvision.plots import plot_training_errors
    from slimvision.training.numerals import NumeralTrainingConfig, train_numeral_map

    if (args.output / "config.json").exists() and not args.overwrite:
        raise SlimvisionError(f"{args.output}: a map is already there (pass --overwrite to replace it)")
    defaults = NumeralTrainingConfig()
    chosen = {name: value for name, value in (("rows", args.rows), ("cols", args.cols), ("epochs", args.epochs))
              if value is not None}
    som_config = replace(defaults.som, lattice=args.lattice, neighbourhood=args.neighbourhood, rule=args.rule,
                         decay=args.decay, init=args.init, seed=args.seed, **chosen)
    config = replace(defaults, som=som_config, noise=_noise(args.noise), seed=args.seed,
                     **{name: value for name, value in (("samples", args.samples), ("other_samples", args.other_samples),
                                                        ("lvq_epochs", args.lvq_epochs)) if value is not None})
    som, report = train_numeral_map(config, progress=not (args.quiet or args.json))
    som.save(args.output, overwrite=args.overwrite, half=True)
    write_text_atomic(args.output / "training.json", config.to_json(), overwrite=args.overwrite)
    write_text_atomic(args.output / "report.json", json.dumps(report, indent=1) + "\n", overwrite=args.overwrite)
    plot_training_errors(report["history"], args.output / "errors.png", overwrite=args.overwrite)
    summary = {key: report[key] for key in ("samples", "render_seconds", "fit_seconds", "quantization_error",
                                            "topographic_error", "symbol_accuracy", "other_rejected")
               if key in report}
    text = (f"map {som_config.rows}x{som_config.cols} ({som_config.lattice}, {som_config.rule}) trained on "
            f"{config.samples} symbols and {config.other_samples} other glyphs in "
            f"{report['fit_seconds']} s: quantization error {report['quantization_error']:.3f}, topographic "
            f"error {report['topographic_error']:.3f}; symbol accuracy on held-out fonts "
            f"{100 * report['symbol_accuracy']:.2f}%"
            + (f", other letters rejected {100 * report['other_rejected']:.2f}%" if "other_rejected" in report else "")
            + f"\nsaved to {args.output} (errors plotted in errors.png)")
    print(json.dumps(summary, indent=2) if args.json else text)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from slimvision.plots import plot_noise_curve
    from slimvision.training.numerals import noise_curve

    som = _load_map(args.map)
    rows = noise_curve(som, args.levels, symbols=_positive(args.symbols, "--symbols"),
                       numerals=_positive(args.numerals, "--numerals"), seed=args.seed,
                       progress=not (args.quiet or args.json))
    if args.plot is not None:
        plot_noise_curve(rows, args.plot, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'noise':>6} {'symbols':>9} {'numerals':>9} {'in lines':>9} {'words read as numerals':>23}   "
          f"(held-out fonts; {rows[0]['symbols']} symbols, {rows[0]['numerals']} numerals, {rows[0]['lines']} "
          f"lines, {rows[0]['words']} words per level)")
    for row in rows:
        print(f"{row['noise']:6.2f} {100 * row['symbol_accuracy']:8.2f}% {100 * row['numeral_accuracy']:8.2f}% "
              f"{100 * row['line_accuracy']:8.2f}% {100 * row['text_false_alarms']:22.2f}%")
    return 0


def run_read(args: argparse.Namespace) -> int:
    from slimvision.inference.numerals import NumeralReader, annotate
    from slimvision.io.images import DEFAULT_MAX_PIXELS, load_image, save_image

    reader = NumeralReader(_load_map(args.map))
    several = len(args.pages) > 1
    results = []
    for page_path in args.pages:
        page = load_image(page_path, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
        readings = reader(page)
        results.append({"page": str(page_path), "numerals": [reading.to_dict() for reading in readings]})
        if args.annotate is not None:
            target = args.annotate / f"{page_path.stem}_numerals.png" if several else args.annotate
            save_image(annotate(page, readings), target, overwrite=args.overwrite, protected=args.pages)
        if not args.json:
            print(f"{page_path}: {len(readings)} numeral{'s' if len(readings) != 1 else ''}")
            for reading in readings:
                note = "" if reading.standard else f"   ({reading.problem})"
                print(f"  {reading.text:<16} {reading.value if reading.value is not None else '?':>5}  "
                      f"box {reading.box}  confidence {reading.confidence:.2f}{note}")
    if args.json:
        print(json.dumps(results if several else results[0], indent=2))
    return 0


def run_map(args: argparse.Namespace) -> int:
    from slimvision.plots import save_map_pictures

    written = save_map_pictures(_load_map(args.map), args.output, overwrite=args.overwrite)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
