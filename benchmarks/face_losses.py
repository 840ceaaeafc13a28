"""The face student's four losses side by side (issue 25, item 3): same data, same steps, same seed.

For each ``--loss`` (regression, arcface, cosface, margin-distillation) it runs
``slimvision train face-student`` into ``RUN_ROOT/<loss>`` with the same settings; the synthetic
faces and the teacher's descriptors of them are made once, by the first run, and copied into the
others (the trainer reuses them only when their fingerprint matches, so the data is provably the
same). A run folder that already holds the finished run is scored as it is, not retrained.
A fifth row, ``untrained``, is the pruned half-width teacher after one step at a negligible
learning rate: what the students started from.

Each student is then scored against the teacher (dlib's ResNet) on real photos of people that no
run trained on (the ones installed packages ship, plus ``--photos``: face_recognition's and
insightface's test images, docs/faces.md says how to get them):

* **agreement**: the same/different decision at 0.6 on every pair of faces, student vs teacher;
* **pair distance drift**: mean |student distance - teacher distance| over those pairs;
* **descriptor drift**: median distance between a face's student and teacher descriptors;
* the training log's last entry (means over its last ``log_every`` steps): total loss, the
  regression term, the margin term, and the distance/cosine to the teacher's descriptors.

    python benchmarks/face_losses.py --photos PHOTOS [--run-root /tmp/losses] [--steps 200] [--old-defaults]

``--old-defaults`` trains every run with the trainer's settings from before the measured recipe
became its default (plain regression: no batch norms, raw target space, no relational term, no
hints, no distance scale), as the published ``faces_losses_200steps.json`` was; without it each
loss trains with today's defaults (the recipe). The ``untrained`` row is never distance-scaled.

Writes benchmarks/results/faces_losses.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
LOSSES = ("regression", "arcface", "cosface", "margin-distillation")
CACHE_FILES = ("canvases.npy", "canvases.json", "targets.npy", "targets.json")
THRESHOLD = 0.6


#: The trainer's defaults before the measured recipe became them (``face_student.LEGACY_DEFAULTS``).
OLD_DEFAULTS = ["--no-batch-norm", "--target-space", "raw", "--relational-weight", "0", "--hint-weight", "0",
                "--no-distance-scale"]


def train_args(args: argparse.Namespace) -> list[str]:
    """The settings every run shares."""
    return ["--faces", str(args.faces), "--samples-per-face", str(args.samples_per_face),
            "--batch-size", str(args.batch_size), "--seed", str(args.seed), "-q",
            *(OLD_DEFAULTS if args.old_defaults else [])]


def finished(run_dir: Path, steps: int) -> bool:
    """True when ``run_dir`` holds a run exported after ``steps`` steps."""
    report = run_dir / "report.json"
    return report.is_file() and json.loads(report.read_text()).get("steps_done") == steps


def train(name: str, extra: list[str], steps: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run (or reuse) one training into RUN_ROOT/name; the command line and its wall time."""
    run_dir = args.run_root / name
    first = args.run_root / LOSSES[0]
    if name != LOSSES[0]:
        # The same synthetic faces and teacher targets as the first run, not a fresh draw.
        run_dir.mkdir(parents=True, exist_ok=True)
        for file in CACHE_FILES:
            if not (run_dir / file).exists():
                shutil.copy2(first / file, run_dir / file)
    command = [str(args.slimvision), "train", "face-student", "--run-dir", str(run_dir),
               *extra, "--steps", str(steps), *train_args(args)]
    timing = run_dir / "face_losses_time.json"  # kept beside the run, so a rescored run keeps its time
    if finished(run_dir, steps):
        seconds = json.loads(timing.read_text())["train_seconds"] if timing.is_file() else None
        return {"command": command, "train_seconds": seconds, "reused": True}
    print(f"training {name}: {' '.join(command)}", file=sys.stderr)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = round(time.perf_counter() - start, 1)
    timing.write_text(json.dumps({"train_seconds": seconds}) + "\n")
    return {"command": command, "train_seconds": seconds, "reused": False}


def last_log(run_dir: Path) -> dict[str, float]:
    """The training log's last entry: each value averaged over the last log_every steps."""
    log = json.loads((run_dir / "report.json").read_text())["train_log"]
    return {key: round(values[-1], 4) for key, values in log.items() if values}


def pair_scores(teacher: np.ndarray, student: np.ndarray) -> dict[str, Any]:
    """Decision agreement at 0.6 on every pair of faces, and how far the distances and descriptors moved."""
    first, second = np.triu_indices(len(teacher), 1)
    theirs = np.linalg.norm(teacher[first] - teacher[second], axis=1)
    ours = np.linalg.norm(student[first] - student[second], axis=1)
    agree = (theirs <= THRESHOLD) == (ours <= THRESHOLD)
    return {"pairs": int(len(first)), "agreed": int(agree.sum()), "agreement": float(agree.mean()),
            "pair_distance_drift_mean": float(np.abs(theirs - ours).mean()),
            "descriptor_drift_median": float(np.median(np.linalg.norm(teacher - student, axis=1))),
            # A student that maps every face to one point calls every pair "same": this shows it.
            "pair_distance_median": {"teacher": float(np.median(theirs)), "student": float(np.median(ours))},
            "disagreements": [[int(i), int(j), round(float(a), 3), round(float(b), 3)]
                              for i, j, a, b, ok in zip(first, second, theirs, ours, agree) if not ok]}


def embed_all(faces: list[Any], graph: Any) -> np.ndarray:
    """Descriptors of every face by one embedder (the teacher's graph bytes or a student's ONNX)."""
    from slimvision.bench.face_robustness import recognizer_under_test
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    model = recognizer_under_test("m", FaceRecognizer(SessionSettings(threads=2), model=graph))
    return np.concatenate([model.embed(face.crop, face.landmarks[None]) for face in faces])


def real_faces(extra: list[Path]) -> tuple[list[Any], list[str], bytes]:
    """Faces (>= 40 px, as benchmarks/faces_compress.py) in the held-out photos, and the teacher's graph."""
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.bench.face_robustness import find_faces, installed_face_photos
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.face_graph import dlib_resnet_graph
    from slimvision.inference.faces import FaceRecognizer
    from slimvision.io.images import find_images

    photos = installed_face_photos()
    for path in extra:
        photos += find_images(path) if path.is_dir() else [path]
    graph = dlib_resnet_graph(DLIB_FACE_RESNET.path())
    faces = find_faces(photos, FaceRecognizer(SessionSettings(threads=2), model=graph), min_width=40.0)
    return faces, [path.name for path in photos], graph


def machine() -> dict[str, Any]:
    """Where it ran: the numbers are CPU-bound and the machine is shared."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, nargs="*", default=[], metavar="PATH",
                        help="more real photos of people (files or folders), beside those installed packages ship")
    parser.add_argument("--run-root", type=Path, default=Path("/tmp/losses"), help="one run folder per loss in here")
    parser.add_argument("--faces", type=int, default=400, help="synthetic source faces drawn (default 400)")
    parser.add_argument("--samples-per-face", type=int, default=4, help="augmented pictures per face (default 4)")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps, every loss (default 200)")
    parser.add_argument("--batch-size", type=int, default=16, help="chips per step (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faces, augmentations and batches (default 0)")
    parser.add_argument("--slimvision", type=Path, default=Path(sys.executable).with_name("slimvision"),
                        help="the slimvision command (default: the one beside this Python)")
    parser.add_argument("--old-defaults", action="store_true",
                        help="train with the trainer's defaults from before the measured recipe (plain regression), "
                             "as faces_losses_200steps.json was")
    parser.add_argument("--output", type=Path, default=RESULTS / "faces_losses.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    runs = {loss: train(loss, ["--loss", loss], args.steps, args) for loss in LOSSES}
    # What every student started from: the pruned teacher, one step at a learning rate that moves nothing.
    untrained = ["--loss", "regression", "--lr", "1e-12"] + ([] if args.old_defaults else ["--no-distance-scale"])
    runs["untrained"] = train("untrained", untrained, 1, args)
    faces, photos, teacher_graph = real_faces(args.photos)
    print(f"{len(faces)} faces in {len(photos)} photos", file=sys.stderr)
    teacher = embed_all(faces, teacher_graph)
    first, second = np.triu_indices(len(teacher), 1)
    same_pairs = int((np.linalg.norm(teacher[first] - teacher[second], axis=1) <= THRESHOLD).sum())
    for name, entry in runs.items():
        run_dir = args.run_root / name
        entry["scores"] = pair_scores(teacher, embed_all(faces, run_dir / "embedder.onnx"))
        entry["train_log_last"] = last_log(run_dir)
        entry["loss_settings"] = json.loads((run_dir / "report.json").read_text())["loss"]
    report = {"settings": json.loads(json.dumps(vars(args), default=str)),
              "student": "dlib ResNet at 0.5 width, started from the teacher's pruned channels (the trainer's default)",
              "faces": [face.label for face in faces], "photos": photos,
              "teacher_same_person_pairs": same_pairs,
              # A reference point for agreement: a model that calls every pair "different" scores this.
              "agreement_if_every_pair_called_different": 1 - same_pairs / len(first),
              "machine": machine(), "runs": runs}
    from slimvision.io.atomic import write_text_atomic

    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(f"{'run':<22}{'agree':>10}{'pair drift':>12}{'desc drift':>12}{'loss':>9}{'regr':>8}{'margin':>8}")
    for name, entry in runs.items():
        s, log = entry["scores"], entry["train_log_last"]
        print(f"{name:<22}{s['agreed']:>5}/{s['pairs']:<4}{s['pair_distance_drift_mean']:>12.3f}"
              f"{s['descriptor_drift_median']:>12.3f}{log['loss']:>9.3f}"
              f"{log.get('regression_loss', log['loss']):>8.3f}{log.get('margin_loss', float('nan')):>8.3f}")
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
