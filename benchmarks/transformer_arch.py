#!/usr/bin/env python
"""Speed of candidate transformer-student architectures vs the teacher, before training any.

ONNX Runtime time depends on the architecture, not on the weights. So each candidate is
exported with random weights and timed next to the float teacher graph (the fastest teacher
here), interleaved, and the medians and ratios are printed. This is how the edge kernels in
docs/compress.md were chosen.

    python benchmarks/transformer_arch.py                        # the candidates in docs/compress.md
    python benchmarks/transformer_arch.py 3-3 5-7x --size 1024 --repeats 15

A spec is FIRST-LAST edge kernels. An ``x`` after a kernel makes that conv depthwise-separable.
The inner convs are always separable, with zero padding, as the distillation recipe builds them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SPECS = ("3-3", "3-9x", "5-7x", "3-9", "9x-9x")


def student_config(spec: str):
    """'5-7x' -> a StyleTransformerConfig with a full 5x5 first conv and a separable 7x7 last one."""
    from slimvision.models.style import StyleTransformerConfig

    try:
        first, last = spec.split("-")
        kernels = int(first.rstrip("x")), int(last.rstrip("x"))
    except ValueError:
        raise SystemExit(f"error: bad spec {spec!r}: expected FIRST-LAST like 3-9x") from None
    parts = ("contract", "residual", "expand") + (("first",) if first.endswith("x") else ()) + (
        ("last",) if last.endswith("x") else ())
    return StyleTransformerConfig(separable=parts, padding="zeros", contract_kernels=(kernels[0], 3, 3),
                                  expand_kernels=(3, 3, kernels[1]))


def export_random(spec: str, folder: Path) -> Path:
    import torch

    from slimvision.compress.export import ImageInput, export_onnx
    from slimvision.models.style import NHWCStyleTransformer, StyleTransformer

    torch.manual_seed(0)
    path = folder / f"{spec}.onnx"
    size = {1: "height", 2: "width"}
    export_onnx(NHWCStyleTransformer(StyleTransformer(student_config(spec))), path,
                {"content_image": torch.rand(1, 64, 96, 3), "style_vector": torch.randn(1, 1, 1, 100)},
                output_names=("stylized_image",), dynamic_axes={"content_image": size, "stylized_image": size},
                preprocessing={"content_image": ImageInput(layout="NHWC")})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", default=DEFAULT_SPECS, help="FIRST-LAST edge kernels, e.g. 3-9x")
    parser.add_argument("--size", type=int, default=512, help="square content side in px (default 512)")
    parser.add_argument("--repeats", type=int, default=25, help="timed runs per graph (default 25)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    args = parser.parse_args()

    import onnxruntime as ort

    from slimvision.assets import STYLE_TEACHER_TRANSFORM
    from slimvision.inference.precision import with_float_weights

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as folder:
        graphs = {"teacher fp32": with_float_weights(STYLE_TEACHER_TRANSFORM.path())}
        graphs.update({spec: str(export_random(spec, Path(folder))) for spec in args.specs})
        sessions = {name: ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
                    for name, graph in graphs.items()}
        content = np.random.default_rng(0).random((1, args.size, args.size, 3), dtype=np.float32)
        style = np.random.default_rng(1).normal(0.0, 0.5, (1, 1, 1, 100)).astype(np.float32)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeats + 1):  # the first round warms up and is dropped
            for name, session in sessions.items():
                feeds = dict(zip((i.name for i in session.get_inputs()), (content, style)))
                start = time.perf_counter()
                session.run(None, feeds)
                times[name].append(time.perf_counter() - start)
    teacher = statistics.median(times["teacher fp32"][1:])
    print(f"{'graph':14s} {'ms@' + str(args.size):>9s} {'speed-up':>9s}")
    for name, values in times.items():
        median = statistics.median(values[1:])
        print(f"{name:14s} {median * 1000:9.1f} {teacher / median:8.2f}x")


if __name__ == "__main__":
    main()
