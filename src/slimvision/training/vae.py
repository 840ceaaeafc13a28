"""VAE training as a task of the shared trainer: corrupted slice in, clean slice out.

The loss is the paper's L = mean(original_dim x MSE + KLD) (Gerget & Lantev 2021, eqs. 1-3):
per image, the mean squared error times the number of output values (so, the sum of squared
errors) plus the KL divergence of N(mean, exp(log_var)) from N(0, I); ``beta`` weighs the KLD
(beta = 1 is the paper's loss; smaller values trade sampling quality for sharper
reconstructions, Higgins et al. 2017 for the other direction).

Batches are a function of the step alone (seeded by ``(seed, step)``): each picks slices, flips
and slightly rotates / scales them, and damages them with :mod:`slimvision.data.corruption`, so a
resumed run continues exactly where it stopped. Every ``sample_every`` epochs the run writes a
reconstruction grid and, with held-out slices, their inpainting scores.

Example:
    >>> config = VAETrainingConfig(model=VAEConfig(image_size=64, latent_dim=16), epochs=2)   # doctest: +SKIP
    >>> vae, history = train_vae(config, train.images, "runs/tiny-vae", holdout=test.images)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from slimvision.training.config import TrainingConfig
from slimvision.data.corruption import Corruption, corrupt, drop_pixels, jitter_intensity
from slimvision.data.medical_sources import CropPool
from slimvision.errors import ConfigError, InputError
from slimvision.io.atomic import write_text_atomic
from slimvision.io.medical import Intensity
from slimvision.metrics import damage_scores, restoration_scores
from slimvision.models.vae import VAEConfig, VariationalAutoencoder, build_vae
from slimvision.training.checkpoint import read_json_rows
from slimvision.training.trainer import (
    CosineDecay, FineTuneSchedule, StagedUnfreezing, Trainer, TrainerConfig, check_same_config,
)

METRICS_FILE = "metrics.json"
#: The benchmark's damage: 60% of the pixels removed.
EVAL_KEEP = 0.4


@dataclass
class VAETrainingConfig(TrainingConfig):
    """Everything a VAE run is trained from (saved in each checkpoint and beside the weights).

    Attributes:
        model: the network.
        intensity: how raw file values were mapped to [0, 1] (kept so inference maps new files alike).
        corruption: the damage drawn for each training image (``Corruption.none()``: a plain VAE).
        epochs / batch_size: an epoch is ``len(data) // batch_size`` steps.
        lr: Adam's learning rate for the decoder and the new layers; ``backbone_lr`` for the
            pretrained backbone, lower so its ImageNet features are adjusted rather than erased.
        cosine_decay: both learning rates fall along a cosine to 0 at the last epoch (a run
            resumed with more epochs stretches the curve from where it stands).
        beta: weight of the KLD term (1: the paper's loss).
        l1_weight: adds ``l1_weight`` x mean absolute error to the per-value MSE (0: the paper's
            loss). MSE's best guess for an uncertain pixel is the mean of what it could be, so
            edges blur into a grey halo; the absolute error's is the median, which stays sharp.
        augment: random left-right flips, rotations up to 10 degrees and scales 0.9-1.1.
        intensity_augment: each clean training image also gets a random window, gamma and bias
            field (:func:`~slimvision.data.corruption.jitter_intensity`) before it is damaged.
        freeze_batchnorm: batch-norm layers keep their statistics (eval mode) while the rest
            trains; needed when warm-starting from an exported graph, whose batch norms were
            folded into the convolutions (:func:`warm_start_from_onnx`).
        finetune: the trainer's :class:`~slimvision.training.trainer.FineTuneSchedule` for the
            encoder's backbone (its stem and MBConv blocks, :func:`backbone_blocks`): frozen for
            ``freeze_backbone_steps``, then its top ``unfreeze`` blocks train at ``backbone_lr``
            (the VAE's own backbone rate, so ``backbone_lr_scale`` stays 1). The default trains
            everything from the first step.
        checkpoint_every / sample_every: in epochs.
        device: "cpu", "cuda", "cuda:1", "mps"...
    """

    model: VAEConfig = field(default_factory=VAEConfig)
    intensity: Intensity = field(default_factory=Intensity)
    corruption: Corruption = field(default_factory=Corruption)
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr: float = 2e-4
    cosine_decay: bool = True
    beta: float = 1.0
    l1_weight: float = 0.0
    augment: bool = True
    intensity_augment: bool = False
    freeze_batchnorm: bool = False
    finetune: FineTuneSchedule = field(default_factory=FineTuneSchedule)
    checkpoint_every: int = 5
    sample_every: int = 5
    log_every: int = 10
    device: str = "cpu"

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "epochs", "sample_every")
        self.require_positive("lr", "backbone_lr")
        self.require_at_least(0, "beta", "l1_weight")
        self.finetune.validate()
        if self.finetune.backbone_lr_scale != 1.0:
            raise ConfigError("VAETrainingConfig.finetune.backbone_lr_scale must stay 1: the VAE's backbone "
                              "trains at backbone_lr (--backbone-lr)")


def vae_loss(reconstruction: torch.Tensor, target: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
             beta: float = 1.0, l1_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The paper's loss (with ``l1_weight`` = 0) and its parts, each averaged over the batch.

    ``mse`` and ``mae`` are per value, ``reconstruction`` = original_dim x (mse + l1_weight x
    mae), ``kld`` the KL divergence -0.5 * sum(1 + log_var - mean^2 - exp(log_var)) per image.
    """
    original_dim = target[0].numel()
    error = (reconstruction - target).flatten(1)
    mse, mae = error.pow(2).mean(dim=1), error.abs().mean(dim=1)                         # (B,) each
    kld = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1)                    # (B,)
    recon = original_dim * (mse + l1_weight * mae) if l1_weight else original_dim * mse
    loss = (recon + beta * kld).mean()
    return {"loss": loss, "mse": mse.mean(), "mae": mae.mean(), "kld": kld.mean(), "reconstruction": recon.mean()}


class VAETask:
    """One phase ("main"): reconstruct the clean slice from the damaged one."""

    def __init__(self, vae: VariationalAutoencoder, beta: float, device: torch.device, l1_weight: float = 0.0,
                 freeze_batchnorm: bool = False) -> None:
        self.model = vae.to(device)
        self.beta, self.l1_weight, self.device = beta, l1_weight, device
        self.frozen = [module for module in vae.modules() if isinstance(module, torch.nn.BatchNorm2d)] \
            if freeze_batchnorm else []

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], phase: str) -> dict[str, torch.Tensor]:
        for module in self.frozen:  # the trainer put the whole model in training mode
            module.eval()
        damaged, clean, kept = (part.to(self.device, non_blocking=True) for part in batch)
        reconstruction, mean, log_var = self.model(damaged, kept)
        return vae_loss(reconstruction, clean, mean, log_var, self.beta, self.l1_weight)


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch device, refused clearly when this machine has no such accelerator."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r} ({error})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested, but this torch build sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} requested, but MPS is not available here; use --device cpu")
    return device


def step_batches(images: np.ndarray | CropPool, config: VAETrainingConfig, start: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(damaged, clean, kept) batches (B, 1, S, S) for steps ``start``, ``start + 1``...: step k
    draws from rng([seed, k]); ``kept`` is 1.0 where a pixel survived the damage. ``images`` is
    an (N, S, S) stack or a :class:`CropPool` of slices at their own size, cropped to S."""
    step = start
    while True:
        rng = np.random.default_rng([config.seed, step])
        if isinstance(images, CropPool):
            clean = images.crops(rng, config.batch_size, config.model.image_size)
        else:
            chosen = np.sort(rng.choice(len(images), config.batch_size, replace=len(images) < config.batch_size))
            clean = images[chosen]
        if config.augment:
            clean = _jitter_geometry(clean, rng)
        if config.intensity_augment:
            clean = np.stack([jitter_intensity(image, rng) for image in clean])
        damaged, kept = (np.stack(parts) for parts in zip(*(corrupt(image, config.corruption, rng) for image in clean)))
        yield (torch.from_numpy(damaged)[:, None], torch.from_numpy(np.ascontiguousarray(clean))[:, None],
               torch.from_numpy(kept.astype(np.float32))[:, None])
        step += 1


def _jitter_geometry(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (S, S) image flipped left-right at random, rotated up to 10 degrees and scaled 0.9-1.1."""
    count = len(images)
    angle = np.radians(rng.uniform(-10, 10, count))
    scale = rng.uniform(0.9, 1.1, count)
    flip = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    theta = np.zeros((count, 2, 3), np.float32)
    theta[:, 0, 0] = flip * np.cos(angle) / scale
    theta[:, 0, 1] = -np.sin(angle) / scale
    theta[:, 1, 0] = flip * np.sin(angle) / scale
    theta[:, 1, 1] = np.cos(angle) / scale
    batch = torch.from_numpy(np.ascontiguousarray(images, np.float32))[:, None]
    grid = F.affine_grid(torch.from_numpy(theta), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, padding_mode="zeros", align_corners=False)[:, 0].numpy()


def backbone_blocks(vae: VariationalAutoencoder) -> list[torch.nn.Module]:
    """The encoder backbone's blocks, input first (its stem, then each MBConv block): what a
    :class:`~slimvision.training.trainer.FineTuneSchedule` freezes and unfreezes from the top."""
    backbone = vae.encoder.backbone
    return [backbone.stem, *backbone.blocks]


def _optimizer(vae: VariationalAutoencoder, config: VAETrainingConfig) -> torch.optim.Optimizer:
    backbone = list(vae.encoder.backbone.parameters())
    known = {id(p) for p in backbone}
    rest = [p for p in vae.parameters() if id(p) not in known]
    return torch.optim.Adam([{"params": backbone, "lr": config.backbone_lr}, {"params": rest, "lr": config.lr}])


def train_vae(config: VAETrainingConfig, images: np.ndarray | CropPool, run_dir: str | Path, *,
              holdout: np.ndarray | None = None, pretrained: bool = True, backbone_weights: str | Path | None = None,
              progress: bool = True, init_from: str | Path | None = None,
              ) -> tuple[VariationalAutoencoder, dict[str, list[float]]]:
    """Train (or resume) a VAE in ``run_dir`` on ``images`` (N, S, S) float32 in [0, 1], or on
    square crops of a :class:`CropPool`'s slices at their own size (an epoch is then
    ``len(pool) // batch_size`` steps). ``init_from``: an exported graph whose weights the run
    starts from (:func:`warm_start_from_onnx`; a resumed run takes its checkpoint's instead).

    Writes ``checkpoints/``, ``samples/epoch-NNNN.png`` (rows: clean, damaged, reconstructed)
    and, with ``holdout`` slices, ``metrics.json`` (their SSIM / PSNR after 60% of the pixels were
    removed, at each sample stop). Returns the model (eval mode, on the CPU) and the losses of
    the whole run, earlier sessions included, as {"step": [...], "loss": [...], "mse": [...], "kld": [...]}.

    Raises:
        ConfigError: ``run_dir`` was started with other settings (only ``epochs`` may grow).
    """
    if not isinstance(images, CropPool):
        images = _checked(images, config.model.image_size, "training images")
    holdout = _checked(holdout, config.model.image_size, "held-out images") if holdout is not None else None
    run_dir = Path(run_dir)
    steps_per_epoch = max(1, len(images) // config.batch_size)
    total = config.epochs * steps_per_epoch
    torch.manual_seed(config.seed)
    vae = build_vae(config.model, backbone_weights, pretrained)
    if init_from is not None:
        warm_start_from_onnx(vae, init_from)
    task = VAETask(vae, config.beta, resolve_device(config.device), config.l1_weight, config.freeze_batchnorm)
    optimizer = _optimizer(task.model, config)
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=total, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every * steps_per_epoch, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    assert trainer.store is not None
    check_same_config(trainer.store, config, may_change={"epochs"})
    done = trainer.resume()
    preview = _preview_set(holdout if holdout is not None else
                           images.center_squares(config.model.image_size, 8) if isinstance(images, CropPool) else images)
    every = config.sample_every * steps_per_epoch
    stops = sorted({min(stop, total) for stop in range(every, total + every, every)})
    for stop in [stop for stop in stops if stop > done]:
        trainer.config = replace(trainer.config, steps=stop)
        batches = step_batches(images, config, trainer.step)
        if config.cosine_decay:
            batches = CosineDecay(batches, optimizer, [config.backbone_lr, config.lr], trainer.step, total)
        if config.finetune != FineTuneSchedule():
            batches = StagedUnfreezing(batches, backbone_blocks(task.model), config.finetune, trainer.step)
        trainer.fit(batches, resume=False)
        epoch = math.ceil(stop / steps_per_epoch)
        _save_preview(task.model, preview, run_dir / "samples" / f"epoch-{epoch:04d}.png")
        if holdout is not None:
            _record_metrics(run_dir, epoch, stop, evaluate(task.model, holdout, keep=EVAL_KEEP, seed=config.seed))
    # The whole run's log (kept in the checkpoints), so a resumed or finished run plots every step.
    return task.model.cpu().eval(), trainer.log.as_columns()


def warm_start_from_onnx(vae: VariationalAutoencoder, graph: str | Path) -> None:
    """Load an exported VAE graph's weights (float or int8-stored) into ``vae``, of the same config.

    The export folds each batch norm into the convolution before it; such a batch norm is set
    to pass its input through (mean 0, variance 1, scale sqrt(1 + eps), the folded bias as its
    shift), so in eval mode the model computes what the graph does. Train it with
    ``freeze_batchnorm``: batch statistics would undo the folding.

    Raises:
        InputError: the graph's layers do not match the model's (another config).
    """
    import onnx
    from onnx import numpy_helper

    from slimvision.graph.precision import dequantize_qdq_proto

    graph = Path(graph)
    if graph.is_dir():
        graph = graph / "autoencoder.onnx"
    if not graph.is_file():
        raise InputError(graph, "no exported VAE graph here (autoencoder.onnx)")
    model, _ = dequantize_qdq_proto(onnx.load(str(graph)))
    values = {item.name: numpy_helper.to_array(item) for item in model.graph.initializer}
    for node in model.graph.node:  # the exporter shares equal tensors and names the copies by Identity
        if node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
        elif node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = [node for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose", "Gemm", "BatchNormalization")]
    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear, torch.nn.BatchNorm2d)
    order: list[torch.nn.Module] = []  # the layers in the order they run, as the export traced them
    hooks = [module.register_forward_hook(lambda module, inputs, output: order.append(module))
             for module in vae.modules() if isinstance(module, layers)]
    was_training = vae.training
    vae.eval()
    size = vae.config.image_size
    with torch.no_grad():
        vae(torch.zeros(1, vae.config.in_channels, size, size), torch.ones(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    vae.train(was_training)
    names = {module: name for name, module in vae.named_modules()}
    state: dict[str, np.ndarray] = {}
    position = 0
    for index, module in enumerate(order):
        if isinstance(module, torch.nn.BatchNorm2d):
            continue
        if position >= len(nodes):
            raise InputError(graph, "has fewer layers than this model")
        node = nodes[position]
        position += 1
        weight = values.get(node.input[1])
        if weight is None or weight.shape != tuple(module.weight.shape):
            raise InputError(graph, f"layer {node.name} does not fit {names[module]} of this model")
        state[f"{names[module]}.weight"] = weight
        bias = values[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        after = order[index + 1] if index + 1 < len(order) else None
        if isinstance(after, torch.nn.BatchNorm2d):
            norm = names[after]
            if position < len(nodes) and nodes[position].op_type == "BatchNormalization":  # kept apart
                for key, name in zip(("weight", "bias", "running_mean", "running_var"), nodes[position].input[1:5]):
                    state[f"{norm}.{key}"] = values[name]
                position += 1
            else:  # folded into the layer before: pass through, shifted by the folded bias
                channels = after.num_features
                state[f"{norm}.weight"] = np.full(channels, np.sqrt(1 + after.eps), np.float32)
                state[f"{norm}.bias"] = bias if bias is not None else np.zeros(channels, np.float32)
                state[f"{norm}.running_mean"] = np.zeros(channels, np.float32)
                state[f"{norm}.running_var"] = np.ones(channels, np.float32)
                bias = None
        if bias is not None:
            state[f"{names[module]}.bias"] = bias
    if position != len(nodes):
        raise InputError(graph, "has more layers than this model")
    vae.load_state_dict({key: torch.from_numpy(np.array(value, np.float32)) for key, value in state.items()},
                        strict=False)


def _checked(images: np.ndarray, size: int, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (size, size) or not np.issubdtype(images.dtype, np.floating):
        raise InputError(what, f"expected (N, {size}, {size}) floats in [0, 1], got {images.shape} {images.dtype}")
    if not len(images):
        raise InputError(what, "no images")
    return images.astype(np.float32, copy=False)


@torch.no_grad()
def reconstruct(vae: VariationalAutoencoder, images: np.ndarray, kept: np.ndarray | None = None,
                batch_size: int = 32) -> np.ndarray:
    """(N, S, S) -> (N, S, S) reconstructions from the latent mean, in eval mode (mode restored
    after); ``kept`` (N, S, S) bool marks the intact pixels for models with a mask channel."""
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device

    def planes(array: np.ndarray, start: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array[start:start + batch_size], np.float32))[:, None].to(device)

    parts = [vae(planes(images, start), planes(kept, start) if kept is not None else None)[0]
             for start in range(0, len(images), batch_size)]
    vae.train(was_training)
    return torch.cat(parts)[:, 0].cpu().numpy()


def evaluate(vae: VariationalAutoencoder, images: np.ndarray, *, keep: float = EVAL_KEEP, seed: int = 0) -> dict[str, float]:
    """Mean SSIM / PSNR of ``images`` restored after keeping only ``keep`` of their pixels, raw
    and with the surviving pixels pasted back ("inpainted"), of their damaged versions, and of
    the undamaged images passed through the model ("reconstructed")."""
    damaged = damage_scores(images, lambda damaged, kept: reconstruct(vae, damaged, kept), keep=keep, seed=seed)
    return {**damaged, **restoration_scores(images, {"reconstructed": reconstruct(vae, images)})}


def _record_metrics(run_dir: Path, epoch: int, step: int, scores: dict[str, float]) -> None:
    path = run_dir / METRICS_FILE
    rows = read_json_rows(path)
    rows = [row for row in rows if row["step"] != step] + [{"epoch": epoch, "step": step, **scores}]
    write_text_atomic(path, json.dumps(rows, indent=1), overwrite=True)


def metrics_history(run_dir: str | Path) -> list[dict[str, float]]:
    """The held-out scores a run recorded at its sample stops (see :func:`evaluate`)."""
    return read_json_rows(Path(run_dir) / METRICS_FILE)


def _preview_set(images: np.ndarray, count: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same ``count`` slices, evenly spaced, their fixed damage (40% of pixels kept) and its mask."""
    picked = images[np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int)]
    rng = np.random.default_rng(1234)
    damaged, kept = zip(*(drop_pixels(image, EVAL_KEEP, rng) for image in picked))
    return picked, np.stack(damaged), np.stack(kept)


def _save_preview(vae: VariationalAutoencoder, preview: tuple[np.ndarray, np.ndarray, np.ndarray], path: Path) -> None:
    from slimvision.io.pixels import comparison_grid
    from slimvision.io.images import save_image

    clean, damaged, kept = preview
    save_image(comparison_grid([clean, damaged, reconstruct(vae, damaged, kept), reconstruct(vae, clean)]), path,
               overwrite=True)
