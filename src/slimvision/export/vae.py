"""Export a trained medical VAE to the ONNX graphs :class:`~slimvision.inference.vae.MedicalVAE` runs.

A VAE without U-Net skips becomes ``encoder.onnx`` and ``decoder.onnx``; a U-Net VAE one
``autoencoder.onnx``. Each graph has its artifact card beside it, whose preprocessing carries the
model config, the intensity rule and how slices are squared and resized: what ``MedicalVAE``
reads. :func:`export_vae_int8_weights` stores the weights as int8 (a quarter of the bytes),
computed in float; that is what ships.

Example:
    >>> drift = export_vae(vae, "runs/mni128/export", intensity=Intensity(), overwrite=True)  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from slimvision.compress.quantize import quantize_weights_int8
from slimvision.export.onnx import CardInfo, export_onnx
from slimvision.io.medical import Intensity
from slimvision.models.vae import VariationalAutoencoder


class _Autoencode(torch.nn.Module):
    """Export view of a U-Net VAE: image [, known] -> (reconstruction from the latent mean, mean, log_var)."""

    def __init__(self, vae: VariationalAutoencoder) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, image: torch.Tensor, known: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.vae(image, known)


class _Encode(_Autoencode):
    """Export view: image [, known] -> (mean, log_var)."""

    def forward(self, image: torch.Tensor, known: torch.Tensor | None = None  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(image, known)


class _Decode(_Autoencode):
    """Export view: latent -> image."""

    def forward(self, latent: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.vae.decode(latent)


def export_vae(vae: VariationalAutoencoder, folder: str | Path, *, intensity: Intensity | None = None,
               source_weights: str | Path | None = None, overwrite: bool = False,
               remake_flags: str = "") -> dict[str, float]:
    """Write the ONNX graphs :class:`~slimvision.inference.vae.MedicalVAE` runs, each with its card.

    A VAE without U-Net skips gets ``encoder.onnx`` (image -> mean, log_var) and ``decoder.onnx``
    (latent -> image), which restore, sample and interpolate between them; a U-Net VAE gets one
    ``autoencoder.onnx`` (image -> reconstruction, mean, log_var), since its decoder needs the
    encoder's maps. A model with a mask channel takes a second input, ``known`` (N, 1, S, S),
    1 where a pixel is intact. Each graph is checked against torch at two batch sizes (the max abs diff
    per graph is returned); each graph's card (``encoder.card.json``, ...) carries, in its
    preprocessing, the model config, the intensity rule and how slices are squared and resized.
    """
    folder = Path(folder)
    config = vae.config
    vae = vae.cpu().eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, config.in_channels, config.image_size, config.image_size, generator=generator)
    inputs = {"image": image}
    if config.mask_channel:
        inputs["known"] = (torch.rand(2, 1, config.image_size, config.image_size, generator=generator) < 0.5).float()
    latent = torch.randn(2, config.latent_dim, generator=generator)
    batch = {0: "batch"}
    graphs: list[tuple[str, torch.nn.Module, dict[str, torch.Tensor], tuple[str, ...]]] = (
        [("autoencoder", _Autoencode(vae), inputs, ("reconstruction", "mean", "log_var"))]
        if config.skip_connections else
        [("encoder", _Encode(vae), inputs, ("mean", "log_var")),
         ("decoder", _Decode(vae), {"latent": latent}, ("image",))])
    preprocessing = {"model": config.to_dict(), "intensity": (intensity or Intensity()).to_dict(),
                     "layout": "NCHW", "value_range": [0.0, 1.0],
                     "resize": f"pad to a centred square with 0, then resize to {config.image_size} "
                               "(box filter when shrinking, bilinear when enlarging)"}
    run_dir = Path(source_weights).parent if source_weights is not None else None
    remake = f"slimvision vae export {run_dir or 'RUN_DIR'}{' ' + remake_flags if remake_flags else ''}"
    drift = {}
    for name, module, example, outputs in graphs:
        card = CardInfo(system="vae", task=VAE_TASKS[name], name=f"{run_dir.name if run_dir else 'vae'}-{name}",
                        remake=remake, layouts=VAE_LAYOUTS, value_ranges=VAE_RANGES,
                        descriptions=VAE_DESCRIPTIONS, preprocessing=preprocessing)
        # export_onnx restores the module's training flag afterwards: a fresh wrapper's is True,
        # which would switch the VAE itself to training mode.
        report = export_onnx(module.eval(), folder / f"{name}.onnx", example, output_names=outputs,
                             dynamic_axes={key: batch for key in (*example, *outputs)},
                             overwrite=overwrite, source_weights=source_weights, card=card)
        drift[name] = report.max_abs_diff
    return drift


#: What each exported VAE graph does, and its tensors as the cards describe them.
VAE_TASKS = {"encoder": "vae-encoding", "decoder": "vae-decoding", "autoencoder": "restoration"}
VAE_LAYOUTS = {"image": "NCHW", "known": "NCHW", "reconstruction": "NCHW", "latent": "N,D", "mean": "N,D",
               "log_var": "N,D"}
VAE_RANGES = {"image": [0.0, 1.0], "known": [0.0, 1.0], "reconstruction": [0.0, 1.0]}
VAE_DESCRIPTIONS = {"image": "grey slices squared and resized, intensity mapped to [0, 1]",
                    "known": "1 where a pixel is intact, 0 where it is missing",
                    "reconstruction": "the restored slices", "latent": "latent vectors (the prior is N(0, 1))",
                    "mean": "the latent mean", "log_var": "the latent log-variance"}


def export_vae_int8_weights(vae: VariationalAutoencoder, output: Path, intensity: Intensity | None,
                            weights: Path, overwrite: bool) -> dict[str, float]:
    """The float export, then each graph with int8 weight storage (compute stays float32); each
    graph's card is carried over by the quantizer, naming the float graph it was stored from."""
    with tempfile.TemporaryDirectory() as folder:
        drift = export_vae(vae, folder, intensity=intensity, source_weights=weights, overwrite=True,
                           remake_flags="--int8-weights")
        for graph in sorted(Path(folder).glob("*.onnx")):
            quantize_weights_int8(graph, Path(output) / graph.name, overwrite=overwrite)
    return drift
