"""``slimvision numerals ...``: render data, train and evaluate the map, read pages, draw the map."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_COUNT, add_json, add_output, add_overwrite, add_quiet, bounded, number_list,
                                     check_folder_output, max_pixels, non_negative_int, positive_int, seed)
from slimvision.cli.config_flags import ConfigFlag, add_config_flags, build_config
from slimvision.errors import InputError, OutputError, SlimvisionError

log = logging.getLogger(__name__)

DEFAULT_LEVELS = "0,0.5,1,1.5,2"
#: Highest print wear NoiseConfig takes (1 = the default worn scan).
MAX_NOISE = 4.0
#: Largest lattice side and most epochs the options take (a typo's extra zeros are refused at once).
MAX_SIDE, MAX_EPOCHS = 1000, 100_000
#: The box convention, stated in the help of every command that prints boxes.
BOXES = ("Boxes are x0,y0,x1,y1: whole pixels of the page as loaded (after EXIF rotation), origin top-left, "
         "x1/y1 the exclusive right/bottom edges; JSON output says \"box_format\": \"xyxy\".")
_NOISE = bounded("--noise", float, 0, MAX_NOISE)
#: Noise levels for the eval: '0,0.5,1', each a finite number in 0..MAX_NOISE (one-line errors).
_levels = number_list("--levels", minimum=0, maximum=MAX_NOISE)
#: The registered artifact (``slimvision models``) that reads; a map of your own runs through its pipeline.
READER = "numerals-som"


#: ``numerals train``'s options that set NumeralTrainingConfig fields (defaults come from the config).
_TRAIN_FLAGS = (
    ConfigFlag("--rows", "som.rows", positive_int("--rows", MAX_SIDE), "lattice rows"),
    ConfigFlag("--cols", "som.cols", positive_int("--cols", MAX_SIDE), "lattice columns"),
    ConfigFlag("--lattice", "som.lattice", choices=["rect", "hex"], help="node layout"),
    ConfigFlag("--neighbourhood", "som.neighbourhood", choices=["gaussian", "bubble", "mexican_hat"],
               help="how a winner's update spreads to its neighbours"),
    ConfigFlag("--rule", "som.rule", choices=["batch", "online"], help="batch or online SOM updates"),
    ConfigFlag("--decay", "som.decay", choices=["linear", "exponential", "inverse"],
               help="how the learning rate and radius fall"),
    ConfigFlag("--init", "som.init", choices=["pca", "random"], help="start of the prototypes"),
    ConfigFlag("--epochs", "som.epochs", positive_int("--epochs", MAX_EPOCHS), "SOM epochs"),
    ConfigFlag("--samples", "samples", bounded("--samples", int, 7, MAX_COUNT), "rendered training symbols"),
    ConfigFlag("--other-samples", "other_samples", non_negative_int("--other-samples", MAX_COUNT),
               "rendered letters and digits that are no numerals, the map's 'other' class",
               note="0: a map of the seven symbols alone"),
    ConfigFlag("--lvq-epochs", "lvq_epochs", non_negative_int("--lvq-epochs", MAX_EPOCHS),
               "epochs of LVQ1 fine-tuning after labelling", note="0: none"),
    ConfigFlag("--noise", "noise.level", _NOISE,
               f"print wear: 0 clean, 1 the default worn scan, 2 badly damaged, at most {MAX_NOISE:g}"),
    ConfigFlag("--seed", "seed som.seed", seed(), "seed of the rendering and of the map's start"),
)


def add_commands(groups: argparse._SubParsersAction) -> None:
    numerals = groups.add_parser("numerals", help="Roman numerals with a Kohonen self-organising map",
                                 description="Read Roman numerals (I V X L C D M) off page images with a "
                                             "self-organising map; render data, train, evaluate and draw maps.")
    commands = numerals.add_subparsers(dest="command", metavar="COMMAND", required=True)

    render = commands.add_parser("render", help="render labelled numeral images (data to look at or test with)",
                                 description="Render symbols, whole numerals or pages with known numerals, "
                                             f"plus truth.json describing each file. {BOXES}")
    add_output(render, "output folder (a name with a suffix such as x.png only if it is one or ends with '/')")
    render.add_argument("--kind", choices=["symbols", "numerals", "pages"], default="numerals")
    render.add_argument("--count", type=positive_int("--count", MAX_COUNT), default=20,
                        help="images to render (default 20)")
    render.add_argument("--fonts", choices=["train", "held-out", "all"], default="held-out",
                        help="which fonts to draw with (default: the held-out ones)")
    _noise_option(render)
    render.add_argument("--seed", type=seed(), default=0)
    add_overwrite(render, "files")
    add_quiet(render)
    render.set_defaults(run=run_render)

    train = commands.add_parser("train", help="train a numeral map on rendered symbols",
                                description="Render symbols with the training fonts, fit a map, label its "
                                            "nodes and score it on held-out fonts. Writes the map "
                                            "(config.json + map.npz), training.json, report.json and errors.png.")
    add_output(train, "folder for the map")
    add_config_flags(train, "slimvision.training.numerals:NumeralTrainingConfig", _TRAIN_FLAGS)
    add_overwrite(train, "a map")
    add_json(train, "the summary")
    add_quiet(train)
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("eval", help="accuracy on held-out fonts against the noise level",
                                   description="Symbol and whole-numeral accuracy of a map on fonts it never "
                                               "saw, numerals read out of lines of text, and ordinary words "
                                               "read as numerals, at several noise levels; optionally plotted.")
    _map_option(evaluate)
    evaluate.add_argument("--levels", type=_levels, default=_levels(DEFAULT_LEVELS),
                          help=f"noise levels, comma-separated, each 0..{MAX_NOISE:g} (default {DEFAULT_LEVELS}; "
                               "1 = default noise)")
    evaluate.add_argument("--symbols", type=positive_int("--symbols", MAX_COUNT), default=2100,
                          help="symbols rendered per level (default 2100)")
    evaluate.add_argument("--numerals", type=positive_int("--numerals", MAX_COUNT), default=1000,
                          help="whole numerals read per level, spread over 1..3999 (default 1000; 3999 = all); "
                               "also up to 500 lines like 'Chapter XIV'")
    evaluate.add_argument("--seed", type=seed(), default=1)
    evaluate.add_argument("--plot", type=Path, help="save the accuracy curve as a PNG")
    add_overwrite(evaluate, "a plot")
    add_json(evaluate, "the rows")
    add_quiet(evaluate)
    evaluate.set_defaults(run=run_eval)

    read = commands.add_parser("read", help="read the Roman numerals on page images",
                               description="Find the Roman numerals on each page: text, value, box and "
                                           "confidence; non-standard tokens (IIII) are reported as such. "
                                           "Several pages: a page that cannot be read is reported at the end "
                                           f"and the others are still read (exit status 1). {BOXES}")
    read.add_argument("pages", nargs="+", type=Path, help="page images")
    _map_option(read)
    read.add_argument("-a", "--annotate", metavar="PATH",
                      help="save the page with boxes and values drawn on it; for several pages a folder "
                           "(an existing one, or a name ending with '/'), with PAGE_numerals.png in it")
    read.add_argument("--max-pixels", type=max_pixels(), default=None, help="refuse pages larger than this (default 100 MP)")
    add_overwrite(read, "annotated images")
    add_json(read, "the numerals")
    add_quiet(read)
    read.set_defaults(run=run_read)

    draw = commands.add_parser("map", help="save the U-matrix, labelled map and prototypes as PNGs",
                               description="Draw a map: umatrix.png (cluster borders), labels.png (node "
                                           "labels and confidence) and prototypes.png (each node's glyph).")
    _map_option(draw)
    add_output(draw, "output folder (a name with a suffix such as x.png only if it is one or ends with '/')")
    add_overwrite(draw, "pictures")
    draw.set_defaults(run=run_map)


def _noise_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--noise", type=_NOISE, default=1.0,
                        help=f"print wear: 0 clean, 1 the default worn scan, 2 badly damaged, at most {MAX_NOISE:g} "
                             "(default 1)")


def _map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--map", type=Path, default=None,
                        help="map folder from 'numerals train' (default: the map that ships with slimvision)")


def _reader(path: Path | None) -> Any:
    """The registered reader (``slimvision models``) on the shipped map, or on the map folder ``path``."""
    from slimvision.registry import ARTIFACTS

    return ARTIFACTS.create(READER, som=_load_map(path))


def _load_map(path: Path | None) -> Any:
    """The labelled map the reader runs: the registered artifact's, or the folder ``path``."""
    from slimvision.models.som import SelfOrganizingMap
    from slimvision.registry import ARTIFACTS

    folder = ARTIFACTS.spec(READER).paths()["map"] if path is None else path
    if path is not None and not path.is_dir():
        raise InputError(path, "not a map folder (expected config.json and map.npz from 'numerals train')")
    som = SelfOrganizingMap.load(folder)
    if som.node_labels is None:
        raise InputError(folder, "this map has no node labels: train it with 'slimvision numerals train'")
    return som


def _noise(level: float) -> Any:
    from slimvision.data.numerals import NoiseConfig

    return NoiseConfig(level=level)


def _progress(args: argparse.Namespace) -> bool:
    return not (getattr(args, "quiet", False) or getattr(args, "json", False))


# --------------------------------------------------------------------------- commands
def run_render(args: argparse.Namespace) -> int:
    from slimvision.data.glyphs import glyph_image
    from slimvision.data.numerals import find_fonts, render_numerals, render_page, render_symbols, split_fonts
    from slimvision.data.roman import SYMBOLS
    from slimvision.inference.numerals import BOX_FORMAT
    from slimvision.io.atomic import write_text_atomic
    from slimvision.io.images import save_image
    from slimvision.progress import progress_bar
    from slimvision.bench.numerals import evaluation_numbers

    check_folder_output(args.output, args.output_is_folder, args.count + 1)
    train, held_out = split_fonts(find_fonts())
    fonts = {"train": train, "held-out": held_out, "all": train + held_out}[args.fonts]
    noise, files = _noise(args.noise), []
    with progress_bar(args.count, enabled=_progress(args), desc=f"rendering {args.kind}", unit="image") as bar:
        if args.kind == "symbols":
            vectors, labels = render_symbols(fonts, args.count, seed=args.seed, noise=noise)
            for index, (vector, label) in enumerate(zip(vectors, labels)):
                name = f"symbol_{index:05d}.png"
                save_image(glyph_image(vector), args.output / name, overwrite=args.overwrite)
                files.append({"file": name, "symbol": SYMBOLS[int(label)]})
                bar.update()
        elif args.kind == "numerals":
            for index, (patch, number) in enumerate(render_numerals(fonts, evaluation_numbers(args.count, args.seed),
                                                                     seed=args.seed, noise=noise)):
                name = f"numeral_{index:05d}.png"
                save_image(patch, args.output / name, overwrite=args.overwrite)
                files.append({"file": name, "value": number})
                bar.update()
        else:
            for index in range(args.count):
                numbers = evaluation_numbers(6, args.seed * 7919 + index)
                page, placed = render_page(numbers, fonts, seed=args.seed * 7919 + index, noise=noise)
                name = f"page_{index:05d}.png"
                save_image(page, args.output / name, overwrite=args.overwrite)
                # render_page gives (top, left, bottom, right); outputs say x0, y0, x1, y1.
                files.append({"file": name, "numerals": [{"value": value, "box": [left, top, right, bottom]}
                                                         for value, (top, left, bottom, right) in placed]})
                bar.update()
    truth = {"kind": args.kind, **({"box_format": BOX_FORMAT} if args.kind == "pages" else {}), "files": files}
    write_text_atomic(args.output / "truth.json", json.dumps(truth, indent=1) + "\n", overwrite=args.overwrite)
    print(f"wrote {len(files)} {args.kind} and truth.json into {args.output}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from slimvision.io.atomic import write_text_atomic
    from slimvision.plots import plot_training_errors
    from slimvision.training.numerals import train_numeral_map

    check_folder_output(args.output, args.output_is_folder, 5)
    if (args.output / "config.json").exists() and not args.overwrite:
        raise OutputError(args.output, "a map is already there (pass --overwrite to replace it)")
    config = build_config(args)
    som_config = config.som
    som, report = train_numeral_map(config, progress=_progress(args))
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
    from slimvision.bench.numerals import noise_curve

    som = _reader(args.map).som
    rows = noise_curve(som, args.levels, symbols=args.symbols, numerals=args.numerals, seed=args.seed,
                       progress=_progress(args))
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
    """Read every page; one named page keeps its one-line error (exit 2), a batch goes on past bad
    pages and names them at the end (exit 1)."""
    from slimvision.inference.numerals import BOX_FORMAT
    from slimvision.progress import progress_bar

    several = len(args.pages) > 1
    targets = _annotation_targets(args) if args.annotate is not None else {}
    reader = _reader(args.map)
    results, failed = [], []
    with progress_bar(len(args.pages), enabled=several and _progress(args), desc="reading", unit="page") as bar:
        for page_path in args.pages:
            try:
                readings = _read_page(reader, page_path, targets.get(page_path), args)
            except SlimvisionError as error:
                if not several:
                    raise
                failed.append({"page": str(page_path), "error": str(error)})
            else:
                results.append({"page": str(page_path), "numerals": [reading.to_dict() for reading in readings]})
                if not args.json:
                    print(_page_text(page_path, readings), flush=True)
            bar.update()
    if args.json:
        print(json.dumps({"box_format": BOX_FORMAT, "pages": results, "failed": failed} if several
                         else {"box_format": BOX_FORMAT, **results[0]}, indent=2))
    for item in failed:  # at the end, where they are seen; one line each
        print(f"failed: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


def _annotation_targets(args: argparse.Namespace) -> dict[Path, Path]:
    """Where each page's annotated copy goes: the named file for one page, PAGE_numerals.png in a
    folder for several (refused up front when the name looks like a file, or two pages collide)."""
    text = str(args.annotate)
    annotate = Path(text)
    if len(args.pages) == 1:
        return {args.pages[0]: annotate}
    check_folder_output(annotate, text.endswith(("/", os.sep)), len(args.pages))
    targets: dict[Path, Path] = {}
    for page in args.pages:
        target = annotate / f"{page.stem}_numerals.png"
        clash = next((other for other, taken in targets.items() if taken == target), None)
        if clash is not None:
            raise OutputError(target, f"pages {clash} and {page} would both be annotated here; "
                                      "read them in separate runs")
        targets[page] = target
    return targets


def _read_page(reader: Any, page_path: Path, target: Path | None, args: argparse.Namespace) -> list[Any]:
    from slimvision.inference.numerals import annotate
    from slimvision.io.images import DEFAULT_MAX_PIXELS, load_image, save_image

    page = load_image(page_path, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    readings = reader(page)
    if target is not None:
        save_image(annotate(page, readings), target, overwrite=args.overwrite, protected=args.pages)
    return readings


def _page_text(page_path: Path, readings: list[Any]) -> str:
    lines = [f"{page_path}: {len(readings)} numeral{'s' if len(readings) != 1 else ''}"]
    for reading in readings:
        note = "" if reading.standard else f"   ({reading.problem})"
        value = reading.value if reading.value is not None else "?"
        lines.append(f"  {reading.text:<16} {value:>5}  box {','.join(map(str, reading.box))}  "
                     f"confidence {reading.confidence:.2f}{note}")
    return "\n".join(lines)


def run_map(args: argparse.Namespace) -> int:
    from slimvision.plots import save_map_pictures

    check_folder_output(args.output, args.output_is_folder, 3)
    written = save_map_pictures(_reader(args.map).som, args.output, overwrite=args.overwrite)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
