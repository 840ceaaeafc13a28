"""torch -> ONNX export, checked against torch and written with its artifact card.

Every export runs the new ONNX graph in ONNX Runtime next to the torch model, on the example
inputs, on random inputs of the same shapes, on random inputs with every dynamic dimension
changed (so a size baked into the graph is caught) and on any inputs the caller gives. The max
abs difference of each check is reported; above ``tolerance`` nothing is written and
:class:`ExportParityError` says which check failed. Only then are ``model.onnx`` and its
card ``model.card.json`` (:mod:`slimvision.export.card`) written, each atomically.

The card says how to feed the model (tensor names, shapes, dtypes, layout, value range, the
image preprocessing), so a pipeline never guesses from the graph; where it came from (source
weights and their sha256, the model's config, slimvision/torch/onnx/onnxruntime versions,
opset); the parity figures; and, from the caller's :class:`CardInfo`, its system, task,
licence and the command that remakes it.

Example:
    >>> report = export_onnx(model, "out/transformer.onnx",                         # doctest: +SKIP
    ...                      {"content": torch.rand(1, 3, 64, 64), "style": torch.randn(1, 100)},
    ...                      dynamic_axes={"content": {0: "batch", 2: "height", 3: "width"},
    ...                                    "style": {0: "batch"}},
    ...                      preprocessing={"content": ImageInput(layout="NCHW")},
    ...                      card=CardInfo(system="style", task="style-transfer",
    ...                                    layouts={"output": "NCHW"}, remake="make style"))
    >>> report.max_abs_diff < 1e-4                                                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

import slimvision
from slimvision.config import BaseConfig
from slimvision.errors import ConfigError, OutputError, SlimvisionError
from slimvision.export.card import ArtifactCard, TensorSpec, card_path, write_card
from slimvision.graph.surgery import fold_pads_into_convs
from slimvision.io.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
Feeds = Mapping[str, "np.ndarray | torch.Tensor"]


class ExportError(SlimvisionError):
    """The model could not be exported, or the exported graph does not run."""


class ExportParityError(ExportError):
    """ONNX Runtime and torch disagree by more than the tolerance; nothing was written."""


@dataclass
class ImageInput(BaseConfig):
    """How an image must be prepared for one model input (stored in the card's preprocessing).

    Attributes:
        layout: axis order of the input tensor.
        size: (height, width) the model needs, or ``"any"`` when height and width are free.
        value_range: pixel values are scaled into this range (after any mean/std).
        channel_order: colour channel order.
        mean / std: per-channel normalisation applied after scaling to ``value_range``, if any.
        size_multiple: with a free size, height and width must be multiples of this (callers
            pad; e.g. a network that starts with a space-to-depth shuffle).
    """

    layout: Literal["NCHW", "NHWC"] = "NCHW"
    size: tuple[int, int] | str = "any"
    value_range: tuple[float, float] = (0.0, 1.0)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size_multiple: int = 1

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        self.require_at_least(1, "size_multiple")
        if isinstance(self.size, str) and self.size != "any":
            raise ConfigError(f"{name}: size must be [height, width] or 'any', got {self.size!r}")
        if isinstance(self.size, tuple) and min(self.size) < 1:
            raise ConfigError(f"{name}: size must be positive, got {self.size}")
        if self.value_range[0] >= self.value_range[1]:
            raise ConfigError(f"{name}: value_range must be (low, high) with low < high, got {self.value_range}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError(f"{name}: give both mean and std, or neither")


@dataclass
class CardInfo:
    """What the exporter knows about an artifact that the graph cannot say (the card's words).

    Attributes:
        system: which system it belongs to ("style", "faces", "vae", "gan", "numerals").
        task: what the graph does ("style-prediction", "generation", ...).
        name: the artifact's name; the file name without ``.onnx`` when not given.
        licence: the weights' licence.
        remake: the command that remakes the artifact.
        layouts: tensor name -> axis order, for tensors that are not image inputs (those take
            their :class:`ImageInput` layout); a 2-d tensor without one is ``"N,D"``.
        value_ranges: tensor name -> ``[low, high]`` for tensors that are not image inputs.
        descriptions: tensor name -> what it means, in words.
        preprocessing: more preprocessing facts, merged beside the image inputs' specs.
        provenance: more provenance (e.g. the training run), merged into the exporter's.
    """

    system: str
    task: str
    name: str | None = None
    licence: str = "MIT (trained by slimvision)"
    remake: str = ""
    layouts: dict[str, str] = field(default_factory=dict)
    value_ranges: dict[str, list[float]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParityCheck:
    """One comparison of ONNX Runtime against torch."""

    name: str
    shapes: dict[str, list[int]]
    max_abs_diff: float


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched torch."""

    onnx_path: Path
    card_path: Path
    tolerance: float
    checks: list[ParityCheck] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(check.max_abs_diff for check in self.checks)

    def summary(self) -> str:
        parts = ", ".join(f"{c.name} {c.max_abs_diff:.2e}" for c in self.checks)
        return f"{self.onnx_path.name}: ONNX Runtime vs torch max abs diff {parts} (tolerance {self.tolerance:g})"


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_inputs: Feeds,
    *,
    card: CardInfo,
    output_names: Sequence[str] = ("output",),
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    preprocessing: Mapping[str, ImageInput] | None = None,
    check_inputs: Sequence[Feeds] = (),
    tolerance: float = 1e-4,
    opset: int = DEFAULT_OPSET,
    source_weights: str | Path | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> ExportReport:
    """Export ``model`` to ONNX at ``path``, check it against torch, write it and its card.

    Args:
        model: the network; exported in eval mode (its training flag is restored afterwards).
        path: where the ``.onnx`` goes; the card is :func:`~slimvision.export.card.card_path` of it.
        example_inputs: input name -> tensor, in the order ``forward`` takes them.
        card: the card's words the graph cannot give (system, task, licence, layouts, ...).
        output_names: names for the graph outputs, in the order ``forward`` returns them.
        dynamic_axes: input or output name -> {axis: symbolic name}; the same name on two
            tensors means the same size (e.g. ``"batch"``). Axes not named are fixed.
        preprocessing: input name -> how to prepare an image for it (image inputs only).
        check_inputs: extra feeds to compare on (e.g. real images), besides the random ones.
        tolerance: the largest max abs difference accepted on any check.
        opset: ONNX opset to export with.
        source_weights: the weights file or folder the model was loaded from (hashed into the
            card's provenance).
        overwrite: replace existing files at ``path`` and its card.
        seed: seeds the random check inputs.

    Raises:
        ExportError: bad arguments, or torch cannot export the model.
        ExportParityError: a check differs by more than ``tolerance`` (nothing is written).
    """
    path = Path(path)
    names = list(example_inputs)
    _check_arguments(names, output_names, dynamic_axes or {}, preprocessing or {}, path)
    examples = {name: torch.as_tensor(value) for name, value in example_inputs.items()}
    was_training = model.training
    model.eval()
    try:
        data = _export_bytes(model, examples, output_names, dynamic_axes or {}, opset)
        checks = _parity_checks(model, data, examples, dynamic_axes or {}, preprocessing or {}, check_inputs, seed)
    finally:
        model.train(was_training)
    report = ExportReport(path, card_path(path), tolerance, checks)
    log.info("%s", report.summary())
    if report.max_abs_diff > tolerance or not np.isfinite(report.max_abs_diff):
        raise ExportParityError(f"{path}: not written; {report.summary()}")
    artifact_card = _card(model, data, path, card, preprocessing or {}, opset, source_weights, report)
    if report.card_path.exists() and not overwrite:
        raise OutputError(report.card_path, "exists already (pass overwrite to replace it)")
    write_bytes_atomic(path, data, overwrite=overwrite)
    write_card(artifact_card, report.card_path)
    return report


def _check_arguments(names: list[str], output_names: Sequence[str], dynamic_axes: Mapping[str, Any],
                     preprocessing: Mapping[str, Any], path: Path) -> None:
    if not names:
        raise ExportError("export_onnx: example_inputs is empty")
    if path.suffix != ".onnx":
        raise ExportError(f"{path}: the exported model's name must end in .onnx")
    unknown = sorted(set(dynamic_axes) - set(names) - set(output_names))
    if unknown:
        raise ExportError(f"dynamic_axes names {unknown}, which are neither inputs {names} nor outputs "
                          f"{list(output_names)}")
    unknown = sorted(set(preprocessing) - set(names))
    if unknown:
        raise ExportError(f"preprocessing names {unknown}, which are not inputs {names}")
    if not all(isinstance(spec, ImageInput) for spec in preprocessing.values()):
        raise ExportError("preprocessing values must be ImageInput configs")


def _export_bytes(model: nn.Module, examples: dict[str, torch.Tensor], output_names: Sequence[str],
                  dynamic_axes: Mapping[str, Mapping[int, str]], opset: int) -> bytes:
    """The serialised, checker-validated ONNX model."""
    import onnx

    buffer = io.BytesIO()
    # The TorchScript exporter: the dynamo one needs onnxscript, which is not a dependency. Its
    # deprecation notice and instance-norm "train=True" note (stats come from the input either
    # way) would otherwise reach every user.
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        try:
            torch.onnx.export(model, tuple(examples.values()), buffer, dynamo=False,
                              input_names=list(examples), output_names=list(output_names),
                              dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                              opset_version=opset, do_constant_folding=True)
        except Exception as exc:  # torch raises many types here; the message is what helps
            raise ExportError(f"torch.onnx.export failed for {type(model).__name__}: {exc}") from exc
    # A tracer warning flags a value frozen at the example's size: usually harmless (torch's own
    # shape checks), and the resized parity check is what decides, so it is logged, not shown.
    for warning in caught:
        if issubclass(warning.category, torch.jit.TracerWarning):
            log.info("tracing %s: %s", type(model).__name__, str(warning.message).split(". ")[0])
    exported = onnx.load_from_string(buffer.getvalue())
    if fold_pads_into_convs(exported):
        data = exported.SerializeToString()
    else:
        data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except Exception as exc:
        raise ExportError(f"the exported {type(model).__name__} graph is invalid: {exc}") from exc
    return data


def _parity_checks(model: nn.Module, data: bytes, examples: dict[str, torch.Tensor],
                   dynamic_axes: Mapping[str, Mapping[int, str]], preprocessing: Mapping[str, ImageInput],
                   check_inputs: Sequence[Feeds], seed: int) -> list[ParityCheck]:
    session = _session(data)
    rng = np.random.default_rng(seed)
    shapes = {name: tuple(t.shape) for name, t in examples.items()}
    feeds = [("example", examples), ("random", _random_feeds(examples, shapes, preprocessing, rng))]
    if any(name in dynamic_axes for name in examples):
        multiples = {name: spec.size_multiple for name, spec in preprocessing.items()}
        resized = _resized_shapes(shapes, dynamic_axes, multiples)
        feeds.append(("random-resized", _random_feeds(examples, resized, preprocessing, rng)))
    feeds += [(f"given[{i}]", {k: torch.as_tensor(v) for k, v in f.items()}) for i, f in enumerate(check_inputs)]
    return [_compare(model, session, name, feed) for name, feed in feeds]


def _session(data: bytes) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2  # checks are small; two threads keep CI machines responsive
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {exc}") from exc


def _random_feeds(examples: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]],
                  preprocessing: Mapping[str, ImageInput], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Uniform in the value range for image inputs; matching mean and spread for the others."""
    feeds = {}
    for name, example in examples.items():
        if name in preprocessing:
            low, high = preprocessing[name].value_range
            values = rng.uniform(low, high, shapes[name])
        else:
            spread = float(example.float().std()) if example.numel() > 1 else 1.0
            values = rng.standard_normal(shapes[name]) * (spread or 1.0) + float(example.float().mean())
        feeds[name] = torch.from_numpy(values).to(example.dtype)
    return feeds


def _resized_shapes(shapes: dict[str, tuple[int, ...]], dynamic_axes: Mapping[str, Mapping[int, str]],
                    multiples: Mapping[str, int] | None = None) -> dict[str, tuple[int, ...]]:
    """Every dynamic dimension changed: batch-like (axis 0) + 1, spatial ones by different odd steps
    (times the input's ``size_multiple``, so a size that must be a multiple stays one).

    One new size per symbolic name, so tensors that share a dimension keep sharing it.
    """
    new_sizes: dict[str, int] = {}
    resized = {}
    for name, shape in shapes.items():
        dims = list(shape)
        for axis, symbol in dynamic_axes.get(name, {}).items():
            if symbol not in new_sizes:
                step = 1 if axis == 0 else (5 + 6 * len(new_sizes)) * (multiples or {}).get(name, 1)
                new_sizes[symbol] = dims[axis] + step
            dims[axis] = new_sizes[symbol]
        resized[name] = tuple(dims)
    return resized


def _compare(model: nn.Module, session: Any, name: str, feeds: dict[str, torch.Tensor]) -> ParityCheck:
    with torch.no_grad():
        expected = model(*feeds.values())
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    try:
        produced = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    except Exception as exc:
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        raise ExportError(f"ONNX Runtime failed on the '{name}' check with inputs {shapes}: {exc}") from exc
    diff = 0.0
    for index, (ours, theirs) in enumerate(zip(expected, produced)):
        if tuple(ours.shape) != theirs.shape:
            raise ExportParityError(f"'{name}' check: output {index} has shape {theirs.shape} in ONNX Runtime, "
                                    f"{tuple(ours.shape)} in torch")
        diff = max(diff, float(np.abs(ours.numpy().astype(np.float64) - theirs).max(initial=0.0)))
    if len(expected) != len(produced):
        raise ExportParityError(f"'{name}' check: torch returns {len(expected)} outputs, the graph {len(produced)}")
    return ParityCheck(name, {k: list(v.shape) for k, v in feeds.items()}, diff)


def _card(model: nn.Module, data: bytes, path: Path, info: CardInfo, preprocessing: Mapping[str, ImageInput],
          opset: int, source_weights: str | Path | None, report: ExportReport) -> ArtifactCard:
    import hashlib

    import onnx
    import onnxruntime

    graph = onnx.load_from_string(data).graph
    # A wrapper (e.g. a layout adapter) has no config of its own: record the configured network inside.
    configured = next((m for m in model.modules() if isinstance(getattr(m, "config", None), BaseConfig)), None)
    provenance = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "source_weights": _weights_provenance(source_weights),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": configured.config.to_dict() if configured is not None else None,
        "config_class": type(configured.config).__name__ if configured is not None else None,
        "slimvision": slimvision.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": opset,
        "exporter": "torch.onnx.export (TorchScript)",
        **info.provenance,
    }
    return ArtifactCard(
        name=info.name or path.name.removesuffix(".onnx"),
        system=info.system,
        task=info.task,
        files={"graph": path.name},
        inputs=[_tensor_spec(value, info, preprocessing, path) for value in graph.input],
        outputs=[_tensor_spec(value, info, preprocessing, path) for value in graph.output],
        preprocessing={**{name: spec.to_dict() for name, spec in preprocessing.items()}, **info.preprocessing},
        licence=info.licence,
        provenance=provenance,
        parity={
            "reference": "torch",
            "tolerance": report.tolerance,
            "max_abs_diff": report.max_abs_diff,
            "checks": [{"name": c.name, "shapes": c.shapes, "max_abs_diff": c.max_abs_diff} for c in report.checks],
        },
        remake=info.remake,
    )


def _tensor_spec(value: Any, info: CardInfo, preprocessing: Mapping[str, ImageInput], path: Path) -> TensorSpec:
    """A graph input or output as the card describes it: shape and dtype from the graph just
    written, layout and range from what the exporter was told (never guessed)."""
    from onnx import helper

    tensor = value.type.tensor_type
    dims: list[int | str] = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    image = preprocessing.get(value.name)
    if image is not None:
        layout, value_range = image.layout, [float(v) for v in image.value_range]
    else:
        layout = info.layouts.get(value.name) or ("N,D" if len(dims) == 2 else "")
        value_range = info.value_ranges.get(value.name)
    if not layout:
        raise ExportError(f"{path}: say the layout of {len(dims)}-d tensor {value.name!r} in CardInfo.layouts")
    return TensorSpec(name=value.name, shape=dims, dtype=helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                      layout=layout, value_range=value_range, description=info.descriptions.get(value.name, ""))


def _weights_provenance(source: str | Path | None) -> list[dict[str, str]] | None:
    """[{path, sha256}] for a weights file, or for every file in a weights folder."""
    from slimvision.assets import file_sha256

    if source is None:
        return None
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    elif source.is_file():
        files = [source]
    else:
        raise ExportError(f"{source}: source_weights is neither a file nor a folder")
    return [{"path": _portable_path(p), "sha256": file_sha256(p)} for p in files]


def _portable_path(path: Path) -> str:
    """Weights inside the slimvision package as "slimvision/weights/...", so a card that
    ships does not name the machine it was made on; others absolute."""
    import slimvision

    package_parent = Path(slimvision.__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(package_parent))
    except ValueError:
        return str(path.resolve())
