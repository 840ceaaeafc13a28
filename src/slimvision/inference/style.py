"""Arbitrary style transfer (Ghiasi et al. 2017, Magenta's design) with ONNX Runtime.

A style-prediction network turns any style image into a 100-d style vector; a transformer
network with conditional instance norm paints a content image with that vector. Because the
style is just a vector: styles blend by weighted averages, and ``strength`` moves along the line
from the content image's own vector (0) to the target style (1).

Example:
    >>> from slimvision.inference.style import StyleTransferPipeline
    >>> from slimvision.io.images import load_image, save_image
    >>> pipe = StyleTransferPipeline()                                          # doctest: +SKIP
    >>> starry = pipe.style_vector(load_image("starry_night.jpg"))               # doctest: +SKIP
    >>> out = pipe(load_image("photo.jpg"), starry, strength=0.8)                # doctest: +SKIP
    >>> save_image(out, "photo_starry.png")                                      # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from slimvision import __version__
from slimvision.artifacts import STYLE_PIPELINE, style_models
from slimvision.assets import Asset, file_sha256
from slimvision.errors import ConfigError, InputError, SlimvisionError
from slimvision.export.card import ArtifactCard, read_card
from slimvision.graph.norm_fusion import with_fused_instance_norms
from slimvision.graph.precision import float_graph_key, with_float_weights
from slimvision.graph.rewrite import free_graph_key, split_norm_statistics, with_free_spatial_dims
from slimvision.graph.session import OnnxModel, SessionSettings
from slimvision.inference.tiling import tile_grid
from slimvision.inference.style_tiling import (  # noqa: F401  (re-exported: part of this module's API)
    MIN_CONTENT_SIDE,
    TRANSFORM_BYTES_PER_PIXEL,
    GlobalNormTiler,
    pad_to_multiple,
    tile_size_for_budget,
)
from slimvision.io.pixels import centre_square, to_float, to_uint8
from slimvision.registry import ARTIFACTS, ArtifactSpec, UnknownNameError

log = logging.getLogger(__name__)

STYLE_DIM = 100
VECTOR_FORMAT = "slimvision-style-vector"
DEFAULT_TILE_OVERLAP = 64


def default_memory_budget_mb() -> float:
    """A quarter of the machine's RAM, between 1 and 8 GB: room for the OS and other work.

    With the fp32 transformer (~330 bytes per pixel) that paints up to 3 MP untiled on a 4 GB
    board, 12 MP on a 16 GB laptop and 25 MP from 32 GB on.
    """
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume 8 GB
        total_mb = 8192.0
    return float(min(max(total_mb / 4, 1024.0), 8192.0))


@dataclass(frozen=True)
class StyleArtifact:
    """The two ONNX files of a style model and how to run them, read from its registration.

    A style model's registration line in :mod:`slimvision.artifacts` says everything: its files
    (roles ``predictor`` and ``transform``) and, in ``options``, the fields below but ``name``
    and the files (:meth:`from_spec` checks them). The preprocessing comes from the graphs' cards.

    Example:
        >>> style_artifact("slimvision-fast-v7").alias, style_artifact("slimvision-fast-v7").precision
        ('fast', 'fp32')
    """

    name: str
    predictor: Asset
    transform: Asset
    #: "int8": run the transform graph as shipped; "fp32": weights dequantized, activations float
    #: (see ``slimvision.graph.precision``).
    precision: str = "int8"
    #: Artifacts with the same vector space share a predictor, so their style vectors mix.
    vector_space: str = ""
    #: Peak ONNX Runtime working memory of one transformer run per content pixel, measured at
    #: 2048x2048 (ORT 1.32, peak RSS minus the idle process), plus ~10% headroom.
    bytes_per_pixel: int = 330
    #: Run the predictor as a float graph: its file stores compressed weights for float compute
    #: (fp16 behind Casts, or int8 behind DequantizeLinear; see ``compress.quantize``), or it is
    #: an int8 QDQ graph whose activations should not be rounded (the float teacher).
    float_predictor: bool = False
    description: str = ""
    #: The ``--model`` word that picks this artifact at its precision ("teacher", "fast"); "" for none.
    alias: str = ""

    @classmethod
    def from_spec(cls, spec: ArtifactSpec) -> StyleArtifact:
        """The style settings of a registered record: files from its roles, the rest from its
        options. ConfigError names the artifact and what its registration gets wrong."""
        problem = _style_spec_problem(spec)
        if problem:
            raise ConfigError(f"style artifact {spec.name!r}: {problem} (its register() line in "
                              f"slimvision/artifacts.py)")
        return cls(name=spec.name, predictor=spec.files["predictor"], transform=spec.files["transform"],
                   **spec.options)

    # The preprocessing comes from the predictor's card (``export.card``), not from fields here.
    def predictor_card(self) -> ArtifactCard:
        """The card of the predictor graph (found through the registry: beside our own graphs,
        in ``weights/cards/`` for a graph another package ships)."""
        return _read_card(ARTIFACTS.spec(self.name).card_files()["predictor"])

    @property
    def style_size(self) -> int:
        """Side of the square the predictor takes (its card's ``style_image`` input)."""
        shape = self.predictor_card().input("style_image").shape
        return int(shape[1] if self.layout == "NHWC" else shape[2])

    @property
    def layout(self) -> str:
        return self.predictor_card().input("style_image").layout

    @property
    def value_range(self) -> tuple[float, float]:
        spec = self.predictor_card().input("style_image")
        if spec.value_range is None:
            raise InputError(self.name, "the predictor's card gives no value range for 'style_image'")
        low, high = spec.value_range
        return float(low), float(high)

    def transform_card_file(self) -> Path:
        """Where the transformer graph's card is (found through the registry, as the predictor's)."""
        return ARTIFACTS.spec(self.name).card_files()["transform"]

    @property
    def size_multiple(self) -> int:
        """Content sides are reflect-padded to a multiple of this: the transformer card's
        ``preprocessing.content_image.size_multiple`` (its whole downsampling stride)."""
        return _size_multiple(self.transform_card_file())

    def preprocessing(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "value_range": list(self.value_range),
            "style_image": {"crop": "centre-square", "size": self.style_size, "resample": "bilinear"},
            "content_image": {"size": "any", "pad_to_multiple_of": self.size_multiple, "pad_mode": "reflect"},
        }


@lru_cache(maxsize=16)
def _read_card(path: Path) -> ArtifactCard:
    """A card read once per process (pipelines ask for the same few)."""
    return read_card(path)


def _size_multiple(card_file: Path) -> int:
    """The content input's ``size_multiple`` in a transformer card's preprocessing (the content
    image is the card's first input); InputError naming the card when it is missing or below 1."""
    card = _read_card(card_file)
    content = card.inputs[0].name if card.inputs else "content_image"
    settings = card.preprocessing.get(content)
    value = settings.get("size_multiple") if isinstance(settings, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(card_file, f"artifact card: preprocessing.{content}.size_multiple must be an int >= 1 "
                                    f"(the transformer's whole stride), got {value!r}")
    return value


_OPTION_TYPES: dict[str, tuple[type, ...]] = {"precision": (str,), "vector_space": (str,), "bytes_per_pixel": (int,),
                                             "float_predictor": (bool,), "description": (str,), "alias": (str,)}
PRECISIONS = ("int8", "fp32")


def _style_spec_problem(spec: ArtifactSpec) -> str | None:
    """What is wrong with a style model's registration (files, options, pipeline argument), or None."""
    missing = sorted({"predictor", "transform"} - set(spec.files))
    unknown = sorted(set(spec.options) - set(_OPTION_TYPES))
    wrong = sorted(key for key, value in spec.options.items()
                   if key in _OPTION_TYPES and (not isinstance(value, _OPTION_TYPES[key])
                                                or (isinstance(value, bool) and bool not in _OPTION_TYPES[key])))
    if missing:
        return f"no file for role {', '.join(missing)}"
    if unknown:
        return f"unknown option {', '.join(unknown)} (style options: {', '.join(_OPTION_TYPES)})"
    if wrong:
        return ", ".join(f"option {key} must be {_OPTION_TYPES[key][0].__name__}, got {spec.options[key]!r}"
                         for key in wrong)
    if spec.options.get("precision", "int8") not in PRECISIONS:
        return f"precision must be one of {', '.join(PRECISIONS)}, got {spec.options['precision']!r}"
    if spec.options.get("bytes_per_pixel", 1) < 1:
        return f"bytes_per_pixel must be at least 1, got {spec.options['bytes_per_pixel']}"
    if spec.arguments.get("artifact") != spec.name:  # else the pipeline would run another model
        return f"pass artifact={spec.name!r} to the pipeline, got {spec.arguments.get('artifact')!r}"
    return None


def style_artifact(name: str) -> StyleArtifact:
    """The style settings of a registered style artifact; UnknownNameError suggests close names."""
    spec = ARTIFACTS.spec(name)
    if spec.pipeline != STYLE_PIPELINE:
        known = ", ".join(style.name for style in style_models())
        raise UnknownNameError(f"{name!r} is a {spec.system} artifact, not a style model (style models: {known})")
    return StyleArtifact.from_spec(spec)


def models_by_alias() -> dict[tuple[str, str], str]:
    """``(--model alias, precision) -> artifact name``, from the style models' registrations now.

    Raises:
        ConfigError: two registered style models answer to the same alias and precision.
    """
    table: dict[tuple[str, str], str] = {}
    for spec in style_models():
        artifact = StyleArtifact.from_spec(spec)
        if not artifact.alias:
            continue
        key = (artifact.alias, artifact.precision)
        if key in table:
            raise ConfigError(f"style artifacts {table[key]!r} and {spec.name!r} both answer to --model "
                              f"{key[0]} --precision {key[1]}; give one of them another alias")
        table[key] = spec.name
    return dict(sorted(table.items()))


#: Names by (model alias, precision), for ``--model`` and ``--precision``: a view of the
#: registrations as they were when this module was imported (:func:`artifact_for` reads them live).
ARTIFACT_BY_MODEL = models_by_alias()
#: The teacher at each precision (what benchmarks compare).
ARTIFACT_BY_PRECISION = {precision: name for (model, precision), name in ARTIFACT_BY_MODEL.items()
                         if model == "teacher"}
#: What runs when no model is named, in order of preference: the distilled bundle meets issue 24's
#: fidelity targets against the float teacher (docs/compress.md), so it is the default; only the
#: teacher has an int8 graph, so ``--precision int8`` alone runs the teacher.
DEFAULT_MODELS = ("fast", "teacher")


def predict_style_vector(predictor: OnnxModel, image: np.ndarray, size: int) -> np.ndarray:
    """Raw (100,) style vector of an (H, W, 3) uint8 image by an NHWC predictor session that
    takes ``size`` px squares in [0, 1] (its centre square, resized)."""
    batch = to_float(centre_square(image, size))[None]  # (1, size, size, 3)
    (vector,) = predictor.run({predictor.input_names[0]: batch})
    return vector.reshape(STYLE_DIM)


def artifact_for(model: str | None = None, precision: str | None = None) -> str:
    """The artifact behind ``--model`` and ``--precision``: an alias at a precision (fp32 when
    None), or a registered style model's name (its own precision; another one is an error).
    No model: the first of :data:`DEFAULT_MODELS` with that precision.

    Example:
        >>> artifact_for(), artifact_for(precision="int8")
        ('slimvision-fast-v7', 'magenta-arbitrary-v1-int8')
        >>> artifact_for("fast"), artifact_for("teacher", "int8")
        ('slimvision-fast-v7', 'magenta-arbitrary-v1-int8')
        >>> artifact_for("magenta-arbitrary-v1-int8")
        'magenta-arbitrary-v1-int8'
    """
    table = models_by_alias()
    if model is None:
        model = next((alias for alias in DEFAULT_MODELS if (alias, precision or "fp32") in table),
                     DEFAULT_MODELS[0])  # none has it: the error below names what there is
    if model not in {alias for alias, _ in table}:
        artifact = style_artifact(model)  # UnknownNameError (close names) for anything else
        if precision is not None and precision != artifact.precision:
            raise SlimvisionError(f"--model {model} runs at {artifact.precision}, not --precision {precision} "
                                  f"(leave --precision out, or pick a model of that precision)")
        return artifact.name
    precision = precision or "fp32"
    try:
        return table[(model, precision)]
    except KeyError:
        offered = ", ".join(f"{m}/{p}" for m, p in table)
        raise SlimvisionError(f"--model {model} has no {precision} variant (int8 compute was slower than float on "
                              f"the CPUs we measured); available: {offered}") from None


# --------------------------------------------------------------------------- style vectors
@dataclass
class StyleVector:
    """A 100-d style vector with where it came from.

    Saved as ``NAME.npy`` (float32, shape (100,)) plus ``NAME.json`` (provenance), so a style
    is computed once and reused everywhere a style image is accepted.
    """

    values: np.ndarray  # (100,) float32
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32).reshape(-1)
        if values.shape != (STYLE_DIM,):
            raise SlimvisionError(f"a style vector has {STYLE_DIM} values, got shape {np.shape(self.values)}")
        if not np.all(np.isfinite(values)):
            raise SlimvisionError("style vector contains NaN or infinite values")
        self.values = values

    @property
    def model(self) -> str | None:
        return self.provenance.get("model")

    def save(self, path: str | Path, *, overwrite: bool = False, protected: Sequence[str | Path] = ()) -> Path:
        """Write ``path`` (.npy) and its ``.json`` sidecar: both checked first, then both or neither.

        The sidecar is renamed into place first, so a ``.npy`` never appears without it.
        ``protected`` files (the inputs) are never overwritten.
        """
        import io

        from slimvision.io.atomic import write_files_atomic

        path = Path(path)
        if path.suffix.lower() != ".npy":
            raise SlimvisionError(f"{path}: style vectors are saved as .npy")
        buffer = io.BytesIO()
        np.save(buffer, self.values)
        sidecar = {"format": VECTOR_FORMAT, "format_version": 1, "dim": STYLE_DIM, **self.provenance}
        write_files_atomic([(path.with_suffix(".json"), (json.dumps(sidecar, indent=2) + "\n").encode()),
                            (path, buffer.getvalue())], overwrite=overwrite, protected=protected)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StyleVector:
        """Read a ``.npy`` vector (and its ``.json`` sidecar when present)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "style vector file not found")
        try:
            # Memory-mapped first: a header declaring a huge shape fails here instead of allocating it.
            mapped = np.load(path, allow_pickle=False, mmap_mode="r")
            if mapped.size != STYLE_DIM or not np.issubdtype(mapped.dtype, np.floating):
                raise InputError(path, f"expected {STYLE_DIM} float values, got {mapped.dtype} of shape {mapped.shape}")
            values = np.array(mapped)
            del mapped  # closes the mapping
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(path, f"not a readable .npy style vector ({' '.join(str(exc).split())})") from None
        sidecar = path.with_suffix(".json")
        provenance = _read_sidecar(sidecar) if sidecar.is_file() else {}
        try:
            return cls(values, provenance)
        except SlimvisionError as exc:
            raise InputError(path, str(exc)) from None


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    """A vector's ``.json`` provenance, checked: an object, of this format and dimension, whose
    ``model`` is a name (or null). Format keys are dropped.

    Raises:
        InputError: one line naming the sidecar and what is wrong in it.
    """
    try:
        provenance = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(sidecar, f"invalid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(sidecar, f"cannot read ({exc.strerror or exc})") from None
    if not isinstance(provenance, dict):
        raise InputError(sidecar, f"expected a JSON object of provenance, got {type(provenance).__name__}")
    problem = None
    if provenance.get("format", VECTOR_FORMAT) != VECTOR_FORMAT:
        problem = f"format is {str(provenance['format'])[:60]!r}, expected {VECTOR_FORMAT!r}"
    elif provenance.get("dim", STYLE_DIM) != STYLE_DIM or isinstance(provenance.get("dim"), bool):
        problem = f"dim is {str(provenance['dim'])[:20]!r}; style vectors have {STYLE_DIM} values"
    elif not isinstance(provenance.get("model"), (str, type(None))):
        problem = f"model must be a model name or null, got {type(provenance['model']).__name__}"
    elif not isinstance(provenance.get("source"), (dict, type(None))):
        problem = f"source must be an object or null, got {type(provenance['source']).__name__}"
    if problem:
        raise InputError(sidecar, f"not a style vector sidecar: {problem}")
    return {k: v for k, v in provenance.items() if k not in ("format", "format_version", "dim")}


def blend(vectors: Sequence[StyleVector], weights: Sequence[float] | None = None) -> StyleVector:
    """Weighted mean of style vectors (weights are normalised to sum to 1).

    Example:
        >>> a = StyleVector(np.zeros(100)); b = StyleVector(np.ones(100))
        >>> float(blend([a, b], [0.25, 0.75]).values[0])
        0.75
    """
    if not vectors:
        raise SlimvisionError("blend needs at least one style")
    if weights is None:
        weights = [1.0] * len(vectors)
    if len(weights) != len(vectors):
        raise SlimvisionError(f"got {len(vectors)} styles but {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise SlimvisionError(f"style weights must be non-negative and not all zero, got {list(weights)}")
    if len(vectors) == 1:
        return vectors[0]
    w = w / w.sum()
    values = np.tensordot(w, np.stack([v.values for v in vectors]).astype(np.float64), axes=1)
    models = {v.model for v in vectors}
    provenance = {
        "model": models.pop() if len(models) == 1 else None,
        "blend": [{"weight": float(wi), "source": v.provenance.get("source"), "artifact": v.provenance.get("artifact")}
                  for wi, v in zip(w, vectors)],
        "created": _now(),
        "slimvision": __version__,
    }
    return StyleVector(values.astype(np.float32), provenance)


def interpolate(content_own: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    """``strength`` 0 gives the content's own style vector, 1 the target style's."""
    check_strength(strength)
    return ((1.0 - strength) * content_own + strength * target).astype(np.float32)


def check_strength(strength: float) -> float:
    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):
        raise SlimvisionError(f"strength must be between 0 and 1, got {strength}")
    return float(strength)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- image helpers
def fitted_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) after :func:`fit_max_side`: the longer side at most ``max_side``, never up."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fit_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale (Lanczos) so the longer side is at most ``max_side``; never upscales."""
    if max_side is not None and max_side < MIN_CONTENT_SIDE:
        raise SlimvisionError(f"max_side must be at least {MIN_CONTENT_SIDE}, got {max_side}")
    height, width = fitted_size(*image.shape[:2], max_side)
    if (height, width) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


# BT.601 full-range RGB <-> YCbCr (the JPEG convention), done in float to avoid banding.
_RGB_TO_Y = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def preserve_colour(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Keep the stylized luminance and the content's chroma.

    Args:
        stylized: (H, W, 3) float32 in [0, 1].
        content: (H, W, 3) float32 in [0, 1], same size.
    """
    y_styled = stylized @ _RGB_TO_Y  # (H, W)
    y_content = content @ _RGB_TO_Y
    # Adding the luminance difference to every channel keeps Cb and Cr exactly (they are
    # differences of channels from Y), which is the YCbCr recombination in one step.
    return np.clip(content + (y_styled - y_content)[..., None], 0.0, 1.0)


# --------------------------------------------------------------------------- the pipeline
StyleLike = StyleVector | np.ndarray | str | Path


class StyleTransferPipeline:
    """Style images or vectors + content images -> stylized images, on ONNX Runtime.

    Sessions are created on first use and reused, so one pipeline serves a whole batch; all
    methods may be called from several threads at once (ONNX Runtime runs are thread-safe).

    Args:
        artifact: registered style artifact name (see ``slimvision models``); default
            ``artifact_for()``, what ``--model fast`` runs (slimvision-fast-v7).
        settings: ONNX Runtime threads, optimisation level and providers.
        memory_budget_mb: working memory allowed for one transformer run (default: a quarter
            of the RAM, 1-8 GB); larger images are processed in overlapping tiles.
        tile_overlap: pixels shared by neighbouring tiles.
    """

    def __init__(self, artifact: str | None = None, settings: SessionSettings | None = None,
                 memory_budget_mb: float | None = None,
                 tile_overlap: int = DEFAULT_TILE_OVERLAP) -> None:
        self.artifact: StyleArtifact = style_artifact(artifact or artifact_for())
        self.settings = settings or SessionSettings()
        self.memory_budget_mb = memory_budget_mb or default_memory_budget_mb()
        #: Content sides are padded to this, and tiles aligned to it (the transformer's card).
        self.size_multiple = self.artifact.size_multiple
        self.tile_size = tile_size_for_budget(self.memory_budget_mb, self.artifact.bytes_per_pixel,
                                              size_multiple=self.size_multiple)
        self.tile_overlap = tile_overlap
        self._lock = threading.RLock()  # sessions are created once, even when threads race
        self._predictor: OnnxModel | None = None
        self._transform: OnnxModel | None = None
        self._tiler: GlobalNormTiler | None = None
        self._style_cache: dict[tuple[str, int, int], StyleVector] = {}

    # -- sessions (lazy: `style vector` never loads the transformer)
    @property
    def predictor(self) -> OnnxModel:
        with self._lock:
            if self._predictor is None:
                path = self.artifact.predictor.path()
                model, key = ((with_float_weights(path), float_graph_key(path)) if self.artifact.float_predictor
                              else (path, f"{path.stem}-{file_sha256(path)[:16]}"))
                self._predictor = OnnxModel(model, self.settings, "style predictor", cache_key=key)
            return self._predictor

    def _transform_graph(self) -> tuple[bytes, str]:
        """The transform graph this artifact runs (free H/W, at its precision) and its cache key."""
        path = self.artifact.transform.path()
        if self.artifact.precision == "fp32":
            return with_float_weights(path), float_graph_key(path)
        return with_free_spatial_dims(path), free_graph_key(path)

    @property
    def transform(self) -> OnnxModel:
        with self._lock:
            if self._transform is None:
                data, key = self._transform_graph()
                if self.artifact.precision == "fp32":  # whole images only: the tiler needs the norms spelled out
                    data, key = with_fused_instance_norms(data, key)
                self._transform = OnnxModel(data, self.settings, f"style transformer ({self.artifact.precision})",
                                            cache_key=key)
            return self._transform

    @property
    def tiler(self) -> GlobalNormTiler:
        with self._lock:
            if self._tiler is None:
                import onnx  # only large images need the split graphs

                model = onnx.load_from_string(self._transform_graph()[0])
                self._tiler = GlobalNormTiler(split_norm_statistics(model), self.settings, self.size_multiple)
            return self._tiler

    def working_memory_mb(self, height: int, width: int, max_side: int | None = None) -> float:
        """Estimated peak memory of painting an image of this size (capped by tiling at the budget)."""
        height, width = fitted_size(height, width, max_side)
        return min(height * width * self.artifact.bytes_per_pixel / 2**20, self.memory_budget_mb)

    # -- style vectors
    def predict_vector(self, image: np.ndarray) -> np.ndarray:
        """Raw (100,) style vector of an (H, W, 3) uint8 image."""
        return predict_style_vector(self.predictor, image, self.artifact.style_size)

    def style_vector(self, image: np.ndarray, source: str | Path | None = None) -> StyleVector:
        """Style vector of a style image, with provenance (model, source file and its hash)."""
        provenance: dict[str, Any] = {
            "model": self.artifact.vector_space or self.artifact.name,
            # Which artifact ran the predictor file: the int8 and float teachers share the file but
            # not its arithmetic (the float one does not round activations).
            "artifact": self.artifact.name,
            "predictor": self.artifact.predictor.provenance(),
            "preprocessing": self.artifact.preprocessing()["style_image"],
            "created": _now(),
            "slimvision": __version__,
        }
        if source is not None:
            source_path = Path(source)
            provenance["source"] = {"path": str(source_path), "name": source_path.name}
            if source_path.is_file():
                provenance["source"]["sha256"] = file_sha256(source_path)
        return StyleVector(self.predict_vector(image), provenance)

    def resolve_style(self, style: StyleLike, *, max_pixels: int | None = None) -> StyleVector:
        """Accept a StyleVector, raw values, a saved ``.npy`` vector or a style image path."""
        if isinstance(style, StyleVector):
            vector = style
        elif isinstance(style, np.ndarray) and style.size == STYLE_DIM:
            vector = StyleVector(style)
        elif isinstance(style, np.ndarray):
            vector = self.style_vector(style)
        else:
            vector = self._vector_from_file(Path(style), max_pixels)
        if vector.model is not None and not self._vector_fits(vector.model):
            problem = f"style vector was computed by {vector.model!r}; this pipeline runs {self.artifact.name!r}"
            if isinstance(style, (str, Path)):
                raise InputError(style, problem)  # naming the file the vector came from
            raise SlimvisionError(problem)
        return vector

    def _vector_fits(self, model: str) -> bool:
        """Vectors from any artifact that shares this one's predictor are interchangeable."""
        if model in (self.artifact.name, self.artifact.vector_space):
            return True
        try:
            other: StyleArtifact = style_artifact(model)
        except SlimvisionError:
            return False
        return bool(other.vector_space) and other.vector_space == self.artifact.vector_space

    def _vector_from_file(self, path: Path, max_pixels: int | None) -> StyleVector:
        if path.suffix.lower() == ".npy":
            return StyleVector.load(path)
        from slimvision.io.images import DEFAULT_MAX_PIXELS, load_image

        try:
            stat = path.stat()
            key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        if key is not None and key in self._style_cache:
            return self._style_cache[key]
        image = load_image(path, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        vector = self.style_vector(image, source=path)
        if key is not None:
            self._style_cache[key] = vector
        return vector

    def target_vector(self, styles: StyleLike | Sequence[StyleLike],
                      weights: Sequence[float] | None = None) -> StyleVector:
        """One style or a weighted blend of several, as one vector."""
        if isinstance(styles, (StyleVector, np.ndarray, str, Path)):
            styles = [styles]
        return blend([self.resolve_style(s) for s in styles], weights)

    # -- painting
    def transform_array(self, content: np.ndarray, vector: np.ndarray,
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Paint (H, W, 3) float32 content in [0, 1] with a (100,) vector -> (H, W, 3) float32."""
        height, width = content.shape[:2]
        if min(height, width) < MIN_CONTENT_SIDE:
            raise SlimvisionError(
                f"content image is {width}x{height}; style transfer needs at least "
                f"{MIN_CONTENT_SIDE}x{MIN_CONTENT_SIDE} pixels"
            )
        style_input = vector.reshape(1, 1, 1, STYLE_DIM).astype(np.float32)
        # Small budgets give small tiles: keep the blending zone under a quarter of a tile.
        overlap = min(self.tile_overlap, self.tile_size // 4)
        if max(height, width) > self.tile_size and len(list(tile_grid(height, width, self.tile_size, overlap,
                                                                      self.size_multiple))) > 1:
            return self.tiler(content, style_input, self.tile_size, overlap, progress)
        # (A side a few pixels over the tile size makes one stretched tile: that is just an untiled run.)
        model = self.transform
        padded = pad_to_multiple(content, self.size_multiple)
        feeds = {model.input_names[0]: np.ascontiguousarray(padded[None]), model.input_names[1]: style_input}
        (out,) = model.run(feeds)
        return out[0, :height, :width]

    def __call__(self, content: np.ndarray, style: StyleLike | Sequence[StyleLike],
                 weights: Sequence[float] | None = None, strength: float = 1.0,
                 preserve_color: bool = False, max_side: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Stylize one content image.

        Args:
            content: (H, W, 3) uint8 RGB (see ``slimvision.io.images.load_image``).
            style: a style image path, a saved ``.npy`` vector, a StyleVector, or a list of them.
            weights: blend weights, one per style (default: equal).
            strength: 0 keeps the content's own style, 1 applies the full style.
            preserve_color: keep the content's colours, take only the style's luminance.
            max_side: downscale the content so its longer side is at most this many pixels.
            progress: ``progress(done, total)`` over tiles, for large images.

        Returns:
            (H', W', 3) uint8, the content's size after ``max_side``.
        """
        check_strength(strength)
        target = self.target_vector(style, weights)
        return self.stylize_with_vector(content, target.values, strength, preserve_color, max_side, progress)

    def stylize_with_vector(self, content: np.ndarray, vector: np.ndarray, strength: float = 1.0,
                            preserve_color: bool = False, max_side: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Like ``__call__`` with the target vector already computed (the batch fast path)."""
        check_strength(strength)
        content = fit_max_side(content, max_side)
        if strength < 1.0:
            vector = interpolate(self.predict_vector(content), vector, strength)
        content_float = to_float(content)
        stylized = self.transform_array(content_float, vector, progress)
        if preserve_color:
            stylized = preserve_colour(stylized, content_float)
        return to_uint8(stylized)
