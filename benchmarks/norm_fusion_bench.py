#!/usr/bin/env python
"""Fused against spelled-out instance norms, for each float style transformer, alternated.

The float style pipelines paint whole images with their conditional instance norms fused into
ONNX ``InstanceNormalization`` nodes (``slimvision.graph.norm_fusion``). This times each graph
both ways in the same process, one run of each in turn, and prints the medians, their ratio
and the largest output difference:

    python benchmarks/norm_fusion_bench.py                       # teacher fp32 and --model fast
    python benchmarks/norm_fusion_bench.py --repeats 25 --sizes 512,1280x720 \
        -o benchmarks/results/norm_fusion.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np

MODELS = ("magenta-arbitrary-v1-fp32", "fast")


def parse_size(text: str) -> tuple[int, int]:
    """``512`` -> (512, 512); ``1280x720`` -> (720, 1280) as (height, width)."""
    width, _, height = text.partition("x")
    return int(height or width), int(width)


def time_pair(first: Any, second: Any, feeds: dict[str, np.ndarray], repeats: int) -> tuple[list[float], list[float]]:
    """Seconds per run of each session, alternating, after one untimed run of each."""
    first.run(None, feeds), second.run(None, feeds)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for session, out in ((first, times[0]), (second, times[1])):
            time.sleep(0.05)  # ORT's pool threads spin after a run; let them settle
            start = time.perf_counter()
            session.run(None, feeds)
            out.append(time.perf_counter() - start)
    return times


def measure(model: str, sizes: list[tuple[int, int]], repeats: int, threads: int | None) -> dict[str, Any]:
    from slimvision.artifacts import ARTIFACTS  # before onnxruntime: slimvision sets its telemetry off
    from slimvision.graph.norm_fusion import with_fused_instance_norms
    from slimvision.inference.style import artifact_for

    import onnxruntime as ort

    name = artifact_for(model)
    pipeline = ARTIFACTS.create(name)
    plain_bytes, key = pipeline._transform_graph()
    fused_bytes, _ = with_fused_instance_norms(plain_bytes, key)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    plain = ort.InferenceSession(plain_bytes, options, providers=["CPUExecutionProvider"])
    fused = ort.InferenceSession(fused_bytes, options, providers=["CPUExecutionProvider"])
    image_name, vector_name = (value.name for value in plain.get_inputs())
    rng = np.random.default_rng(0)
    rows = {}
    for height, width in sizes:
        feeds = {image_name: rng.random((1, height, width, 3), dtype=np.float32),
                 vector_name: rng.normal(0.0, 0.5, (1, 1, 1, 100)).astype(np.float32)}
        difference = float(np.abs(plain.run(None, feeds)[0] - fused.run(None, feeds)[0]).max())
        unfused_s, fused_s = time_pair(plain, fused, feeds, repeats)
        rows[f"{width}x{height}"] = {"unfused_ms": statistics.median(unfused_s) * 1e3,
                                     "fused_ms": statistics.median(fused_s) * 1e3,
                                     "speed_up": statistics.median(unfused_s) / statistics.median(fused_s),
                                     "max_abs_difference": difference}
    return {"artifact": name, "sizes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="style models, by name or alias (default: %(default)s)")
    parser.add_argument("--sizes", default="512,1280x720", help="content sizes, SIDE or WxH (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each graph per size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: its own choice)")
    parser.add_argument("-o", "--output", help="also write the results as JSON here")
    args = parser.parse_args()
    sizes = [parse_size(text) for text in args.sizes.split(",")]
    results: dict[str, Any] = {"command": "python benchmarks/norm_fusion_bench.py " + " ".join(
        f"--{key} {value}" for key, value in (("models", args.models), ("sizes", args.sizes),
                                              ("repeats", args.repeats)) if value),
        "load_before": os.getloadavg()[0], "models": {}}
    for model in args.models.split(","):
        result = measure(model, sizes, args.repeats, args.threads)
        results["models"][model] = result
        for size, row in result["sizes"].items():
            print(f"{result['artifact']:28s} {size:>9s}  unfused {row['unfused_ms']:8.1f} ms  fused "
                  f"{row['fused_ms']:8.1f} ms  x{row['speed_up']:.2f}  max|diff| {row['max_abs_difference']:.1e}")
    results["load_after"] = os.getloadavg()[0]
    first, second = (results["models"].get(model) for model in MODELS)
    if first and second:
        for size in first["sizes"]:
            before = first["sizes"][size]["unfused_ms"] / second["sizes"][size]["unfused_ms"]
            after = first["sizes"][size]["fused_ms"] / second["sizes"][size]["fused_ms"]
            results.setdefault("fast_vs_teacher", {})[size] = {"unfused": before, "fused": after}
            print(f"fast vs teacher at {size}: x{before:.2f} both unfused, x{after:.2f} both fused")
    print(f"load average {results['load_before']:.1f} -> {results['load_after']:.1f} (2 cores)")
    if args.output:
        from slimvision.io.atomic import write_text_atomic

        write_text_atomic(args.output, json.dumps(results, indent=1) + "\n", overwrite=True)


if __name__ == "__main__":
    main()
