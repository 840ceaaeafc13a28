#!/usr/bin/env python
"""DCGAN speed and quality: our trainer against a plain PyTorch loop, sampling with ONNX Runtime,
and FID-Lite0 of the shipped digits generator against an untrained one.

Training: the same networks, batch, optimisers and threads, one step = a discriminator step and
a generator step; our Trainer + DCGANTask and a straightforward loop written here alternate,
``--repeats`` times each, at every ``--resolutions``, and the medians of images per second are
compared (the ratio is ours over the reference). Sampling: 64 px generators in ONNX Runtime at a
batch of ``--sample-batch``, for the reference widths (base 64) and half widths (base 32), as
exported (float, transposed convs) and as int8 (static QDQ, batch norms folded) in the shipped
form (every sub-pixel conv split by phase, channels-last shuffles); at base 64 also int8 with
whole sub-pixel convs and PixelShuffle (``split_phases=False``). All variants run in turn,
``--sample-rounds`` batches each, and the medians (and ranges) are compared. Quality: FID-Lite0 / KID-Lite0 (``slimvision.metrics.fid``) of the shipped
32 px digits generator and of the same network untrained, each ``--fid-samples`` images against
as many of OpenCV's digits (needs ``apt-get install opencv-doc``; skipped without it).
The issue's targets: training >= 1.0x the reference, sampling 64 px >= 500 images/s, the demo's
FID-Lite0 at least 5x lower than the untrained generator's.

    python benchmarks/gan_bench.py --repeats 5                      # everything (about 17 minutes on 2 cores)
    python benchmarks/gan_bench.py --resolutions "" --fid-samples 0  # sampling only (about 30 s)

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
    parser.add_argument("--resolutions", default="64,128", help="training rows (default 64,128)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per repeat (after 2 warm-up steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-batch", type=int, default=64)
    parser.add_argument("--sample-rounds", type=int, default=21, help="batches per sampling variant, alternated")
    parser.add_argument("--fid-samples", type=int, default=2000, help="images per FID-Lite0 side (0: skip)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def networks(resolution: int, base_channels: int = 64):
    from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator

    torch.manual_seed(0)
    config = DCGANConfig(resolution=resolution, base_channels=base_channels)
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


def sampling(batch: int, rounds: int) -> list[dict]:
    """Images per second of 64 px generators in ONNX Runtime: float as exported, int8 without and
    with the phase split, at two widths. All sessions are built first, then run in turn, one
    batch each per round, so a slow spell of the VM hits every variant alike (pool threads do
    not spin between runs, or an idle session would steal the next one's cores)."""
    from slimvision.inference.gan import GANSampler
    from slimvision.graph.session import SessionSettings
    from slimvision.export.gan import export_generator, export_generator_int8

    variants: list[dict] = []
    paths: list[Path] = []                              # each variant's graph, in the same order

    def add(name: str, base: int, path: Path, max_abs_diff: float) -> None:
        variants.append({"variant": name, "base_channels": base, "megabytes": path.stat().st_size / 1e6,
                         "max_abs_diff_vs_float": max_abs_diff})
        paths.append(path)

    with tempfile.TemporaryDirectory() as folder:
        for base in (64, 32):
            generator, _ = networks(64, base)
            generator.train()
            with torch.no_grad():                       # batch-norm statistics of real activations
                generator(torch.rand(64, generator.config.latent_dim) * 2 - 1)
            generator.eval()
            plain = Path(folder) / f"g{base}.onnx"
            export_generator(generator, plain)
            add(f"base {base}, float (as exported)", base, plain, 0.0)
            forms = [(True, "int8, phase split (shipped)")]
            if base == 64:                              # the form before the phase split, for comparison
                forms.insert(0, (False, "int8, sub-pixel convs"))
            for split, label in forms:
                path = Path(folder) / f"g{base}.{'split' if split else 'plain'}.int8.onnx"
                quality = export_generator_int8(generator, path, split_phases=split).quantization.agreement
                add(f"base {base}, {label}", base, path, quality.max_abs_diff)
        settings = SessionSettings(allow_spinning=False)
        samplers = [GANSampler(path, settings) for path in paths]
        noise = samplers[0].noise(batch, seed=0)
        for sampler in samplers:
            sampler.generate(noise, batch_size=batch)                   # warm-up
        rates: list[list[float]] = [[] for _ in variants]
        for _ in range(rounds):
            for sampler, variant_rates in zip(samplers, rates):
                started = time.perf_counter()
                sampler.generate(noise, batch_size=batch)
                variant_rates.append(batch / (time.perf_counter() - started))
    for variant, variant_rates in zip(variants, rates):
        variant |= {"images_per_s": statistics.median(variant_rates), "range": [min(variant_rates), max(variant_rates)]}
    for variant in variants:
        float_row = next(row for row in variants if row["base_channels"] == variant["base_channels"])
        variant["x_float"] = variant["images_per_s"] / float_row["images_per_s"]
    return variants


def demo_fid(count: int) -> dict | None:
    """FID-Lite0 / KID-Lite0 of the shipped digits generator and of its untrained twin, vs real digits."""
    from slimvision.metrics.fid import FeatureStats, Lite0Embedder, frechet_distance, kernel_distance
    from slimvision.data.digits import DIGITS_PNG, load_opencv_digits
    from slimvision.inference.gan import DEMO_GENERATOR, DEMO_WEIGHTS, GANSampler
    from slimvision.models.gan import DCGANGenerator
    from slimvision.models.weights import load_model
    from slimvision.training.gan import generated_pixels

    if not DIGITS_PNG.is_file():
        print(f"FID-Lite0 skipped: {DIGITS_PNG} is missing (apt-get install opencv-doc)")
        return None
    digits, _ = load_opencv_digits(size=32)
    count = min(count, len(digits))
    real_images = digits[np.sort(np.random.default_rng(0).choice(len(digits), count, replace=False))]
    trained = GANSampler(DEMO_GENERATOR).sample(count, seed=1)[..., :1]
    trained_float = load_model(DEMO_WEIGHTS)
    torch.manual_seed(0)
    untrained = DCGANGenerator(trained_float.config).eval()
    embed = Lite0Embedder()
    real = embed(real_images, progress=True)
    stats = FeatureStats.of(real)
    result = {"samples": count}
    for name, images in (("shipped (int8 ONNX)", trained),
                         ("shipped (float torch)", generated_pixels(trained_float, count, seed=1)),
                         ("untrained", generated_pixels(untrained, count, seed=1))):
        features = embed(images, progress=True)
        result[name] = {"fid_lite0": frechet_distance(stats, FeatureStats.of(features)),
                        "kid_lite0": kernel_distance(real, features)}
    result["untrained_over_shipped"] = result["untrained"]["fid_lite0"] / result["shipped (int8 ONNX)"]["fid_lite0"]
    return result


def main() -> None:
    args = parse_args()
    training = {}
    for resolution in (int(part) for part in args.resolutions.split(",") if part):
        real = torch.rand(args.batch_size, 3, resolution, resolution) * 2 - 1
        runs: dict[str, list[float]] = {"ours": [], "reference": []}
        for _ in range(args.repeats):                                   # alternated
            runs["ours"].append(ours(real, args.steps))
            runs["reference"].append(reference(real, args.steps))
        medians = {name: statistics.median(rates) for name, rates in runs.items()}
        training[f"{resolution}px"] = {"images_per_s": medians, "runs": runs,
                                       "ratio_ours_over_reference": medians["ours"] / medians["reference"]}
    sampling_rows = sampling(args.sample_batch, args.sample_rounds)
    fid = demo_fid(args.fid_samples) if args.fid_samples else None
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "settings": vars(args) | {"output": str(args.output)},
        "training": training, "sampling_64px": sampling_rows, "demo_fid": fid,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"DCGAN training, batch {args.batch_size}, {args.steps} steps x {args.repeats} (medians, images/s)")
    for resolution, row in training.items():
        print(f"  {resolution:>6}  ours {row['images_per_s']['ours']:7.1f}   reference "
              f"{row['images_per_s']['reference']:7.1f}   ratio {row['ratio_ours_over_reference']:.2f}x (target >= 1.0)")
    print(f"sampling 64 px, ONNX Runtime, batch {args.sample_batch}, median of {args.sample_rounds} alternated "
          "batches (target >= 500 images/s)")
    for row in sampling_rows:
        low, high = row["range"]
        print(f"  {row['variant']:<36} {row['megabytes']:6.2f} MB  {row['images_per_s']:6.0f} images/s "
              f"({low:4.0f}-{high:4.0f}) {row['x_float']:5.2f}x float  max abs diff vs float "
              f"{row['max_abs_diff_vs_float']:.3f}")
    if fid:
        print(f"FID-Lite0 of the 32 px digits generator, {fid['samples']} images per side (lower is better)")
        for name in ("shipped (int8 ONNX)", "shipped (float torch)", "untrained"):
            print(f"  {name:<24} FID-Lite0 {fid[name]['fid_lite0']:8.2f}   KID-Lite0 {fid[name]['kid_lite0']:.4f}")
        print(f"  untrained / shipped: {fid['untrained_over_shipped']:.1f}x (target >= 5)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
