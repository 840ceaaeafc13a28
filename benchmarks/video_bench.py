"""Real-time video style transfer (issue 28): frames/s end to end, fidelity and flicker, one command.

    python benchmarks/video_bench.py                  # 360 frames of 1280x720, about 10 minutes on 2 cores
    python benchmarks/video_bench.py --frames 60      # a quick look (the rates are noisier)

Makes a 1280x720 clip from real photos the installed packages ship (scikit-image, OpenCV's
samples...: pans and zooms over photos larger than the frame, with static stretches between them,
plus a little sensor noise), encodes it, and then:

- **End to end** (decode + paint + encode, in process, wall time): the real-time stylizer with
  the fast model (``RealtimeStylizer`` in the threaded pipeline, as ``style video --realtime``
  runs it) over the whole clip; painting every frame at full resolution with the fast model and
  with the teacher (the ``style video`` loop) over the first ``--baseline-frames`` frames (they
  paint every frame alike, so a prefix measures their rate). All three encode with x264
  ``ultrafast`` (as ``--realtime`` does), so the ratios are about painting. Runs alternate (real time, fast, teacher,
  real time, ...); medians of ``--repeats``.
- **CPU time**: each run's CPU seconds (this process and its ffmpeg children, ``getrusage``) per
  frame, and the rate that would give if the CPUs were free (CPUs / CPU seconds per frame: an
  upper bound that assumes the work spreads over all of them; on a shared machine it is the
  steadier figure).
- **Fidelity**: per-frame SSIM (7x7 uniform windows, the scikit-image default, computed with
  OpenCV box filters) of the real-time output against the same model painting the same decoded
  frame at full resolution; mean, 5th percentile and worst. Also the SSIM of the painting at the
  working size, guided-upsampled, *without* the temporal reuse (what painting small costs), the
  same painting upsampled bilinearly (what the guided filter gains), and of the real-time output
  against the guided one (what the reuse costs).
- **Working-size sweep** (``--sweep 512,960,1280``): for each size, the real-time rate end to end
  (one run) and the SSIM against full resolution on every ``--sweep-every``-th frame.
- **Flicker**: mean absolute difference (levels of 255) between consecutive output frames over
  the pixels whose input did not change (the clip is made here, so "did not change" is known
  exactly: 16x16 blocks of the clean frames equal to the frame before), for the real-time
  output and for painting every frame independently (at full resolution, and at the working
  size without reuse). Static stretches carry sensor noise and x264's noise: that is what an
  independent painting turns into flicker.

Targets (issue 28): >= 15 frames/s end to end, SSIM >= 0.85, flicker <= half of independent
painting. Writes benchmarks/results/video_bench.json (atomically) and prints a table. The
machine is shared: each stage records the load average; only same-run ratios are robust.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "video_bench.json"
WIDTH, HEIGHT, FPS = 1280, 720, 30.0
STYLE = REPO / "src" / "slimvision" / "samples" / "styles" / "starry_night.jpg"
#: Photos tried in this order (the larger first: less upscaling); any photo folder is searched.
PREFERRED = ("aloeL.jpg", "building.jpg", "motorcycle_left.png", "coffee.png", "astronaut.png", "chelsea.png",
             "rocket.jpg", "china.jpg")
ENCODER_PRESET = "ultrafast"  # as `style video --realtime` encodes; the same for every run here
NOISE_SIGMA = 1.5  # sensor noise of the made clip, levels of 255
BLOCK = 16  # static-region blocks for the flicker measure, px
LOADS: list[tuple[str, float]] = []
CPU_USED: list[float] = []  # CPU seconds of the last end-to-end runs, appended by each run
REFINE_AFTER: list[int] = []  # --refine-after, when given (else the stylizer's default)


def realtime_settings(work_size: int | None) -> Any:
    """The real-time stylizer's settings for this run: the working size and --refine-after."""
    from slimvision.inference.style_video import RealtimeSettings

    return RealtimeSettings(work_size=work_size, **({"refine_after": REFINE_AFTER[0]} if REFINE_AFTER else {}))


def log(message: str) -> None:
    LOADS.append((message, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")))
    print(f"[video_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the clip
def photos(count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` colour photos from the installed packages, the preferred ones first."""
    from slimvision.bench.style_fidelity import named_photos

    chosen = named_photos(PREFERRED, count, min_side=256)
    if len(chosen) < count:
        raise SystemExit(f"found only {len(chosen)} of the photos {PREFERRED}; install scikit-image")
    return chosen


def _cover(image: np.ndarray, margin: float) -> np.ndarray:
    """The photo scaled (bicubic) to cover the frame with ``margin`` to spare on both axes."""
    import cv2

    scale = margin * max(WIDTH / image.shape[1], HEIGHT / image.shape[0])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)


def _view(photo: np.ndarray, x: float, y: float, zoom: float) -> np.ndarray:
    """A 1280x720 camera view centred at (x, y) of ``photo`` (fractions), magnified ``zoom``."""
    import cv2

    cx, cy = x * photo.shape[1], y * photo.shape[0]
    matrix = np.array([[zoom, 0, WIDTH / 2 - zoom * cx], [0, zoom, HEIGHT / 2 - zoom * cy]], np.float64)
    return cv2.warpAffine(photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def clip_plan(frames: int) -> list[dict[str, Any]]:
    """Segments: (photo, motion, share of the clip). Static stretches between the moves."""
    shares = [("static", 0, 0.12), ("pan", 0, 0.18), ("static", 0, 0.10), ("cut+static", 1, 0.08),
              ("zoom", 1, 0.16), ("static", 1, 0.10), ("cut+pan", 2, 0.14), ("static", 2, 0.12)]
    counts = [max(2, round(frames * share)) for _, _, share in shares]
    counts[-1] = max(2, frames - sum(counts[:-1]))
    return [{"motion": motion, "photo": photo, "frames": count} for (motion, photo, _), count in zip(shares, counts)]


def make_clip(path: Path, frames: int, seed: int = 0) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Write the clip; returns its plan and, per frame, a (rows, cols) map of the 16x16 blocks
    whose clean picture equals the frame before (frame 0: none)."""
    from slimvision.io.video import VideoWriter

    chosen = photos(3)
    covers = [_cover(image, 1.45) for _, image in chosen]
    plan = clip_plan(frames)
    rng = np.random.default_rng(seed)
    static = np.zeros((frames, HEIGHT // BLOCK, WIDTH // BLOCK), bool)
    previous: np.ndarray | None = None
    index = 0
    state = {"x": 0.35, "y": 0.5, "zoom": 1.0}
    with VideoWriter(path, width=WIDTH, height=HEIGHT, fps=FPS, overwrite=True, preset="veryfast") as writer:
        for segment in plan:
            segment["name"] = chosen[segment["photo"]][0]
            photo = covers[segment["photo"]]
            if segment["motion"].startswith("cut"):
                state = {"x": 0.4, "y": 0.45, "zoom": 1.0}
            for step in range(segment["frames"]):
                t = (step + 1) / segment["frames"]
                if segment["motion"].endswith("pan"):
                    x, y, zoom = state["x"] + 0.25 * t, state["y"] + 0.05 * math.sin(math.pi * t), state["zoom"]
                elif segment["motion"] == "zoom":
                    x, y, zoom = state["x"], state["y"], state["zoom"] * (1 + 0.5 * t)
                else:
                    x, y, zoom = state["x"], state["y"], state["zoom"]
                clean = _view(photo, x, y, zoom)
                if previous is not None and previous.shape == clean.shape:
                    same = np.abs(clean.astype(np.int16) - previous).max(axis=2) <= 1
                    rows, cols = HEIGHT // BLOCK, WIDTH // BLOCK
                    static[index] = same[:rows * BLOCK, :cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK).all(axis=(1, 3))
                previous = clean
                noisy = np.clip(clean + rng.normal(0, NOISE_SIGMA, clean.shape), 0, 255).astype(np.uint8)
                writer.write(noisy)
                index += 1
            state = {"x": x, "y": y, "zoom": zoom}
    return plan, static


# --------------------------------------------------------------------------- measures
def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's default SSIM (7x7 uniform window, sample covariance, data range 255,
    borders of 3 px left out, mean over channels), with OpenCV box filters (50x faster)."""
    import cv2

    x, y = a.astype(np.float64), b.astype(np.float64)
    box = lambda image: cv2.boxFilter(image, -1, (7, 7), borderType=cv2.BORDER_REFLECT)  # noqa: E731
    ux, uy = box(x), box(y)
    norm = 49 / 48
    vx, vy, vxy = norm * (box(x * x) - ux * ux), norm * (box(y * y) - uy * uy), norm * (box(x * y) - ux * uy)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def flicker(current: np.ndarray, previous: np.ndarray, static_blocks: np.ndarray) -> tuple[float, int]:
    """(sum of |current - previous| over the static blocks' pixels, their pixel count)."""
    rows, cols = static_blocks.shape
    mask = np.kron(static_blocks, np.ones((BLOCK, BLOCK), bool))
    if not mask.any():
        return 0.0, 0
    diff = np.abs(current[:rows * BLOCK, :cols * BLOCK].astype(np.int16) - previous[:rows * BLOCK, :cols * BLOCK])
    return float(diff[mask].sum()), int(mask.sum()) * 3


# --------------------------------------------------------------------------- runs
def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (the ffmpeg decoders and
    encoders): unlike wall time, it hardly depends on what else the machine runs."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pipelines(work_size: int | None) -> dict[str, Any]:
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.batch import available_cpus
    from slimvision.inference.style import artifact_for
    from slimvision.registry import ARTIFACTS

    workers = max(1, min(available_cpus(), 4))
    return {
        # as `style video --realtime` runs: one-thread sessions, one frame painted per CPU at once
        "realtime": ARTIFACTS.create(artifact_for("fast"), settings=SessionSettings(threads=1, allow_spinning=False)),
        "workers": workers,
        # as `style video` runs: default sessions (one thread per core), one frame at a time
        "fast": ARTIFACTS.create(artifact_for("fast")),
        "teacher": ARTIFACTS.create(artifact_for("teacher")),
    }


def run_realtime(pipes: dict[str, Any], vectors: dict[str, np.ndarray], clip: Path, out: Path,
                 work_size: int | None) -> tuple[float, int, Any]:
    from slimvision.inference.style_video import RealtimeStylizer, stylize_stream
    from slimvision.io.video import VideoWriter, iter_frames

    stylizer = RealtimeStylizer(pipes["realtime"], vectors["fast"], settings=realtime_settings(work_size))
    cpu, started = cpu_seconds(), time.perf_counter()
    with VideoWriter(out, width=WIDTH, height=HEIGHT, fps=FPS, overwrite=True, preset=ENCODER_PRESET) as writer:
        stats = stylize_stream(iter_frames(clip), stylizer, writer.write, paint_workers=pipes["workers"])
    CPU_USED.append(cpu_seconds() - cpu)
    return time.perf_counter() - started, stats.frames_out, stylizer.stats


def run_full(pipe: Any, vector: np.ndarray, clip: Path, out: Path, frames: int) -> tuple[float, int]:
    """The `style video` loop over the first ``frames`` frames."""
    from slimvision.io.video import VideoWriter, iter_frames

    done = 0
    cpu, started = cpu_seconds(), time.perf_counter()
    with VideoWriter(out, width=WIDTH, height=HEIGHT, fps=FPS, overwrite=True, preset=ENCODER_PRESET) as writer:
        source = iter_frames(clip)
        try:
            for frame in source:
                writer.write(pipe.stylize_with_vector(frame, vector))
                done += 1
                if done >= frames:
                    break
        finally:
            source.close()
    CPU_USED.append(cpu_seconds() - cpu)
    return time.perf_counter() - started, done


def measure_quality(pipes: dict[str, Any], vectors: dict[str, np.ndarray], clip: Path, static: np.ndarray,
                    work_size: int | None) -> dict[str, Any]:
    from slimvision.inference.style_video import RealtimeStylizer
    from slimvision.io.video import iter_frames

    from slimvision.inference.guided import resize_linear
    from slimvision.io.pixels import to_uint8

    stylizer = RealtimeStylizer(pipes["realtime"], vectors["fast"], settings=realtime_settings(work_size))
    scores: dict[str, list[float]] = {"realtime_vs_full": [], "small_vs_full": [], "bilinear_vs_full": [],
                                      "realtime_vs_small": []}
    sums = {name: [0.0, 0] for name in ("realtime", "full", "small")}
    refinement_steps = [0.0, 0]  # the real-time output's flicker sum on the steps that refined a rest
    previous: dict[str, np.ndarray] = {}
    for index, frame in enumerate(iter_frames(clip)):
        small, painting = stylizer.paint_small(frame)
        refined_before = stylizer.stats.refined
        outputs = {"realtime": stylizer(frame), "full": pipes["fast"].stylize_with_vector(frame, vectors["fast"]),
                   "small": to_uint8(stylizer.upsample(frame, small, painting))}
        bilinear = to_uint8(np.clip(resize_linear(painting, HEIGHT, WIDTH), 0, 1))
        scores["realtime_vs_full"].append(ssim(outputs["realtime"], outputs["full"]))
        scores["small_vs_full"].append(ssim(outputs["small"], outputs["full"]))
        scores["bilinear_vs_full"].append(ssim(bilinear, outputs["full"]))
        scores["realtime_vs_small"].append(ssim(outputs["realtime"], outputs["small"]))
        if index > 0:
            for name, output in outputs.items():
                total, count = flicker(output, previous[name], static[index])
                sums[name][0] += total
                sums[name][1] += count
                if name == "realtime" and stylizer.stats.refined > refined_before:
                    refinement_steps[0] += total
                    refinement_steps[1] += 1
        previous = outputs
        if index % 30 == 0:
            log(f"quality: frame {index}, SSIM real time vs full {scores['realtime_vs_full'][-1]:.3f}")
    summary: dict[str, Any] = {}
    for name, values in scores.items():
        summary[name] = {"mean": round(float(np.mean(values)), 4), "p5": round(float(np.percentile(values, 5)), 4),
                         "worst": round(float(np.min(values)), 4), "worst_frame": int(np.argmin(values))}
    summary["per_frame_realtime_vs_full"] = [round(v, 4) for v in scores["realtime_vs_full"]]
    summary["flicker"] = {name: round(total / count, 4) if count else None for name, (total, count) in sums.items()}
    # A rest painted in full changes the picture once (a step, not a shimmer), but the measure
    # counts it: say how much of the real-time figure those steps are.
    total, count = sums["realtime"]
    summary["flicker"]["realtime_without_refinement_steps"] = (
        round((total - refinement_steps[0]) / count, 4) if count else None)
    summary["refinements"] = {"frames": int(refinement_steps[1]), "of_all": stylizer.stats.refined}
    summary["static_pixels_share"] = round(float(static[1:].mean()), 4)
    return summary


def sweep(pipes: dict[str, Any], vectors: dict[str, np.ndarray], clip: Path, work: Path, sizes: list[int],
          every: int) -> list[dict[str, Any]]:
    """Per working size: the real-time rate end to end (one run) and SSIM against full resolution
    on every ``every``-th frame (the stream is still run frame by frame, so the reuse is real)."""
    from slimvision.inference.style_video import RealtimeStylizer, work_shape
    from slimvision.io.video import iter_frames

    full: dict[int, np.ndarray] = {}
    rows = []
    for size in sizes:
        log(f"sweep: work size {size}")
        seconds, frames, stats = run_realtime(pipes, vectors, clip, work / "sweep.mp4", size)
        stylizer = RealtimeStylizer(pipes["realtime"], vectors["fast"], settings=realtime_settings(size))
        scores = []
        for index, frame in enumerate(iter_frames(clip)):
            output = stylizer(frame)
            if index % every == 0:
                if index not in full:
                    full[index] = pipes["fast"].stylize_with_vector(frame, vectors["fast"])
                scores.append(ssim(output, full[index]))
        rows.append({"work_size": list(reversed(work_shape(HEIGHT, WIDTH, size))), "fps": round(frames / seconds, 2),
                     "frames_painted": stats.painted, "ssim_mean": round(float(np.mean(scores)), 4),
                     "ssim_worst": round(float(np.min(scores)), 4), "frames_scored": len(scores)})
    return rows


# --------------------------------------------------------------------------- report
def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    import onnxruntime as ort

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "onnxruntime": ort.__version__,
            "numpy": np.__version__, "opencv": version("opencv-python-headless") or version("opencv-python"),
            "slimvision_git": git("rev-parse", "HEAD") or None,
            "src_uncommitted_changes": bool(git("status", "--porcelain", "--", "src"))}


def table(report: dict[str, Any]) -> str:
    rates, quality, targets = report["rates"], report["quality"], report["targets"]
    lines = [f"real-time video style transfer, {WIDTH}x{HEIGHT}, {report['clip']['frames']} frames "
             f"({report['created']}); load average {report['load_average']['min']:.1f}-{report['load_average']['max']:.1f} "
             f"on {report['machine']['cpus_usable']} CPUs",
             "", "end to end (decode + paint + encode), frames/s, median of runs:"]
    for name in ("realtime_fast", "full_fast", "full_teacher"):
        row = rates[name]
        lines.append(f"  {name:<15} {row['fps']:>7.2f}   ({row['frames']} frames, runs {row['fps_runs']}; "
                     f"{row['cpu_ms_per_frame']:.0f} CPU ms/frame, {row['fps_if_cpus_were_free']:.1f} frames/s "
                     f"if the CPUs were free)")
    lines.append(f"  real time / full fast: {rates['realtime_vs_full_fast']:.2f}x; "
                 f"/ teacher: {rates['realtime_vs_teacher']:.2f}x; work size {report['settings']['work_size']}")
    lines += ["", "SSIM per frame (mean / p5 / worst):"]
    for name in ("realtime_vs_full", "small_vs_full", "bilinear_vs_full", "realtime_vs_small"):
        row = quality[name]
        lines.append(f"  {name:<18} {row['mean']:.3f} / {row['p5']:.3f} / {row['worst']:.3f} (frame {row['worst_frame']})")
    flick = quality["flicker"]
    lines += ["", f"flicker over unchanged input ({quality['static_pixels_share']:.0%} of pixel steps), levels of 255:",
              f"  real time {flick['realtime']:.3f}; independent full {flick['full']:.3f}, "
              f"independent small {flick['small']:.3f}"]
    if quality.get("refinements", {}).get("frames"):
        lines.append(f"  real time without the {quality['refinements']['frames']} steps that painted a resting view "
                     f"in full (each a one-time change): {flick['realtime_without_refinement_steps']:.3f}")
    if report.get("sweep"):
        lines += ["", "working-size sweep (real time end to end, one run; SSIM vs full resolution on a subset):"]
        lines += [f"  {row['work_size'][0]}x{row['work_size'][1]}: {row['fps']:.2f} frames/s, SSIM "
                  f"{row['ssim_mean']:.3f} mean / {row['ssim_worst']:.3f} worst ({row['frames_scored']} frames)"
                  for row in report["sweep"]]
    lines += ["", "targets:"] + [f"  {name}: {row['value']} (target {row['target']}) {'PASS' if row['ok'] else 'MISS'}"
                                 for name, row in targets.items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=360, help="clip length (default 360 = 12 s at 30 fps)")
    parser.add_argument("--baseline-frames", type=int, default=48,
                        help="frames the full-resolution loops are timed over (default 48)")
    parser.add_argument("--repeats", type=int, default=2, help="end-to-end runs of each (default 2)")
    parser.add_argument("--work-size", type=int, default=None, help="real-time working size (default: the stylizer's)")
    parser.add_argument("--refine-after", type=int, default=None,
                        help="paint a resting view in full after N resting frames (default: the stylizer's, 0 = never)")
    parser.add_argument("--sweep", default="", help="working sizes to compare, e.g. 512,960,1280 (default none)")
    parser.add_argument("--sweep-every", type=int, default=6, help="SSIM on every N-th frame in the sweep (default 6)")
    parser.add_argument("--style", type=Path, default=STYLE, help="style image (default starry_night.jpg)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON report")
    parser.add_argument("--keep", type=Path, default=None, help="keep the clip and the outputs in this folder")
    args = parser.parse_args(argv)
    if args.frames < 30 or args.baseline_frames < 1 or args.repeats < 1:
        parser.error("--frames >= 30, --baseline-frames >= 1, --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from slimvision.inference.style_video import work_shape
    from slimvision.io.atomic import write_text_atomic

    args = parse_args(argv)
    if args.refine_after is not None:
        REFINE_AFTER[:] = [args.refine_after]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="video_bench_") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        clip = work / "clip.mp4"
        log(f"making the clip: {args.frames} frames of {WIDTH}x{HEIGHT}")
        plan, static = make_clip(clip, args.frames)
        pipes = pipelines(args.work_size)
        vectors = {"fast": pipes["fast"].target_vector(args.style).values,
                   "teacher": pipes["teacher"].target_vector(args.style).values}
        baseline = min(args.baseline_frames, args.frames)
        log("warming up")
        run_realtime(pipes, vectors, clip, work / "warm.mp4", args.work_size)
        run_full(pipes["fast"], vectors["fast"], clip, work / "warm.mp4", 2)
        run_full(pipes["teacher"], vectors["teacher"], clip, work / "warm.mp4", 2)
        raw: dict[str, list[tuple[float, int]]] = {"realtime_fast": [], "full_fast": [], "full_teacher": []}
        cpu: dict[str, list[float]] = {name: [] for name in raw}
        painted: Any = None
        for round_ in range(args.repeats):
            log(f"end to end, round {round_ + 1}: real time")
            seconds, frames, painted = run_realtime(pipes, vectors, clip, work / "realtime.mp4", args.work_size)
            raw["realtime_fast"].append((seconds, frames))
            cpu["realtime_fast"].append(CPU_USED[-1])
            log(f"end to end, round {round_ + 1}: full resolution, fast")
            raw["full_fast"].append(run_full(pipes["fast"], vectors["fast"], clip, work / "full_fast.mp4", baseline))
            cpu["full_fast"].append(CPU_USED[-1])
            log(f"end to end, round {round_ + 1}: full resolution, teacher")
            raw["full_teacher"].append(run_full(pipes["teacher"], vectors["teacher"], clip, work / "teacher.mp4",
                                                baseline))
            cpu["full_teacher"].append(CPU_USED[-1])
        log("quality pass (SSIM, flicker)")
        quality = measure_quality(pipes, vectors, clip, static, args.work_size)
        sizes = [int(size) for size in args.sweep.split(",") if size.strip()]
        swept = sweep(pipes, vectors, clip, work, sizes, args.sweep_every) if sizes else []
    machine = machine_info()
    rates: dict[str, Any] = {}
    for name, runs in raw.items():
        fps = [frames / seconds for seconds, frames in runs]
        cpu_per_frame = statistics.median(used / frames for used, (_, frames) in zip(cpu[name], runs))
        cpus = machine["cpus_usable"] or 1
        rates[name] = {"fps": round(statistics.median(fps), 2), "fps_runs": [round(v, 2) for v in fps],
                       "frames": runs[0][1], "seconds_runs": [round(s, 2) for s, _ in runs],
                       "cpu_ms_per_frame": round(1000 * cpu_per_frame, 1),
                       "fps_if_cpus_were_free": round(cpus / cpu_per_frame, 2)}
    rates["realtime_vs_full_fast"] = round(rates["realtime_fast"]["fps"] / rates["full_fast"]["fps"], 2)
    rates["realtime_vs_teacher"] = round(rates["realtime_fast"]["fps"] / rates["full_teacher"]["fps"], 2)
    flick = quality["flicker"]
    flicker_ratio = round(flick["realtime"] / flick["full"], 3) if flick["full"] else None
    targets = {
        "end_to_end_fps": {"value": rates["realtime_fast"]["fps"], "target": ">= 15",
                           "ok": rates["realtime_fast"]["fps"] >= 15},
        "ssim_mean_vs_full": {"value": quality["realtime_vs_full"]["mean"], "target": ">= 0.85",
                              "ok": quality["realtime_vs_full"]["mean"] >= 0.85},
        "flicker_ratio_vs_independent_full": {"value": flicker_ratio, "target": "<= 0.5",
                                              "ok": flicker_ratio is not None and flicker_ratio <= 0.5},
    }
    loads = [load for _, load in LOADS]
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/video_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine,
        "load_average": {"min": min(loads), "max": max(loads), "stages": LOADS},
        "clip": {"frames": args.frames, "size": [WIDTH, HEIGHT], "fps": FPS, "noise_sigma": NOISE_SIGMA,
                 "segments": plan, "style": args.style.name},
        "settings": {"work_size": list(reversed(work_shape(HEIGHT, WIDTH, args.work_size))),
                     "paint_workers": pipes["workers"], "encoder": f"libx264 {ENCODER_PRESET} crf 17",
                     "baseline_frames": baseline, "repeats": args.repeats,
                     "refine_after": realtime_settings(args.work_size).refine_after},
        "realtime_stats": {"frames_painted": painted.painted, "frames_refined": painted.refined,
                           "cells_repainted": round(painted.cells_repainted, 4)},
        "rates": rates, "quality": quality, "sweep": swept, "targets": targets,
    }
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(table(report))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
