#!/usr/bin/env python
"""Speed of candidate transformer-student architectures vs the teacher, before training any.

ONNX Runtime time depends on the architecture, not on the weights. So each candidate is
exported with random weights and timed next to the float teacher graph (the fastest teacher
here), interleaved, and the medians and ratios are printed. This is how the edge kernels in
docs/compress.md were chosen.

    python benchmarks/transformer_arch.py                        # the candidates in docs/compress.md
    python benchmarks/transformer_arch.py 3-3 p5-5 p3-3/residual --size 1024 --repeats 15

A spec is ``[p]FIRST-LAST[/PARTS][:BLOCKS]`` (see :func:`student_config`): edge kernels, ``x``
for a separable edge, ``p`` for the phase-plane layout, the separable parts, the residual blocks. Padding is zeros,
as the distillation recipe builds it. Before each timed run the script pauses 50 ms: ONNX
Runtime's pool threads spin for a while after a run and would slow the next session's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SPECS = ("3-3", "5-7x", "p5-5", "p3-3", "p5-3", "p3-3/residual")


def student_config(spec: str):
    """A spec -> the StyleTransformerConfig the distillation recipe builds for it.

    ``FIRST-LAST``: edge kernels; an ``x`` after one makes that conv separable too. A leading
    ``p``: the phase-plane layout (``--space-to-depth 2``: every conv at half resolution or
    below; kernels are then half-resolution ones, 5 holds the teacher's 9x9). ``/PARTS``: the
    separable parts (default: contract,residual,expand; none with ``p``). ``:N``: N residual
    blocks (default 5).
    """
    from slimvision.training.style_transformer import TransformerDistillConfig

    try:
        spec_blocks, _, blocks_text = spec.partition(":")
        blocks = int(blocks_text or 5)
        body, _, parts = spec_blocks.partition("/")
        phases = body.startswith("p")
        first, last = body.lstrip("p").split("-")
        kernels = int(first.rstrip("x")), int(last.rstrip("x"))
    except ValueError:
        raise SystemExit(f"error: bad spec {spec!r}: expected [p]FIRST-LAST[/PARTS][:BLOCKS] like 3-9x or p3-3:4") from None
    separable = tuple(parts.split(",")) if parts else (() if phases else ("contract", "residual", "expand"))
    separable += (("first",) if first.endswith("x") else ()) + (("last",) if last.endswith("x") else ())
    return TransformerDistillConfig(separable=tuple(p for p in separable if p), edge_kernels=kernels,
                                    space_to_depth=2 if phases else 1, residual_blocks=blocks).student_config()


def export_random(spec: str, folder: Path) -> Path:
    import torch

    from slimvision.export.onnx import CardInfo, ImageInput, export_onnx
    from slimvision.models.style import NHWCStyleTransformer, StyleTransformer

    torch.manual_seed(0)
    config = student_config(spec)
    path = folder / f"{spec.replace('/', '_')}.onnx"
    size = {1: "height", 2: "width"}
    export_onnx(NHWCStyleTransformer(StyleTransformer(config)), path,
                {"content_image": torch.rand(1, 64, 96, 3), "style_vector": torch.randn(1, 1, 1, 100)},
                output_names=("stylized_image",), dynamic_axes={"content_image": size, "stylized_image": size},
                preprocessing={"content_image": ImageInput(layout="NHWC", size_multiple=config.size_multiple)},
                card=CardInfo(system="style", task="style-transfer", remake="python benchmarks/transformer_arch.py",
                              layouts={"style_vector": "N,1,1,D", "stylized_image": "NHWC"}))
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
    from slimvision.graph.precision import with_float_weights

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
                time.sleep(0.05)  # let the previous session's spinning pool threads go idle
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
