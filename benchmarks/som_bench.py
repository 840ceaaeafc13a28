#!/usr/bin/env python
"""Our self-organising map against MiniSom: same data, map size and epochs, alternated in one run.

The data are rendered numeral symbols (32 x 32 = 1024-d, training fonts); accuracy is measured
on symbols from held-out fonts. Both maps start from the same PCA plane, decay the radius
linearly from half the map's side to 1, and MiniSom's learning rate linearly to zero. Each
library trains ``--repeats`` times, alternating in one process (so a busy spell on the host hits
both), and the medians are compared, with each one's range. The machine's load (1-minute load
average before and after, and the CPU count) is printed and saved beside the ratios: on a shared
host the ratio of alternated runs is what counts, not either time alone.

    python benchmarks/som_bench.py                       # 20x20 map, 10,000 samples, 2 epochs, 5 repeats
    python benchmarks/som_bench.py --epochs 5 --repeats 3 --samples 10000

Writes benchmarks/results/som.json and prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "som.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--held-out", type=int, default=2100, help="held-out symbols for accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def train_ours(rule: str, data: np.ndarray, args: argparse.Namespace):
    from slimvision.models.som import SelfOrganizingMap, SOMConfig

    radius = max(args.rows, args.cols) / 2
    som = SelfOrganizingMap(SOMConfig(rows=args.rows, cols=args.cols, dim=data.shape[1], epochs=args.epochs,
                                      rule=rule, radius=radius, radius_end=1.0, learning_rate=0.5,
                                      learning_rate_end=0.01, seed=args.seed))
    started = time.perf_counter()
    som.fit(data, progress=False)
    return time.perf_counter() - started, som


def train_minisom(data: np.ndarray, args: argparse.Namespace):
    from minisom import MiniSom

    som = MiniSom(args.rows, args.cols, data.shape[1], sigma=max(args.rows, args.cols) / 2, learning_rate=0.5,
                  decay_function="linear_decay_to_zero", sigma_decay_function="linear_decay_to_one",
                  random_seed=args.seed)
    started = time.perf_counter()
    som.pca_weights_init(data)
    som.train(data, args.epochs * len(data), random_order=True)
    return time.perf_counter() - started, som


def scores_ours(som, data, labels, held_out, held_labels) -> dict[str, float]:
    from slimvision.data.roman import SYMBOLS

    som.label(data, labels, tuple(SYMBOLS))
    return {"quantization_error": som.quantization_error(data), "topographic_error": som.topographic_error(data),
            "held_out_accuracy": float(np.mean(som.classify(held_out, unknown_distance=np.inf).label == held_labels))}


def scores_minisom(som, data, labels, held_out, held_labels) -> dict[str, float]:
    """MiniSom's own errors; accuracy as MiniSom's examples classify: the winner's majority label
    from ``labels_map``, and the overall majority for a winner that won no training sample."""
    votes = som.labels_map(data, labels)
    fallback = np.bincount(labels).argmax()
    predicted = [votes[som.winner(x)].most_common(1)[0][0] if som.winner(x) in votes else fallback for x in held_out]
    return {"quantization_error": float(som.quantization_error(data)),
            "topographic_error": float(som.topographic_error(data)),
            "held_out_accuracy": float(np.mean(np.asarray(predicted) == held_labels))}


def main() -> None:
    args = parse_args()
    from slimvision.data.numerals import find_fonts, render_symbols, split_fonts

    train_fonts, held_fonts = split_fonts(find_fonts())
    data, labels = render_symbols(train_fonts, args.samples, seed=args.seed)
    held_out, held_labels = render_symbols(held_fonts, args.held_out, seed=args.seed + 1)
    times: dict[str, list[float]] = {"ours (batch)": [], "ours (online)": [], "minisom": []}
    maps = {}
    load_before = os.getloadavg()
    for repeat in range(args.repeats):
        for name in times:
            if name == "ours (online)" and repeat > 0:
                continue   # the online rule is shown once, for reference; the batch rule is the target
            if name == "minisom":
                seconds, som = train_minisom(data, args)
            else:
                seconds, som = train_ours("batch" if "batch" in name else "online", data, args)
            times[name].append(seconds)
            maps[name] = som
            print(f"  repeat {repeat + 1}: {name:<14} {seconds:8.2f} s", flush=True)
    load = {"load_average_1min_before": round(load_before[0], 2), "load_average_1min_after": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count()}
    results = {"config": vars(args) | {"output": str(args.output)}, "machine": platform.processor() or platform.machine(),
               "load": load, "rows": {}}
    base = statistics.median(times["minisom"])
    for name, seconds in times.items():
        score = (scores_minisom if name == "minisom" else scores_ours)(maps[name], data, labels, held_out, held_labels)
        median = statistics.median(seconds)
        # Each of our runs against the MiniSom run beside it: the spread a busy host puts on the ratio.
        paired = [other / own for own, other in zip(seconds, times["minisom"])]
        results["rows"][name] = {"seconds_median": median, "seconds_range": [min(seconds), max(seconds)], "runs": seconds,
                                 "speedup_vs_minisom": base / median,
                                 "speedup_range": [min(paired), max(paired)] if name != "minisom" else [1.0, 1.0],
                                 "ms_per_sample_epoch": 1000 * median / (args.samples * args.epochs), **score}
    print(f"\n{args.rows}x{args.cols} map, {args.samples} x {data.shape[1]}-d samples, {args.epochs} epochs, "
          f"medians of {args.repeats} alternated runs [range]; load average {load['load_average_1min_before']} -> "
          f"{load['load_average_1min_after']} on {load['cpus']} CPUs")
    print(f"{'':<15}{'train s':>17}{'x MiniSom':>18}{'ms/sample':>11}{'QE':>8}{'TE':>7}{'held-out acc':>14}")
    for name, row in results["rows"].items():
        low, high = row["seconds_range"]
        fast, slow = row["speedup_range"]
        print(f"{name:<15}{row['seconds_median']:7.2f} [{low:5.2f}-{high:5.2f}]{row['speedup_vs_minisom']:7.1f}x "
              f"[{fast:4.1f}-{slow:4.1f}]{row['ms_per_sample_epoch']:11.3f}"
              f"{row['quantization_error']:8.3f}{row['topographic_error']:7.3f}{100 * row['held_out_accuracy']:13.2f}%")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nsaved {args.output}")


if __name__ == "__main__":
    main()
