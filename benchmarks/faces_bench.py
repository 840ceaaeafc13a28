#!/usr/bin/env python
"""Face embedding: our torch-free ONNX graph of dlib's ResNet against dlib itself, in one run.

On the real photos that ship offline (skimage's astronaut via our samples, matplotlib's Grace
Hopper, OpenCV's messi5 when ``opencv-doc`` is installed), dlib finds each face and its 5
landmarks. Then, per face, alternating, with a short pause before each run:
- dlib: ``get_face_chip`` + ``compute_face_descriptor`` (what face_recognition does after landmarks);
- ours: ``align_face`` + the ONNX graph built from dlib's own ``.dat`` file.
Prints the medians, the ratio, and how far apart the two descriptors of each face are
(Euclidean; dlib calls two faces one person below 0.6) plus the port's own parity on dlib's
chips. The issue's full detect + align + embed comparison comes with our detector.

Then identification against a large gallery: ``--gallery-size`` descriptors (random unit
vectors, 4 per made-up person, plus the real faces above) in a SQLite gallery file, searched
with numpy (exact) and with a FAISS flat index when faiss-cpu is installed: the median ms per
query (top 5 people), and whether each real face still finds itself.

The issue's whole-pipeline comparison: detect + align + embed the one face of a 640x480 frame
(Grace Hopper's portrait, scaled to 480 px high, centred on black), ours against
``face_recognition.face_encodings`` (dlib's HOG detector with one upsampling, which finds faces
from about 40 px, its 5-point landmarks and the ResNet), alternated, medians. Ours runs with
MTCNN searching faces from 40 px (the same job) and from 20 px (our default, more work).
Needs ``pip install --no-deps face_recognition==1.3.0`` (the Makefile's dev setup does this).

Last, the motion gate on a generated door-camera clip (``slimvision.data.face_clips``: the
sample photo coffee.jpg as a still hall with sensor noise, Grace Hopper walking in for about
four seconds of 20): frames per second of detect + identify on every frame against the same
with the gate, run alternately, and whether every frame names the same people both ways; then
the same hall with nobody in it.

With ``--photos DIR`` (any folder of photos of people, e.g. the real photos listed in
../shared/ASSETS.md: face_recognition's and insightface's sdist test images plus the ones above),
it also compares same/different-person decisions: every face both face_recognition and we find
(boxes overlapping), every pair of them, at the 0.6 threshold, ours against face_recognition's.

    python benchmarks/faces_bench.py [--repeats 15] [--gallery-size 100000] [--clip-runs 2] [--photos DIR]
    python benchmarks/faces_bench.py --gate-only --clip-runs 3    # the motion gate alone

Needs: pip install '.[faces]' dlib-bin. Writes benchmarks/results/faces.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "faces.json"
#: Our side is the registered artifact (the graph ported from dlib's .dat, its card, MTCNN);
#: the peers (dlib, face_recognition) load their files as those packages do.
EMBEDDER = "face-embedder-dlib-resnet"


def our_recognizer(threads: int | None = 2, **options):
    """Our detect + align + embed pipeline, created by its registered name."""
    from slimvision.graph.session import SessionSettings
    from slimvision.registry import ARTIFACTS

    return ARTIFACTS.create(EMBEDDER, settings=SessionSettings(threads=threads), **options)


def photos() -> list[Path]:
    from slimvision.bench.face_robustness import installed_face_photos

    return installed_face_photos()


def identify_timings(real: list[np.ndarray], size: int, repeats: int) -> dict:
    """Median ms per top-5 query against a gallery of ``size`` descriptors, exact and FAISS."""
    import importlib.util
    import tempfile

    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Enrolment, Gallery

    rng = np.random.default_rng(0)
    timings, found = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gallery.sqlite"
        store = Gallery.open(path, DLIB_RESNET_V1).store
        noise = rng.standard_normal((size - len(real), 128)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        for start in range(0, len(noise), 20_000):  # a few big transactions, not 100,000 small ones
            block = noise[start:start + 20_000]
            store.add_people({f"made-up {start + person}": Enrolment(block[person:person + 4])
                              for person in range(0, len(block), 4)})
        for number, vector in enumerate(real):
            store.add(f"real {number}", vector[None])
        kinds = ["exact"] + (["faiss"] if importlib.util.find_spec("faiss") else [])
        for kind in kinds:
            gallery = Gallery.open(path, DLIB_RESNET_V1, index=kind)
            gallery.search(real[0])  # loads the descriptors (and builds the index) once
            times = []
            for _ in range(repeats):
                for vector in real:
                    start = time.perf_counter()
                    gallery.search(vector, top_k=5)
                    times.append(time.perf_counter() - start)
            timings[kind] = 1000 * statistics.median(times)
            found[kind] = all(gallery.search(v, top_k=1)[0].name == f"real {n}" for n, v in enumerate(real))
    return {"gallery_size": size, "ms_per_query": timings, "found_themselves": found}


def pipeline_timings(repeats: int) -> dict | None:
    """Median ms of detect + align + embed on a 640x480 frame: face_recognition vs ours."""
    try:
        import face_recognition
    except ImportError:
        print("face_recognition is not installed (pip install --no-deps face_recognition==1.3.0): pipeline row skipped")
        return None
    import matplotlib
    from PIL import Image

    portrait = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    portrait = portrait.resize((round(portrait.width * 480 / portrait.height), 480), Image.BILINEAR)
    frame = np.zeros((480, 640, 3), np.uint8)
    left = (640 - portrait.width) // 2
    frame[:, left:left + portrait.width] = np.asarray(portrait)
    ours = {size: our_recognizer(min_face_size=size) for size in (40, 20)}
    jobs = {"face_recognition": lambda: face_recognition.face_encodings(frame),
            "ours, faces from 40 px": lambda: ours[40](frame), "ours, faces from 20 px": lambda: ours[20](frame)}
    for job in jobs.values():
        job()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            time.sleep(0.02)
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    ms = {name: 1000 * statistics.median(values) for name, values in times.items()}
    (theirs,) = face_recognition.face_encodings(frame)
    (mine,) = ours[40](frame)
    return {"ms": ms, "ratio_40px": ms["ours, faces from 40 px"] / ms["face_recognition"],
            "ratio_20px": ms["ours, faces from 20 px"] / ms["face_recognition"],
            "descriptor_distance": float(np.linalg.norm(theirs - mine.descriptor))}


def decision_agreement(folder: Path) -> dict:
    """Pairwise same-person decisions (0.6) of our pipeline vs face_recognition on the same faces."""
    import face_recognition

    from slimvision.io.images import find_images, load_image

    recognizer = our_recognizer()
    labels, ours, theirs = [], [], []
    photos = find_images(folder)
    for photo in photos:
        image = load_image(photo)
        locations = face_recognition.face_locations(image)  # (top, right, bottom, left)
        encodings = face_recognition.face_encodings(image, locations)
        found = recognizer(image)
        for number, ((top, right, bottom, left), encoding) in enumerate(zip(locations, encodings)):
            box = np.array([left, top, right, bottom], float)
            best = max(found, key=lambda face: box_iou(np.asarray(face.face.box), box), default=None)
            if best is not None and box_iou(np.asarray(best.face.box), box) > 0.3:
                labels.append(f"{photo.name}#{number}")
                ours.append(best.descriptor)
                theirs.append(encoding)
    ours_matrix, theirs_matrix = np.array(ours), np.array(theirs)
    pairs, agreeing, disagreements = 0, 0, []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            a = float(np.linalg.norm(theirs_matrix[i] - theirs_matrix[j]))
            b = float(np.linalg.norm(ours_matrix[i] - ours_matrix[j]))
            pairs += 1
            if (a <= 0.6) == (b <= 0.6):
                agreeing += 1
            else:
                disagreements.append({"first": labels[i], "second": labels[j], "theirs": a, "ours": b})
    return {"photos": len(photos), "faces": len(labels), "pairs": pairs, "agreeing_pairs": agreeing,
            "disagreements": disagreements}


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def motion_gate_check(runs: int) -> dict:
    """Frames/s with and without the motion gate on a generated clip, and whether names agree.

    Two clips of the same still hall: Grace Hopper walking in, standing 3 s and walking out (the
    gate re-checks her every 3rd frame while she stands), and the hall with nobody in it.
    """
    import os
    import tempfile

    import matplotlib
    from PIL import Image

    from slimvision.assets import samples_dir
    from slimvision.data.face_clips import DoorClip
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery
    from slimvision.inference.face_video import recognize_frames
    from slimvision.inference.motion_gate import MotionGate

    hall = np.asarray(Image.open(samples_dir() / "content" / "coffee.jpg").convert("RGB").resize((640, 480)))
    portrait = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    visitor = np.asarray(portrait.resize((200, 234)))
    clips = {"visitor": DoorClip(hall, visitor, frames=300, enter=120, stay=45, walk=10),
             "empty hall": DoorClip(hall, visitor, frames=300, enter=10_000)}
    recognizer = our_recognizer()
    report: dict = {"load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as folder:
        gallery = Gallery.open(Path(folder) / "door.sqlite", DLIB_RESNET_V1)
        gallery.add("Grace Hopper", recognizer.main_face(np.asarray(portrait)).descriptor[None])
        for clip_name, clip in clips.items():
            frames = list(clip.frames())
            times: dict[str, list[float]] = {"every frame": [], "gated": []}
            names: dict[str, list[list[str]]] = {}
            reasons: dict[str, int] = {}
            for _ in range(runs):
                for kind in times:
                    gate = MotionGate() if kind == "gated" else None
                    start = time.perf_counter()
                    results = list(recognize_frames(frames, recognizer, gate, gallery))
                    times[kind].append(time.perf_counter() - start)
                    names[kind] = [result.names for result in results]
                    if gate is not None:
                        reasons = {}
                        for result in results:
                            if result.processed:
                                reasons[result.reason] = reasons.get(result.reason, 0) + 1
            fps = {kind: len(frames) / statistics.median(values) for kind, values in times.items()}
            row = {"frames": len(frames), "fps": fps, "speedup": fps["gated"] / fps["every frame"],
                   "processed": sum(reasons.values()), "processed_by_reason": reasons,
                   "same_names_every_frame": names["gated"] == names["every frame"],
                   "frames_naming_the_visitor": sum("Grace Hopper" in n for n in names["gated"])}
            if clip_name == "visitor":
                report.update(row)  # the keys this report always had
            else:
                report[clip_name] = row
    report["load_average_after"] = os.getloadavg()[0]
    return report


def print_gate(gate: dict) -> None:
    print(f"motion gate, {gate['frames']}-frame door clip: {gate['fps']['every frame']:.1f} -> "
          f"{gate['fps']['gated']:.1f} frames/s ({gate['speedup']:.2f}x), {gate['processed']} frames processed "
          f"{gate['processed_by_reason']}; same people named in every frame: {gate['same_names_every_frame']}")
    empty = gate["empty hall"]
    print(f"  the hall with nobody in it: {empty['fps']['every frame']:.1f} -> {empty['fps']['gated']:.1f} frames/s "
          f"({empty['speedup']:.2f}x), {empty['processed']} frames processed; load average "
          f"{gate['load_average_before']:.1f} before, {gate['load_average_after']:.1f} after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--gallery-size", type=int, default=100_000, help="descriptors in the search test")
    parser.add_argument("--clip-runs", type=int, default=2, help="runs of the gate clip each way")
    parser.add_argument("--photos", type=Path, help="folder of photos for the decision-agreement check")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--gate-only", action="store_true",
                        help="only the motion-gate clips; replaces the motion_gate entry of --output")
    args = parser.parse_args()
    if args.gate_only:
        return gate_only(args.output, args.clip_runs)

    import dlib
    from PIL import Image

    from slimvision.data.face_align import align_face
    from slimvision.io.atomic import write_text_atomic
    from slimvision.registry import ARTIFACTS

    # Ours: the registered embedder's graph, fed as its card says (no threads cap: dlib uses all).
    embedder = our_recognizer(threads=None)
    # The peer: dlib on the same .dat, with the 5-point landmark model beside it in its package.
    dat = ARTIFACTS.spec(EMBEDDER).paths()["embedder"]
    detector = dlib.get_frontal_face_detector()
    landmarks5 = dlib.shape_predictor(str(dat.parent / "shape_predictor_5_face_landmarks.dat"))
    recogniser = dlib.face_recognition_model_v1(str(dat))

    def embed(chip):
        """One (150, 150, 3) uint8 chip -> our 128-d descriptor."""
        return embedder.network.run({embedder.card.input.name: embedder.card.to_input(chip[None])})[0][0]

    def ours(image, points):
        return embed(align_face(image, points))  # dlib's own 5 points, onto dlib's chip

    def theirs(image, shape):
        return np.array(recogniser.compute_face_descriptor(dlib.get_face_chip(image, shape, size=150, padding=0.25)))

    faces = []
    for path in photos():
        image = np.asarray(Image.open(path).convert("RGB"))
        for box in detector(image, 1):
            shape = landmarks5(image, box)
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], float)
            faces.append((path.name, image, shape, points))
    times = {"dlib": [], "ours": []}
    for _ in range(args.repeats):
        for _, image, shape, points in faces:
            for name, run in (("dlib", lambda: theirs(image, shape)), ("ours", lambda: ours(image, points))):
                time.sleep(0.02)
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    rows = []
    for name, image, shape, points in faces:
        a, b = theirs(image, shape), ours(image, points)
        parity = float(np.abs(embed(dlib.get_face_chip(image, shape, size=150, padding=0.25)) - a).max())
        rows.append({"photo": name, "descriptor_distance": float(np.linalg.norm(a - b)), "port_max_abs_diff": parity})
    medians = {name: 1000 * statistics.median(values) for name, values in times.items()}
    report = {"faces": rows, "align_embed_ms": medians, "ratio_ours_over_dlib": medians["ours"] / medians["dlib"],
              "repeats": args.repeats,
              "identify": identify_timings([ours(image, points) for _, image, _, points in faces],
                                           args.gallery_size, args.repeats),
              "pipeline_640x480": pipeline_timings(args.repeats),
              "motion_gate": motion_gate_check(args.clip_runs),
              "decisions": decision_agreement(args.photos) if args.photos else None}
    print(f"align + embed one face (medians of {args.repeats} x {len(faces)} faces): "
          f"dlib {medians['dlib']:.1f} ms, ours {medians['ours']:.1f} ms, ratio {report['ratio_ours_over_dlib']:.3f}")
    for row in rows:
        print(f"  {row['photo']:<18} our chip vs dlib's: descriptor distance {row['descriptor_distance']:.4f}; "
              f"port on dlib's chip: max abs diff {row['port_max_abs_diff']:.1e}")
    for kind, row in report["identify"]["ms_per_query"].items():
        print(f"identify in a {args.gallery_size:,}-descriptor gallery ({kind}): {row:.2f} ms per query (median); "
              f"real faces found themselves: {report['identify']['found_themselves'][kind]}")
    pipeline = report["pipeline_640x480"]
    if pipeline:
        print(f"detect + align + embed, one face in 640x480 (medians of {args.repeats}): face_recognition "
              f"{pipeline['ms']['face_recognition']:.1f} ms; ours (40 px) {pipeline['ms']['ours, faces from 40 px']:.1f} "
              f"ms, ratio {pipeline['ratio_40px']:.3f}; ours (20 px) {pipeline['ms']['ours, faces from 20 px']:.1f} ms, "
              f"ratio {pipeline['ratio_20px']:.3f}; descriptor distance {pipeline['descriptor_distance']:.3f}")
    print_gate(report["motion_gate"])
    decisions = report["decisions"]
    if decisions:
        print(f"same/different decisions on {decisions['faces']} faces of {decisions['photos']} photos: "
              f"{decisions['agreeing_pairs']} of {decisions['pairs']} pairs agree with face_recognition")
        for row in decisions["disagreements"]:
            print(f"  {row['first']} / {row['second']}: theirs {row['theirs']:.3f}, ours {row['ours']:.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(f"written to {args.output}")


def gate_only(output: Path, runs: int) -> None:
    """Measure the motion gate alone and replace its entry in ``output`` (the rest is kept)."""
    from slimvision.io.atomic import write_text_atomic

    report = json.loads(output.read_text()) if output.is_file() else {}
    report["motion_gate"] = motion_gate_check(runs)
    print_gate(report["motion_gate"])
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output, json.dumps(report, indent=2) + "\n", overwrite=True)
    print(f"written to {output}")


if __name__ == "__main__":
    main()
