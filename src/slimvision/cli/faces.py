"""``slimvision faces ...``: detect, verify, enrol, identify, and edit the gallery."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import (MAX_SIDE, add_json, add_overwrite, add_quiet, bounded, fraction,
                                     positive_float, positive_int, seed)
from slimvision.errors import SlimvisionError

log = logging.getLogger(__name__)

#: The box convention, stated in the help of every command that prints boxes.
BOXES = ("Boxes are x0,y0,x1,y1: whole pixels of the image as loaded (after EXIF rotation), origin top-left, "
         "x1/y1 the exclusive right/bottom edges; JSON output says \"box_format\": \"xyxy\".")
MIN_FACE = 12  # px: MTCNN's smallest window
MAX_TOP_K = 1000
MAX_THREADS = 1024
MAX_THRESHOLD = 4.0  # twice the largest distance between unit-length descriptors


def add_commands(groups: argparse._SubParsersAction) -> None:
    faces = groups.add_parser("faces", help="face detection, verification and identification",
                              description="Find faces (MTCNN), compare them (dlib's ResNet, read without dlib) "
                                          "and recognise enrolled people, all on ONNX Runtime.")
    commands = faces.add_subparsers(dest="command", metavar="COMMAND", required=True)

    detect = commands.add_parser("detect", help="find faces and their 5 landmarks",
                                 description=f"Print each face's box, score and landmarks. {BOXES}")
    detect.add_argument("images", nargs="+", type=Path, help="image files")
    _output_options(detect)
    detect.set_defaults(run=run_detect)

    verify = commands.add_parser("verify", help="are the main faces of two images the same person?",
                                 description="Compare the largest face of each image. Exit status 0: same person, "
                                             f"1: different people. {BOXES}")
    verify.add_argument("first", type=Path)
    verify.add_argument("second", type=Path)
    _threshold_option(verify)
    add_json(verify)
    _detector_options(verify)
    _model_option(verify)
    verify.set_defaults(run=run_verify)

    enroll = commands.add_parser("enroll", help="add people from a folder of photos to a gallery",
                                 description="Enrol FOLDER/<name>/*.jpg: one descriptor per photo's main face. "
                                             "Photos with no face, or several faces of similar size, are reported "
                                             "and left out (exit status 1), as are photos the gallery holds already "
                                             "(so enrolling a grown folder again adds only the new ones). "
                                             "All-or-nothing: an interrupted run changes nothing, and the gallery "
                                             "file is created (readable by you only) only when someone is enrolled. "
                                             "The gallery records each photo's file name, not where it is.")
    enroll.add_argument("folder", type=Path)
    _gallery_option(enroll, "gallery file (SQLite; created if missing)")
    _store_paths_option(enroll)
    add_json(enroll, "the report")
    add_quiet(enroll)
    _detector_options(enroll)
    _model_option(enroll)
    enroll.set_defaults(run=run_enroll)

    identify = commands.add_parser("identify", help="who is in these images? (1:N against a gallery)",
                                   description="For every face: the nearest enrolled people, and the name when "
                                               f"the nearest is within the threshold ('unknown' otherwise). {BOXES}")
    identify.add_argument("images", nargs="+", type=Path, help="image files")
    _gallery_option(identify, "gallery file to search (never changed)")
    identify.add_argument("--top-k", type=positive_int("--top-k", MAX_TOP_K), default=3,
                          help="nearest people listed per face (default 3)")
    _threshold_option(identify)
    _output_options(identify)
    _model_option(identify)
    identify.set_defaults(run=run_identify)

    video = commands.add_parser("video", help="recognise faces in a video, skipping frames where nothing moved",
                                description="Detect (and with --gallery, identify) faces frame by frame. The motion "
                                            "gate repeats the last result on frames where nothing moved, and "
                                            "re-checks every 3rd frame while a face is in view, so a person who "
                                            "leaves is noticed within 2 frames. Writes the video with boxes "
                                            "(x0,y0,x1,y1 px, exclusive right/bottom edges) and names drawn (-o) and "
                                            "one JSON line each time the people in view change (--events FILE; "
                                            "without it, the changes are printed).")
    video.add_argument("source", help="video file, webcam number (0) or stream URL (webcams/streams need OpenCV)")
    video.add_argument("-o", "--output", type=Path, help="annotated video to write (.mp4, .mkv, .webm, ...)")
    video.add_argument("--gallery", type=gallery_location, help="gallery of enrolled people to identify")
    video.add_argument("--events", type=Path, metavar="FILE",
                       help="write JSON lines to FILE: who entered and left, frame by frame")
    video.add_argument("--no-gate", action="store_true", help="process every frame")
    video.add_argument("--max-frames", type=positive_int("--max-frames"),
                       help="stop after this many frames (for cameras; Ctrl-C also stops a camera or "
                            "stream and keeps what was recorded)")
    add_overwrite(video)
    add_json(video, "a summary (frames processed and skipped, the events)")
    add_quiet(video)
    _detector_options(video)
    _model_option(video)
    video.set_defaults(run=run_video)

    evaluate = commands.add_parser(
        "eval", help="verification accuracy under the LFW pairs protocol, or robustness to image damage",
        description="Score same/different-person decisions on the pairs of an LFW-format pairs.txt: 10-fold "
                    "accuracy (thresholds chosen on the other folds), TAR at FAR=1e-3, and the ROC curve. "
                    "With --robustness instead: damage every face of --photos by JPEG (quality 10-95), "
                    "shrinking (face widths 24-150 px), blur, noise, greyscale and 'night IR', and report how "
                    "often the decision 'clean face i vs damaged face j' still equals the clean decision, how "
                    "often a damaged face still matches itself, and how far descriptors drift.")
    evaluate.add_argument("--pairs", type=Path, help="pairs.txt (LFW format)")
    evaluate.add_argument("--root", type=Path, help="folder holding NAME/NAME_0001.jpg ...")
    evaluate.add_argument("--extension", default="jpg", help="image file extension (default jpg)")
    evaluate.add_argument("--roc", type=Path, help="save the ROC curve as this PNG")
    evaluate.add_argument("--robustness", action="store_true",
                          help="measure robustness to image damage on --photos instead of LFW pairs")
    evaluate.add_argument("--photos", type=Path, nargs="+", metavar="PATH",
                          help="with --robustness: photos of people, files or folders (default: the real photos "
                               "installed packages ship: astronaut, Grace Hopper, messi5); every face at least "
                               "48 px wide counts, at least 2 are needed")
    evaluate.add_argument("--curves", type=Path, help="with --robustness: save the curves as this PNG")
    evaluate.add_argument("--compare", nargs="+", default=[], metavar="NAME_OR_ONNX",
                          help="with --robustness: more embedders measured beside --model, which is the "
                               "reference (e.g. --model the teacher, --compare its students)")
    evaluate.add_argument("--seed", type=seed(), default=0, help="with --robustness: the noise draws (default 0)")
    add_json(evaluate, "the scores")
    add_overwrite(evaluate, "the ROC or curves image")
    add_quiet(evaluate)
    _detector_options(evaluate)
    _model_option(evaluate)
    evaluate.set_defaults(run=run_eval)

    _gallery_commands(commands)


def _gallery_commands(commands: argparse._SubParsersAction) -> None:
    """``faces gallery list|add|remove|rename``: one sub-command each, with its own arguments, so
    options may come anywhere (``gallery rename --gallery g OLD NEW``)."""
    gallery = commands.add_parser("gallery", help="list, add, remove, rename enrolled people; migrate a gallery",
                                  description="Read or edit a gallery file; every change is one transaction.")
    actions = gallery.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="the enrolled people", description="The enrolled people, by name.")
    _gallery_option(listing, "gallery file (never changed)")
    add_json(listing, "the people")
    listing.set_defaults(run=run_gallery_list)

    add = actions.add_parser("add", help="enrol more photos of one person",
                             description="Enrol more photos of one person (each photo's main face), all in one "
                                         "transaction; photos the gallery holds already are reported and left out. "
                                         "Creates the gallery if it does not exist.")
    add.add_argument("name", help="the person's name")
    add.add_argument("photos", nargs="+", type=Path, metavar="PHOTO", help="photos of them (each photo's main face)")
    _gallery_option(add, "gallery file (SQLite; created if missing)")
    _store_paths_option(add)
    add_json(add, "the report")
    add_quiet(add)
    _detector_options(add)
    _model_option(add)
    add.set_defaults(run=run_gallery_add)

    remove = actions.add_parser("remove", help="remove a person and all their photos' descriptors",
                                description="Remove a person and all their descriptors.")
    remove.add_argument("name", help="the person's name")
    _gallery_option(remove, "gallery file")
    add_json(remove)
    remove.set_defaults(run=run_gallery_remove)

    rename = actions.add_parser("rename", help="rename a person", description="Rename a person.")
    rename.add_argument("old", help="the person's name now")
    rename.add_argument("new", help="their new name (not taken by anyone else)")
    _gallery_option(rename, "gallery file")
    add_json(rename)
    rename.set_defaults(run=run_gallery_rename)

    migrate = actions.add_parser("migrate", help="copy a gallery into another store (SQLite <-> Milvus)",
                                 description="Copy every person, descriptor, source and photo digest of SRC into "
                                             "DST, a new or empty gallery (an SQLite file or milvus://...), with "
                                             "SRC's model record. SRC is never changed.")
    migrate.add_argument("source", type=gallery_location, metavar="SRC", help="the gallery to copy (never changed)")
    migrate.add_argument("destination", type=gallery_location, metavar="DST", help="a new or empty gallery")
    add_json(migrate, "the report")
    migrate.set_defaults(run=run_gallery_migrate)


def _gallery_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--gallery", type=gallery_location, required=True,
                        help=help + "; or milvus:///path/faces.db (milvus-lite) or milvus://HOST:19530/COLLECTION")


def gallery_location(text: str) -> Path | str:
    """A gallery file as a Path, or a store URI (``milvus://...``) kept as text: a Path would fold
    its '//' away."""
    return text if text.lower().startswith("milvus:") else Path(text)


def _store_paths_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store-paths", action="store_true",
                        help="record each photo's absolute path in the gallery (default: its file name only)")


def _threshold_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=positive_float("--threshold", MAX_THRESHOLD),
                        help="same-person distance (default 0.6, dlib's calibration)")


def _detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-face", type=bounded("--min-face", float, MIN_FACE, MAX_SIDE), default=40,
                        help=f"smallest face searched, px (default 40; at least {MIN_FACE}, MTCNN's window)")
    parser.add_argument("--min-score", type=fraction("--min-score"), default=0.9,
                        help="face probability kept, 0-1 (default 0.9)")
    parser.add_argument("--threads", type=positive_int("--threads", MAX_THREADS),
                        help="ONNX Runtime threads (default: all cores)")


def _output_options(parser: argparse.ArgumentParser) -> None:
    _detector_options(parser)
    add_json(parser, "the results")
    add_quiet(parser)
    parser.add_argument("--annotate", type=Path, metavar="FOLDER",
                        help="also save each image with boxes, landmarks and labels drawn, into FOLDER")
    add_overwrite(parser, "annotated images")


#: The face pipeline's registered default (MTCNN, alignment, dlib's ResNet).
DEFAULT_EMBEDDER = "face-embedder-dlib-resnet"


def face_canvas_maker(min_face: float = 40) -> Any:
    """A :class:`~slimvision.data.face_identities.FaceCanvasMaker` that aligns each image's largest
    face found by MTCNN (the face students' and the int8 calibration's synthetic faces), or every
    face of at least ``min_face`` px (photos, ``train face-student --photos``)."""
    from slimvision.data.face_identities import FaceCanvasMaker
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.face_detect import FaceDetector

    detector = FaceDetector(SessionSettings(), min_face_size=min_face)

    def largest_face_landmarks(image: Any) -> Any:
        faces = detector.detect(image)
        if not faces:
            return None
        return max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1])).landmarks

    def every_face_landmarks(image: Any) -> list[Any]:
        return [face.landmarks for face in detector.detect(image)]

    return FaceCanvasMaker(largest_face_landmarks, every_face_landmarks)


def _model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_EMBEDDER, metavar="NAME_OR_ONNX",
                        help="the face embedder: a registered name (slimvision models) or an "
                             "exported student's embedder.onnx (its card beside it) or its run folder (default "
                             f"{DEFAULT_EMBEDDER}); a gallery refuses descriptors of another model")


def _recognizer(args: argparse.Namespace) -> Any:
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.batch_tasks import face_model
    from slimvision.registry import ARTIFACTS

    settings = SessionSettings(threads=args.threads)
    options = {"min_face_size": args.min_face, "min_score": args.min_score, "threshold": getattr(args, "threshold", None)}
    model = face_model(getattr(args, "model", DEFAULT_EMBEDDER))  # a face embedder's name, or a graph with its card
    if isinstance(model, Path):
        from slimvision.inference.faces import FaceRecognizer

        return FaceRecognizer(settings, model=model, **options)
    return ARTIFACTS.create(model, settings=settings, **options)


def _face_json(face: Any, shape: tuple[int, ...]) -> dict[str, Any]:
    """A face as JSON: its box by the box convention (whole pixels, x1/y1 exclusive), score, landmarks."""
    from slimvision.inference.faces import box_xyxy

    return {"box": box_xyxy(face.box, shape), "score": round(float(face.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]}


def _box_text(face: Any, shape: tuple[int, ...]) -> str:
    from slimvision.inference.faces import box_xyxy

    return "box " + ",".join(str(value) for value in box_xyxy(face.box, shape))


def _save_annotated(args: argparse.Namespace, path: Path, image: Any, faces: list[Any]) -> None:
    if args.annotate is None:
        return
    from slimvision.inference.faces import annotate
    from slimvision.io.images import save_image

    save_image(annotate(image, faces), args.annotate / f"{path.stem}.faces.png", overwrite=args.overwrite,
               protected=args.images)


def _images(args: argparse.Namespace) -> Any:
    """(path, image) for each image argument, with a progress bar when there are several."""
    from slimvision.io.images import load_image
    from slimvision.progress import progress_bar

    with progress_bar(len(args.images), enabled=not (args.quiet or args.json) and len(args.images) > 1,
                      desc=f"faces {args.command}", unit="image", leave=False) as bar:
        for path in args.images:
            yield path, load_image(path, min_side=int(args.min_face))
            bar.update()


def run_detect(args: argparse.Namespace) -> int:
    recognizer = _recognizer(args)
    results, lines = {}, []
    for path, image in _images(args):
        faces = recognizer.detect(image)
        results[str(path)] = [_face_json(face, image.shape) for face in faces]
        _save_annotated(args, path, image, faces)
        lines.append(f"{path}: {len(faces)} face{'s' * (len(faces) != 1)}")
        lines += [f"  {_box_text(face, image.shape)}  score {face.score:.3f}" for face in faces]
    print(json.dumps({"box_format": "xyxy", "images": results}, indent=2) if args.json else "\n".join(lines))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from slimvision.inference.faces import box_xyxy
    from slimvision.io.images import load_image

    recognizer = _recognizer(args)
    first, second = (load_image(path, min_side=int(args.min_face)) for path in (args.first, args.second))
    result = recognizer.verify(first, second, (str(args.first), str(args.second)))
    if args.json:
        boxes = {key: box_xyxy(face.box, image.shape)
                 for key, face, image in zip(("first", "second"), result.faces, (first, second))}
        print(json.dumps({"first": str(args.first), "second": str(args.second), "distance": result.distance,
                          "similarity": result.similarity, "threshold": result.threshold,
                          "same_person": result.same_person, "box_format": "xyxy", "boxes": boxes}, indent=2))
    else:
        verdict = "same person" if result.same_person else "different people"
        print(f"{verdict}: distance {result.distance:.4f} (threshold {result.threshold:g}), "
              f"similarity {result.similarity:.4f}")
        for path, face, image in zip((args.first, args.second), result.faces, (first, second)):
            print(f"  {path}: {_box_text(face, image.shape)}")
    return 0 if result.same_person else 1


def _open_gallery(path: Path, create: bool = False, write: bool = False, recognizer: Any = None) -> Any:
    """The gallery at ``path``: read only unless ``write`` (an existing one) or ``create`` (made by its
    first change). An empty file, another SQLite database or a damaged file is a one-line error, as
    is a gallery of another model than ``recognizer``'s, whose record a new gallery takes. Without a
    recognizer (list, rename, remove, migrate: no descriptor is compared) any model's gallery opens."""
    from slimvision.inference.face_gallery import ANY_EMBEDDER, Gallery

    if recognizer is None and create:
        raise ValueError("a gallery is created with the record of the model that fills it")
    embedder = ANY_EMBEDDER if recognizer is None else recognizer.embedder
    return Gallery.open(path, embedder, mode="c" if create else "w" if write else "r")


def run_enroll(args: argparse.Namespace) -> int:
    from slimvision.inference.faces import enroll_folder

    recognizer = _recognizer(args)
    # A new gallery takes the model's record (a student's galleries are its own); a file that is not
    # a gallery, or a gallery of another model, is refused before any photo is read.
    with _open_gallery(args.gallery, create=True, recognizer=recognizer) as gallery:
        report = enroll_folder(recognizer, gallery, args.folder, progress=not (args.quiet or args.json),
                               store_paths=args.store_paths)
    if args.json:
        print(json.dumps({"gallery": str(args.gallery), "added": report.added, "skipped": report.skipped,
                          "failed": sorted(report.failed)}, indent=2))
    else:
        total = sum(report.added.values())
        print(f"enrolled {total} photo{'s' * (total != 1)} of {len(report.added)} "
              f"{'person' if len(report.added) == 1 else 'people'} into {args.gallery}"
              + ("" if not isinstance(args.gallery, Path) or args.gallery.exists()
                 else " (nothing to write: no gallery file made)"))
        for path, reason in report.skipped.items():
            print(f"  skipped {path}: {reason}")
    return 1 if report.failed else 0


def run_identify(args: argparse.Namespace) -> int:
    recognizer = _recognizer(args)
    with _open_gallery(args.gallery, recognizer=recognizer) as gallery:
        gallery.load()  # a damaged gallery is an error even for images without faces
        results, lines = {}, []
        for path, image in _images(args):
            faces = recognizer.identify(image, gallery, args.top_k)
            results[str(path)] = [{**_face_json(face.face, image.shape), "name": face.name,
                                   "matches": [{"name": m.name, "distance": round(m.distance, 4), "match": m.is_match}
                                               for m in face.matches]} for face in faces]
            _save_annotated(args, path, image, faces)
            lines.append(f"{path}: {len(faces)} face{'s' * (len(faces) != 1)}")
            for face in faces:
                nearest = ", ".join(f"{m.name} {m.distance:.3f}" for m in face.matches)
                lines.append(f"  {face.name or 'unknown'}  {_box_text(face.face, image.shape)}  nearest: {nearest}")
    print(json.dumps({"box_format": "xyxy", "images": results}, indent=2) if args.json else "\n".join(lines))
    return 0


def run_gallery_list(args: argparse.Namespace) -> int:
    with _open_gallery(args.gallery) as gallery:
        people, info = gallery.load().people(), gallery.embedder
    if args.json:
        print(json.dumps([{"name": p.name, "faces": p.faces, "added": p.added} for p in people], indent=2))
    else:
        print(f"{args.gallery}: {len(people)} {'person' if len(people) == 1 else 'people'}, "
              f"{info.name} v{info.version} descriptors")
        for person in people:
            print(f"  {person.name}  ({person.faces} photo{'s' * (person.faces != 1)}, since {person.added})")
    return 0


def run_gallery_remove(args: argparse.Namespace) -> int:
    with _open_gallery(args.gallery, write=True) as gallery:
        count = gallery.remove(args.name)
    if args.json:
        print(json.dumps({"removed": args.name, "descriptors": count}, indent=2))
    else:
        print(f"removed {args.name!r} ({count} descriptor{'s' * (count != 1)})")
    return 0


def run_gallery_migrate(args: argparse.Namespace) -> int:
    """``gallery migrate SRC DST``: everything in SRC into a new or empty DST, in one add (one
    transaction for SQLite; insert requests of up to 10,000 descriptors for Milvus)."""
    from slimvision.inference.face_gallery import Gallery, GalleryError, open_store

    if str(args.source) == str(args.destination):
        raise GalleryError("is both SRC and DST; name another gallery to copy into", args.source)
    with _open_gallery(args.source) as source:
        faces, embedder = source.store.export_faces(), source.embedder
    with Gallery(open_store(args.destination, embedder, mode="c")) as target:
        if target.people():
            raise GalleryError("already holds people; migrate into a new or empty gallery", args.destination)
        duplicates = target.add_people(faces) if faces else []
    count = sum(len(faces.vectors) for faces in faces.values()) - len(duplicates)
    if args.json:
        print(json.dumps({"source": str(args.source), "destination": str(args.destination), "people": len(faces),
                          "descriptors": count, "duplicates_left_out": len(duplicates)}, indent=2))
    else:
        print(f"copied {count} descriptor{'s' * (count != 1)} of {len(faces)} "
              f"{'person' if len(faces) == 1 else 'people'} from {args.source} to {args.destination}")
    return 0


def run_gallery_rename(args: argparse.Namespace) -> int:
    with _open_gallery(args.gallery, write=True) as gallery:
        gallery.rename(args.old, args.new)
    if args.json:
        print(json.dumps({"renamed": args.old, "to": " ".join(args.new.split())}, indent=2))
    else:
        print(f"renamed {args.old!r} to {' '.join(args.new.split())!r}")
    return 0


def run_video(args: argparse.Namespace) -> int:
    import contextlib
    import itertools
    import time

    from slimvision.inference.face_video import PresenceEvents, open_stream, recognize_frames
    from slimvision.inference.faces import annotate
    from slimvision.inference.motion_gate import MotionGate
    from slimvision.io.atomic import atomic_write
    from slimvision.io.video import VideoWriter
    from slimvision.progress import progress_bar

    inputs = [Path(args.source)] if Path(args.source).is_file() else []
    inputs += [args.gallery] if isinstance(args.gallery, Path) else []
    _check_video_outputs(args, inputs)  # all of them, before anything is read or written
    stream = open_stream(args.source)
    frames, length = stream.frames, stream.length
    if args.max_frames is not None:
        frames, length = itertools.islice(frames, args.max_frames), min(length or args.max_frames, args.max_frames)
    recognizer = _recognizer(args)
    gallery = _open_gallery(args.gallery, recognizer=recognizer) if args.gallery else None
    gate = None if args.no_gate else MotionGate()
    results = recognize_frames(frames, recognizer, gate, gallery)
    presence, events = PresenceEvents(stream.fps), []
    width, height = stream.size
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(VideoWriter(args.output, width=width, height=height, fps=stream.fps or 25.0,
                                                 overwrite=args.overwrite, protected=inputs)) if args.output else None
        lines = stack.enter_context(_text_output(args.events, args.overwrite, inputs, atomic_write)) \
            if args.events else None
        bar = stack.enter_context(progress_bar(length, enabled=not (args.quiet or args.json), unit="frame",
                                               desc="faces video", leave=False))
        started, count, processed = time.perf_counter(), 0, 0
        try:
            for result in results:
                count, processed = count + 1, processed + result.processed
                bar.update()
                if writer is not None:
                    writer.write(annotate(result.frame, result.faces) if result.faces else result.frame)
                event = presence.update(result)
                if event is not None:
                    events.append(event)
                    if lines is not None:
                        lines.write(json.dumps(event) + "\n")
                    elif not args.json:
                        print(_event_text(event))
        except KeyboardInterrupt:
            # A camera or stream has no end: Ctrl-C is how a recording stops, so what was
            # recorded is kept. A file has an end; Ctrl-C there aborts and leaves nothing.
            if inputs and Path(args.source).is_file():
                raise
            log.info("stopped by Ctrl-C after %d frames; the outputs keep them", count)
        seconds = time.perf_counter() - started
    _print_video_summary(args, count, processed, seconds, gate is not None, events)
    return 0


def _check_video_outputs(args: argparse.Namespace, inputs: list[Path]) -> None:
    """Refuse an output that is an input, a folder, two outputs with one name, or (without
    --overwrite) one that exists."""
    from slimvision.errors import OutputError

    outputs = [path for path in (args.output, args.events) if path is not None]
    for output in outputs:
        if any(_same_path(output, source) for source in inputs):
            raise OutputError(output, "is an input file; refusing to overwrite an input")
        if output.is_dir():
            raise OutputError(output, "is a directory; give a file name for the output")
        if output.exists() and not args.overwrite:
            raise OutputError(output, "exists; pass --overwrite to replace it")
    if len(outputs) == 2 and _same_path(*outputs):
        raise OutputError(args.events, "is also the -o video; give the events file a name of its own")


def _same_path(a: Path, b: Path) -> bool:
    """Whether two paths name one file (links included), or would once created."""
    import os

    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _event_text(event: dict[str, Any]) -> str:
    """One line per change of the people in view."""
    when = f"frame {event['frame']}" + (f" ({event['time_s']:.2f} s)" if event["time_s"] is not None else "")
    changes = [f"{verb} {', '.join(names)}" for verb, names in (("entered", event["entered"]),
                                                                 ("left", event["left"])) if names]
    return f"{when}: {'; '.join(changes)}"


def _print_video_summary(args: argparse.Namespace, count: int, processed: int, seconds: float, gated: bool,
                         events: list[dict[str, Any]]) -> None:
    rate = count / max(seconds, 1e-9)
    if args.json:
        print(json.dumps({"source": args.source, "frames": count, "processed": processed,
                          "skipped": count - processed, "motion_gate": gated, "seconds": round(seconds, 3),
                          "frames_per_second": round(rate, 2), "output": str(args.output) if args.output else None,
                          "events_file": str(args.events) if args.events else None, "events": events}, indent=2))
        return
    print(f"{count} frames in {seconds:.1f} s ({rate:.1f} frames/s): {processed} processed, "
          f"{count - processed} skipped by the motion gate" + ("" if gated else " (off)"))


def _text_output(path: Path, overwrite: bool, protected: list[Path], atomic_write: Any) -> Any:
    """A text file opened for writing, moved into place only if everything succeeds."""
    import contextlib

    @contextlib.contextmanager
    def opened() -> Any:
        with atomic_write(path, overwrite=overwrite, protected=protected) as temp, open(temp, "w") as handle:
            yield handle

    return opened()


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from slimvision.bench.face_eval import pair_distances, read_pairs, save_roc_plot, verification_scores
    from slimvision.errors import InputError

    if args.robustness:
        return run_robustness(args)
    if args.pairs is None or args.root is None or args.photos or args.curves or args.compare:
        raise SlimvisionError("faces eval: give --pairs and --root (LFW protocol), or --robustness "
                              "[--photos ...] [--curves PNG]")
    pairs = read_pairs(args.pairs, args.root, args.extension)
    missing = [str(path) for pair in pairs for path in (pair.first, pair.second) if not path.is_file()]
    if missing:
        raise InputError(missing[0], f"image listed in {args.pairs} not found ({len(set(missing))} missing in all)")
    if args.roc is not None and args.roc.exists() and not args.overwrite:
        raise SlimvisionError(f"{args.roc}: exists; pass --overwrite to replace it")
    recognizer = _recognizer(args)
    distances, faceless = pair_distances(pairs, recognizer, progress=not (args.quiet or args.json))
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


def run_robustness(args: argparse.Namespace) -> int:
    """``faces eval --robustness``: the damage table of :mod:`slimvision.bench.face_robustness`."""
    from slimvision.bench.face_robustness import (
        find_faces, installed_face_photos, recognizer_under_test, robustness_table, save_robustness_plot,
    )

    if args.pairs is not None or args.root is not None or args.roc is not None:
        raise SlimvisionError("faces eval --robustness: --pairs, --root and --roc belong to the LFW protocol; "
                              "give --photos (and --curves PNG)")
    if args.curves is not None and args.curves.exists() and not args.overwrite:
        raise SlimvisionError(f"{args.curves}: exists; pass --overwrite to replace it")
    photos = _photo_files(args.photos) if args.photos else installed_face_photos()
    recognizer = _recognizer(args)
    others = [_recognizer(argparse.Namespace(**{**vars(args), "model": model})) for model in args.compare]
    faces = find_faces(photos, recognizer)
    if len(faces) < 2:
        raise SlimvisionError(f"faces eval --robustness: {len(photos)} photo(s) ({', '.join(p.name for p in photos[:3])}"
                              f"{', ...' if len(photos) > 3 else ''}) hold {len(faces)} face(s) at least 48 px wide; "
                              "at least 2 are needed")
    models = [recognizer_under_test(model.embedder.name, model) for model in [recognizer, *others]]
    names = [model.name for model in models]
    if len(set(names)) < len(names):
        raise SlimvisionError(f"faces eval --robustness: the same embedder twice ({', '.join(names)})")
    table = robustness_table(faces, models, seed=args.seed, progress=not (args.quiet or args.json))
    table["photos"] = [str(photo) for photo in photos]
    if args.curves is not None:
        save_robustness_plot(table, args.curves, overwrite=True)
    if args.json:
        print(json.dumps(table, indent=2))
    else:
        _print_robustness(table)
    return 0


def _photo_files(paths: list[Path]) -> list[Path]:
    """Files as given and the images in folders given; a missing path is an InputError naming it."""
    from slimvision.errors import InputError
    from slimvision.io.images import find_images

    files = []
    for path in paths:
        if path.is_dir():
            files += find_images(path)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(path, "not found")
    return files


def _print_robustness(table: dict[str, Any]) -> None:
    names = list(table["summary"])
    print(f"{len(table['faces'])} faces, {table['pairs']} pairs (clean face i vs damaged face j); "
          f"reference: {table['reference']}")
    print(f"{'damage':<12}{'level':>7}  " + "  ".join(f"{name + ' agree/self/drift':>34}" for name in names))
    for kind, corruption in table["corruptions"].items():
        for row in corruption["rows"]:
            cells = [row["models"][name] for name in names]
            print(f"{kind:<12}{row['level']:>7g}  " + "  ".join(
                f"{cell['agreement']:>16.3f} {cell['self_match']:>7.2f} {cell['drift']:>8.3f}" for cell in cells))


def run_gallery_add(args: argparse.Namespace) -> int:
    """``gallery add NAME PHOTO...``: every photo's main face, all in one transaction; a photo
    the gallery (or this command line) holds already is reported and left out."""
    import numpy as np

    from slimvision.inference.face_gallery import Enrolment
    from slimvision.inference.faces import photo_source, read_photo_digest
    from slimvision.io.images import load_image
    from slimvision.progress import progress_bar

    recognizer = _recognizer(args)  # its descriptors go only into a gallery of its own model's
    with _open_gallery(args.gallery, create=True, recognizer=recognizer) as gallery:
        digests = [read_photo_digest(photo) for photo in args.photos]
        known, seen = gallery.find_photos(digests), {}
        skipped, new = {}, []
        for photo, digest in zip(args.photos, digests):
            if digest in known or digest in seen:
                skipped[str(photo)] = f"already enrolled as {known[digest]!r}" if digest in known \
                    else f"the same photo as {seen[digest]}"
            else:
                seen[digest] = photo
                new.append((photo, digest))
        vectors = []
        with progress_bar(len(new), enabled=not (args.quiet or args.json) and len(new) > 1, desc="adding",
                          unit="photo", leave=False) as bar:
            for photo, _ in new:
                image = load_image(photo, min_side=int(args.min_face))
                vectors.append(recognizer.main_face(image, str(photo)).descriptor)
                bar.update()
        left_out = gallery.add_people({args.name: Enrolment(
            np.stack(vectors), [photo_source(photo, args.store_paths) for photo, _ in new],
            [digest for _, digest in new])}) if new else []
        for duplicate in left_out:
            skipped[str(new[duplicate.position][0])] = \
                f"already enrolled as {duplicate.enrolled_as!r} (an identical face descriptor)"
    count = len(new) - len(left_out)
    if args.json:
        print(json.dumps({"name": args.name, "added": count, "skipped": skipped}, indent=2))
    else:
        print(f"added {count} photo{'s' * (count != 1)} of {args.name!r}")
        for path, reason in skipped.items():
            print(f"  skipped {path}: {reason}")
    return 0
