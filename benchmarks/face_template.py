#!/usr/bin/env python
"""Calibrate where MTCNN's 5 landmarks sit in dlib's 150 px face chip (the MTCNN_DLIB_CHIP template).

dlib's chip is defined by its own 5 points (eye corners, base of the nose). MTCNN finds other
points (eye centres, nose tip, mouth corners), so aligning MTCNN's points onto dlib's chip
needs a template for them. On every face both detectors find (IoU > 0.3; each photo also
mirrored), dlib's 5-point fit gives the chip; MTCNN's points are mapped into it and averaged.
The result is printed as unit-square coordinates (before dlib's 0.25 padding), ready for
``slimvision.data.face_align``. The photos are then scored leave-one-photo-out: the
template from the other photos aligns this photo's faces, and the dlib teacher's descriptor of
that chip is compared with the descriptor of dlib's own chip (Euclidean; dlib's same-person
threshold is 0.6).

    python benchmarks/face_template.py PHOTO [PHOTO ...] [--output results/face_template.json]

The shipped template came from the real photos that ship in packages (see docs/faces.md).
Needs dlib-bin (for dlib's chips) and the faces extra.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: Ours, by registered name: MTCNN finds the points, the embedder (dlib's ResNet as ONNX, fed as
#: its card says) scores the chips. dlib's own detector and 5-point fit are the reference.
DETECTOR, EMBEDDER = "face-detector-mtcnn", "face-embedder-dlib-resnet"


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def collect(photos: list[Path]) -> list[dict]:
    """Per matched face: the photo, dlib's 5 points, MTCNN's 5 points, the image."""
    import dlib
    from PIL import Image

    from slimvision.graph.session import SessionSettings
    from slimvision.registry import ARTIFACTS

    detector = ARTIFACTS.create(DETECTOR, settings=SessionSettings(threads=2))
    hog = dlib.get_frontal_face_detector()
    # dlib's 5-point model ships beside the embedder's .dat (face_recognition_models).
    dat = ARTIFACTS.spec(EMBEDDER).paths()["embedder"]
    landmarks5 = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
    faces = []
    for photo in photos:
        original = np.asarray(Image.open(photo).convert("RGB"))
        for mirrored, image in ((False, original), (True, np.ascontiguousarray(original[:, ::-1]))):
            found = [face for face in detector.detect(image) if face.score > 0.9]
            for box in hog(image, 1):
                rect = np.array([box.left(), box.top(), box.right() + 1, box.bottom() + 1], float)
                best = max(found, key=lambda face: box_iou(np.asarray(face.box), rect), default=None)
                if best is None or box_iou(np.asarray(best.box), rect) < 0.3:
                    continue
                shape = landmarks5(image, box)
                faces.append({"photo": photo.name, "mirrored": mirrored, "image": image,
                              "dlib": np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], float),
                              "mtcnn": np.asarray(best.landmarks, float)})
    return faces


def in_chip(face: dict) -> np.ndarray:
    """MTCNN's points in dlib's chip pixels (through the inverse of dlib's 5-point fit)."""
    from slimvision.data.face_align import DLIB_CHIP, similarity_transform

    to_chip = similarity_transform(face["dlib"], DLIB_CHIP.pixel_points())
    return face["mtcnn"] @ to_chip[:, :2].T + to_chip[:, 2]


def template_from(faces: list[dict]) -> np.ndarray:
    """Unit-square template (before padding) from the mean chip position of each point."""
    from slimvision.data.face_align import DLIB_CHIP

    pixels = np.mean([in_chip(face) for face in faces], axis=0)
    return (pixels + 0.5) / DLIB_CHIP.size * (1 + 2 * DLIB_CHIP.padding) - DLIB_CHIP.padding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "face_template.json")
    args = parser.parse_args()

    import dlib

    from slimvision.data.face_align import DLIB_CHIP, ChipTemplate, align_face
    from slimvision.io.atomic import write_text_atomic
    from slimvision.registry import ARTIFACTS

    faces = collect(args.photos)
    if len({face["photo"] for face in faces}) < 2:
        raise SystemExit("error: need faces found by both detectors in at least 2 photos")
    embedder = ARTIFACTS.create(EMBEDDER)

    def describe(chip: np.ndarray) -> np.ndarray:
        """One (150, 150, 3) uint8 chip -> its 128-d descriptor."""
        return embedder.network.run({embedder.card.input.name: embedder.card.to_input(chip[None])})[0][0]

    rows = []
    for face in faces:
        others = [other for other in faces if other["photo"] != face["photo"]]
        template = ChipTemplate("leave-one-out", tuple(map(tuple, template_from(others))), DLIB_CHIP.size,
                                DLIB_CHIP.padding)
        ours = describe(align_face(face["image"], face["mtcnn"], template))
        theirs = describe(align_face(face["image"], face["dlib"], DLIB_CHIP))
        spread = float(np.abs(in_chip(face) - template.pixel_points()).max())
        rows.append({"photo": face["photo"], "mirrored": face["mirrored"],
                     "descriptor_distance": float(np.linalg.norm(ours - theirs)), "max_point_offset_px": spread})
    template = template_from(faces)
    report = {"faces": len(faces), "photos": sorted({face["photo"] for face in faces}),
              "template": template.round(6).tolist(), "leave_one_photo_out": rows,
              "median_distance": float(np.median([row["descriptor_distance"] for row in rows])),
              "max_distance": float(max(row["descriptor_distance"] for row in rows))}
    print(f"{len(faces)} faces (mirrored included) in {len(report['photos'])} photos")
    print("template (unit square, before padding):")
    for name, (x, y) in zip(("left eye", "right eye", "nose", "mouth left", "mouth right"), template):
        print(f"  {name:<12} ({x:.6f}, {y:.6f})")
    print(f"leave-one-photo-out descriptor distance to dlib's own chip: median {report['median_distance']:.4f}, "
          f"max {report['max_distance']:.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(f"written to {args.output}")
    del dlib  # imported above only to fail early when dlib-bin is missing


if __name__ == "__main__":
    main()
