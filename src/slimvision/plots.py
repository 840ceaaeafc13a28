"""Pictures people would rather look at than read: training errors, noise curves, map views.

matplotlib (Agg backend, no display needed) is imported only inside these functions, so the
CLI starts fast. Every file is written through a temporary file and renamed into place.

Example:
    >>> save_map_pictures(SelfOrganizingMap.load("maps/numerals"), "out/")   # doctest: +SKIP
    {'umatrix': PosixPath('out/umatrix.png'), 'labels': ..., 'prototypes': ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from slimvision.data.glyphs import GLYPH_SIZE, glyph_image
from slimvision.io.atomic import atomic_write
from slimvision.io.images import save_image
from slimvision.models.som import SelfOrganizingMap

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(figure: Any, path: Path, overwrite: bool) -> Path:
    with atomic_write(path, overwrite=overwrite) as temp:
        figure.savefig(temp, dpi=120, bbox_inches="tight", format="png")
    _pyplot().close(figure)
    return path


def plot_training_errors(history: dict[str, list[float]], path: str | Path, *, overwrite: bool = False) -> Path:
    """Quantization and topographic error (and the radius) after each epoch."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = np.arange(1, len(history["quantization_error"]) + 1)
    left.plot(epochs, history["quantization_error"], marker="o")
    left.set(xlabel="epoch", ylabel="quantization error", title="mean distance to the BMU")
    right.plot(epochs, history["topographic_error"], marker="o", color="#d62728", label="topographic error")
    right.set(xlabel="epoch", ylabel="share of samples", title="2nd BMU not a neighbour")
    radius = right.twinx()
    radius.plot(epochs, history["radius"], color="#7f7f7f", linestyle="--", label="radius")
    radius.set_ylabel("neighbourhood radius")
    figure.tight_layout()
    return _save_figure(figure, Path(path), overwrite)


def plot_gan_losses(losses: dict[str, list[float]], path: str | Path, *, overwrite: bool = False,
                    fid: list[dict[str, float]] | None = None) -> Path:
    """Discriminator and generator losses (and D's scores of real and fake images) against the step,
    and with ``fid`` (:func:`~slimvision.training.gan.fid_history`) a third panel of FID-Lite0."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3 if fid else 2, figsize=(13.5 if fid else 9, 3.2))
    left, right = axes[0], axes[1]
    if fid:
        axes[2].plot([row["step"] for row in fid], [row["fid_lite0"] for row in fid], marker="o")
        axes[2].set(xlabel="step", ylabel="FID-Lite0 (lower is better)", title="FID-Lite0")
        axes[2].grid(alpha=0.3)
    steps = losses["step"]
    for key, label in (("discriminator/loss", "discriminator"), ("generator/loss", "generator")):
        if key in losses:
            left.plot(steps, losses[key], label=label)
    left.set(xlabel="step", ylabel="loss", title="losses")
    left.legend()
    for key, label in (("discriminator/real_score", "D(real)"), ("discriminator/fake_score", "D(fake)")):
        if key in losses:
            right.plot(steps, losses[key], label=label)
    right.set(xlabel="step", ylabel="mean sigmoid", title="discriminator's scores", ylim=(0, 1))
    right.legend()
    figure.tight_layout()
    return _save_figure(figure, Path(path), overwrite)


def plot_vae_training(losses: dict[str, list[float]], path: str | Path, *, overwrite: bool = False,
                      metrics: list[dict[str, float]] | None = None) -> Path:
    """The VAE's loss terms against the step (log scale) and, with ``metrics``
    (:func:`~slimvision.training.vae.metrics_history`), the held-out SSIM after 60% pixel removal."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2 if metrics else 1, figsize=(9 if metrics else 4.8, 3.2), squeeze=False)
    left = axes[0, 0]
    for key, label in (("reconstruction", "reconstruction (original_dim x error)"), ("kld", "KLD"), ("loss", "loss")):
        if key in losses:
            left.plot(losses["step"], losses[key], label=label)
    left.set(xlabel="step", ylabel="per image", yscale="log", title="training loss")
    left.legend()
    left.grid(alpha=0.3)
    if metrics:
        right = axes[0, 1]
        epochs = [row["epoch"] for row in metrics]
        for key, label in (("inpainted_ssim", "60% removed: VAE, kept pixels pasted back"),
                           ("restored_ssim", "60% removed: VAE output"), ("damaged_ssim", "60% removed: input"),
                           ("reconstructed_ssim", "undamaged slice through the VAE")):
            if all(key in row for row in metrics):
                right.plot(epochs, [row[key] for row in metrics], marker="o", label=label)
        right.set(xlabel="epoch", ylabel="SSIM", title="held-out slices", ylim=(0, 1))
        right.legend()
        right.grid(alpha=0.3)
    figure.tight_layout()
    return _save_figure(figure, Path(path), overwrite)


def plot_noise_curve(rows: list[dict[str, Any]], path: str | Path, *, overwrite: bool = False) -> Path:
    """Symbol and whole-numeral accuracy (and words misread as numerals) against the noise level, held-out fonts."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 3.5))
    levels = [row["noise"] for row in rows]
    axes.plot(levels, [100 * row["symbol_accuracy"] for row in rows], marker="o", label="symbols")
    axes.plot(levels, [100 * row["numeral_accuracy"] for row in rows], marker="s", label="whole numerals")
    if all("line_accuracy" in row for row in rows):
        axes.plot(levels, [100 * row["line_accuracy"] for row in rows], marker="D", label="numerals in lines of text")
    if all("text_false_alarms" in row for row in rows):
        axes.plot(levels, [100 * row["text_false_alarms"] for row in rows], marker="^", linestyle="--",
                  label="words read as numerals")
    axes.axvline(1.0, color="#7f7f7f", linestyle=":", label="default noise")
    axes.set(xlabel="noise level (1 = default)", ylabel="%", title="held-out fonts")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _save_figure(figure, Path(path), overwrite)


def _node_grid(som: SelfOrganizingMap, values: np.ndarray | None, colours: list[str] | None, title: str,
               text: list[str] | None = None, alpha: np.ndarray | None = None) -> Any:
    """One patch per node (squares or hexagons) coloured by value or by colour, optional letters."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import RegularPolygon

    plt = _pyplot()
    config = som.config
    hexagonal = config.lattice == "hex"
    figure, axes = plt.subplots(figsize=(0.35 * config.cols + 2, 0.35 * config.rows + 1))
    patches = [RegularPolygon((x, -y), numVertices=6 if hexagonal else 4, radius=0.577 if hexagonal else 0.707,
                              orientation=0 if hexagonal else np.pi / 4) for y, x in som.coords]
    collection = PatchCollection(patches, edgecolor="white", linewidth=0.3)
    if values is not None:
        collection.set_array(values.reshape(-1))
        collection.set_cmap("viridis")
        figure.colorbar(collection, ax=axes, fraction=0.04)
    else:
        shades = np.ones(len(colours)) if alpha is None else 0.25 + 0.75 * np.asarray(alpha, np.float64)
        collection.set_facecolor([(*_rgb(colour), float(shade)) for colour, shade in zip(colours, shades)])
    axes.add_collection(collection)
    if text is not None:
        for (y, x), letter in zip(som.coords, text):
            axes.text(x, -y, letter, ha="center", va="center", fontsize=7)
    axes.set_xlim(-1, som.coords[:, 1].max() + 1)
    axes.set_ylim(-som.coords[:, 0].max() - 1, 1)
    axes.set_aspect("equal")
    axes.axis("off")
    axes.set_title(title)
    return figure


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


def save_map_pictures(som: SelfOrganizingMap, folder: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """U-matrix, labelled map (colour = label, shade = confidence) and node prototypes as PNGs."""
    folder = Path(folder)
    written = {"umatrix": _save_figure(_node_grid(som, som.u_matrix(), None,
                                                  "U-matrix: bright ridges are cluster borders"),
                                       folder / "umatrix.png", overwrite)}
    if som.node_labels is not None:
        colours = [_COLOURS[int(label) % len(_COLOURS)] for label in som.node_labels]
        letters = [som.classes[int(label)] for label in som.node_labels]
        figure = _node_grid(som, None, colours, "node labels (pale: less sure)", letters, som.node_confidence)
        written["labels"] = _save_figure(figure, folder / "labels.png", overwrite)
    if som.config.dim == GLYPH_SIZE * GLYPH_SIZE:
        written["prototypes"] = save_image(prototype_mosaic(som), folder / "prototypes.png", overwrite=overwrite)
    return written


def prototype_mosaic(som: SelfOrganizingMap, gap: int = 2) -> np.ndarray:
    """Every node's weights drawn as a glyph, in lattice order: (H, W, 3) uint8."""
    rows, cols, size = som.config.rows, som.config.cols, GLYPH_SIZE
    cell = size + gap
    mosaic = np.full((rows * cell + gap, cols * cell + gap + cell // 2), 200, np.uint8)
    for node, weights in enumerate(som.weights):
        row, col = divmod(node, cols)
        shift = cell // 2 if som.config.lattice == "hex" and row % 2 else 0
        top, left = gap + row * cell, gap + col * cell + shift
        mosaic[top:top + size, left:left + size] = glyph_image(weights / max(float(weights.max()), 1e-6))
    return np.repeat(mosaic[..., None], 3, axis=2)
