"""``slimvision faces ...``: detect, verify, enrol, identify, and edit the gallery."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimvision.errors import SlimvisionError


def add_commands(groups: argparse._SubParsersAction) -> None:
    faces = groups.add_parser("faces", help="face detection, verification and identification",
                              description="Find faces (MTCNN), compare them (dlib's ResNet, read without dlib) "
                                          "and recognise enrolled people, all on ONNX Runtime.")
    commands = faces.add_subparsers(dest="command", metavar="COMMAND", required=True)

    detect = commands.add_parser("detect", help="find faces and their 5 landmarks",
                                 description="Print each face's box, score and landmarks.")
    detect.add_argument("images", nargs="+", type=Path)
    _output_options(detect)
    detect.set_defaults(run=run_detect)

    verify = commands.add_parser("verify", help="are the main faces of two images the same person?",
                                 description="Compare the largest face of each image. Exit status 0: same person, "
                                             "1: different people.")
    verify.add_argument("first", type=Path)
    verify.add_argument("second", type=Path)
    verify.add_argument("--threshold", type=float, help="same-person distance (default 0.6, dlib's calibration)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    _detector_options(verify)
    verify.set_defaults(run=run_verify)

    enroll = commands.add_parser("enroll", help="add people from a folder of photos to a gallery",
                                 description="Enrol FOLDER/<name>/*.jpg: one descriptor per photo's main face. "
                                             "Photos with no face, or several faces of similar size, are reported "
                                             "and left out. All-or-nothing: an interrupted run changes nothing.")
    enroll.add_argument("folder", type=Path)
    enroll.add_argument("--gallery", type=Path, required=True, help="gallery file (SQLite; created if missing)")
    enroll.add_argument("--json", action="store_true", help="print the report as JSON")
    _detector_options(enroll)
    enroll.set_defaults(run=run_enroll)

    identify = commands.add_parser("identify", help="who is in these images? (1:N against a gallery)",
                                   description="For every face: the nearest enrolled people, and the name when "
                                               "the nearest is within the threshold ('unknown' otherwise).")
    identify.add_argument("images", nargs="+", type=Path)
    identify.add_argument("--gallery", type=Path, required=True)
    identify.add_argument("--top-k", type=int, default=3, help="nearest people listed per face (default 3)")
    identify.add_argument("--threshold", type=float, help="same-person distance (default 0.6)")
    _output_options(identify)
    identify.set_defaults(run=run_identify)

    video = commands.add_parser("video", help="recognise faces in a video, skipping frames where nothing moved",
                                description="Detect (and with --gallery, identify) faces frame by frame. The motion "
                                            "gate repeats the last result on frames where nothing moved. Writes the "
                                            "video with boxes and names drawn (-o) and, with --events, one JSON line "
                                            "each time the people in view change.")
    video.add_argument("source", help="video file, webcam number (0) or stream URL (webcams/streams need OpenCV)")
    video.add_argument("-o", "--output", type=Path, help="annotated video to write (.mp4, .mkv, .webm, ...)")
    video.add_argument("--gallery", type=Path, help="gallery of enrolled people to identify")
    video.add_argument("--events", "--json", dest="events", type=Path,
                       help="JSON lines: who entered and left, frame by frame")
    video.add_argument("--no-gate", action="store_true", help="process every frame")
    video.add_argument("--max-frames", type=int, help="stop after this many frames (for cameras)")
    video.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    _detector_options(video)
    video.set_defaults(run=run_video)

    evaluate = commands.add_parser("eval", help="verification accuracy under the LFW pairs protocol",
                                   description="Score same/different-person decisions on the pairs of an LFW-format "
                                               "pairs.txt: 10-fold accuracy (thresholds chosen on the other folds), "
                                               "TAR at FAR=1e-3, and the ROC curve.")
    evaluate.add_argument("--pairs", type=Path, required=True, help="pairs.txt (LFW format)")
    evaluate.add_argument("--root", type=Path, required=True, help="folder holding NAME/NAME_0001.jpg ...")
    evaluate.add_argument("--extension", default="jpg", help="image file extension (default jpg)")
    evaluate.add_argument("--roc", type=Path, help="save the ROC curve as this PNG")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.add_argument("--overwrite", action="store_true", help="replace the ROC image if it exists")
    _detector_options(evaluate)
    evaluate.set_defaults(run=run_eval)

    gallery = commands.add_parser("gallery", help="list, add, remove or rename enrolled people",
                                  description="Edit a gallery file; every change is one transaction. add NAME "
                                              "PHOTO...: enrol more photos of one person (each photo's main face).")
    gallery.add_argument("action", choices=["list", "add", "remove", "rename"])
    gallery.add_argument("names", nargs="*", help="add: NAME PHOTO...; remove: NAME; rename: OLD NEW")
    gallery.add_argument("--gallery", type=Path, required=True)
    gallery.add_argument("--json", action="store_true")
    _detector_options(gallery)
    gallery.set_defaults(run=run_gallery)


def _detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-face", type=float, default=40, help="smallest face searched, px (default 40)")
    parser.add_argument("--min-score", type=float, default=0.9, help="face probability kept (default 0.9)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")


def _output_options(parser: argparse.ArgumentParser) -> None:
    _detector_options(parser)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--annotate", type=Path, metavar="FOLDER",
                        help="also save each image with boxes, landmarks and labels drawn, into FOLDER")
    parser.add_argument("--overwrite", action="store_true", help="replace annotated images that exist")


def _recognizer(args: argparse.Namespace) -> Any:
    from slimvision.inference.faces import FaceRecognizer
    from slimvision.inference.session import SessionSettings

    if args.min_face < 12:
        raise SlimvisionError(f"--min-face must be at least 12 px (MTCNN's window), got {args.min_face:g}")
    return FaceRecognizer(SessionSettings(threads=args.threads), min_face_size=args.min_face,
                          min_score=args.min_score, threshold=getattr(args, "threshold", None))


def _face_json(face: Any) -> dict[str, Any]:
    return {"box": [round(float(v), 1) for v in face.box], "score": round(float(face.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]}


def _save_annotated(args: argparse.Namespace, path: Path, image: Any, faces: list[Any]) -> None:
    if args.annotate is None:
        return
    from slimvision.inference.faces import annotate
    from slimvision.io.images import save_image

    save_image(annotate(image, faces), args.annotate / f"{path.stem}.faces.png", overwrite=args.overwrite,
               protected=args.images)


def run_detect(args: argparse.Namespace) -> int:
    from slimvision.io.images import load_image

    recognizer = _recognizer(args)
    results = {}
    for path in args.images:
        image = load_image(path, min_side=int(args.min_face))
        faces = recognizer.detect(image)
        results[str(path)] = [_face_json(face) for face in faces]
        _save_annotated(args, path, image, faces)
        if not args.json:
            print(f"{path}: {len(faces)} face{'s' * (len(faces) != 1)}")
            for face in faces:
                print(f"  box {tuple(round(v) for v in face.box)}  score {face.score:.3f}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from slimvision.io.images import load_image

    recognizer = _recognizer(args)
    first, second = (load_image(path, min_side=int(args.min_face)) for path in (args.first, args.second))
    result = recognizer.verify(first, second, (str(args.first), str(args.second)))
    if args.json:
        print(json.dumps({"first": str(args.first), "second": str(args.second), "distance": result.distance,
                          "similarity": result.similarity, "threshold": result.threshold,
                          "same_person": result.same_person}, indent=2))
    else:
        verdict = "same person" if result.same_person else "different people"
        print(f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold:g}), "
              f"similarity {result.similarity:.4f}")
    return 0 if result.same_person else 1


def _open_gallery(path: Path, create: bool) -> Any:
    from slimvision.errors import InputError
    from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery

    if not create and not path.is_file():
        raise InputError(path, "no such gallery (make one with 'slimvision faces enroll')")
    return Gallery.open(path, DLIB_RESNET_V1)


def run_enroll(args: argparse.Namespace) -> int:
    from slimvision.inference.faces import enroll_folder

    gallery = _open_gallery(args.gallery, create=True)
    report = enroll_folder(_recognizer(args), gallery, args.folder, progress=not args.json)
    if args.json:
        print(json.dumps({"added": report.added, "skipped": report.skipped, "gallery": str(args.gallery)}, indent=2))
    else:
        total = sum(report.added.values())
        print(f"enrolled {total} photo{'s' * (total != 1)} of {len(report.added)} "
              f"{'person' if len(report.added) == 1 else 'people'} into {args.gallery}")
        for path, reason in report.skipped.items():
            print(f"  skipped {path}: {reason}")
    return 0 if report.added else 1


def run_identify(args: argparse.Namespace) -> int:
    from slimvision.io.images import load_image

    if args.top_k < 1:
        raise SlimvisionError(f"--top-k must be at least 1, got {args.top_k}")
    gallery = _open_gallery(args.gallery, create=False)
    recognizer = _recognizer(args)
    results = {}
    for path in args.images:
        image = load_image(path, min_side=int(args.min_face))
        faces = recognizer.identify(image, gallery, args.top_k)
        results[str(path)] = [{**_face_json(face.face), "name": face.name,
                               "matches": [{"name": m.name, "distance": round(m.distance, 4), "match": m.is_match}
                                           for m in face.matches]} for face in faces]
        _save_annotated(args, path, image, faces)
        if not args.json:
            print(f"{path}: {len(faces)} face{'s' * (len(faces) != 1)}")
            for face in faces:
                nearest = ", ".join(f"{m.name} {m.distance:.3f}" for m in face.matches)
                print(f"  {face.name or 'unknown'}  box {tuple(round(v) for v in face.face.box)}  nearest: {nearest}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    gallery = _open_gallery(args.gallery, create=args.action == "add")
    wanted = {"list": 0, "remove": 1, "rename": 2}.get(args.action)
    if (len(args.names) != wanted) if wanted is not None else len(args.names) < 2:
        usage = {"list": "no names", "add": "NAME PHOTO...", "remove": "one NAME", "rename": "OLD NEW"}[args.action]
        raise SlimvisionError(f"gallery {args.action} takes {usage}, got {len(args.names)} arguments")
    if args.action == "add":
        return _add_photos(args, gallery)
    if args.action == "remove":
        count = gallery.remove(args.names[0])
        print(f"removed {args.names[0]!r} ({count} descriptor{'s' * (count != 1)})")
    elif args.action == "rename":
        gallery.rename(*args.names)
        print(f"renamed {args.names[0]!r} to {args.names[1]!r}")
    else:
        people = gallery.people()
        if args.json:
            print(json.dumps([{"name": p.name, "faces": p.faces, "added": p.added} for p in people], indent=2))
        else:
            info = gallery.embedder
            print(f"{args.gallery}: {len(people)} people, {info.name} v{info.version} descriptors")
            for person in people:
                print(f"  {person.name}  ({person.faces} photo{'s' * (person.faces != 1)}, since {person.added})")
    return 0


def run_video(args: argparse.Namespace) -> int:
    import contextlib
    import itertools
    import time

    from slimvision.inference.face_video import open_stream, recognize_frames
    from slimvision.inference.faces import annotate
    from slimvision.inference.motion_gate import MotionGate
    from slimvision.io.atomic import atomic_write
    from slimvision.io.video import VideoWriter

    if args.output is None and args.events is None:
        raise SlimvisionError("faces video: give -o OUT.mp4 and/or --json EVENTS.jsonl")
    if args.max_frames is not None and args.max_frames < 1:
        raise SlimvisionError(f"--max-frames must be at least 1, got {args.max_frames}")
    frames, fps, (width, height) = open_stream(args.source)
    if args.max_frames is not None:
        frames = itertools.islice(frames, args.max_frames)
    gallery = _open_gallery(args.gallery, create=False) if args.gallery else None
    gate = None if args.no_gate else MotionGate()
    results = recognize_frames(frames, _recognizer(args), gate, gallery)
    protected = [args.source] if Path(args.source).is_file() else []
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(VideoWriter(args.output, width=width, height=height, fps=fps,
                                                 overwrite=args.overwrite, protected=protected)) if args.output else None
        events = stack.enter_context(_text_output(args.events, args.overwrite, atomic_write)) if args.events else None
        present: list[str] = []
        started, count, processed = time.perf_counter(), 0, 0
        for result in results:
            count, processed = count + 1, processed + result.processed
            if writer is not None:
                writer.write(annotate(result.frame, result.faces) if result.faces else result.frame)
            if result.names != present and events is not None:
                events.write(json.dumps({"frame": result.index, "time_s": round(result.index / fps, 3),
                                         "present": result.names,
                                         "entered": sorted(set(result.names) - set(present)),
                                         "left": sorted(set(present) - set(result.names))}) + "\n")
            present = result.names
        seconds = time.perf_counter() - started
    print(f"{count} frames in {seconds:.1f} s ({count / max(seconds, 1e-9):.1f} frames/s): {processed} processed, "
          f"{count - processed} skipped by the motion gate" + (" (off)" if gate is None else ""))
    return 0


def _text_output(path: Path, overwrite: bool, atomic_write: Any) -> Any:
    """A text file opened for writing, moved into place only if everything succeeds."""
    import contextlib

    @contextlib.contextmanager
    def opened() -> Any:
        with atomic_write(path, overwrite=overwrite) as temp, open(temp, "w") as handle:
            yield handle

    return opened()


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from slimvision.bench.face_eval import pair_distances, read_pairs, save_roc_plot, verification_scores
    from slimvision.errors import InputError

    pairs = read_pairs(args.pairs, args.root, args.extension)
    missing = [str(path) for pair in pairs for path in (pair.first, pair.second) if not path.is_file()]
    if missing:
        raise InputError(missing[0], f"image listed in {args.pairs} not found ({len(set(missing))} missing in all)")
    if args.roc is not None and args.roc.exists() and not args.overwrite:
        raise SlimvisionError(f"{args.roc}: exists; pass --overwrite to replace it")
    recognizer = _recognizer(args)
    distances, faceless = pair_distances(pairs, recognizer, progress=not args.json)
    scores = verification_scores(distances, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
    scores["images_without_a_face"] = faceless
    if args.roc is not None:
        save_roc_plot(scores, args.roc, label=recognizer.embedder.name)
    if args.json:
        print(json.dumps({key: value for key, value in scores.items() if key != "roc"}, indent=2))
    else:
        print(f"{scores['pairs']} pairs, {len(set(p.fold for p in pairs))} folds: accuracy {scores['accuracy']:.4f} "
              f"+- {scores['accuracy_std']:.4f}, TAR {scores['tar_at_far']:.4f} at FAR {scores['far']:g}")
        if faceless:
            print(f"  no face found in {len(faceless)} images (their pairs count as 'different'): {faceless[:3]}")
    return 0


def _add_photos(args: argparse.Namespace, gallery: Any) -> int:
    """``gallery add NAME PHOTO...``: every photo's main face, all in one transaction."""
    import numpy as np

    from slimvision.io.images import load_image

    name, photos = args.names[0], [Path(photo) for photo in args.names[1:]]
    recognizer = _recognizer(args)
    vectors = [recognizer.main_face(load_image(photo, min_side=int(args.min_face)), str(photo)).descriptor
               for photo in photos]
    count = gallery.add(name, np.stack(vectors), [str(photo) for photo in photos])
    print(f"added {count} photo{'s' * (count != 1)} of {name!r}")
    return 0

