#!/usr/bin/env python
"""Face detection: our MTCNN on ONNX Runtime against dlib's HOG detector, speed and agreement.

Speed: one 640x480 frame (the astronaut sample scaled to 640 px wide, its top 480 rows: one
face of about 115 px). Alternating run by run after a warm-up, with a 50 ms pause before each:
- ours: ``FaceDetector(SessionSettings(threads=2))``, min_face_size 20 (the default) and 40;
- dlib: ``get_frontal_face_detector()`` with 0 and 1 upsampling (face_recognition's default is 1;
  dlib's HOG window is 80 px, so 1 upsampling finds faces from about 40 px). dlib uses one thread.
Prints and stores the median of ``--repeats`` runs each.

Agreement, on the real photos that ship offline (our astronaut sample, matplotlib's Grace Hopper):
for dlib's strongest detection (1 upsampling), the IoU of our best box with it, and how far our
eye centres are from dlib's (the middle of the two corners its 5-point predictor gives per eye),
as a fraction of the distance between the eyes.

    python benchmarks/face_detect_bench.py [--repeats 20]

Needs dlib-bin (a test dependency) and, for the eye check, the faces extra. Writes
benchmarks/results/face_detect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).resolve().parent / "results" / "face_detect.json"


def photos() -> dict[str, np.ndarray]:
    import matplotlib

    from slimvision.assets import samples_dir

    paths = {"astronaut": samples_dir() / "content" / "astronaut.jpg",
             "grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}
    return {name: np.asarray(Image.open(path).convert("RGB")) for name, path in paths.items()}


def frame_640x480(astronaut: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(astronaut).resize((640, 640), Image.LANCZOS))[:480].copy()


def speed(frame: np.ndarray, repeats: int) -> dict[str, dict]:
    import dlib

    from slimvision.inference.face_detect import FaceDetector
    from slimvision.graph.session import SessionSettings

    hog = dlib.get_frontal_face_detector()
    runners = {"slimvision MTCNN, min face 20 px": FaceDetector(SessionSettings(threads=2)).detect,
               "slimvision MTCNN, min face 40 px": FaceDetector(SessionSettings(threads=2), min_face_size=40).detect,
               "dlib HOG, upsample 0": lambda image: hog(image, 0),
               "dlib HOG, upsample 1": lambda image: hog(image, 1)}
    timings: dict[str, list[float]] = {name: [] for name in runners}
    faces = {name: len(run(frame)) for name, run in runners.items()}  # warm-up
    for _ in range(repeats):
        for name, run in runners.items():
            time.sleep(0.05)
            start = time.perf_counter()
            run(frame)
            timings[name].append((time.perf_counter() - start) * 1000)
    return {name: {"median_ms": round(statistics.median(values), 2), "faces": faces[name],
                   "runs_ms": [round(v, 2) for v in values]} for name, values in timings.items()}


def agreement(images: dict[str, np.ndarray]) -> dict[str, dict]:
    import dlib

    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.inference.face_detect import FaceDetector
    from slimvision.graph.session import SessionSettings

    detector = FaceDetector(SessionSettings(threads=2))
    hog = dlib.get_frontal_face_detector()
    try:
        predictor = dlib.shape_predictor(str(DLIB_FACE_RESNET.path().parent / "shape_predictor_5_face_landmarks.dat"))
    except Exception:  # noqa: BLE001 - the faces extra is missing: boxes only
        predictor = None
    report = {}
    for name, image in images.items():
        rects, scores, _ = hog.run(image, 1, 0)
        best = rects[int(np.argmax(scores))]
        theirs = (best.left(), best.top(), best.right() + 1, best.bottom() + 1)
        faces = detector.detect(image)
        ours = faces[0]
        entry = {"dlib_boxes": len(rects), "our_faces": len(faces), "our_score": round(ours.score, 5),
                 "our_box": [round(v, 1) for v in ours.box], "dlib_box": list(theirs), "iou": round(iou(ours.box, theirs), 3)}
        if predictor is not None:
            points = np.array([[p.x, p.y] for p in predictor(image, best).parts()], float)
            # dlib: corners of the subject's left eye (image right) first, then the right eye's.
            eyes = np.stack([points[2:4].mean(0), points[0:2].mean(0)])
            spacing = np.linalg.norm(eyes[1] - eyes[0])
            entry["eye_error_over_eye_distance"] = [round(float(e), 3) for e in
                                                    np.linalg.norm(ours.landmarks[:2] - eyes, axis=1) / spacing]
        report[name] = entry
    return report


def iou(a, b) -> float:
    width, height = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    images = photos()
    import onnxruntime

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                           "onnxruntime": onnxruntime.__version__},
               "frame": "astronaut.jpg scaled to 640x640 (Lanczos), top 480 rows",
               "speed_640x480": speed(frame_640x480(images["astronaut"]), args.repeats),
               "agreement_with_dlib": agreement(images)}
    for name, row in results["speed_640x480"].items():
        print(f"{name:36s} {row['median_ms']:8.2f} ms  ({row['faces']} faces)")
    for name, row in results["agreement_with_dlib"].items():
        print(f"{name:14s} IoU with dlib {row['iou']:.3f}  eyes {row.get('eye_error_over_eye_distance')}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
