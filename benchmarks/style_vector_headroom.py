"""Could a better style vector make the fast transformer paint closer to its teacher? (issue 24)

    python benchmarks/style_vector_headroom.py                  # 1 style of each training family, 5-10 minutes on 2 cores
    python benchmarks/style_vector_headroom.py --per-family 2 --steps 60

The fast bundle's error is the predictor's (a vector off the teacher's) and the transformer's (a
painting off the teacher's from the same vector). One way to win back the transformer's part
would be to tune the predictor end to end, so that it outputs whatever vector makes the *student*
transformer paint like the teacher. This measures the most that could give: for each style, the
vector itself is optimised (Adam on L1 + 1 - SSIM against the float teacher's painting from the
teacher's vector) on ``--fit`` photos, starting from the teacher's vector, and both vectors are
scored on ``--eval`` other photos. Styles are fresh renders of the *training* families
(``bench.style_fidelity.training_style_set``), photos the packages' photos; nothing held out is
looked at. The transformer is the fast bundle's (``weights/style/transform-phase53b``) in float.

Writes benchmarks/results/style_vector_headroom.json (atomically) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "style_vector_headroom.json"
TRANSFORMER = "weights/style/transform-phase53b"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-family", type=int, default=1, help="styles per training family (default 1)")
    parser.add_argument("--fit", type=int, default=3, help="photos the vector is optimised on (default 3)")
    parser.add_argument("--eval", type=int, default=3, help="other photos both vectors are scored on (default 3)")
    parser.add_argument("--side", type=int, default=256, help="painting side, px (default 256)")
    parser.add_argument("--steps", type=int, default=40, help="Adam steps per style (default 40)")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam step size (default 0.02)")
    parser.add_argument("--seed", type=int, default=5, help="which training-family renders (default 5)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    return parser.parse_args()


def main() -> None:
    import torch

    from slimvision.assets import BundledPath
    from slimvision.bench.style_fidelity import machine_photos, training_style_set
    from slimvision.compress.distill import structural_similarity
    from slimvision.io.atomic import write_text_atomic
    from slimvision.metrics import ssim
    from slimvision.models.style.port import port_predictor, port_transformer
    from slimvision.models.weights import load_model

    args = parse_args()
    started = time.time()
    predictor, teacher = port_predictor().eval(), port_transformer().eval()
    student = load_model(BundledPath(TRANSFORMER).path()).eval()
    for model in (predictor, teacher, student):
        model.requires_grad_(False)
    styles = training_style_set(args.per_family, args.side, args.seed)
    photos = machine_photos(args.fit + args.eval, args.side, args.seed)

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)[None]

    def scores(paintings: torch.Tensor, targets: torch.Tensor) -> list[float]:
        return [ssim(t.permute(1, 2, 0).numpy(), p.clamp(0, 1).permute(1, 2, 0).numpy())
                for p, t in zip(paintings, targets)]

    fit = torch.cat([tensor(p.image) for p in photos[:args.fit]])
    held = torch.cat([tensor(p.image) for p in photos[args.fit:]])
    rows: list[dict[str, Any]] = []
    for style in styles:
        with torch.no_grad():
            vector = predictor(tensor(style.image))
            fit_target = teacher(fit, vector.expand(len(fit), -1))
            held_target = teacher(held, vector.expand(len(held), -1))
            before = scores(student(held, vector.expand(len(held), -1)), held_target)
        tuned = vector.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([tuned], lr=args.lr)
        for _ in range(args.steps):
            painted = student(fit, tuned.expand(len(fit), -1))
            loss = (torch.nn.functional.l1_loss(painted, fit_target)
                    + 1.0 - structural_similarity(painted.clamp(0.0, 1.0), fit_target))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            after = scores(student(held, tuned.expand(len(held), -1)), held_target)
        cosine = float(torch.nn.functional.cosine_similarity(tuned, vector).item())
        rows.append({"style": style.label, "teacher_vector": {"mean": float(np.mean(before)), "worst": float(np.min(before))},
                     "optimised_vector": {"mean": float(np.mean(after)), "worst": float(np.min(after))},
                     "cosine_to_teacher_vector": cosine})
        print(f"[style_vector_headroom] {style.label:24s} teacher's vector {np.mean(before):.3f} / {np.min(before):.3f}"
              f"  optimised {np.mean(after):.3f} / {np.min(after):.3f}  cosine {cosine:.3f}", file=sys.stderr, flush=True)
    summary = {key: {"mean": float(np.mean([r[key]["mean"] for r in rows])),
                     "worst": float(np.min([r[key]["worst"] for r in rows]))}
               for key in ("teacher_vector", "optimised_vector")}
    gains = [r["optimised_vector"]["mean"] - r["teacher_vector"]["mean"] for r in rows]
    summary["gain"] = {"mean": float(np.mean(gains)), "max": float(np.max(gains)), "min": float(np.min(gains))}
    print(f"\nfast transformer vs float teacher, SSIM on {args.eval} photos not optimised on "
          f"({len(rows)} training-family styles, {args.side} px):")
    print("| vector fed to the fast transformer | mean | worst pair |")
    print("|---|---|---|")
    print(f"| the teacher's | {summary['teacher_vector']['mean']:.3f} | {summary['teacher_vector']['worst']:.3f} |")
    print(f"| optimised per style ({args.steps} steps on {args.fit} photos) | {summary['optimised_vector']['mean']:.3f} "
          f"| {summary['optimised_vector']['worst']:.3f} |")
    print(f"gain per style: mean {summary['gain']['mean']:+.4f}, largest {summary['gain']['max']:+.4f}")
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": "python " + " ".join(sys.argv),
              "seconds": round(time.time() - started, 1), "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                                        for k, v in vars(args).items()},
              "photos": [p.label for p in photos], "summary": summary, "styles": rows}
    write_text_atomic(args.out, json.dumps(report, indent=1) + "\n", overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
