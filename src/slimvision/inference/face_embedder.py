"""What the face pipeline knows about its embedding network: read from the network's artifact card.

The card (``export.card``; dlib's ResNet has ``weights/cards/dlib_face_recognition_resnet_model_v1.card.json``,
found through the registry) says everything :class:`slimvision.inference.faces.FaceRecognizer`
needs to feed the network and read its answers:

- the input tensor: its name, layout (NCHW or NHWC), shape (the chip side) and value range;
- ``preprocessing.<input>``: the chip's ``size`` and ``padding`` (the margin around the landmarks,
  as a fraction of their extent), its ``template`` ("dlib", the default, or "arcface"), ``channel_order``, and an optional per-channel ``mean`` / ``std``
  applied after scaling pixels into the value range (as ``export.onnx.ImageInput`` states them);
- the output tensor: its name and the descriptor's dimension;
- ``preprocessing.descriptor``: the ``distance`` descriptors are compared by, the same-person
  ``threshold``, and the ``gallery_name`` / ``gallery_version`` a face gallery records, so that
  descriptors of different networks are never compared.

Nothing is read from the graph's own metadata. :meth:`EmbedderCard.check_graph` compares the graph
the pipeline runs with the card's tensors, so a graph and a card that disagree are an error naming
the card, not descriptors of the wrong kind.

Example:
    >>> card = EmbedderCard.read(EmbedderCard.default_file())
    >>> card.chip_size, card.padding, card.layout, card.value_range
    (150, 0.25, 'NCHW', (0.0, 1.0))
    >>> card.embedder
    EmbedderInfo(name='dlib-resnet', version='1', dim=128, metric='euclidean', threshold=0.6)
    >>> card.to_input(np.zeros((2, 150, 150, 3), np.uint8)).shape
    (2, 3, 150, 150)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.errors import InputError
from slimvision.export.card import ArtifactCard, TensorSpec, read_card
from slimvision.inference.face_gallery import METRICS, EmbedderInfo

#: The registered artifact whose ``embedder`` card the face pipeline reads by default.
DEFAULT_ARTIFACT, EMBEDDER_ROLE = "face-embedder-dlib-resnet", "embedder"
LAYOUTS = ("NCHW", "NHWC")
#: Chip templates a card may name (``slimvision.data.face_align``): dlib's, or ArcFace's 112 px one.
TEMPLATES = ("dlib", "arcface")
#: ONNX Runtime's tensor type names -> the card's numpy dtype names.
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


@dataclass(frozen=True)
class EmbedderCard:
    """The embedder's card, checked and reduced to what the pipeline uses (see the module docstring).

    Attributes:
        path: the card file (named by every error about it).
        card: the card as read.
        chip_size: side of the square face chip, in pixels.
        padding: margin around the landmarks' extent in the chip, as a fraction of it.
        template: where MTCNN's 5 points go in the chip: "dlib" (dlib's chip, cut from MTCNN's
            points; the default) or "arcface" (insightface's 112 px template, scaled to the
            chip size), from ``preprocessing.<input>.template``.
        layout: the input's axis order, "NCHW" or "NHWC".
        value_range: the input's (low, high); uint8 pixels 0..255 are scaled onto it.
        channel_order: "RGB" or "BGR".
        mean / std: per-channel normalisation after the scaling, or None.
        embedder: what a gallery records of the network: name and version (the card's
            ``gallery_name`` / ``gallery_version``), the descriptor's length (the output's), the
            metric ("euclidean", or "cosine": distance = 1 - cosine similarity) and the largest
            distance at which two faces are one person.
    """

    path: Path
    card: ArtifactCard
    chip_size: int
    padding: float
    layout: str
    value_range: tuple[float, float]
    channel_order: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    embedder: EmbedderInfo
    template: str = "dlib"

    @staticmethod
    def default_file() -> Path:
        """The card of dlib's ResNet, as the registry finds it (inside slimvision: the ``.dat``
        ships in another package)."""
        from slimvision.registry import ARTIFACTS

        return ARTIFACTS.spec(DEFAULT_ARTIFACT).card_files()[EMBEDDER_ROLE]

    @classmethod
    def read(cls, path: str | Path) -> EmbedderCard:
        """Read and check the card at ``path``; InputError naming it for anything the pipeline
        cannot use (several inputs, an unknown layout, a chip size the input shape does not have...)."""
        path = Path(path)
        card = read_card(path)
        problem = _Problems(path)
        problem.unless(len(card.inputs) == 1 and len(card.outputs) == 1,
                       f"an embedder has one input (face chips) and one output (descriptors); this card has "
                       f"{len(card.inputs)} and {len(card.outputs)}")
        chip = _chip_settings(card, problem)
        return cls(path, card, embedder=_embedder_info(card, problem), **chip)

    @property
    def input(self) -> TensorSpec:
        return self.card.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.card.outputs[0]

    def check_graph(self, inputs: list[Any], outputs: list[Any]) -> None:
        """Check a graph's tensors (ONNX Runtime ``NodeArg`` s: name, shape, type) against the card.

        Raises:
            InputError: naming the card and the first tensor that differs.
        """
        for kind, args, specs in (("input", inputs, self.card.inputs), ("output", outputs, self.card.outputs)):
            names = [arg.name for arg in args]
            if names != [spec.name for spec in specs]:
                raise InputError(self.path, f"the embedder graph's {kind}s are {names}; its card says "
                                            f"{[spec.name for spec in specs]}")
            for arg, spec in zip(args, specs):
                dtype = _ORT_DTYPES.get(arg.type, arg.type)
                if dtype != spec.dtype or not _same_shape(list(arg.shape), spec.shape):
                    raise InputError(self.path, f"the embedder graph's {kind} {arg.name!r} is {dtype} "
                                                f"{list(arg.shape)}; its card says {spec.dtype} {spec.shape}")

    def to_input(self, chips: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) uint8 RGB chips -> the network's input, as the card asks for it."""
        batch = chips.astype(np.float32)
        if self.channel_order == "BGR":
            batch = batch[..., ::-1]
        if self.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        batch = batch / 255.0
        low, high = self.value_range
        if (low, high) != (0.0, 1.0):
            batch = batch * np.float32(high - low) + np.float32(low)
        if self.mean is not None and self.std is not None:
            axis = (1, -1, 1, 1) if self.layout == "NCHW" else (1, 1, 1, -1)
            mean, std = (np.asarray(values, np.float32).reshape(axis) for values in (self.mean, self.std))
            batch = (batch - mean) / std
        return np.ascontiguousarray(batch)


def _chip_settings(card: ArtifactCard, problem: _Problems) -> dict[str, Any]:
    """The chip fields of :class:`EmbedderCard`, from the input tensor and its preprocessing."""
    chip = card.inputs[0]
    settings = card.preprocessing.get(chip.name)
    problem.unless(isinstance(settings, dict), f"preprocessing has no {chip.name!r} object (chip size, padding)")
    where = f"preprocessing.{chip.name}"
    problem.unless(chip.layout in LAYOUTS, f"input {chip.name!r} has layout {chip.layout!r}, not one of {LAYOUTS}")
    size = settings.get("size")
    problem.unless(_is_int(size) and size > 0, f"{where}.size must be a positive int")
    expected = ["batch", 3, size, size] if chip.layout == "NCHW" else ["batch", size, size, 3]
    problem.unless(len(chip.shape) == 4 and chip.shape[1:] == expected[1:],
                   f"input {chip.name!r} has shape {chip.shape}; {chip.layout} chips of {size} px are {expected}")
    problem.unless(chip.dtype == "float32", f"input {chip.name!r} is {chip.dtype}; the pipeline feeds float32")
    problem.unless(chip.value_range is not None, f"input {chip.name!r} has no value range")
    padding = settings.get("padding")
    problem.unless(_is_number(padding) and padding >= 0, f"{where}.padding must be a number >= 0")
    template = settings.get("template", "dlib")
    problem.unless(template in TEMPLATES, f"{where}.template must be one of {', '.join(TEMPLATES)}")
    order = settings.get("channel_order", "RGB")
    problem.unless(order in ("RGB", "BGR"), f"{where}.channel_order must be RGB or BGR")
    mean, std = (_channels(settings.get(key), problem, f"{where}.{key}") for key in ("mean", "std"))
    problem.unless((mean is None) == (std is None), f"{where}: give both mean and std, or neither")
    problem.unless(std is None or min(std) > 0, f"{where}.std must be positive")
    low, high = chip.value_range
    return {"chip_size": size, "padding": float(padding), "template": template, "layout": chip.layout,
            "value_range": (float(low), float(high)), "channel_order": order, "mean": mean, "std": std}


def _embedder_info(card: ArtifactCard, problem: _Problems) -> EmbedderInfo:
    """What a gallery records: the output's length and ``preprocessing.descriptor``."""
    descriptor = card.outputs[0]
    compare = card.preprocessing.get("descriptor")
    problem.unless(isinstance(compare, dict), "preprocessing has no 'descriptor' object (distance, threshold)")
    problem.unless(len(descriptor.shape) == 2 and _is_int(descriptor.shape[1]) and descriptor.shape[1] > 0,
                   f"output {descriptor.name!r} has shape {descriptor.shape}; descriptors are [batch, dim]")
    metric, threshold = compare.get("distance"), compare.get("threshold")
    problem.unless(metric in METRICS, f"preprocessing.descriptor.distance must be one of {METRICS}")
    problem.unless(_is_number(threshold) and threshold > 0, "preprocessing.descriptor.threshold must be > 0")
    name, version = compare.get("gallery_name"), compare.get("gallery_version")
    problem.unless(isinstance(name, str) and isinstance(version, str) and bool(name and version),
                   "preprocessing.descriptor.gallery_name and gallery_version must be non-empty strings")
    return EmbedderInfo(name, version, int(descriptor.shape[1]), metric, float(threshold))


class _Problems:
    """Raises InputError naming the card for the first check that fails."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def unless(self, ok: bool, problem: str) -> None:
        if not ok:
            raise InputError(self.path, f"embedder card: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _channels(value: Any, problem: _Problems, where: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    problem.unless(isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value),
                   f"{where} must be null or 3 numbers")
    return tuple(float(v) for v in value)


def _same_shape(graph: list[Any], card: list[int | str]) -> bool:
    """A fixed size must be the card's; a free one (a name, or None) must be free on the card."""
    return len(graph) == len(card) and all(
        g == c if _is_int(c) else not _is_int(g) for g, c in zip(graph, card))
