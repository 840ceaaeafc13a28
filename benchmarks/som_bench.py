#!/usr/bin/env python
"""Our self-organising map against MiniSom: same data, map size and epochs, alternated in one run.

The data are rendered numeral symbols (32 x 32 = 1024-d, training fonts); accuracy is measured
on symbols from held-out fonts. Both maps start from the same PCA plane, decay the radius
linearly from half the map's side to 1, and MiniSom's learning rate linearly to zero. Each
library trains ``--repeats`` times, alternating, and the medians are compared.

    python benchmarks/som_bench.py                       # 20x20 map, 10,000 samples, 2 epochs
    python benchmarks/som_bench.py --epochs 5 --repeats 3 --samples 10000

Writes benchmarks/results/som.json and prints one table.
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--repeats", type=int, default=3)
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
    results = {"config": vars(args) | {"output": str(args.output)}, "machine": platform.processor() or platform.machine(),
               "rows": {}}
    base = statistics.median(times["minisom"])
    for name, seconds in times.items():
        score = (scores_minisom if name == "minisom" else scores_ours)(maps[name], data, labels, held_out, held_labels)
        median = statistics.median(seconds)
        results["rows"][name] = {"seconds_median": median, "runs": seconds, "speedup_vs_minisom": base / median,
                                 "ms_per_sample_epoch": 1000 * median / (args.samples * args.epochs), **score}
    print(f"\n{args.rows}x{args.cols} map, {args.samples} x {data.shape[1]}-d samples, {args.epochs} epochs, "
          f"medians of {args.repeats} alternated runs")
    print(f"{'':<15}{'train s':>9}{'x MiniSom':>11}{'ms/sample':>11}{'QE':>8}{'TE':>7}{'held-out acc':>14}")
    for name, row in results["rows"].items():
        print(f"{name:<15}{row['seconds_median']:9.2f}{row['speedup_vs_minisom']:10.1f}x{row['ms_per_sample_epoch']:11.3f}"
              f"{row['quantization_error']:8.3f}{row['topographic_error']:7.3f}{100 * row['held_out_accuracy']:13.2f}%")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nsaved {args.output}")


if __name__ == "__main__":
    main()
