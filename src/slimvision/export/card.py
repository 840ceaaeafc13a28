"""The artifact card: one JSON file beside every ONNX graph that says how to use it.

A card is the single place a pipeline learns an artifact's tensors (names, shapes, dtypes, layout,
value range), its preprocessing, licence, provenance, export parity and the command that remakes
it. Pipelines read the card; nothing guesses these from the graph (ARCHITECTURE.md convention 5).

The card of ``graph.onnx`` is ``graph.card.json`` in the same folder (:func:`card_path`). Cards are
written atomically as sorted, indented JSON so that a re-export only shows real changes in a diff.

This module must not import torch: inference reads cards.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> card = ArtifactCard(
    ...     name="demo", system="gan", task="generation", files={"graph": "g.onnx"},
    ...     inputs=[TensorSpec("z", ["batch", 16], "float32", "N,D", None)],
    ...     outputs=[TensorSpec("image", ["batch", 1, 32, 32], "float32", "NCHW", [-1.0, 1.0])],
    ...     preprocessing={}, licence="MIT", provenance={}, parity={}, remake="make gan")
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_card(card, card_path(folder / "g.onnx"))
    >>> read_card(folder / "g.card.json") == card
    True
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from slimvision.errors import InputError
from slimvision.io.atomic import write_text_atomic

CARD_SUFFIX = ".card.json"
CARD_VERSION = 1
SYSTEMS = ("style", "faces", "vae", "gan", "numerals")


def card_path(artifact_file: Path) -> Path:
    """Return the card file that belongs beside ``artifact_file`` (``g.onnx`` -> ``g.card.json``).

    Example:
        >>> card_path(Path("weights/gan/generator.int8.onnx")).name
        'generator.int8.card.json'
    """
    artifact_file = Path(artifact_file)
    return artifact_file.with_name(artifact_file.name.removesuffix(artifact_file.suffix) + CARD_SUFFIX)


@dataclass
class TensorSpec:
    """One input or output of a graph.

    Attributes:
        name: the graph's tensor name.
        shape: one entry per axis; an int for a fixed size, a str for a symbolic one ("batch").
        dtype: numpy dtype name ("float32", "uint8", ...).
        layout: axis order ("NCHW", "NHWC", "N,D", ...).
        value_range: ``[low, high]`` the values lie in, or None when unbounded.
        description: what the tensor means, in words.
    """

    name: str
    shape: list[int | str]
    dtype: str
    layout: str
    value_range: list[float] | None
    description: str = ""


@dataclass
class ArtifactCard:
    """Everything a pipeline needs to know about one exported artifact (see module docstring).

    Attributes:
        name: the artifact's registered name.
        system: one of :data:`SYSTEMS`.
        task: what the graph does ("style-prediction", "face-embedding", "generation", ...).
        files: role -> file name relative to the card's folder (or a packaged resource name).
        inputs: the graph inputs, in order.
        outputs: the graph outputs, in order.
        preprocessing: how inputs are made from user data (size, mean/std, colour, range, ...).
        licence: the weights' licence.
        provenance: where the weights come from (package, version, sha256, training run, ...).
        parity: export parity, e.g. ``{"max_abs_diff": 1e-6, "reference": "torch"}``; ``{}`` if unchecked.
        remake: the command that remakes the artifact.
        card_version: the card format version.
    """

    name: str
    system: str
    task: str
    files: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: dict[str, Any]
    licence: str
    provenance: dict[str, Any]
    parity: dict[str, Any]
    remake: str
    card_version: int = CARD_VERSION

    def input(self, name: str) -> TensorSpec:
        """Return the input named ``name`` (KeyError naming it and the card if there is none)."""
        return _find(self.inputs, name, f"card {self.name!r} has no input")

    def output(self, name: str) -> TensorSpec:
        """Return the output named ``name`` (KeyError naming it and the card if there is none)."""
        return _find(self.outputs, name, f"card {self.name!r} has no output")


def _find(specs: list[TensorSpec], name: str, problem: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"{problem} {name!r} (it has {[spec.name for spec in specs]})")


def card_to_dict(card: ArtifactCard) -> dict[str, Any]:
    """Return the card as plain JSON-ready data."""
    return asdict(card)


def write_card(card: ArtifactCard, path: Path) -> None:
    """Write ``card`` to ``path`` atomically as JSON with sorted keys and indent 2 (overwrites).

    The card is checked first, so a card that :func:`read_card` would refuse is never written.
    """
    data = card_to_dict(card)
    _check_card(data, Path(path))
    write_text_atomic(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n", overwrite=True)


def read_card(path: Path) -> ArtifactCard:
    """Read and check the card at ``path``.

    Raises:
        InputError: naming the file, if it is missing, not JSON, has an unknown or missing key,
            a value of the wrong type, or a newer card version than this code reads.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "artifact card not found (remake the artifact to write it)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"artifact card cannot be read ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(path, f"artifact card is not valid JSON ({error.msg} at line {error.lineno})") from None
    _check_card(data, path)
    data = dict(data)
    data["inputs"] = [TensorSpec(**spec) for spec in data["inputs"]]
    data["outputs"] = [TensorSpec(**spec) for spec in data["outputs"]]
    return ArtifactCard(**data)


def copy_graph(source: str | Path, destination: str | Path, *, overwrite: bool = False) -> Path:
    """Copy a graph and its card to ``destination`` (e.g. from a run into ``weights/``), the card
    renamed to match: its ``name`` and ``files.graph`` follow the new file name. Both are written
    atomically; the source is never touched.

    Example:
        >>> copy_graph("runs/pred-gptq4/predictor.int4w.onnx",
        ...            "src/slimvision/weights/style/predictor-gptq4.int4w.onnx")  # doctest: +SKIP
    """
    from slimvision.io.atomic import atomic_write

    source, destination = Path(source), Path(destination)
    card = read_card(card_path(source))
    card.name = destination.name.removesuffix(".onnx")
    card.files = {**card.files, "graph": destination.name}
    with atomic_write(destination, overwrite=overwrite, protected=[source]) as temp:
        temp.write_bytes(source.read_bytes())
    write_card(card, card_path(destination))
    return destination


def _check_keys(data: Any, cls: type, path: Path, where: str) -> None:
    if not isinstance(data, dict):
        raise InputError(path, f"artifact card: {where} must be a JSON object, not {type(data).__name__}")
    known = {item.name for item in fields(cls)}
    required = {item.name for item in fields(cls) if item.default is MISSING}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(path, f"artifact card: unknown key {unknown[0]!r} in {where} (known: {sorted(known)})")
    missing = sorted(required - set(data))
    if missing:
        raise InputError(path, f"artifact card: missing key {missing[0]!r} in {where}")


def _expect(ok: bool, path: Path, where: str, wanted: str) -> None:
    if not ok:
        raise InputError(path, f"artifact card: {where} must be {wanted}")


def _check_spec(spec: Any, path: Path, where: str) -> None:
    _check_keys(spec, TensorSpec, path, where)
    for key in ("name", "dtype", "layout", "description"):
        _expect(isinstance(spec.get(key, ""), str), path, f"{where}.{key}", "a string")
    shape = spec["shape"]
    _expect(isinstance(shape, list), path, f"{where}.shape", "a list")
    for dim in shape:
        _expect(isinstance(dim, (int, str)) and not isinstance(dim, bool), path, f"{where}.shape", "ints and strings")
    value_range = spec["value_range"]
    if value_range is not None:
        numbers = isinstance(value_range, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range
        )
        _expect(numbers and len(value_range) == 2, path, f"{where}.value_range", "null or [low, high]")


def _check_card(data: Any, path: Path) -> None:
    _check_keys(data, ArtifactCard, path, "the card")
    version = data.get("card_version", CARD_VERSION)
    _expect(isinstance(version, int) and not isinstance(version, bool), path, "card_version", "an int")
    if version > CARD_VERSION:
        raise InputError(path, f"artifact card version {version} is newer than this slimvision reads ({CARD_VERSION})")
    for key in ("name", "system", "task", "licence", "remake"):
        _expect(isinstance(data[key], str), path, key, "a string")
    _expect(data["system"] in SYSTEMS, path, "system", f"one of {list(SYSTEMS)}")
    for key in ("files", "preprocessing", "provenance", "parity"):
        _expect(isinstance(data[key], dict), path, key, "a JSON object")
    _expect(all(isinstance(v, str) for v in data["files"].values()), path, "files", "role -> file name strings")
    for key in ("inputs", "outputs"):
        _expect(isinstance(data[key], list), path, key, "a list")
        for index, spec in enumerate(data[key]):
            _check_spec(spec, path, f"{key}[{index}]")


__all__ = [
    "CARD_SUFFIX",
    "CARD_VERSION",
    "SYSTEMS",
    "ArtifactCard",
    "TensorSpec",
    "card_path",
    "card_to_dict",
    "read_card",
    "write_card",
]
