"""Export trained style students: the graphs the style pipeline runs, each with its card.

:func:`export_predictor` writes a predictor student as ``student.onnx`` (NCHW, the network as
trained) and, with the Magenta predictor's NHWC interface, ``predictor.fp16w.onnx`` (fp16-stored
weights: what ships) and ``predictor.int8w.onnx``. :func:`export_transformer` writes a transformer
student with the Magenta transformer's interface, in float and with fp16 / int8-stored weights.
Every graph is checked against torch (:func:`~slimvision.export.onnx.export_onnx`) and has an
artifact card beside it; the stored-weight graphs get theirs from the quantizer, with their parity
against the float graph.

The distillations (:mod:`slimvision.training.style_predictor`,
:mod:`slimvision.training.style_transformer`) take these as their ``export`` step: training sits
below export, so it is handed the exporter instead of importing it.

Example:
    >>> report = distill_predictor(config, "runs/p035", export=export_predictor)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from slimvision.assets import STYLE_TEACHER_PREDICTOR
from slimvision.compress.quantize import quantize_weights_int8, store_weights_fp16, store_weights_int4
from slimvision.export.onnx import CardInfo, ImageInput, export_onnx
from slimvision.graph.rewrite import label_norm_moments
from slimvision.graph.surgery import compact_names
from slimvision.models.style import NHWCStylePredictor, NHWCStyleTransformer
from slimvision.training.style_predictor import STYLE_SIZE, PredictorExports

#: The distilled students' weights derive from Magenta's.
STUDENT_LICENCE = "Apache-2.0 (distilled from Magenta's Apache-2.0 weights)"
#: A quantized teacher keeps Magenta's weights (rounded to 4 bits).
TEACHER_LICENCE = "Apache-2.0 (Magenta's Apache-2.0 weights, quantized to 4 bits)"


def export_predictor(student: torch.nn.Module, run_dir: Path, weights: Path) -> PredictorExports:
    """``student.onnx`` (NCHW, free batch) and the pipeline's NHWC graphs with fp16 / int8-stored weights."""
    run_dir = Path(run_dir)
    example = {"style_image": torch.rand(1, 3, STYLE_SIZE, STYLE_SIZE)}
    exported = export_onnx(student, run_dir / "student.onnx", example, output_names=("style_vector",),
                           dynamic_axes={"style_image": {0: "batch"}, "style_vector": {0: "batch"}},
                           preprocessing={"style_image": ImageInput(layout="NCHW", size=(STYLE_SIZE, STYLE_SIZE))},
                           source_weights=weights, overwrite=True, card=_predictor_card(run_dir, "N,D"))
    float_path = run_dir / "predictor-nhwc.onnx"
    export_onnx(NHWCStylePredictor(student), float_path, {"style_image": torch.rand(1, STYLE_SIZE, STYLE_SIZE, 3)},
                output_names=("style_vector",),
                preprocessing={"style_image": ImageInput(layout="NHWC", size=(STYLE_SIZE, STYLE_SIZE))},
                source_weights=weights, overwrite=True, card=_predictor_card(run_dir, "N,1,1,D"))
    stored = (store_weights_fp16(float_path, run_dir / "predictor.fp16w.onnx", overwrite=True),
              quantize_weights_int8(float_path, run_dir / "predictor.int8w.onnx", overwrite=True))
    for path in stored:
        compact_names(path)
    return PredictorExports(onnx_path=exported.onnx_path, max_abs_diff=exported.max_abs_diff,
                            pipeline_model=stored[0], int8_weights=stored[1])


def export_predictor_int4(model: torch.nn.Module, layers: Sequence[Any], run_dir: Path,
                          remake: str | None = None) -> dict[str, Path]:
    """A GPTQ-quantized predictor (:mod:`slimvision.training.style_predictor_gptq`) with the Magenta
    predictor's NHWC interface: ``predictor-nhwc.onnx`` (float, checked against torch) and
    ``predictor.int4w.onnx`` (what ships: 4-bit codes where ``layers`` say, float16 elsewhere,
    its card's parity measured against the float graph). ``remake``: the command line that made
    it (default: ``slimvision compress gptq --run-dir RUN_DIR``)."""
    run_dir = Path(run_dir)
    float_path = run_dir / "predictor-nhwc.onnx"
    card = CardInfo(system="style", task="style-prediction", name=f"{run_dir.name}-predictor",
                    licence=TEACHER_LICENCE,
                    remake=remake or f"slimvision compress gptq --run-dir {run_dir}",
                    layouts={"style_vector": "N,1,1,D"},
                    descriptions={"style_image": "RGB style image in [0, 1], centre square resized to 256 (bilinear)",
                                  "style_vector": "the style's 100-d bottleneck vector"},
                    provenance={"compression_run": str(run_dir),
                                "method": "Magenta's predictor, weights quantized to 4 bits by GPTQ"})
    export_onnx(NHWCStylePredictor(model), float_path, {"style_image": torch.rand(1, STYLE_SIZE, STYLE_SIZE, 3)},
                output_names=("style_vector",),
                preprocessing={"style_image": ImageInput(layout="NHWC", size=(STYLE_SIZE, STYLE_SIZE))},
                source_weights=STYLE_TEACHER_PREDICTOR.path(), overwrite=True, card=card)
    stored = store_weights_int4(float_path, run_dir / "predictor.int4w.onnx", layers, overwrite=True)
    compact_names(stored)
    return {"fp32": float_path, "pipeline_model": stored}


def _predictor_card(run_dir: Path, vector_layout: str) -> CardInfo:
    """The card words of a predictor student's export (style image -> 100-d style vector)."""
    return CardInfo(system="style", task="style-prediction", name=f"{run_dir.name}-predictor",
                    licence=STUDENT_LICENCE, remake=f"slimvision train style-predictor --run-dir {run_dir}",
                    layouts={"style_vector": vector_layout},
                    descriptions={"style_image": "RGB style image in [0, 1], centre square resized to 256 (bilinear)",
                                  "style_vector": "the style's 100-d bottleneck vector"},
                    provenance={"training_run": str(run_dir)})


def export_transformer(student: torch.nn.Module, run_dir: Path, weights: Path | None) -> dict[str, Path]:
    """The shipped transformer's interface (NHWC content, (1, 1, 1, D) style, free H/W), in float,
    and with weights stored as fp16 (what ships) and int8, each computed in float."""
    run_dir = Path(run_dir)
    float_path = run_dir / "transform-nhwc.onnx"
    size = {1: "height", 2: "width"}
    export_onnx(NHWCStyleTransformer(student), float_path,
                {"content_image": torch.rand(1, 64, 96, 3), "style_vector": torch.randn(1, 1, 1, 100)},
                output_names=("stylized_image",), dynamic_axes={"content_image": size, "stylized_image": size},
                preprocessing={"content_image": ImageInput(layout="NHWC",
                                                           size_multiple=content_size_multiple(student))},
                source_weights=weights, overwrite=True, card=_transformer_card(run_dir))
    paths = {"fp32": float_path,
             "fp16_weights": store_weights_fp16(float_path, run_dir / "transform.fp16w.onnx", overwrite=True),
             "int8_weights": quantize_weights_int8(float_path, run_dir / "transform.int8w.onnx", overwrite=True)}
    for path in paths.values():
        compact_names(path)
        label_norm_moments(path)  # after compact_names, which would rename the labels away
    return paths


def content_size_multiple(transformer: torch.nn.Module) -> int:
    """What the pipeline pads content sides to, as the card states it: the whole downsampling
    stride (phase shuffle x strided convs; 4 for the teacher's layout).

    The graph itself may take any size (``config.size_multiple`` is 1 without a phase shuffle:
    stride-2 layers round up), but the pipeline pads every image, and every tile of a large one,
    to the whole stride, so that tiles' activations sit on the whole image's grid and an image
    paints the same tiled or whole.
    """
    config = transformer.config
    return config.space_to_depth * math.prod(config.contract_strides)


def _transformer_card(run_dir: Path) -> CardInfo:
    """The card words of a transformer student's export (content + style vector -> painted photo)."""
    return CardInfo(system="style", task="style-transfer", name=f"{run_dir.name}-transformer",
                    licence=STUDENT_LICENCE, remake=f"slimvision train style-transformer --run-dir {run_dir}",
                    layouts={"style_vector": "N,1,1,D", "stylized_image": "NHWC"},
                    value_ranges={"stylized_image": [0.0, 1.0]},
                    descriptions={"content_image": "RGB content photo in [0, 1], reflect-padded to a multiple of "
                                                   "size_multiple",
                                  "style_vector": "the style predictor's 100-d vector",
                                  "stylized_image": "the painted photo, RGB in [0, 1]"},
                    provenance={"training_run": str(run_dir)})
