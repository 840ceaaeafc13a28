"""Why the face students decide real pairs worse than synthetic ones: where the gap comes from (issue 25).

The students train on synthetic faces only (docs/faces.md). On held-out synthetic faces their pair
distances match the teacher's; on real faces they come out compressed. This script measures, for
trained students, what differs between the two kinds of face:

* **the teacher's own geometry**: its median pair distance on held-out synthetic faces (seed 1,
  the students train on seed 0) and on the real faces. Real people lie farther apart than the
  GAN's faces do.
* **compression by teacher distance**: over pairs binned by the teacher's distance, the median
  ratio student / teacher distance, synthetic and real side by side. A student that only shrinks
  far pairs (regression to the mean) shrinks synthetic and real pairs of one teacher distance
  alike; a gap between the two columns is the domain.
* **sharpness**: the median absolute Laplacian of the grey chips (fine detail), and the student's
  agreement on the synthetic chips sharpened (unsharp mask) to the real chips' level and beyond.
  If sharpness were the gap, sharpened synthetic chips would be decided as badly as real ones.

The real faces are the public agreement check (face_recognition's and insightface's photos,
``--photos``; docs/faces.md says how to get them): this diagnoses, it chooses nothing.

    python benchmarks/face_domain_gap.py RUN [RUN ...] --photos PHOTOS [--output FILE]

Writes benchmarks/results/faces_domain_gap.json by default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_student_select import THRESHOLD, embed, held_out_chips  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: Teacher pair distances the compression is reported in.
BINS = ((0.0, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 2.0))
#: Unsharp masks (radius px, percent): the first brings the synthetic chips to about the real ones' detail.
SHARPENINGS = ((1, 100), (2, 150), (2, 300))


def pair_distances(descriptors: np.ndarray) -> np.ndarray:
    first, second = np.triu_indices(len(descriptors), 1)
    return np.linalg.norm(descriptors[first] - descriptors[second], axis=1)


def detail(chips: np.ndarray) -> float:
    """Median over chips of the mean |Laplacian| of the grey chip: how much fine detail they hold."""
    grey = chips.astype(np.float32).mean(-1)
    laplacian = (4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                 - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    return round(float(np.median(np.abs(laplacian).mean(axis=(1, 2)))), 3)


def sharpened(chips: np.ndarray, radius: int, percent: int) -> np.ndarray:
    from PIL import Image, ImageFilter

    mask = ImageFilter.UnsharpMask(radius, percent, 0)
    return np.stack([np.asarray(Image.fromarray(chip).filter(mask)) for chip in chips])


def compression(teacher: np.ndarray, student: np.ndarray) -> list[dict[str, Any]]:
    theirs, ours = pair_distances(teacher), pair_distances(student)
    rows = []
    for low, high in BINS:
        inside = (theirs > low) & (theirs <= high)
        rows.append({"teacher_distance": [low, high], "pairs": int(inside.sum()),
                     "ratio_median": round(float(np.median(ours[inside] / theirs[inside])), 3) if inside.any() else None})
    return rows


def agreement(teacher: np.ndarray, student: np.ndarray) -> float:
    return round(float(((pair_distances(teacher) <= THRESHOLD) == (pair_distances(student) <= THRESHOLD)).mean()), 4)


def real_chips(photos: list[Path]) -> np.ndarray:
    """dlib chips of every face (>= 40 px) in the real photos, as the agreement check finds them."""
    from face_losses import real_faces

    from slimvision.data.face_align import MTCNN_DLIB_CHIP, align_face

    faces, _, _ = real_faces(photos)
    return np.stack([align_face(face.crop, face.landmarks, MTCNN_DLIB_CHIP) for face in faces])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of slimvision train face-student")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, metavar="PHOTOS",
                        help="the real photos (files or folders) beside the ones installed packages ship")
    parser.add_argument("--faces", type=int, default=200, help="held-out synthetic faces (default 200, seed 1)")
    parser.add_argument("--output", type=Path, default=RESULTS / "faces_domain_gap.json")
    args = parser.parse_args(argv)

    import torch

    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.faces.dlib_port import load_dlib_resnet
    from slimvision.models.weights import load_model

    torch.set_flush_denormal(True)
    teacher_net = load_dlib_resnet(DLIB_FACE_RESNET.path()).eval()
    sets = {"synthetic": held_out_chips(args.faces, 2, 1), "real": real_chips(args.photos)}
    sets.update({f"synthetic, unsharp r{radius} {percent}%": sharpened(sets["synthetic"], radius, percent)
                 for radius, percent in SHARPENINGS})
    teacher = {name: embed(teacher_net, chips) for name, chips in sets.items()}
    report: dict[str, Any] = {
        "chips": {name: len(chips) for name, chips in sets.items()},
        "detail": {name: detail(chips) for name, chips in sets.items()},
        "teacher_pair_distance_median": {name: round(float(np.median(pair_distances(teacher[name]))), 4)
                                         for name in ("synthetic", "real")},
        "runs": {}}
    for run in args.runs:
        student_net = load_model(run / "student")
        student = {name: embed(student_net, chips) for name, chips in sets.items()}
        report["runs"][str(run)] = {
            "agreement": {name: agreement(teacher[name], student[name]) for name in sets},
            "compression": {name: compression(teacher[name], student[name]) for name in sets}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print_report(report)
    print(f"written: {args.output}")
    return 0


def print_report(report: dict[str, Any]) -> None:
    medians = report["teacher_pair_distance_median"]
    print(f"teacher's pair distance median: synthetic {medians['synthetic']:.3f}, real {medians['real']:.3f}")
    print(f"{'chips':<32}{'detail':>8}" + "".join(f"{Path(run).name[-18:]:>20}" for run in report["runs"]))
    for name, count in report["chips"].items():
        print(f"{name + f' ({count})':<32}{report['detail'][name]:>8.2f}"
              + "".join(f"{entry['agreement'][name]:>20.3f}" for entry in report["runs"].values()))
    names = list(report["chips"])
    for run, entry in report["runs"].items():
        print(f"\n{run}: student / teacher pair distance, median (pairs), by teacher distance")
        print(f"{'':>10}" + "".join(f"{name.replace('synthetic, ', ''):>20}" for name in names))
        for index, (low, high) in enumerate(BINS):
            cells = [_cell(entry["compression"][name][index]) for name in names]
            print(f"{low:>5.1f}-{high:<4.1f}" + "".join(f"{cell:>20}" for cell in cells))


def _cell(row: dict[str, Any]) -> str:
    return "-" if row["ratio_median"] is None else f"{row['ratio_median']:.3f} ({row['pairs']})"


if __name__ == "__main__":
    raise SystemExit(main())
