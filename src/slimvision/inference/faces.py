"""Face recognition end to end: detect, align, embed, then verify (1:1) or identify (1:N).

:class:`FaceRecognizer` chains MTCNN (:mod:`slimvision.inference.face_detect`), alignment onto
the embedder's own chip (:mod:`slimvision.data.face_align`) and the embedding network (dlib's
ResNet, as an ONNX graph built from dlib's file: :mod:`slimvision.inference.face_graph`). A
:class:`slimvision.inference.face_gallery.Gallery` holds the enrolled people. Everything runs on
ONNX Runtime, numpy and Pillow; torch is never imported.

Example:
    >>> from slimvision.io.images import load_image                        # doctest: +SKIP
    >>> recognizer = FaceRecognizer()                                      # doctest: +SKIP
    >>> result = recognizer.verify(load_image("a.jpg"), load_image("b.jpg"))  # doctest: +SKIP
    >>> result.same_person, round(result.distance, 3)                      # doctest: +SKIP
    (True, 0.412)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimvision.errors import InputError, SlimvisionError
from slimvision.export.card import card_path
from slimvision.data.face_align import ARCFACE_TEMPLATE_5, MTCNN_TEMPLATE_5, ChipTemplate, align_face
from slimvision.inference.face_detect import Face, FaceDetector
from slimvision.inference.face_embedder import EmbedderCard
from slimvision.inference.face_gallery import EmbedderInfo, Enrolment, Gallery, Match, photo_digest
from slimvision.graph.session import OnnxModel, SessionSettings


class NoFaceError(SlimvisionError):
    """An image in which a face was needed has none (names the image)."""


@dataclass(frozen=True, eq=False)
class RecognizedFace:
    """A detected face, its descriptor, and (after ``identify``) the nearest enrolled people."""

    face: Face
    descriptor: np.ndarray
    matches: tuple[Match, ...] = ()

    @property
    def name(self) -> str | None:
        """The enrolled person this face is, or None ("unknown")."""
        return self.matches[0].name if self.matches and self.matches[0].is_match else None


@dataclass(frozen=True)
class Verification:
    """Are two faces one person? ``distance`` in the embedder's metric, ``similarity`` the cosine
    of the two descriptors, the decision at ``threshold``; ``faces``: the two faces compared
    (when they were found in images)."""

    distance: float
    similarity: float
    threshold: float
    same_person: bool
    faces: tuple[Face, Face] | None = None


def box_xyxy(box: tuple[float, float, float, float], shape: tuple[int, ...]) -> list[int]:
    """A face box as the box convention has it: ``[x0, y0, x1, y1]`` in whole pixels of the image
    (of ``shape``, (H, W, ...)) as loaded, origin top-left, x1/y1 exclusive, inside the image.

    MTCNN's boxes are crop boxes in continuous pixel coordinates and may reach past the border.

    Example:
        >>> box_xyxy((10.4, -3.2, 50.6, 61.5), (60, 80, 3))
        [10, 0, 51, 60]
    """
    height, width = shape[:2]
    x0, y0, x1, y1 = (math.floor(float(value) + 0.5) for value in box)
    x0, x1 = (min(max(value, 0), width) for value in (x0, x1))
    y0, y1 = (min(max(value, 0), height) for value in (y0, y1))
    return [x0, y0, max(x0, x1), max(y0, y1)]


class FaceRecognizer:
    """Detect -> align -> embed, with the dlib ResNet teacher by default.

    How chips are cut and fed to the embedder, and how its descriptors compare, comes from the
    embedder's artifact card (:class:`~slimvision.inference.face_embedder.EmbedderCard`): chip
    size and padding, layout, value range, mean/std, channel order, descriptor length, metric and
    threshold. The graph is checked against the card's tensors when it loads.

    Args:
        settings: ONNX Runtime settings shared by the detector and the embedder.
        min_face_size: smallest face to look for, in pixels. 40 by default, as face_recognition
            (dlib's HOG detector upsampled once) finds: smaller faces carry too little detail for
            the embedding, and searching them costs more than half the detection time.
        min_score: detections below this face probability are ignored.
        threshold: same-person distance (default: the embedder's calibration, dlib's 0.6).
        embedder: what galleries record of the network (default: the card's); its length and
            metric must be the card's.
        template: where MTCNN's landmarks go in the chip (default: MTCNN's points in dlib's chip,
            at the card's size and padding); its size must be the card's.
        model: the embedder graph (default: built from dlib's ``.dat``), checked against the card.
        card: the embedder's card file (default: the card beside ``model`` when ``model`` is a
            path and one lies there, else the registry's card of dlib's ResNet).
    """

    def __init__(self, settings: SessionSettings | None = None, min_face_size: float = 40, min_score: float = 0.9,
                 threshold: float | None = None, embedder: EmbedderInfo | None = None,
                 template: ChipTemplate | None = None, model: bytes | str | Path | None = None,
                 card: str | Path | None = None) -> None:
        settings = settings or SessionSettings()
        self.detector = FaceDetector(settings, min_face_size=min_face_size)
        if card is None and isinstance(model, (str, Path)):
            beside = card_path(Path(model))  # a student's exported graph and its card
            card = beside if beside.is_file() else None
        self.card = EmbedderCard.read(card if card is not None else EmbedderCard.default_file())
        self.embedder = _checked_embedder(embedder, self.card)
        self.template = _checked_template(template, self.card)
        self.min_score = min_score
        self.threshold = self.embedder.threshold if threshold is None else float(threshold)
        if model is None:
            from slimvision.assets import DLIB_FACE_RESNET
            from slimvision.inference.face_graph import dlib_resnet_graph

            model = dlib_resnet_graph(DLIB_FACE_RESNET.path())
        self.network = OnnxModel(model, settings, name=f"{self.embedder.name}-v{self.embedder.version}")
        self.card.check_graph(self.network.session.get_inputs(), self.network.session.get_outputs())

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces at or above ``min_score``, most confident first (none in an image smaller than
        the smallest face searched)."""
        if image.ndim == 3 and min(image.shape[:2]) < self.detector.min_face_size:
            return []
        faces = [face for face in self.detector.detect(image) if face.score >= self.min_score]
        return sorted(faces, key=lambda face: -face.score)

    def embed(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """(len(faces), dim) descriptors of the given faces of ``image``, one network run."""
        return self.embed_landmarks(image, np.array([face.landmarks for face in faces], np.float64).reshape(-1, 5, 2))

    def embed_landmarks(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(N, dim) descriptors of the faces whose 5 landmarks ((N, 5, 2), image pixels) are given."""
        if len(landmarks) == 0:
            return np.zeros((0, self.embedder.dim), np.float32)
        chips = np.stack([align_face(image, points, self.template) for points in landmarks])
        (descriptors,) = self.network.run({self.card.input.name: self.card.to_input(chips)})
        return descriptors

    def __call__(self, image: np.ndarray) -> list[RecognizedFace]:
        """Every face in the image with its descriptor."""
        faces = self.detect(image)
        return [RecognizedFace(face, vector) for face, vector in zip(faces, self.embed(image, faces))]

    def main_face(self, image: np.ndarray, name: str = "image") -> RecognizedFace:
        """The largest face of an image (the subject of a portrait); NoFaceError if there is none."""
        faces = self.detect(image)
        if not faces:
            raise NoFaceError(f"{name}: no face found (smallest face searched: {self.detector.min_face_size:g} px)")
        largest = max(faces, key=lambda face: (face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))
        return RecognizedFace(largest, self.embed(image, [largest])[0])

    def compare(self, first: np.ndarray, second: np.ndarray) -> Verification:
        """Verification of two descriptors."""
        first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
        similarity = float(first @ second / max(np.linalg.norm(first) * np.linalg.norm(second), 1e-12))
        distance = float(np.linalg.norm(first - second)) if self.embedder.metric == "euclidean" else 1.0 - similarity
        return Verification(distance, similarity, self.threshold, distance <= self.threshold)

    def verify(self, first: np.ndarray, second: np.ndarray, names: tuple[str, str] = ("first image", "second image")
               ) -> Verification:
        """Is the main face of one image the same person as the main face of the other?"""
        faces = self.main_face(first, names[0]), self.main_face(second, names[1])
        verdict = self.compare(faces[0].descriptor, faces[1].descriptor)
        return Verification(verdict.distance, verdict.similarity, verdict.threshold, verdict.same_person,
                            (faces[0].face, faces[1].face))

    def check_gallery(self, gallery: Gallery) -> None:
        """Refuse a gallery of another model's descriptors (they cannot be compared with ours)."""
        if gallery.embedder.name != self.embedder.name or gallery.embedder.version != self.embedder.version:
            raise SlimvisionError(f"the gallery holds {gallery.embedder.name} v{gallery.embedder.version} descriptors; "
                                  f"this recognizer makes {self.embedder.name} v{self.embedder.version}")

    def identify(self, image: np.ndarray, gallery: Gallery, top_k: int = 3) -> list[RecognizedFace]:
        """Every face of the image with its ``top_k`` nearest enrolled people (``name`` is None
        for someone nobody in the gallery is near enough to)."""
        self.check_gallery(gallery)
        recognized = self(image)
        if not recognized:
            return []
        found = gallery.search_many(np.stack([face.descriptor for face in recognized]), top_k)
        threshold = self.threshold
        return [RecognizedFace(face.face, face.descriptor,
                               tuple(Match(m.name, m.distance, m.distance <= threshold) for m in matches))
                for face, matches in zip(recognized, found)]


def _checked_embedder(embedder: EmbedderInfo | None, card: EmbedderCard) -> EmbedderInfo:
    """The card's embedder, or the one given if its descriptor length and metric are the card's."""
    if embedder is None:
        return card.embedder
    if (embedder.dim, embedder.metric) != (card.embedder.dim, card.embedder.metric):
        raise InputError(card.path, f"embedder {embedder.name} v{embedder.version} makes {embedder.dim}-d "
                                    f"{embedder.metric} descriptors; the card's network makes "
                                    f"{card.embedder.dim}-d {card.embedder.metric} ones")
    return embedder


def _checked_template(template: ChipTemplate | None, card: EmbedderCard) -> ChipTemplate:
    """The card's template (MTCNN's points in dlib's chip, or ArcFace's) at its chip size and padding,
    or the template given if its size is the card's."""
    if template is None and card.template == "arcface":
        return ChipTemplate(f"{card.card.name}-arcface-chip", ARCFACE_TEMPLATE_5, card.chip_size, card.padding,
                            half_pixel_centres=False)
    if template is None:
        return ChipTemplate(f"{card.card.name}-chip-from-mtcnn", MTCNN_TEMPLATE_5, card.chip_size, card.padding)
    if template.size != card.chip_size:
        raise InputError(card.path, f"chip template {template.name!r} cuts {template.size} px chips; the card's "
                                    f"network takes {card.chip_size} px")
    return template


@dataclass(frozen=True)
class EnrolmentReport:
    """What an enrolment did: descriptors added per person; the photos left out for a problem
    (``failed``: unreadable, no face, several faces) and those the gallery held already
    (``duplicates``), each with the reason."""

    added: dict[str, int]
    failed: dict[str, str]
    duplicates: dict[str, str]

    @property
    def skipped(self) -> dict[str, str]:
        """Every photo left out, whatever the reason."""
        return {**self.failed, **self.duplicates}


def photo_source(photo: Path, store_paths: bool) -> str:
    """What a gallery records as a photo's origin: its file name, or with ``store_paths`` its
    absolute path (off by default: a path tells where someone keeps photos of whom)."""
    return str(photo.resolve()) if store_paths else photo.name


def read_photo_digest(photo: Path) -> str:
    """:func:`photo_digest` of a photo file (InputError if it cannot be read)."""
    try:
        return photo_digest(photo.read_bytes())
    except OSError as error:
        raise InputError(photo, f"cannot be read ({error.strerror or error})") from None


def enroll_folder(recognizer: FaceRecognizer, gallery: Gallery, folder: str | Path,
                  progress: bool = True, store_paths: bool = False) -> EnrolmentReport:
    """Enrol ``folder/<name>/*.jpg``: one descriptor per photo, for the photo's main face.

    A photo is left out (and reported) when it cannot be read, shows no face, or shows several
    faces of similar size (whose would it be?). A face more than twice as large as every other
    one is taken as the subject. A photo the gallery holds already (the same bytes, or a face
    with the very same descriptor) is left out as a duplicate, before it is even decoded when
    its bytes are known, so enrolling a grown folder again adds only the new photos. All
    descriptors are written in one transaction at the end, so an interrupted enrolment leaves
    the gallery as it was; with nothing to add, nothing is written (and no gallery file made).
    The gallery records each photo's file name, or its absolute path with ``store_paths``.
    A gallery of another model's descriptors is refused before any photo is read.
    """
    from slimvision.io.images import find_images, load_image
    from slimvision.progress import progress_bar

    recognizer.check_gallery(gallery)  # else a student's descriptors would be filed under dlib's record
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected one sub-folder of photos per person)")
    people = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not people:
        raise InputError(folder, "has no sub-folders; lay photos out as FOLDER/<name>/*.jpg")
    photos = [(person.name, photo) for person in people for photo in find_images(person)]
    found: dict[str, tuple[list[np.ndarray], list[Path], list[str]]] = {}
    failed: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    seen: dict[str, Path] = {}  # digest -> the photo of this run that has it
    with progress_bar(len(photos), enabled=progress, desc="enrolling", unit="photo") as bar:
        for name, photo in photos:
            bar.update()
            try:
                digest = read_photo_digest(photo)
                known = seen.get(digest) or gallery.find_photos([digest]).get(digest)
                if known is not None:
                    duplicates[str(photo)] = f"the same photo as {known}" if isinstance(known, Path) \
                        else f"already enrolled as {known!r}"
                    continue
                seen[digest] = photo
                image = load_image(photo, min_side=int(recognizer.detector.min_face_size))
            except InputError as error:
                failed[str(photo)] = error.problem
                continue
            faces = recognizer.detect(image)
            subject = _subject(faces)
            if subject is None:
                failed[str(photo)] = "no face found" if not faces else f"{len(faces)} faces of similar size"
                continue
            vectors, paths, digests = found.setdefault(name, ([], [], []))
            vectors.append(recognizer.embed(image, [subject])[0])
            paths.append(photo)
            digests.append(digest)
    left_out = gallery.add_people({name: Enrolment(np.stack(vectors), [photo_source(p, store_paths) for p in paths],
                                                   digests) for name, (vectors, paths, digests) in found.items()})
    for duplicate in left_out:  # the same face in other bytes (re-saved, metadata changed)
        photo = found[duplicate.name][1][duplicate.position]
        duplicates[str(photo)] = f"already enrolled as {duplicate.enrolled_as!r} (an identical face descriptor)"
    added = {name: len(vectors) - sum(d.name == name for d in left_out) for name, (vectors, _, _) in found.items()}
    return EnrolmentReport({name: count for name, count in added.items() if count}, failed, duplicates)


def _subject(faces: list[Face]) -> Face | None:
    """The one face that is clearly the photo's subject: the only one, or twice any other's area."""
    if not faces:
        return None
    areas = sorted(((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]), index) for index, face in enumerate(faces))
    if len(areas) > 1 and areas[-1][0] < 2 * areas[-2][0]:
        return None
    return faces[areas[-1][1]]


def annotate(image: np.ndarray, faces: list[RecognizedFace] | list[Face], labels: list[str] | None = None) -> np.ndarray:
    """A copy of ``image`` with each face's box, landmarks and label drawn on it."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(image.shape[:2]) / 400))
    for index, item in enumerate(faces):
        face = item.face if isinstance(item, RecognizedFace) else item
        known = isinstance(item, RecognizedFace) and item.name is not None
        colour = (40, 200, 80) if known or not isinstance(item, RecognizedFace) else (230, 60, 40)
        draw.rectangle([round(v) for v in face.box], outline=colour, width=width)
        for x, y in face.landmarks:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=(255, 210, 0))
        label = labels[index] if labels else (item.name or "unknown") if isinstance(item, RecognizedFace) \
            else f"{face.score:.2f}"
        draw.text((face.box[0] + width, max(0, face.box[1] - 12 - width)), label, fill=colour)
    return np.asarray(canvas)
