"""Face students against dlib's ResNet: size, embedding speed, decision agreement, robustness.

Each student is an exported embedder (``RUN_DIR/embedder.onnx`` with its card, from
``slimvision train face-student``) or a registered face artifact. For each, beside the teacher:

* **size**: bytes of the ONNX graph (the teacher's is built from dlib's 22 MB ``.dat``);
* **speed**: median ms to embed a batch of 1 and of 8 chips in ONNX Runtime, the graphs taking
  turns within every round (``bench.search.time_graphs``), and the teacher / student ratio;
* **agreement**: every pair of faces found in the real photos (none of the students was
  trained on: the ones installed packages ship, and a folder with face_recognition's and
  insightface's sdist test images given with ``--photos``, docs/faces.md says how to get them), the same/different
  decision at the 0.6 threshold, student against teacher, with every disagreement listed;
* **robustness**: ``bench.face_robustness`` with the teacher as reference (JPEG, face width,
  blur, noise, grey, night IR), and the issue's check: at each JPEG quality >= 30 and in greyscale,
  a student's agreement may drop at most 3 points below the teacher's own stability.

    python benchmarks/faces_compress.py --student runs/face-half [--student ...] [--photos DIR] [--repeats 21]

Writes benchmarks/results/faces_compress.json and faces_compress_robustness.png.
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


def _recognizer(source: str, threads: int) -> tuple[str, Any, bytes | Path]:
    """(name, FaceRecognizer, graph) of a run folder / ONNX file, or of the teacher ("teacher")."""
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    settings = SessionSettings(threads=threads)
    if source == "teacher":
        from slimvision.assets import DLIB_FACE_RESNET
        from slimvision.inference.face_graph import dlib_resnet_graph

        graph = dlib_resnet_graph(DLIB_FACE_RESNET.path())
        return "teacher (dlib ResNet)", FaceRecognizer(settings, model=graph), graph
    path = Path(source)
    graph_path = path / "embedder.onnx" if path.is_dir() else path
    if not graph_path.is_file():
        raise SystemExit(f"{source}: no embedder.onnx there (a 'slimvision train face-student' run folder or its graph)")
    recognizer = FaceRecognizer(settings, model=graph_path)
    # Named by its file or run folder: two graphs of one embedder (float, int8) share a gallery name.
    return (path.name if path.is_dir() else path.stem), recognizer, graph_path


def pair_agreement(teacher: np.ndarray, student: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Same/different decisions (0.6) of every pair of faces, student against teacher."""
    first, second = np.triu_indices(len(labels), 1)
    theirs = np.linalg.norm(teacher[first] - teacher[second], axis=1)
    ours = np.linalg.norm(student[first] - student[second], axis=1)
    agree = (theirs <= THRESHOLD) == (ours <= THRESHOLD)
    return {"pairs": int(len(first)), "same_person_pairs_teacher": int((theirs <= THRESHOLD).sum()),
            "agreement": float(agree.mean()) if len(first) else None,
            "distance_mae": float(np.abs(theirs - ours).mean()) if len(first) else None,
            "descriptor_distance_median": float(np.median(np.linalg.norm(teacher - student, axis=1))),
            "disagreements": [{"first": labels[i], "second": labels[j], "teacher": round(float(a), 3),
                               "student": round(float(b), 3)}
                              for i, j, a, b, ok in zip(first, second, theirs, ours, agree) if not ok]}


def robustness_check(table: dict[str, Any], reference: str, student: str, points: float = 0.03) -> dict[str, Any]:
    """The issue's target: at JPEG >= 30 and in greyscale, agreement within ``points`` of the teacher's."""
    rows = [(f"jpeg {row['level']:g}", row) for row in table["corruptions"]["jpeg"]["rows"] if row["level"] >= 30]
    rows += [("grey", row) for row in table["corruptions"]["grey"]["rows"]]
    drops = {name: row["models"][reference]["agreement"] - row["models"][student]["agreement"] for name, row in rows}
    return {"largest_drop": max(drops.values()), "drops": drops, "met": max(drops.values()) <= points + 1e-9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", action="append", required=True, metavar="RUN_DIR_OR_ONNX",
                        help="a face student's run folder or embedder graph (repeat for several)")
    parser.add_argument("--photos", type=Path, nargs="*", default=None, metavar="PATH",
                        help="real photos of people (files or folders), beside those installed packages ship "
                             "(a photo of the same file name counts once)")
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds per workload (default 21)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1: one core)")
    parser.add_argument("--output", type=Path, default=RESULTS / "faces_compress.json")
    args = parser.parse_args(argv)

    from slimvision.bench.face_robustness import (
        find_faces, installed_face_photos, recognizer_under_test, robustness_table, save_robustness_plot,
    )
    from slimvision.bench.search import SearchSettings, time_graphs
    from slimvision.io.atomic import write_text_atomic
    from slimvision.io.images import find_images

    models = [_recognizer("teacher", args.threads)] + [_recognizer(source, args.threads) for source in args.student]
    teacher_name, teacher, _ = models[0]
    photos = installed_face_photos()  # always, and --photos beside them, as the other face benchmarks do
    for path in args.photos or []:
        photos += find_images(path) if path.is_dir() else [path]
    photos = list({path.name: path for path in reversed(photos)}.values())[::-1]  # a photo copied in: once
    faces = find_faces(photos, teacher, min_width=40.0)
    labels = [face.label for face in faces]
    print(f"{len(faces)} faces in {len(photos)} photos, {len(faces) * (len(faces) - 1) // 2} pairs", file=sys.stderr)

    chips = np.random.default_rng(0).random((8, 3, 150, 150), dtype=np.float32)
    graphs = {name: (graph, {"batch 1": {"face_chip": chips[:1]}, "batch 8": {"face_chip": chips}})
              for name, _, graph in models}
    timing = time_graphs(graphs, SearchSettings(budget_ms=1e9, repeats=args.repeats, warmup=2, threads=args.threads))

    if len({name for name, _, _ in models}) < len(models):
        raise SystemExit("two students with the same name: give each its own run folder or file name")
    under_test = [recognizer_under_test(name, recognizer) for name, recognizer, _ in models]
    descriptors = {model.name: np.concatenate([model.embed(face.crop, face.landmarks[None]) for face in faces])
                   for model in under_test}
    table = robustness_table(faces, under_test, progress=True)
    table["photos"] = [path.name for path in photos]

    report: dict[str, Any] = {"faces": len(faces), "photos": table["photos"], "threads": args.threads,
                              "repeats": args.repeats, "models": {}}
    for (name, recognizer, graph), model in zip(models, under_test):
        size = len(graph) if isinstance(graph, bytes) else Path(graph).stat().st_size
        entry: dict[str, Any] = {"gallery_name": recognizer.embedder.name, "bytes": size, "ms": timing[name],
                                 "speedup": {w: timing[teacher_name][w] / ms for w, ms in timing[name].items()}}
        if name != teacher_name:
            entry["agreement"] = pair_agreement(descriptors[teacher_name], descriptors[name], labels)
            entry["robustness_check"] = robustness_check(table, teacher_name, name)
        report["models"][name] = entry
    report["robustness"] = table
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    save_robustness_plot(table, args.output.with_name(args.output.stem + "_robustness.png"), overwrite=True)

    print(f"{'model':<28}{'MB':>7}{'ms b1':>9}{'ms b8':>9}{'x b1':>7}{'x b8':>7}{'agree':>8}{'robust':>8}")
    for name, entry in report["models"].items():
        agreement = entry.get("agreement", {}).get("agreement")
        check = entry.get("robustness_check")
        print(f"{name:<28}{entry['bytes'] / 1e6:>7.2f}{entry['ms']['batch 1']:>9.2f}{entry['ms']['batch 8']:>9.2f}"
              f"{entry['speedup']['batch 1']:>7.2f}{entry['speedup']['batch 8']:>7.2f}"
              f"{'' if agreement is None else f'{agreement:.4f}':>8}"
              f"{'' if check is None else ('met' if check['met'] else 'missed'):>8}")
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
