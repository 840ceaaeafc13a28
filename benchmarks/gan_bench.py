#!/usr/bin/env python
"""DCGAN speed: our trainer against a plain PyTorch loop, and sampling with ONNX Runtime.

Training: the same networks, batch, optimisers and threads, one step = a discriminator step and
a generator step; our Trainer + DCGANTask and a straightforward loop written here alternate,
``--repeats`` times each, and the medians of images per second are compared (the ratio is ours
over the reference). Sampling: the exported 64 px generator in ONNX Runtime, images per second
at a batch of 64, median of ``--repeats`` runs. The issue's targets: training >= 1.0x the
reference, sampling 64 px >= 500 images/s.

    python benchmarks/gan_bench.py                      # 64 px, batch 32, 10 timed steps, 3 repeats
    python benchmarks/gan_bench.py --resolution 128 --steps 5

Writes benchmarks/results/gan.json and prints one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

RESULTS = Path(__file__).resolve().parent / "results" / "gan.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def networks(resolution: int):
    from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    config = DCGANConfig(resolution=resolution)
    return DCGANGenerator(config), DCGANDiscriminator(config)


def optimizers(generator, discriminator):
    return (torch.optim.Adam(discriminator.parameters(), 2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999)))


def ours(real: torch.Tensor, steps: int) -> float:
    """Images per second through slimvision's Trainer and DCGANTask."""
    from slimvision.training.gan import DCGANTask
    from slimvision.training.trainer import Trainer, TrainerConfig

    generator, discriminator = networks(real.shape[-1])
    d_opt, g_opt = optimizers(generator, discriminator)
    task = DCGANTask(generator, discriminator, real_label=0.9)
    warm = Trainer(task, {"discriminator": d_opt, "generator": g_opt},
                   TrainerConfig(steps=2, log_every=2, checkpoint_every=1000, progress=False))
    warm.fit([real])
    timed = Trainer(task, {"discriminator": d_opt, "generator": g_opt},
                    TrainerConfig(steps=steps, log_every=steps, checkpoint_every=1000, progress=False))
    started = time.perf_counter()
    timed.fit([real])
    return steps * len(real) / (time.perf_counter() - started)


def reference(real: torch.Tensor, steps: int) -> float:
    """Images per second through a plain loop: the textbook DCGAN step, nothing else."""
    generator, discriminator = networks(real.shape[-1])
    d_opt, g_opt = optimizers(generator, discriminator)
    latent = generator.config.latent_dim

    def step() -> None:
        noise = torch.rand(len(real), latent) * 2 - 1
        d_opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = generator(noise)
        real_logits, fake_logits = discriminator(real), discriminator(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, 0.9))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        d_loss.backward()
        d_opt.step()
        noise = torch.rand(len(real), latent) * 2 - 1
        g_opt.zero_grad(set_to_none=True)
        g_logits = discriminator(generator(noise))
        F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits)).backward()
        g_opt.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * len(real) / (time.perf_counter() - started)


def sampling(resolution: int, batch: int, repeats: int) -> float:
    """Median images per second of the exported generator in ONNX Runtime."""
    from slimvision.inference.gan import GANSampler
    from slimvision.training.gan import export_generator

    generator, _ = networks(resolution)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generator.onnx"
        export_generator(generator, path)
        sampler = GANSampler(path)
        noise = sampler.noise(batch, seed=0)
        sampler.generate(noise, batch_size=batch)                       # warm-up
        rates = []
        for _ in range(repeats):
            started = time.perf_counter()
            sampler.generate(noise, batch_size=batch)
            rates.append(batch / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    args = parse_args()
    real = torch.rand(args.batch_size, 3, args.resolution, args.resolution) * 2 - 1
    runs: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(args.repeats):                                       # alternated
        runs["ours"].append(ours(real, args.steps))
        runs["reference"].append(reference(real, args.steps))
    medians = {name: statistics.median(rates) for name, rates in runs.items()}
    sample_rate = sampling(64, args.sample_batch, args.repeats)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "settings": vars(args) | {"output": str(args.output)},
        "training_images_per_s": medians, "training_runs": runs,
        "ratio_ours_over_reference": medians["ours"] / medians["reference"],
        "sampling_64px_images_per_s": sample_rate,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"DCGAN {args.resolution} px, batch {args.batch_size}, {args.steps} steps x {args.repeats} (medians)")
    print(f"  training, ours       {medians['ours']:8.1f} images/s")
    print(f"  training, reference  {medians['reference']:8.1f} images/s   ratio {result['ratio_ours_over_reference']:.2f}x")
    print(f"  sampling 64 px, ONNX Runtime, batch {args.sample_batch}: {sample_rate:.0f} images/s (target >= 500)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
