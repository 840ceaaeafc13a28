"""Style models in the fidelity harness: a student (or half of one) painted against its teacher.

:class:`StyleFidelity` is the style :class:`~slimvision.bench.fidelity.Adapter`. Each case is a
(content photo, style image) pair; the teacher paints the content with its vector of the style,
each student with its own, and the outputs are compared:

* ``ssim``: structural similarity to the teacher's output (:func:`slimvision.metrics.ssim`);
* ``lite0_pd``: the perceptual distance on frozen EfficientNet-Lite0 features
  (:mod:`slimvision.metrics.perceptual`), 0 for the same picture;
* ``colour_emd``: the sliced earth mover's distance between the two outputs' colour histograms
  (:mod:`slimvision.metrics.colour`): does the student paint in the style's colours;
* ``vector_ccos``: the cosine of the student's style vector to the teacher's, both centred by the
  mean of the teacher's vectors over the set (raw cosines of style vectors are all near 1: they
  share a large common part); over the set, ``vector_r2`` (the share of the teacher vectors'
  variance the student reproduces) and the mean centred cosine.

A student is two halves that can be mixed (:func:`style_students`): the student bundle, the
student transformer fed the teacher's vector, and the student predictor's vector painted by the
teacher's transformer. Which of the last two scores lower tells which half loses.

Inputs: style images with a family each and content photos with a source each
(:func:`held_out_styles`, :func:`machine_photos`, or user folders via :func:`folder_images`).

Example:
    >>> teacher, students = style_students("magenta-arbitrary-v1-fp32", "slimvision-fast-v3")  # doctest: +SKIP
    >>> styles, contents = held_out_styles(2, 256, seed=0), machine_photos(4, 384, seed=0)      # doctest: +SKIP
    >>> adapter = StyleFidelity(teacher, students, styles)                                      # doctest: +SKIP
    >>> report = evaluate(pair_cases(contents, styles), adapter, rank_by="ssim")                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.bench.fidelity import Case, CaseResult, LabelledImage, Metric
from slimvision.data.style_images import photo_folders
from slimvision.errors import ConfigError
from slimvision.inference.style import artifact_for, style_artifact

#: Predictor: (H, W, 3) uint8 style image -> (100,) style vector.
Predict = Callable[[np.ndarray], np.ndarray]
#: Transformer: (H, W, 3) float32 content in [0, 1] and a (100,) vector -> (H, W, 3) float32 in [0, 1].
Paint = Callable[[np.ndarray, np.ndarray], np.ndarray]

STYLE_METRICS = (
    Metric("ssim", True, "SSIM of the student's output to the teacher's (1: the same)"),
    Metric("lite0_pd", False, "perceptual distance on frozen EfficientNet-Lite0 features, 0..4 (0: the same)"),
    Metric("colour_emd", False, "earth mover's distance of the outputs' colour histograms, in [0, 1] units"),
    Metric("vector_ccos", True, "cosine of the style vectors, centred by the teacher vectors' mean"),
)


@dataclass(frozen=True)
class StyleModel:
    """A style model as two halves, each named by the registered artifact it comes from."""

    name: str
    predictor: str
    transformer: str
    predict: Predict
    paint: Paint

    def describe(self) -> dict[str, str]:
        return {"predictor": self.predictor, "transformer": self.transformer}


def registered_style_model(name: str, threads: int | None = None) -> StyleModel:
    """Both halves of a registered style artifact, run by its own pipeline."""
    from slimvision.artifacts import ARTIFACTS
    from slimvision.graph.session import SessionSettings

    style_artifact(name)  # UnknownNameError (with close names) for a name that is no style model
    pipeline = ARTIFACTS.create(name, settings=SessionSettings(threads=threads))

    def paint(content: np.ndarray, vector: np.ndarray) -> np.ndarray:
        return np.clip(pipeline.transform_array(content, vector), 0.0, 1.0)

    return StyleModel(name, name, name, pipeline.predict_vector, paint)


def predictor_graph(path: Path, threads: int | None = None) -> Predict:
    """A style predictor graph beside its card (``slimvision compress gptq``'s
    ``RUN/predictor.int4w.onnx``, or any NHWC 256 px predictor with 100-d vectors) as a
    :data:`Predict`, run as the fast bundle runs its predictor (weights decoded to float).

    Raises:
        InputError: naming the file: missing, without its card, or not a style predictor.
    """
    from slimvision.errors import InputError
    from slimvision.export.card import card_path, read_card
    from slimvision.graph.precision import with_float_weights
    from slimvision.graph.session import OnnxModel, SessionSettings
    from slimvision.inference.style import STYLE_DIM, predict_style_vector

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such predictor graph")
    if not card_path(path).is_file():
        raise InputError(path, f"has no card beside it ({card_path(path).name})")
    card = read_card(card_path(path))
    shape = card.inputs[0].shape if len(card.inputs) == 1 else None
    if shape is None or shape[1:] != [256, 256, 3] or len(card.outputs) != 1 or card.outputs[0].shape[-1] != STYLE_DIM:
        raise InputError(path, f"is not a style predictor: its card's input should be [1, 256, 256, 3] (NHWC) and its "
                               f"output end in {STYLE_DIM}")
    session = OnnxModel(with_float_weights(path), SessionSettings(threads=threads), "style predictor")
    return lambda image: predict_style_vector(session, image, shape[1])


def style_students(teacher: str, student: str, mixed: bool = True, threads: int | None = None,
                   student_predictor: Path | None = None) -> tuple[StyleModel, list[StyleModel]]:
    """The teacher and the students to score: the student bundle and, with ``mixed``, each of
    its halves beside the teacher's other half. ``student_predictor`` (a graph with its card)
    takes the place of the student bundle's predictor: a predictor checked in the bundle before
    it ships.

    Raises:
        ConfigError: the two do not share a style-vector space (their halves cannot be mixed,
            their vectors not compared).
    """
    spaces = {name: style_artifact(name).vector_space or name for name in (teacher, student)}
    if spaces[teacher] != spaces[student]:
        raise ConfigError(f"{student!r} paints from {spaces[student]!r} style vectors and {teacher!r} from "
                          f"{spaces[teacher]!r}: a student is scored against the teacher it was distilled from")
    t, s = registered_style_model(teacher, threads), registered_style_model(student, threads)
    if student_predictor is not None:
        s = StyleModel(s.name, str(student_predictor), s.transformer, predictor_graph(student_predictor, threads),
                       s.paint)
    students = [StyleModel("student", s.predictor, s.transformer, s.predict, s.paint)]
    if mixed:
        students += [StyleModel("student transformer", t.predictor, s.transformer, t.predict, s.paint),
                     StyleModel("student predictor", s.predictor, t.transformer, s.predict, t.paint)]
    return t, students


class StyleFidelity:
    """The style adapter: every style's vectors are predicted up front (the centring needs the
    teacher's mean), then each case is painted by the teacher and by every student and scored.

    Args:
        teacher: the reference model.
        students: the models scored against it (the first one orders the worst cases).
        styles: every style image the cases use (vectors are taken once per style).
        perceptual: the Lite0 distance (loaded when not given; tests pass one on a random net).
    """

    metrics = STYLE_METRICS

    def __init__(self, teacher: StyleModel, students: Sequence[StyleModel], styles: Sequence[LabelledImage],
                 perceptual: Any | None = None) -> None:
        from slimvision.metrics.perceptual import Lite0Distance

        self.teacher, self.models = teacher, list(students)
        self.students = tuple(model.name for model in self.models)
        self.perceptual = perceptual if perceptual is not None else Lite0Distance()
        by_predictor: dict[str, np.ndarray] = {}  # one run per (predictor, style), however many students share it
        for model in [teacher, *self.models]:
            if model.predictor not in by_predictor:
                by_predictor[model.predictor] = np.stack([model.predict(s.image) for s in styles]).astype(np.float64)
        self.style_index = {style.label: index for index, style in enumerate(styles)}
        self.teacher_vectors = by_predictor[teacher.predictor]  # (S, 100)
        self.vectors = {model.name: by_predictor[model.predictor] for model in self.models}
        self.centre = self.teacher_vectors.mean(axis=0)

    def score(self, case: Case) -> CaseResult:
        from slimvision.io.pixels import to_float
        from slimvision.metrics import ssim
        from slimvision.metrics.colour import colour_projections, projection_emd

        content = to_float(case.inputs["content"].image)
        index = self.style_index[case.inputs["style"].label]
        reference = self.teacher.paint(content, self.teacher_vectors[index].astype(np.float32))
        outputs = {"teacher": reference}
        for model in self.models:
            outputs[model.name] = model.paint(content, self.vectors[model.name][index].astype(np.float32))
        features = {name: self.perceptual.features(image) for name, image in outputs.items()}
        colours = {name: colour_projections(image) for name, image in outputs.items()}
        scores = {}
        for model in self.models:
            out = outputs[model.name]
            scores[model.name] = {
                "ssim": ssim(reference, out),
                "lite0_pd": self.perceptual.between(features["teacher"], features[model.name]),
                "colour_emd": projection_emd(colours["teacher"], colours[model.name]),
                "vector_ccos": _cosine(self.vectors[model.name][index] - self.centre,
                                       self.teacher_vectors[index] - self.centre),
            }
        return CaseResult(case, scores, outputs)

    def set_scores(self) -> dict[str, dict[str, float]]:
        """Per student, over the styles: ``vector_r2`` and the mean centred cosine ``vector_ccos``."""
        return {name: vector_scores(vectors, self.teacher_vectors) for name, vectors in self.vectors.items()}


def vector_scores(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """R² of (S, D) student vectors against the teacher's (1 - residual / teacher variance, over
    every style and dimension) and their mean cosine, centred by the teacher vectors' mean.

    Example:
        >>> t = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> vector_scores(t, t)
        {'vector_r2': 1.0, 'vector_ccos': 1.0}
    """
    centre = teacher.mean(axis=0)
    variance = float(((teacher - centre) ** 2).sum())
    residual = float(((student - teacher) ** 2).sum())
    r2 = 1.0 - residual / variance if variance > 0 else float("nan")
    cosines = [_cosine(s - centre, t - centre) for s, t in zip(student, teacher)]
    return {"vector_r2": round(r2, 12), "vector_ccos": round(float(np.mean(cosines)), 12)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norms) if norms > 0 else 0.0


def pair_cases(contents: Sequence[LabelledImage], styles: Sequence[LabelledImage], pairs: int | None = None,
               seed: int = 0) -> list[Case]:
    """Every (content, style) pair, or ``pairs`` of them drawn without replacement under ``seed``
    (in content-then-style order either way)."""
    every = [(c, s) for c in contents for s in styles]
    if pairs is not None and pairs < len(every):
        chosen = np.random.default_rng(seed).choice(len(every), pairs, replace=False)
        every = [every[i] for i in sorted(chosen)]
    return [Case(f"{c.label} x {s.label}", {"style family": s.family, "content source": c.family},
                 {"style": s, "content": c}) for c, s in every]


# --------------------------------------------------------------------------- inputs
def folder_images(folder: Path, side: int, what: str) -> list[LabelledImage]:
    """The images of a user folder as centre squares of ``side`` px; each sub-folder is a family
    (images directly in ``folder`` take its name).

    Raises:
        InputError: the folder is missing, holds no image, or an image cannot be read.
    """
    from slimvision.data.style_images import IMAGE_SUFFIXES
    from slimvision.errors import InputError
    from slimvision.io.images import load_image
    from slimvision.io.pixels import centre_square

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, f"no such folder (--{what} takes a folder of images, a sub-folder per family)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise InputError(folder, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its sub-folders")
    images = []
    for path in files:
        relative = path.relative_to(folder)
        family = "/".join(relative.parts[:-1]) or folder.name
        images.append(LabelledImage(family, path.stem, centre_square(load_image(path), side)))
    return images


def limit_per_family(images: Sequence[LabelledImage], per_family: int | None, seed: int) -> list[LabelledImage]:
    """At most ``per_family`` images of each family, drawn under ``seed``, order kept."""
    if per_family is None:
        return list(images)
    rng = np.random.default_rng(seed)
    families: dict[str, list[int]] = {}
    for index, image in enumerate(images):
        families.setdefault(image.family, []).append(index)
    keep = {int(i) for members in families.values()
            for i in (members if len(members) <= per_family else rng.choice(members, per_family, replace=False))}
    return [image for index, image in enumerate(images) if index in keep]


#: A default content photo is at least this many px on its shorter side (no icons or logos).
MIN_PHOTO_SIDE = 256


def named_photos(names: Sequence[str], count: int, min_side: int = 0) -> list[tuple[str, np.ndarray]]:
    """Up to ``count`` colour photos found by file name in :func:`photo_folders`, in the order of
    ``names`` (the first folder holding a name wins), each at least ``min_side`` px on its
    shorter side: ``[(name, (H, W, 3) uint8)]``. The benchmarks that need the same real photos
    on every machine (video, shift) take them so."""
    from slimvision.io.images import load_image

    found: dict[str, Path] = {}
    for _, folder in photo_folders():
        for path in folder.iterdir():
            found.setdefault(path.name, path)
    chosen = []
    for name in names:
        if name in found and len(chosen) < count:
            image = load_image(found[name])
            if image.ndim == 3 and min(image.shape[:2]) >= min_side:
                chosen.append((name, image))
    return chosen


def machine_photos(count: int | None, side: int, seed: int = 0) -> list[LabelledImage]:
    """Colour photos the installed packages ship, labelled by source, as ``side`` px centre squares.

    A file counts as a photo when it is at least :data:`MIN_PHOTO_SIDE` px, in colour and rich in
    colours (see :func:`looks_like_photo`: drops grey scans, charts, boards and logos); repeated
    pictures are kept once. ``count`` photos are taken in turns from each source (the order
    within a source drawn under ``seed``), so every source is represented.
    """
    from slimvision.io.pixels import centre_square

    by_source: dict[str, list[tuple[str, np.ndarray]]] = {}
    thumbnails: list[np.ndarray] = []
    for source, folder in photo_folders():
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            image = _photo(path)
            if image is None:
                continue
            thumbnail = _thumbnail(image)
            if any(np.abs(thumbnail - seen).mean() < 0.03 for seen in thumbnails):
                continue  # the same picture, re-encoded or resized
            thumbnails.append(thumbnail)
            by_source.setdefault(source, []).append((path.stem, image))
    rng = np.random.default_rng(seed)
    queues = {source: [photos[i] for i in rng.permutation(len(photos))] for source, photos in sorted(by_source.items())}
    chosen: list[LabelledImage] = []
    while any(queues.values()) and (count is None or len(chosen) < count):
        for source, queue in queues.items():
            if queue and (count is None or len(chosen) < count):
                name, image = queue.pop(0)
                chosen.append(LabelledImage(source, name, centre_square(image, side)))
    return sorted(chosen, key=lambda image: image.label)


def _photo(path: Path) -> np.ndarray | None:
    """The RGB pixels of ``path`` if it is a usable colour photo, else None."""
    from PIL import Image

    from slimvision.data.style_images import IMAGE_SUFFIXES
    from slimvision.errors import InputError
    from slimvision.io.images import load_image

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        with Image.open(path) as header:
            if min(header.size) < MIN_PHOTO_SIDE or header.mode in ("RGBA", "LA", "P", "1", "L", "I;16"):
                return None  # too small, or grey / palette / transparent: not a colour photo
        image = load_image(path)
    except (InputError, OSError):
        return None
    return image if looks_like_photo(image) else None


def looks_like_photo(image: np.ndarray) -> bool:
    """Colour (channels differ by > 2% on average) and rich (> 2000 distinct colours in a 64 px
    thumbnail: boards, charts and flat graphics have a few hundred)."""
    from PIL import Image

    small = np.asarray(Image.fromarray(image).resize((64, 64), Image.Resampling.BILINEAR))
    pixels = small.astype(np.float32) / 255
    colourful = float(np.abs(pixels - pixels.mean(axis=2, keepdims=True)).mean()) > 0.02
    return colourful and len(np.unique(small.reshape(-1, 3), axis=0)) > 2000


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """16 x 16 grey of the whole frame (aspect ignored), for spotting the same picture twice."""
    from PIL import Image

    grey = Image.fromarray(image).convert("L").resize((16, 16), Image.Resampling.BILINEAR)
    return np.asarray(grey, np.float32) / 255


def held_out_style_set(per_family: int, side: int, seed: int = 0, families: Sequence[str] | None = None,
                       real: bool = True) -> list[LabelledImage]:
    """Style images by family that no student trains on (:mod:`slimvision.data.style_families`).

    Args:
        per_family: images per procedural family (and at most this many per real origin).
        side: the images' side in px.
        seed: picks the images (the same seed, the same set).
        families: procedural families to render (default: the held-out ones,
            :data:`~slimvision.data.style_families.HELD_OUT_FAMILIES`).
        real: add the held-out real images (whole origins and the demo painting, see
            :func:`~slimvision.data.style_families.split_real_sources`), one family per origin.
    """
    from slimvision.data.style_families import HELD_OUT_FAMILIES, held_out_styles, split_real_sources
    from slimvision.data.style_images import find_style_sources, load_rgb
    from slimvision.io.pixels import centre_square

    sources = find_style_sources()
    chosen = tuple(families) if families is not None else HELD_OUT_FAMILIES
    styles = [LabelledImage(*name.split("/", 1), image)
              for name, image in held_out_styles(per_family, seed, side, chosen, sources)]
    if real:
        _, held_out = split_real_sources(sources)
        styles += [LabelledImage(f"real:{source.origin}", source.path.stem, centre_square(load_rgb(source.path), side))
                   for source in held_out]
    return limit_per_family(styles, per_family, seed)


def training_style_set(per_family: int, side: int, seed: int = 1,
                       families: Sequence[str] | None = None) -> list[LabelledImage]:
    """New images of the families students TRAIN on, for choosing between students.

    Scores on :func:`held_out_style_set` are the report; picking a student by them tunes to the
    held-out set. This set (:func:`~slimvision.data.style_families.validation_styles`) looks at
    nothing held out: training families, training palettes, no real images. Use a ``seed``
    other than 0 so the draw differs from the report's.
    """
    from slimvision.data.style_families import validation_styles

    return [LabelledImage(*name.split("/", 1), image)
            for name, image in validation_styles(per_family, seed, side, families)]


@dataclass
class StyleFidelitySettings:
    """What ``slimvision bench fidelity`` scores, and on what (see the CLI's help for each)."""

    teacher: str = field(default_factory=lambda: artifact_for("teacher"))  # --model teacher
    student: str = field(default_factory=lambda: artifact_for("fast"))  # --model fast
    student_predictor: Path | None = None  # in place of the student's predictor
    mixed: bool = True
    styles: Path | None = None
    contents: Path | None = None
    families: tuple[str, ...] | None = None  # None: every family of the split
    split: str = "held-out"  # or "training": fresh renders of training families (validation_styles)
    styles_per_family: int | None = 8
    content_count: int | None = None  # None: 10 machine photos, or every image of --contents
    pairs: int | None = None
    content_side: int = 384
    style_side: int = 256
    seed: int = 0
    rank_by: str = "ssim"
    worst: int = 8
    sheet: Path | None = None
    sheet_side: int = 160
    overwrite: bool = False
    threads: int | None = None


#: Machine photos used when neither ``--contents`` nor a count is given.
DEFAULT_PHOTOS = 10


def run_style_fidelity(settings: StyleFidelitySettings, progress: bool = True) -> dict[str, Any]:
    """Load the inputs and the models, score every pair, and return the report with its settings."""
    from dataclasses import asdict

    from slimvision.bench.fidelity import evaluate

    s = settings
    if s.styles is not None:
        styles = limit_per_family(folder_images(s.styles, s.style_side, "styles"), s.styles_per_family, s.seed)
    elif s.split == "training":
        styles = training_style_set(s.styles_per_family or 8, s.style_side, s.seed, s.families)
    elif s.split == "held-out":
        styles = held_out_style_set(s.styles_per_family or 8, s.style_side, s.seed, s.families)
    else:
        raise ConfigError(f"split must be 'held-out' or 'training', not {s.split!r}")
    if s.contents is not None:
        contents = folder_images(s.contents, s.content_side, "contents")
        if s.content_count is not None:
            contents = [contents[i] for i in sorted(np.random.default_rng(s.seed).permutation(len(contents))
                                                    [:s.content_count])]
    else:
        contents = machine_photos(s.content_count or DEFAULT_PHOTOS, s.content_side, s.seed)
    teacher, students = style_students(s.teacher, s.student, s.mixed, s.threads, s.student_predictor)
    adapter = StyleFidelity(teacher, students, styles)
    cases = pair_cases(contents, styles, s.pairs, s.seed)
    report = evaluate(cases, adapter, rank_by=s.rank_by, worst=s.worst, progress=progress, sheet=s.sheet,
                      sheet_side=s.sheet_side, overwrite=s.overwrite)
    settings_json = {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(s).items()}
    reference = style_artifact(s.teacher)
    return {"teacher": s.teacher,
            # The float teacher's predictor rounded its activations as shipped until issue 24's last
            # change; reports say which arithmetic they were scored against.
            "teacher_arithmetic": {"predictor": "float" if reference.float_predictor else reference.precision,
                                   "transformer": reference.precision},
            "models": {"teacher": teacher.describe(), **{m.name: m.describe() for m in students}},
            "settings": settings_json,
            "inputs": {"styles": [image.label for image in styles], "contents": [image.label for image in contents]},
            **report}
