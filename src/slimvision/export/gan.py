"""Export a trained DCGAN generator to ONNX: float (checked against torch) or static int8.

Both write an artifact card beside the graph (:mod:`slimvision.export.card`) that says the
latent size, the noise's distribution and the output range, which
:class:`~slimvision.inference.gan.GANSampler` reads instead of guessing them from the graph. The
int8 card comes from the float graph's, through the quantizer, with its parity against it.

Example:
    >>> export_generator(generator, "runs/digits32/generator.onnx", overwrite=True)      # doctest: +SKIP
    >>> export_generator_int8(generator, "runs/digits32/generator.int8.onnx").summary()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from slimvision.compress.quantize import QuantizationReport, quantization_report, quantize_int8_static
from slimvision.export.onnx import CardInfo, ExportReport, export_onnx
from slimvision.models.gan import DCGANGenerator, sample_noise


def export_generator(generator: DCGANGenerator, path: str | Path, *, overwrite: bool = False,
                     source_weights: str | Path | None = None, remake: str | None = None) -> ExportReport:
    """The generator as ONNX (input ``noise`` (B, latent), output ``images`` (B, C, R, R) in [-1, 1]),
    checked against torch at two batch sizes by :func:`~slimvision.export.onnx.export_onnx`, with a
    card that says the latent size, the noise's distribution and the output range."""
    example = {"noise": sample_noise(2, generator.config.latent_dim, torch.Generator().manual_seed(0))}
    card = CardInfo(system="gan", task="generation", name=Path(path).name.removesuffix(".onnx"),
                    remake=remake or _export_command(source_weights),
                    layouts={"noise": "N,D", "images": "NCHW"},
                    value_ranges={"noise": [-1.0, 1.0], "images": [-1.0, 1.0]},
                    descriptions={"noise": "latent vectors, uniform in [-1, 1]",
                                  "images": "generated images, tanh output in [-1, 1]"},
                    preprocessing={"noise": {"distribution": "uniform", "range": [-1.0, 1.0],
                                             "latent_dim": generator.config.latent_dim}})
    return export_onnx(generator, path, example, output_names=("images",),
                       dynamic_axes={"noise": {0: "batch"}, "images": {0: "batch"}},
                       overwrite=overwrite, source_weights=source_weights, card=card)


def _export_command(source_weights: str | Path | None, *flags: str) -> str:
    """The CLI command that exports a run's generator again (``RUN_DIR/generator`` -> ``RUN_DIR``)."""
    run_dir = Path(source_weights).parent if source_weights is not None else "RUN_DIR"
    return " ".join(["slimvision gan export", str(run_dir), *flags])


@dataclass
class Int8Export:
    """What :func:`export_generator_int8` measured: the exact rewrite's drift from the torch
    generator, and the int8 graph's size and agreement against its float twin."""

    rewrite_max_abs_diff: float
    quantization: QuantizationReport

    def summary(self) -> str:
        return (f"sub-pixel rewrite vs torch: max abs diff {self.rewrite_max_abs_diff:.2e}; "
                f"{self.quantization.summary()}")


def export_generator_int8(generator: DCGANGenerator, path: str | Path, *, calibration_samples: int = 256,
                          split_phases: bool = True, overwrite: bool = False,
                          source_weights: str | Path | None = None) -> Int8Export:
    """The generator as a static int8 ONNX graph (QDQ, per-channel weights) for fast CPU sampling.

    The generator is first rebuilt by :class:`~slimvision.compress.folded_generator.FoldedGenerator`
    (exact): transposed convolutions become convolutions + depth-to-space, because ONNX
    Runtime's int8 kernels cover convolutions, not transposed ones; batch norms are folded into
    the convolutions; the 3-channel image layer runs on phase planes. The rebuilt float graph is
    checked against the original torch generator. Activation ranges are calibrated on ``calibration_samples`` noise vectors:
    the generator's input distribution is known exactly, so no images are needed.
    ``split_phases=False`` keeps each sub-pixel conv whole (for comparison; slower).
    """
    import tempfile

    from slimvision.compress.folded_generator import FoldedGenerator
    from slimvision.graph.session import OnnxModel

    rewritten = FoldedGenerator(generator.eval(), split_phases=split_phases)
    latent = generator.config.latent_dim

    def feeds(seed: int, count: int) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        return [{"noise": rng.uniform(-1, 1, (min(32, count - start), latent)).astype(np.float32)}
                for start in range(0, count, 32)]

    with tempfile.TemporaryDirectory() as folder:
        float_path = Path(folder) / "generator.fp32.onnx"
        # The float graph's card (noise and image specs) becomes the int8 graph's, with its parity.
        export_generator(rewritten, float_path, overwrite=True, source_weights=source_weights,
                         remake=_export_command(source_weights, "--int8"))
        (check,) = feeds(3, 8)
        with torch.no_grad():
            expected = generator.eval()(torch.from_numpy(check["noise"])).numpy()
        drift = float(np.abs(OnnxModel(float_path).run(check)[0] - expected).max())
        quantize_int8_static(float_path, feeds(1, calibration_samples), path, overwrite=overwrite)
        report = quantization_report(float_path, path, feeds(2, 64),
                                     method="int8 static QDQ, sub-pixel convs, batch norms folded")
    return Int8Export(drift, report)
