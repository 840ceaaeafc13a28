#!/usr/bin/env python
"""Medical-image VAE: inpainting held-out MNI152 slices with 60% of their pixels removed, the
shipped VAEs against classical inpainting, and ONNX Runtime encode / decode latency.

Quality: the MNI152 test slices (every fifth block of ten slice indices, all three axes; see
``slimvision.data.medical``), squared to the models' 128 px, lose 60% of their pixels (the same
pixels for every method, seeded). Each method fills only the removed pixels:

* masked median: the median of the surviving pixels in each 5 x 5 neighbourhood;
* OpenCV Telea inpainting (radius 3);
* the shipped denoising VAE (U-Net skips) and the shipped plain VAE (the paper's design), their
  reconstruction pasted into the removed pixels ("inpainted"); their raw output is reported too.

Mean SSIM and PSNR per method and the VAE's ratios to each baseline; the paper's claim (40% of
the information left, 75-80% restored) is read as SSIM. Latency: the median of ``--repeats``
single-image runs of each graph (encode, decode, the U-Net's one pass) with ONNX Runtime.
The issue's targets: inpainted SSIM >= 0.80 and better than both baselines on SSIM and PSNR;
decoding one 128 px image <= 20 ms.

    python benchmarks/vae_bench.py            # about a minute on 2 cores

Writes benchmarks/results/vae.json and prints one table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from slimvision.bench.vae import baseline_scores, score_vae
from slimvision.data.medical import mni152_slices
from slimvision.inference.vae import DEMO_DENOISER, DEMO_GENERATIVE, MedicalVAE

RESULTS = Path(__file__).resolve().parent / "results" / "vae.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.4, help="fraction of pixels kept (default 0.4)")
    parser.add_argument("--repeats", type=int, default=50, help="latency runs per graph (default 50)")
    parser.add_argument("--denoiser", type=Path, default=DEMO_DENOISER)
    parser.add_argument("--generative", type=Path, default=DEMO_GENERATIVE)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: session creation and first-run allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def latency(vae: MedicalVAE, image: np.ndarray, repeats: int) -> dict[str, float]:
    if not vae.generative:
        return {"autoencode_ms": median_ms(lambda: vae.autoencode(image[None]), repeats)}
    mean, _ = vae.encode(image[None])
    return {"encode_ms": median_ms(lambda: vae.encode(image[None]), repeats),
            "decode_ms": median_ms(lambda: vae.decode(mean), repeats)}


def main() -> None:
    args = parse_args()
    models = {"vae-unet": MedicalVAE(args.denoiser), "vae-plain": MedicalVAE(args.generative)}
    size = {vae.image_size for vae in models.values()}.pop()
    test = mni152_slices("test", size)
    result = {"machine": platform.processor() or platform.machine(), "slices": len(test), "keep": args.keep,
              "size": size, "baselines": baseline_scores(test.images, keep=args.keep)}
    for name, vae in models.items():
        result[name] = {**score_vae(vae, test.images, keep=args.keep), **latency(vae, test.images[0], args.repeats),
                        "folder": str(vae.folder.name)}
    base = result["baselines"]
    rows = [("damaged input", base["damaged_ssim"], base["damaged_psnr"]),
            ("masked median 5x5", base["median_ssim"], base["median_psnr"]),
            ("OpenCV Telea", base["telea_ssim"], base["telea_psnr"])]
    for name in models:
        rows += [(f"{name} output", result[name]["restored_ssim"], result[name]["restored_psnr"]),
                 (f"{name} inpainted", result[name]["inpainted_ssim"], result[name]["inpainted_psnr"])]
    print(f"{len(test)} held-out MNI152 slices at {size} px, {1 - args.keep:.0%} of pixels removed")
    print(f"{'method':<24}{'SSIM':>8}{'PSNR dB':>10}")
    for label, ssim_value, psnr_value in rows:
        print(f"{label:<24}{ssim_value:>8.4f}{psnr_value:>10.2f}")
    ratios = {}
    for name in models:
        for baseline in ("median", "telea"):
            ratios[f"{name}/{baseline}"] = {
                "ssim": result[name]["inpainted_ssim"] / base[f"{baseline}_ssim"],
                "psnr": result[name]["inpainted_psnr"] / base[f"{baseline}_psnr"]}
            print(f"{name} inpainted / {baseline}: SSIM x{ratios[f'{name}/{baseline}']['ssim']:.3f}, "
                  f"PSNR x{ratios[f'{name}/{baseline}']['psnr']:.3f}")
    result["ratios"] = ratios
    for name in models:
        timing = ", ".join(f"{key[:-3]} {value:.1f} ms" for key, value in result[name].items() if key.endswith("_ms"))
        print(f"{name} latency (ONNX Runtime, one image, median of {args.repeats}): {timing}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
