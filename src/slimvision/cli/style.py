"""``slimvision style ...``: stylize images, folders and videos; save style vectors; the demo."""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_output, add_overwrite, add_quiet, add_skip_existing,
                                     bounded, check_folder_output, fraction, max_pixels, non_negative_int,
                                     number_list, positive_float, positive_int, threads)
from slimvision.errors import ConfigError, InputError, OutputError, SlimvisionError

log = logging.getLogger(__name__)

_WEIGHTS = number_list("--weights", minimum=0, maximum=1e6)  # relative: a blend divides by their sum

#: x264 preset of real-time outputs: encoding 720p at "medium" took as long as painting it.
REALTIME_PRESET = "ultrafast"

DEMO_HELP = "stylize the bundled sample photos with the bundled paintings into a folder"


def add_commands(groups: argparse._SubParsersAction) -> None:
    style = groups.add_parser("style", help="arbitrary style transfer",
                              description="Arbitrary style transfer: any painting, any photo.")
    commands = style.add_subparsers(dest="command", metavar="COMMAND", required=True)

    stylize = commands.add_parser(
        "stylize", help="paint content images (files or folders) in a style",
        description="Paint content images in the style of one or more style images or saved "
                    "style vectors (.npy). Folders are processed as a batch: a file that cannot be painted "
                    "is passed over and reported at the end (exit 1); --skip-existing resumes a batch.")
    stylize.add_argument("content", nargs="+", type=Path, help="content image files or folders")
    _style_options(stylize)
    add_output(stylize, "output image (one input file) or folder (several inputs or a folder; a name with a "
                        "suffix such as x.png is taken as a folder only if it is one or ends with '/')")
    stylize.add_argument("--format", default="png", choices=["png", "jpg", "webp", "bmp", "tiff"],
                         help="file type of outputs written into a folder (default png)")
    stylize.add_argument("--recursive", action="store_true", help="also look into sub-folders")
    stylize.add_argument("--workers", type=positive_int("--workers", 1024), default=None,
                         help="images painted at once (default: one per CPU for several images, "
                              "each on one thread; 1 = one image at a time on all threads)")
    add_skip_existing(stylize)
    _common(stylize)
    stylize.set_defaults(run=run_stylize)

    vector = commands.add_parser(
        "vector", help="compute a style vector once and save it (.npy + .json)",
        description="Compute the 100-d style vector of a style image (or a weighted blend of "
                    "several) and save it, so '--style V.npy' can reuse it without the predictor.")
    vector.add_argument("style", nargs="+", type=Path, help="style images or .npy vectors to blend")
    vector.add_argument("--weights", type=_WEIGHTS, help="blend weights, e.g. 0.7,0.3")
    add_output(vector, "output .npy file (its provenance goes beside it as .json)")
    _precision_option(vector)
    _common(vector, progress=False)
    vector.set_defaults(run=run_vector)

    video = commands.add_parser(
        "video", help="stylize a video frame by frame with one fixed style vector",
        description="Stylize every frame of a video with one style vector. Audio is not carried over. "
                    "--realtime paints each frame small, upsamples it along the frame's edges and repaints "
                    "only what changed, with decoding, painting and encoding overlapped (every frame is "
                    "kept, in order).")
    video.add_argument("input", type=Path, help="input video (.mp4, .mkv, .mov, .avi, .webm)")
    _style_options(video)
    add_output(video, "output video file")
    video.add_argument("--realtime", action="store_true",
                       help="paint at a working size, guided upsampling, reuse unchanged regions (fast)")
    _realtime_options(video)
    _common(video)
    video.set_defaults(run=run_video)

    live = commands.add_parser(
        "live", help="stylize a camera in real time in a window (OpenCV); q quits",
        description="Stylize a camera's frames as they come, in an OpenCV window, the real-time way of "
                    "'style video --realtime'; stale frames are dropped so the picture keeps up. Press q "
                    "(or close the window) to stop. -o also records what was shown.")
    live.add_argument("--camera", type=non_negative_int("--camera", 1024), default=0,
                      help="camera index as OpenCV numbers them (default 0)")
    _style_options(live)
    add_output(live, "also record the stylized frames to this video file", required=False)
    _realtime_options(live)
    _common(live, progress=False)
    live.set_defaults(run=run_live)

    demo = commands.add_parser("demo", help=DEMO_HELP, description=DEMO_HELP.capitalize() + ".")
    add_output(demo, "folder for the results (default ./outputs; its demo files are replaced)",
               required=False, default=Path("outputs"))
    demo.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    _precision_option(demo)
    add_json(demo, "a summary")
    demo.set_defaults(run=run_demo)


def _style_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--style", type=Path, action="append", required=True,
                        help="style image or saved .npy vector; repeat to blend several")
    parser.add_argument("--weights", type=_WEIGHTS, help="blend weights, one per --style, e.g. 0.7,0.3")
    parser.add_argument("--strength", type=fraction("--strength"), default=1.0,
                        help="0 keeps the content's own style, 1 applies the full style (default 1)")
    parser.add_argument("--preserve-color", action="store_true",
                        help="keep the content's colours; take only the style's light and texture")
    parser.add_argument("--max-side", type=bounded("--max-side", int, 16, MAX_SIDE), default=None,
                        help="downscale content so its longer side is at most N pixels, N >= 16 (default: keep size)")
    parser.add_argument("--memory-budget", type=positive_float("--memory-budget", 1024 * 1024), default=None,
                        metavar="MB",
                        help="working memory per model run; larger images are tiled "
                             "(default: a quarter of the RAM, 1-8 GB)")
    _precision_option(parser)


def _realtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-size", type=bounded("--work-size", int, 16, MAX_SIDE), default=None, metavar="N",
                        help="real time: longer side painted, px (default: at most 640x360 worth of pixels, "
                             "i.e. 640 for 720p and 1080p; smaller frames as they are)")
    parser.add_argument("--temporal-blend", type=bounded("--temporal-blend", float, maximum=1, above=0),
                        default=None, metavar="W",
                        help="real time: weight of the new painting in a changed region per frame, (0, 1] "
                             "(default 1: take it at once; less eases changes in over a few frames)")
    parser.add_argument("--refine-after", type=bounded("--refine-after", int, 0, 10_000), default=None, metavar="N",
                        help="real time: after N resting frames (at most 2%% of the picture changed), paint the "
                             "frame once at full resolution and keep that painting while the camera rests "
                             "(default 0: never; 3 is a good value for footage with holds)")


def _precision_option(parser: argparse.ArgumentParser) -> None:
    aliases, names = _style_models()
    parser.add_argument("--model", choices=[*aliases, *names], default=None, metavar="MODEL",
                        help="fast (default): the compressed bundle, about 2x the teacher's speed and "
                             "0.93 SSIM to its paintings on held-out styles; teacher: Magenta's MobileNetV2 "
                             "predictor and transformer, computed in float, or with --precision int8 the "
                             "shipped int8 graphs (then the default); or "
                             "any registered style model by name, at its own precision: "
                             f"{', '.join(names)} (see 'slimvision models')")
    parser.add_argument("--precision", choices=["fp32", "int8"], default=None,
                        help="fp32 (default): int8-stored weights computed in float, faster on most "
                             "CPUs; int8: the teacher's shipped graph exactly, int8 activations included "
                             "(a model given by name runs at its own precision)")


def _style_models() -> tuple[list[str], list[str]]:
    """The ``--model`` words (the default, fast, first) and the registered style models' names, from the
    registry: a style model registered in slimvision.artifacts is offered with no edit here.
    (The registry only: building the parser imports no pipeline.)"""
    from slimvision.artifacts import style_models

    specs = style_models()
    aliases = sorted({str(spec.options["alias"]) for spec in specs if spec.options.get("alias")},
                     key=lambda alias: (alias != "fast", alias))
    return aliases, [spec.name for spec in specs]


def _common(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    add_overwrite(parser)
    parser.add_argument("--threads", type=threads(), default=None, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--max-pixels", type=max_pixels(), default=None,
                        help="refuse inputs larger than this many pixels (default 100 million)")
    add_json(parser, "a summary")
    if progress:
        add_quiet(parser)


# --------------------------------------------------------------------------- helpers
def _pipeline(args: argparse.Namespace, workers: int = 1, spinning: bool = True) -> Any:
    from slimvision.inference.batch import available_cpus
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import artifact_for
    from slimvision.registry import ARTIFACTS

    threads = args.threads
    if threads is None and workers > 1:  # share the cores out instead of oversubscribing them
        threads = max(1, available_cpus() // workers)
    settings = SessionSettings(threads=threads, allow_spinning=spinning)
    return ARTIFACTS.create(artifact_for(args.model, args.precision), settings=settings,
                            memory_budget_mb=getattr(args, "memory_budget", None))


def _artifact(args: argparse.Namespace) -> str:
    """The style model that ``--model`` / ``--precision`` pick, by name (for summaries)."""
    from slimvision.inference.style import artifact_for

    return artifact_for(args.model, args.precision)


def _workers(requested: int | None, jobs: int) -> int:
    """Images at once: as asked, else one per CPU when there are several images."""
    from slimvision.inference.batch import available_cpus

    if requested is not None:  # at least 1: the argument type says so
        return min(requested, max(jobs, 1))
    return max(1, min(available_cpus(), jobs))


def _max_pixels(args: argparse.Namespace) -> int:
    from slimvision.io.images import DEFAULT_MAX_PIXELS

    return getattr(args, "max_pixels", None) or DEFAULT_MAX_PIXELS


def _check_style_args(args: argparse.Namespace) -> None:
    if args.weights is not None and len(args.weights) != len(args.style):
        raise SlimvisionError(f"got {len(args.style)} --style but {len(args.weights)} --weights")
    for path in args.style:
        if not path.exists():
            raise InputError(path, "style file not found")


def _style_inputs(styles: list[Path]) -> list[Path]:
    """Every file a style is read from: the images and vectors, and each vector's .json sidecar."""
    files = list(styles)
    files += [path.with_suffix(".json") for path in styles if path.suffix.lower() == ".npy"]
    return files


def _style_tag(styles: list[Path]) -> str:
    return styles[0].stem if len(styles) == 1 else "blend"


def _progress(total: int, unit: str, args: argparse.Namespace, desc: str) -> Any:
    from slimvision.progress import progress_bar

    return progress_bar(total, enabled=not (args.quiet or args.json or total <= 1), unit=unit, desc=desc, leave=False)


class _TileProgress:
    """A progress bar that appears only when an image is large enough to be tiled."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bar: Any = None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = _progress(total, "pass", self.args, "large image, tile passes")
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self) -> _TileProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else text)


def plan_jobs(contents: list[Path], output: Path, tag: str, fmt: str, recursive: bool,
              output_is_folder: bool = False) -> list[Any]:
    """Map inputs to outputs: one file -> the named file, otherwise files into a folder.

    ``-o x.png`` for several inputs (or a folder) is refused rather than made a folder named
    x.png, unless x.png is already a folder or was given as ``x.png/`` (``output_is_folder``).
    """
    from slimvision.inference.batch import FileJob
    from slimvision.io.atomic import check_outside_inputs
    from slimvision.io.images import IMAGE_SUFFIXES, files_of, find_images

    sources = files_of(contents, lambda folder: find_images(folder, recursive=recursive),
                       "folder holds no images (" + ", ".join(sorted(IMAGE_SUFFIXES)) + ")", missing="file not found")
    single_file = len(contents) == 1 and not contents[0].is_dir()
    if single_file and output.suffix and not (output_is_folder or output.is_dir()):
        return [FileJob(sources[0], output)]
    if output.exists() and not output.is_dir():
        raise OutputError(output, "is a file; give a folder for several inputs")
    check_folder_output(output, output_is_folder, len(sources))
    # Results written into a folder that is searched for inputs would be painted again next run.
    check_outside_inputs(output, [item for item in contents if item.is_dir()], recursive=recursive)
    return [FileJob(source, output / f"{source.stem}_{tag}.{fmt}") for source in sources]


# --------------------------------------------------------------------------- commands
def _quiet(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "quiet": True})


def run_stylize(args: argparse.Namespace) -> int:
    """Paint every content image; a batch goes on past bad files and exits 1 if any failed."""
    from slimvision.inference.batch import MemoryGate, process_files

    if args.skip_existing and args.overwrite:
        raise ConfigError("give --overwrite (replace outputs) or --skip-existing (keep them), not both")
    _check_style_args(args)
    jobs = plan_jobs(args.content, args.output, _style_tag(args.style), args.format, args.recursive,
                     args.output_is_folder)
    workers = _workers(args.workers, len(jobs))
    pipe = _pipeline(args, workers)
    target = pipe.target_vector(args.style, args.weights)

    def stylize(image: Any) -> Any:
        # Tile progress bars from several workers would fight over the terminal.
        with _TileProgress(args if workers == 1 else _quiet(args)) as tiles:
            return pipe.stylize_with_vector(image, target.values, args.strength, args.preserve_color,
                                            args.max_side, progress=tiles.update)

    results: list[Any] = []
    started = time.perf_counter()
    gate = MemoryGate(pipe.memory_budget_mb)
    with _progress(len(jobs), "img", args, "stylizing") as bar:
        # One named file keeps its one-line error (exit 2); a batch goes on and reports at the end.
        for result in process_files(jobs, stylize, overwrite=args.overwrite, max_pixels=_max_pixels(args),
                                    workers=workers, gate=gate, protected=_style_inputs(args.style),
                                    keep_going=len(jobs) > 1, skip_existing=args.skip_existing,
                                    memory_mb=lambda image: pipe.working_memory_mb(*image.shape[:2], args.max_side)):
            results.append(result)
            bar.update()
    return _report_batch(args, results, time.perf_counter() - started)


def _report_batch(args: argparse.Namespace, results: list[Any], seconds: float) -> int:
    """Print what was written, skipped and passed over; 1 if any input failed, else 0."""
    import sys

    written = [{"input": str(r.source), "output": str(r.output), "size": [r.width, r.height],
                "seconds": round(r.seconds, 3)} for r in results if r.ok]
    skipped = [{"input": str(r.source), "output": str(r.output)} for r in results if r.skipped]
    failed = [{"input": str(r.source), "output": str(r.output), "error": r.error} for r in results if r.error]
    if args.json:
        print(json.dumps({"artifact": _artifact(args), "outputs": written, "skipped": skipped, "failed": failed,
                          "summary": {"inputs": len(results), "written": len(written), "skipped": len(skipped),
                                      "failed": len(failed)},
                          "seconds": round(seconds, 3)}, indent=2))
    else:
        lines = [f"{r['input']} -> {r['output']}  ({r['size'][0]}x{r['size'][1]}, {r['seconds']:.2f} s)"
                 for r in written]
        if len(results) == 1 and skipped:
            lines.append(f"{skipped[0]['input']} -> {skipped[0]['output']}  (skipped: already complete)")
        if len(results) > 1:
            lines.append(f"{len(written)} images in {seconds:.1f} s"
                         + (f"; {len(skipped)} skipped (outputs already complete)" if skipped else "")
                         + (f"; {len(failed)} failed" if failed else ""))
        print("\n".join(lines))
        for item in failed:  # at the end, where they are seen; one line each
            print(f"failed: {item['error']}", file=sys.stderr)
    return 1 if failed else 0


def run_vector(args: argparse.Namespace) -> int:
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style import artifact_for
    from slimvision.io.atomic import plan_outputs
    from slimvision.registry import ARTIFACTS

    if args.output.suffix.lower() != ".npy":
        raise OutputError(args.output, "style vectors are saved as .npy")
    if args.weights is not None and len(args.weights) != len(args.style):
        raise SlimvisionError(f"got {len(args.style)} styles but {len(args.weights)} --weights")
    name = artifact_for(args.model, args.precision)  # a --model/--precision clash is refused first
    sidecar = args.output.with_suffix(".json")
    inputs = _style_inputs(args.style)
    # Both files are checked before the predictor runs; save() checks again as it writes them.
    plan_outputs([sidecar, args.output], overwrite=args.overwrite, protected=inputs)
    pipe = ARTIFACTS.create(name, settings=SessionSettings(threads=args.threads))
    vector = pipe.target_vector([_existing(p) for p in args.style], args.weights)
    vector.save(args.output, overwrite=args.overwrite, protected=inputs)
    _emit(args, {"output": str(args.output), "provenance": str(sidecar), "model": vector.model},
          f"wrote {args.output} (+ {sidecar.name}): 100-d style vector from "
          + ", ".join(p.name for p in args.style))
    return 0


def _existing(path: Path) -> Path:
    if not path.exists():
        raise InputError(path, "style file not found")
    return path


def run_video(args: argparse.Namespace) -> int:
    from slimvision.inference.style import fit_max_side
    from slimvision.io.atomic import plan_outputs
    from slimvision.io.video import VideoWriter, iter_frames, probe_video

    _check_style_args(args)
    if not args.realtime and (args.work_size is not None or args.temporal_blend is not None
                              or args.refine_after is not None):
        raise SlimvisionError("--work-size, --temporal-blend and --refine-after need --realtime")
    plan_outputs([args.output], overwrite=args.overwrite, protected=[args.input, *_style_inputs(args.style)])
    info = probe_video(args.input)
    if info.has_audio:
        log.warning("%s has an audio track; it is not carried over to %s", args.input, args.output)
    if args.realtime:
        return _run_video_realtime(args, info)
    pipe = _pipeline(args)
    target = pipe.target_vector(args.style, args.weights)
    # The output size is the first frame's after --max-side; every frame has the input's size.
    source = iter_frames(args.input)
    first = next(source, None)
    if first is None:
        raise InputError(args.input, "video has no frames")
    height, width = fit_max_side(first, args.max_side).shape[:2]
    started = time.perf_counter()
    frames = 0
    with VideoWriter(args.output, width=width, height=height, fps=info.fps, overwrite=args.overwrite,
                     protected=[args.input, *_style_inputs(args.style)]) as writer, \
            _progress(info.frames or 0, "frame", args, "stylizing") as bar:
        for frame in itertools.chain([first], source):
            writer.write(pipe.stylize_with_vector(frame, target.values, args.strength,
                                                  args.preserve_color, args.max_side))
            frames += 1
            bar.update()
    seconds = time.perf_counter() - started
    payload = {"artifact": _artifact(args), "input": str(args.input), "output": str(args.output), "frames": frames,
               "size": [width, height], "fps": info.fps, "audio_dropped": info.has_audio,
               "seconds": round(seconds, 2)}
    _emit(args, payload, f"wrote {args.output}: {frames} frames of {width}x{height} in {seconds:.1f} s"
          + (" (audio dropped)" if info.has_audio else ""))
    return 0


def _realtime_stylizer(args: argparse.Namespace) -> tuple[Any, int]:
    """The real-time stylizer the options ask for, and how many frames it paints at once: by
    default one one-thread ONNX Runtime run per CPU (faster than one run over all of them);
    with --threads, one run on that many threads."""
    from slimvision.inference.batch import available_cpus
    from slimvision.inference.style_video import RealtimeSettings, RealtimeStylizer

    refine = {} if args.refine_after is None else {"refine_after": args.refine_after}
    settings = RealtimeSettings(work_size=args.work_size, blend=args.temporal_blend or 1.0, **refine)
    workers = 1 if args.threads is not None else max(1, min(available_cpus(), 4))
    pipe = _pipeline(args, workers=workers, spinning=False)  # decoding and encoding need the cores too
    target = pipe.target_vector(args.style, args.weights)
    return RealtimeStylizer(pipe, target.values, args.strength, args.preserve_color, settings), workers


def _fit_frames(frames: Any, max_side: int | None) -> Any:
    """Frames downscaled (area average) so their longer side is at most ``max_side``."""
    if max_side is None:
        yield from frames
        return
    from slimvision.inference.guided import resize_area
    from slimvision.inference.style import fitted_size

    for frame in frames:
        yield resize_area(frame, *fitted_size(*frame.shape[:2], max_side))


def _run_video_realtime(args: argparse.Namespace, info: Any) -> int:
    """``style video --realtime``: decode, decide, paint, upsample and encode in overlapping threads."""
    from slimvision.inference.style import fitted_size
    from slimvision.inference.style_video import stylize_stream, work_shape
    from slimvision.io.video import VideoWriter, iter_frames

    stylizer, workers = _realtime_stylizer(args)
    height, width = fitted_size(info.height, info.width, args.max_side)
    started = time.perf_counter()
    source = _fit_frames(iter_frames(args.input), args.max_side)
    with VideoWriter(args.output, width=width, height=height, fps=info.fps, overwrite=args.overwrite,
                     protected=[args.input, *_style_inputs(args.style)], preset=REALTIME_PRESET) as writer, \
            _progress(info.frames or 0, "frame", args, "stylizing (real time)") as bar:
        def write(frame: Any) -> None:
            writer.write(frame)
            bar.update()

        stats = stylize_stream(source, stylizer, write, paint_workers=workers)
    if stats.frames_out == 0:
        raise InputError(args.input, "video has no frames")
    seconds = time.perf_counter() - started
    frames = stats.frames_out
    painted = stylizer.stats
    payload = {"artifact": _artifact(args), "input": str(args.input), "output": str(args.output), "frames": frames,
               "size": [width, height], "fps": info.fps, "audio_dropped": info.has_audio,
               "seconds": round(seconds, 2), "realtime": True,
               "work_size": list(reversed(work_shape(height, width, stylizer.settings.work_size))),
               "frames_painted": painted.painted, "frames_refined": painted.refined,
               "cells_repainted": round(painted.cells_repainted, 4),
               "frames_per_second": round(frames / seconds, 2) if seconds > 0 else None}
    _emit(args, payload, f"wrote {args.output}: {frames} frames of {width}x{height} in {seconds:.1f} s "
          f"({frames / max(seconds, 1e-9):.1f} frames/s, {painted.painted} painted"
          + (f", {painted.refined} painted in full at rest" if painted.refined else "") + ")"
          + (" (audio dropped)" if info.has_audio else ""))
    return 0


def run_live(args: argparse.Namespace) -> int:
    """``style live``: a camera stylized in an OpenCV window; stale frames are dropped; q quits."""
    import contextlib

    from slimvision.inference.style_video import stylize_stream

    _check_style_args(args)
    if args.output is not None:
        from slimvision.io.atomic import plan_outputs

        plan_outputs([args.output], overwrite=args.overwrite, protected=_style_inputs(args.style))
    try:
        import cv2
    except ImportError:
        raise SlimvisionError("style live needs OpenCV with a GUI: pip install opencv-python") from None
    with contextlib.suppress(AttributeError):  # OpenCV's own warnings would break the one-line errors
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    camera = cv2.VideoCapture(args.camera)
    try:
        if not camera.isOpened():
            raise SlimvisionError(f"cannot open camera {args.camera} (is one connected, and free?)")
        ok, first = camera.read()
        if not ok or first is None:
            raise SlimvisionError(f"camera {args.camera} gives no picture")
        window = f"slimvision style live (camera {args.camera}, q quits)"
        try:
            cv2.namedWindow(window, cv2.WINDOW_AUTOSIZE)
        except cv2.error:
            raise SlimvisionError("style live needs a display and OpenCV with a GUI (opencv-python, not "
                                  "opencv-python-headless); use 'style video --realtime' on files") from None
        fps = camera.get(cv2.CAP_PROP_FPS) or 30.0
        stylizer, workers = _realtime_stylizer(args)

        def frames() -> Any:
            yield cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
            while True:
                ok, frame = camera.read()
                if not ok or frame is None:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

        return _show_live(args, cv2, window, _fit_frames(frames(), args.max_side), stylizer, workers, fps,
                          stylize_stream)
    finally:
        camera.release()


def _show_live(args: argparse.Namespace, cv2: Any, window: str, frames: Any, stylizer: Any, workers: int,
               fps: float, stylize_stream: Any) -> int:
    """Show (and with -o record) the stylized camera until q, a closed window or the camera's end."""
    import contextlib

    from slimvision.io.video import VideoWriter

    writer: Any = None
    shown = 0
    started = time.perf_counter()

    def show(frame: Any) -> bool:
        nonlocal writer, shown
        if args.output is not None:
            if writer is None:
                writer = VideoWriter(args.output, width=frame.shape[1], height=frame.shape[0], fps=fps,
                                     overwrite=args.overwrite, protected=_style_inputs(args.style), preset=REALTIME_PRESET)
            writer.write(frame)
        cv2.imshow(window, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        shown += 1
        key = cv2.waitKey(1) & 0xFF
        return key != ord("q") and cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) >= 1

    try:
        stats = stylize_stream(frames, stylizer, show, live=True, paint_workers=workers)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        with contextlib.suppress(Exception):
            cv2.destroyWindow(window)
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - started
    payload = {"artifact": _artifact(args), "camera": args.camera, "frames_shown": shown,
               "frames_dropped": stats.dropped, "frames_painted": stylizer.stats.painted,
               "frames_refined": stylizer.stats.refined,
               "seconds": round(seconds, 2),
               "frames_per_second": round(shown / seconds, 2) if seconds > 0 else None,
               "output": str(args.output) if args.output is not None else None}
    _emit(args, payload, f"showed {shown} frames in {seconds:.1f} s ({shown / max(seconds, 1e-9):.1f} frames/s, "
          f"{stats.dropped} stale frames dropped)" + (f"; recorded {args.output}" if writer is not None else ""))
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Every bundled photo in every bundled style, plus a blend and a colour-preserving version."""
    from slimvision.assets import samples_dir
    from slimvision.inference.batch import FileJob, process_files
    from slimvision.io.images import find_images, save_image

    samples = samples_dir()
    contents = find_images(samples / "content")
    styles = find_images(samples / "styles")
    workers = _workers(None, len(contents))
    pipe = _pipeline(args, workers)
    started = time.perf_counter()
    vectors = {style.stem: pipe.resolve_style(style).values for style in styles}
    # The painting shows colour preservation and blending best; fall back to the first style.
    lead = "starry_night" if "starry_night" in vectors else styles[0].stem
    partner = next(name for name in vectors if name != lead)
    variants: list[tuple[str, Any, bool]] = [(name, vector, False) for name, vector in vectors.items()]
    variants += [(f"{lead}_preserve_color", vectors[lead], True),
                 (f"blend_{lead}_{partner}", 0.5 * (vectors[lead] + vectors[partner]), False)]
    written: list[str] = []
    for name, vector, keep_colour in variants:
        jobs = [FileJob(content, args.output / f"{content.stem}_{name}.jpg") for content in contents]
        results = process_files(jobs, lambda image, v=vector, k=keep_colour: pipe.stylize_with_vector(
            image, v, preserve_color=k), overwrite=True, quality=92, workers=workers, protected=styles)
        written.extend(str(result.output) for result in results)
    grid = _demo_grid(contents, [name for name, _, _ in variants], args.output)
    grid_path = save_image(grid, args.output / "demo_grid.png", overwrite=True, protected=[*contents, *styles])
    seconds = time.perf_counter() - started
    payload = {"artifact": _artifact(args), "output_dir": str(args.output.resolve()), "images": written,
               "grid": str(grid_path),
               # the grid's labels: file CONTENT_VARIANT.jpg is row CONTENT, column VARIANT
               "rows": [content.stem for content in contents], "columns": [name for name, _, _ in variants],
               "seconds": round(seconds, 2)}
    _emit(args, payload,
          f"wrote {len(written)} stylized images to {args.output.resolve()}/ in {seconds:.1f} s\n"
          f"overview: {grid_path.resolve()}\n  rows: {', '.join(c.stem for c in contents)}\n"
          f"  columns: original, {', '.join(v[0] for v in variants)}")
    return 0


def _demo_grid(contents: list[Path], variants: list[str], folder: Path) -> Any:
    """A contact sheet: one row per content image, the original first, 192 px cells."""
    import numpy as np
    from PIL import Image

    from slimvision.io.images import load_image

    cell = 192
    columns = [None, *variants]
    sheet = Image.new("RGB", (cell * len(columns), cell * len(contents)), "white")
    for row, content in enumerate(contents):
        for column, name in enumerate(columns):
            path = content if name is None else folder / f"{content.stem}_{name}.jpg"
            thumb = Image.fromarray(load_image(path))
            thumb.thumbnail((cell - 4, cell - 4), Image.Resampling.LANCZOS)
            sheet.paste(thumb, (column * cell + (cell - thumb.width) // 2, row * cell + (cell - thumb.height) // 2))
    return np.asarray(sheet)
