"""What ``slimvision batch`` runs on one file: style, faces-embed and vae-denoise, each one ONNX pipeline.

A :class:`TaskSpec` is plain data (the task's name and JSON-able options) so it travels to
Ray actors as is; :func:`build_task` turns it into a :class:`Task` there, with its own
sessions (one set per actor, or one shared by the local worker pool's threads). A task maps
an input file to the bytes of its output; writing them is the batch's job.

Example:
    >>> spec = TaskSpec("vae-denoise", threads=1)
    >>> output_suffix(spec.kind)
    '.png'
    >>> data = build_task(spec).process(Path("slice.png"))         # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from slimvision.errors import ConfigError, InputError
from slimvision.graph.session import SessionSettings
from slimvision.io.images import DEFAULT_MAX_PIXELS, DEFAULT_PNG_LEVEL, load_image
from slimvision.io.png import encode_png

#: Task name -> the suffix of its outputs.
SUFFIXES = {"style": ".png", "faces-embed": ".json", "vae-denoise": ".png"}
TASKS = tuple(SUFFIXES)

#: The options each task takes (anything else is an error naming the key).
OPTIONS: dict[str, dict[str, Any]] = {
    "style": {"vector": None, "strength": 1.0, "preserve_color": False, "max_side": None,
              "artifact": None},  # None: the default style model, named in the job record (see option())
    "faces-embed": {"model": "face-embedder-dlib-resnet", "min_face": 40.0, "min_score": 0.9},
    "vae-denoise": {"model": None},
}


@dataclass(frozen=True)
class TaskSpec:
    """A task by name with its options: plain data, pickled to every Ray actor.

    ``threads``: ONNX Runtime threads of each session (per actor, or per local worker).
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.kind not in OPTIONS:
            raise ConfigError(f"unknown batch task {self.kind!r}; choose from {', '.join(TASKS)}")
        unknown = sorted(set(self.options) - set(OPTIONS[self.kind]))
        if unknown:
            raise ConfigError(f"batch task {self.kind}: unknown option(s) {unknown}")

    def option(self, name: str) -> Any:
        value = self.options.get(name, OPTIONS[self.kind][name])
        if self.kind == "style" and name == "artifact" and value is None:
            # Resolved by name, so a job's manifest says which model painted it even after the
            # default moves (a rerun under another default is then refused, not mixed in).
            from slimvision.inference.style import artifact_for

            value = artifact_for()
        return value


class Task(Protocol):
    def process(self, path: Path) -> bytes: ...


def output_suffix(kind: str) -> str:
    return SUFFIXES[kind]


def build_task(spec: TaskSpec) -> Task:
    """The task's pipeline, sessions created now (an actor pays for them once, before its first batch)."""
    builders = {"style": StyleTask, "faces-embed": FacesEmbedTask, "vae-denoise": VaeDenoiseTask}
    return builders[spec.kind](spec)


def _settings(spec: TaskSpec) -> SessionSettings:
    # Several workers share the cores: no spinning threads waiting for work that another worker holds.
    return SessionSettings(threads=spec.threads, allow_spinning=False)


class StyleTask:
    """Paint every image with one style vector (computed once by the caller, carried as numbers)."""

    def __init__(self, spec: TaskSpec) -> None:
        from slimvision.registry import ARTIFACTS

        vector = spec.option("vector")
        if vector is None:
            raise ConfigError("batch task style needs a style vector")
        self.vector = np.asarray(vector, np.float32)
        self.spec = spec
        self.pipe = ARTIFACTS.create(spec.option("artifact"), settings=_settings(spec))
        self.pipe.transform  # noqa: B018 - build the sessions now, not inside the first job's time

    def process(self, path: Path) -> bytes:
        image = load_image(path, max_pixels=self.spec.max_pixels)
        result = self.pipe.stylize_with_vector(image, self.vector, self.spec.option("strength"),
                                               self.spec.option("preserve_color"), self.spec.option("max_side"))
        return encode_png(np.ascontiguousarray(result), DEFAULT_PNG_LEVEL)


class FacesEmbedTask:
    """Every face of an image: box, score, landmarks and descriptor, as JSON (one file per image)."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.recognizer = face_recognizer(spec.option("model"), _settings(spec), spec.option("min_face"),
                                          spec.option("min_score"))

    def process(self, path: Path) -> bytes:
        from slimvision.inference.faces import box_xyxy

        image = load_image(path, max_pixels=self.spec.max_pixels)
        faces = self.recognizer(image)
        info = self.recognizer.embedder
        payload = {"input": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                   "embedder": {"name": info.name, "version": info.version, "dim": info.dim, "metric": info.metric},
                   "faces": [{"box": box_xyxy(face.face.box, image.shape), "score": round(float(face.face.score), 4),
                              "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.face.landmarks],
                              "descriptor": [float(value) for value in face.descriptor]} for face in faces]}
        return (json.dumps(payload) + "\n").encode("utf-8")


#: The pipeline every registered face embedder is loaded by.
FACE_PIPELINE = "slimvision.inference.faces:FaceRecognizer"


def face_embedders() -> list[str]:
    """The registered face embedders' names (``slimvision models``)."""
    from slimvision.registry import ARTIFACTS

    return [spec.name for spec in ARTIFACTS.specs("faces") if spec.pipeline == FACE_PIPELINE]


def face_model(model: str) -> str | Path:
    """``--model`` of faces-embed checked: a registered face embedder's name, or the embedder graph
    of an exported student (its ``embedder.onnx``, or the folder holding it).

    Raises:
        InputError: a graph path with no graph there, or no card beside it.
        ConfigError: a registered name that is not a face embedder (a style model, ...).
    """
    from slimvision.export.card import card_path
    from slimvision.registry import ARTIFACTS

    path = Path(model)
    if model.endswith(".onnx") or path.is_dir():
        graph = path / "embedder.onnx" if path.is_dir() else path
        if not graph.is_file():
            raise InputError(graph, "no embedder graph there (an exported face student's embedder.onnx)")
        if not card_path(graph).is_file():  # else read as dlib's ResNet: its descriptors mislabelled in galleries
            raise InputError(graph, f"no card beside it ({card_path(graph).name}): an embedder graph is read with "
                                    "its card (chip template, descriptor size, model record), never guessed")
        return graph
    if model not in ARTIFACTS.names() or ARTIFACTS.spec(model).pipeline != FACE_PIPELINE:
        raise ConfigError(f"--model {model}: not a face embedder; choose from {', '.join(face_embedders())} "
                          "or an exported embedder.onnx")
    return model


def face_recognizer(model: str, settings: SessionSettings, min_face: float, min_score: float) -> Any:
    """A face pipeline by registered name, or from an exported embedder graph (its .onnx or folder)."""
    from slimvision.inference.faces import FaceRecognizer
    from slimvision.registry import ARTIFACTS

    checked = face_model(model)
    if isinstance(checked, Path):
        return FaceRecognizer(settings, min_face_size=min_face, min_score=min_score, model=checked)
    return ARTIFACTS.create(checked, settings=settings, min_face_size=min_face, min_score=min_score)


class VaeDenoiseTask:
    """Restore a single grey slice (an image or a one-slice DICOM) with the medical VAE."""

    def __init__(self, spec: TaskSpec) -> None:
        from slimvision.inference.vae import DENOISER, MedicalVAE
        from slimvision.registry import ARTIFACTS

        self.spec = spec
        folder = spec.option("model")
        self.vae = MedicalVAE(folder, _settings(spec)) if folder else \
            ARTIFACTS.create(DENOISER, settings=_settings(spec))

    def process(self, path: Path) -> bytes:
        """The slice restored at its own size and written as ``slimvision vae denoise`` writes it: an
        8-bit PNG for an 8-bit file, else 16-bit in the file's own values (or its window)."""
        from slimvision.inference.vae import slice_png
        from slimvision.io.medical import read_medical

        slices = read_medical(path, intensity=self.vae.intensity, max_pixels=self.spec.max_pixels, keep_raw=True)
        if len(slices) != 1:
            raise InputError(path, f"holds {len(slices)} slices; batch vae-denoise takes one slice per file "
                                   "('slimvision vae denoise' cuts a volume)")
        return slice_png(slices[0], self.vae.restore_slice(slices[0].pixels))[0]
