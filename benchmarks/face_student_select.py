"""Choose face-student settings on held-out synthetic faces, never on the real photos (issue 25).

The real photos (face_recognition's and insightface's, docs/faces.md) are the public agreement
check: they must not choose anything. This script scores trained students (run folders of
``slimvision train face-student``) against the teacher, dlib's ResNet, on synthetic faces no
student trained on: ``gan-face-generate`` faces drawn with another seed (1; the students train on
seed 0), aligned by MTCNN, each drawn ``--pictures`` times through the trainer's augmentations
(the same face twice is a same-person pair for the teacher more often than not). For every pair
of pictures:

* **agreement**: the same/different decision at dlib's 0.6, student vs teacher; also split into
  the pairs the teacher calls "same" and those it calls "different" (a student that maps every
  face to one point agrees on all the first and none of the second);
* **pair distance median** (teacher and student) and the **correlation** of the two distances
  over every pair: how much of the teacher's geometry the student keeps, threshold or not;
* **descriptor drift**: median distance between a picture's student and teacher descriptors;
* **decisions unlike the first**: pairs decided otherwise than by the first student listed (list
  the float student first to count what its int8 graph moves).

``--real PHOTOS`` scores the same students on the real pairs instead (after choosing; the JSON
says which). Students are run in torch from ``RUN/student`` (the weights the export is made
from); an ``.onnx`` embedder graph with its card (an int8 one from ``slimvision compress
face-int8``) is run with ONNX Runtime on the same chips.

    python benchmarks/face_student_select.py RUN [RUN ...] [--output FILE]
    python benchmarks/face_student_select.py RUN RUN/embedder.int8.onnx ...       # float vs int8
    python benchmarks/face_student_select.py RUN --real PHOTOS --output FILE   # the check, after choosing

Writes benchmarks/results/faces_student_select.json by default.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLD = 0.6


def pair_scores(teacher: np.ndarray, student: np.ndarray) -> dict[str, Any]:
    """Agreement at 0.6 over every pair, split by the teacher's decision; distances' medians and correlation."""
    first, second = np.triu_indices(len(teacher), 1)
    theirs = np.linalg.norm(teacher[first] - teacher[second], axis=1)
    ours = np.linalg.norm(student[first] - student[second], axis=1)
    same = theirs <= THRESHOLD
    agree = same == (ours <= THRESHOLD)
    return {"pairs": int(len(first)), "teacher_same_pairs": int(same.sum()), "agreed": int(agree.sum()),
            "agreement": round(float(agree.mean()), 4),
            "agreement_teacher_same": round(float(agree[same].mean()), 4) if same.any() else None,
            "agreement_teacher_different": round(float(agree[~same].mean()), 4) if (~same).any() else None,
            "pair_distance_median": {"teacher": round(float(np.median(theirs)), 4),
                                     "student": round(float(np.median(ours)), 4)},
            "pair_distance_correlation": _correlation(theirs, ours),
            "descriptor_drift_median": round(float(np.median(np.linalg.norm(teacher - student, axis=1))), 4)}


def decisions_moved(before: np.ndarray, after: np.ndarray) -> int:
    """Pairs whose same/different decision at 0.6 differs between two embedders' descriptors
    (for an int8 graph against its float student: what the rounding moved)."""
    first, second = np.triu_indices(len(before), 1)
    return int(((np.linalg.norm(before[first] - before[second], axis=1) <= THRESHOLD)
                != (np.linalg.norm(after[first] - after[second], axis=1) <= THRESHOLD)).sum())


def _correlation(theirs: np.ndarray, ours: np.ndarray) -> float | None:
    """Pearson correlation of two distance lists; None (JSON null, not NaN) for fewer than 2 pairs."""
    if len(theirs) < 2 or theirs.std() == 0 or ours.std() == 0:
        return None
    return round(float(np.corrcoef(theirs, ours)[0, 1]), 4)


def held_out_chips(faces: int, pictures: int, seed: int) -> np.ndarray:
    """(N, 150, 150, 3) dlib chips: ``pictures`` augmented draws of each synthetic face found."""
    from slimvision.cli.faces import face_canvas_maker
    from slimvision.data.face_identities import FaceAugment, PseudoIdentities, synthetic_canvases

    canvases = synthetic_canvases(faces, seed, face_canvas_maker(), progress=False)
    data = PseudoIdentities(canvases, FaceAugment(), seed=seed, kinds=("dlib",), length=pictures * len(canvases))
    return np.stack([data[i]["dlib"] for i in range(len(data))])


def embed(model: Any, chips: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(chips), batch):
            part = torch.from_numpy(np.ascontiguousarray(chips[start:start + batch])).permute(0, 3, 1, 2).float() / 255
            out.append(model(part).numpy())
    return np.concatenate(out)


def embed_graph(graph: Path, chips: np.ndarray, batch: int = 64) -> np.ndarray:
    """Descriptors of dlib chips by an embedder graph, fed as its card asks (the face pipeline's
    network and card, checked against each other; one ONNX Runtime thread)."""
    from slimvision.export.card import card_path
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    recognizer = FaceRecognizer(SessionSettings(threads=1), model=graph, card=card_path(graph))
    card = recognizer.card
    if card.template != "dlib" or card.chip_size != chips.shape[1]:
        raise SystemExit(f"{graph}: takes {card.template} chips of {card.chip_size} px; the held-out set is "
                         f"dlib chips of {chips.shape[1]} px")
    return np.concatenate([recognizer.network.run({card.input.name: card.to_input(chips[start:start + batch])})[0]
                           for start in range(0, len(chips), batch)])


def train_settings(run: Path) -> dict[str, Any]:
    if run.suffix == ".onnx":
        from slimvision.export.card import card_path, read_card

        card = read_card(card_path(run))
        return {"graph": card.provenance.get("graph", ""), "remake": card.remake}
    report = json.loads((run / "report.json").read_text())
    log = report["train_log"]
    return {"config": {key: report["config"][key] for key in (
                "init", "width", "loss", "steps", "batch_size", "learning_rate", "target_space", "relational_weight",
                "batch_norm", "faces", "samples_per_face", "seed") if key in report["config"]},
            "train_log_last": {key: round(values[-1], 4) for key, values in log.items() if values}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+",
                        help="run folders of slimvision train face-student, or embedder .onnx graphs with cards")
    parser.add_argument("--faces", type=int, default=200, help="held-out synthetic faces drawn (default 200)")
    parser.add_argument("--pictures", type=int, default=2, help="augmented pictures of each (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="their seed; the students train on seed 0 (default 1)")
    parser.add_argument("--real", type=Path, nargs="*", metavar="PHOTOS",
                        help="score on the real photos instead (the agreement check; not for choosing)")
    parser.add_argument("--output", type=Path, default=RESULTS / "faces_student_select.json")
    args = parser.parse_args(argv)

    import torch

    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.models.faces.dlib_port import load_dlib_resnet
    from slimvision.models.weights import load_model

    torch.set_flush_denormal(True)
    teacher_net = load_dlib_resnet(DLIB_FACE_RESNET.path()).eval()
    if args.real is None:
        chips = held_out_chips(args.faces, args.pictures, args.seed)
        what = {"set": "held-out synthetic", "faces": args.faces, "pictures_per_face": args.pictures,
                "seed": args.seed, "chips": len(chips)}
        teacher = embed(teacher_net, chips)
        students = {str(run): embed_graph(run, chips) if run.suffix == ".onnx" else
                    embed(load_model(run / "student"), chips) for run in args.runs}
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from face_losses import embed_all, real_faces

        faces, photos, graph = real_faces(args.real)
        what = {"set": "real photos (the public agreement check; scored after the choice, not used for it)",
                "photos": photos, "faces": [face.label for face in faces]}
        teacher = embed_all(faces, graph)
        students = {str(run): embed_all(faces, run if run.suffix == ".onnx" else run / "embedder.onnx")
                    for run in args.runs}
    first = next(iter(students.values()))
    report = {"scored_on": what, "threshold": THRESHOLD,
              "runs": {name: {**train_settings(Path(name)), "scores": pair_scores(teacher, ours),
                              "decisions_unlike_the_first": decisions_moved(first, ours)}
                       for name, ours in students.items()}}
    from slimvision.io.atomic import write_text_atomic

    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(f"{'run':<40}{'agree':>8}{'same':>7}{'diff':>7}{'corr':>7}{'median':>8}{'drift':>7}{'moved':>8}")
    for name, entry in report["runs"].items():
        s = entry["scores"]
        print(f"{name[-40:]:<40}{s['agreement']:>8.3f}{s['agreement_teacher_same'] or 0:>7.3f}"
              f"{s['agreement_teacher_different'] or 0:>7.3f}{s['pair_distance_correlation'] or float('nan'):>7.3f}"
              f"{s['pair_distance_median']['student']:>8.3f}{s['descriptor_drift_median']:>7.3f}"
              f"{entry['decisions_unlike_the_first']:>8}")
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
