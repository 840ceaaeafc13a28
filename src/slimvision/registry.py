"""Name -> factory registries, so adding a model never means editing a central switch.

Two registries serve the house: :data:`MODELS` (trainable ``nn.Module`` classes, registered by
``@register_model`` in their own modules under ``slimvision.models``) and :data:`ARTIFACTS`
(every shipped, ready-to-run artifact of the five systems, registered in
:mod:`slimvision.artifacts`). Both fill themselves on their first lookup, so what they list
never depends on which subpackage happens to have been imported.

Example:
    >>> from slimvision.registry import Registry
    >>> shapes = Registry("shape")
    >>> @shapes.register("square")
    ... def make_square(side: int = 2) -> list[int]:
    ...     return [side, side]
    >>> shapes.create("square", side=3)
    [3, 3]
    >>> shapes.names()
    ['square']
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from slimvision.errors import SlimvisionError

if TYPE_CHECKING:  # the card module is part B's export layer; imported only when a card is read
    from slimvision.assets import Asset
    from slimvision.export.card import ArtifactCard

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(SlimvisionError, KeyError):
    """Asked for a name no factory was registered under."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class Registry(Generic[F]):
    """A named collection of factories (functions or classes) with helpful lookup errors.

    Args:
        kind: what the names name, for error messages ("model", "artifact").
        discover: called once, before the first lookup, to import the modules that register
            (so a lookup never depends on what the caller happened to import first).
    """

    def __init__(self, kind: str, discover: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._factories: dict[str, Any] = {}
        self._discover = discover
        self._discovering = threading.RLock()
        self._in_discovery = False

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``factory`` under ``name``; a duplicate name is an error."""

        def decorator(factory: F) -> F:
            self._add(name, factory)
            return factory

        return decorator

    def _add(self, name: str, entry: Any) -> None:
        if name in self._factories and self._factories[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = entry

    def _discovered(self) -> dict[str, Any]:
        """The entries, after the one-time discovery. Other threads wait for it; a lookup made by
        the discovering imports themselves sees what is registered so far; a failed import is
        raised, and retried on the next lookup."""
        if self._discover is not None:
            with self._discovering:
                if self._discover is not None and not self._in_discovery:
                    self._in_discovery = True
                    try:
                        self._discover()
                        self._discover = None
                    finally:
                        self._in_discovery = False
        return self._factories

    def get(self, name: str) -> Callable[..., Any]:
        entries = self._discovered()
        try:
            return entries[name]
        except KeyError:
            import difflib  # only on a miss: keeps CLI start-up lean

            close = difflib.get_close_matches(name, entries, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def create(self, name: str, **overrides: Any) -> Any:
        """Call the factory registered as ``name``; unknown keyword names are an error."""
        factory = self.get(name)
        if not overrides:
            return factory()
        import inspect  # ~10 ms to import: paid only when keyword arguments must be checked

        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = sorted(set(overrides) - set(params)) if not takes_any else []
        if unknown:
            raise TypeError(f"{self.kind} {name!r} does not accept {', '.join(unknown)}")
        return factory(**overrides)

    def names(self) -> list[str]:
        return sorted(self._discovered())

    def __contains__(self, name: object) -> bool:
        return name in self._discovered()


def import_object(reference: str) -> Any:
    """``"package.module:Name"`` -> that object, importing the module only now.

    Example:
        >>> import_object("pathlib:PurePosixPath")("a/b").name
        'b'
    """
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected 'module:Name', got {reference!r}")
    return getattr(importlib.import_module(module), attribute)


# --------------------------------------------------------------------------- artifacts
#: What each speed class means: the time of one typical call on one laptop CPU core.
SPEED_CLASSES = {
    "realtime": "under 30 ms a call: video rates on a laptop CPU",
    "interactive": "30 ms to 1 s a call: fine for a click or a page",
    "batch": "over 1 s a call: run it on folders, not per click",
}
#: The systems of the house (ARCHITECTURE.md), each with its docs page.
SYSTEMS = ("style", "faces", "vae", "gan", "numerals")


@dataclass(frozen=True)
class ArtifactSpec:
    """One shipped, ready-to-run artifact: what it is for, where its files come from and which
    pipeline runs it. Nothing heavy is imported until :meth:`load`.

    Attributes:
        name: the registered name (``slimvision models`` lists them).
        system: one of :data:`SYSTEMS`.
        purpose: one line saying what it is for.
        speed: a key of :data:`SPEED_CLASSES`.
        files: role -> the file or folder (found through :mod:`slimvision.assets`).
        pipeline: ``"module:Class"`` of the pipeline that runs it (numpy + onnxruntime only,
            except where the artifact is torch weights).
        arguments: keyword arguments of the pipeline that are constants.
        file_arguments: keyword arguments of the pipeline that take a file's path: name -> role.
        options: settings the system's own code reads from this record, never passed to the
            pipeline as keyword arguments: a style model's precision, vector space, memory per
            pixel, description and ``--model`` alias (``slimvision.inference.style``'s
            ``StyleArtifact.from_spec`` reads and checks them). Kept here so that a model's
            registration line says everything about it, and no second table per system has to
            repeat its files. (Named ``options``, not ``settings``: ``settings`` is the
            pipelines' ONNX Runtime keyword.)
    """

    name: str
    system: str
    purpose: str
    speed: str
    files: Mapping[str, Asset]
    pipeline: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    file_arguments: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"artifact {self.name!r}: system {self.system!r} is not one of {', '.join(SYSTEMS)}")
        if self.speed not in SPEED_CLASSES:
            raise ValueError(f"artifact {self.name!r}: speed {self.speed!r} is not one of {', '.join(SPEED_CLASSES)}")
        missing = sorted(set(self.file_arguments.values()) - set(self.files))
        if missing:
            raise ValueError(f"artifact {self.name!r}: file_arguments name roles it has no file for: {missing}")

    def paths(self) -> dict[str, Path]:
        """Role -> absolute path; MissingAssetError names the package to install."""
        return {role: asset.path() for role, asset in self.files.items()}

    def card_files(self) -> dict[str, Path]:
        """The card of every graph it runs: ``graph.card.json`` beside each ``.onnx``, also in a
        folder (a VAE export); weights that are no graph (a map's ``.npz``, torch
        ``.safetensors``, dlib's ``.dat``) have theirs beside them the same way. Graphs
        shipped by another package are described by cards inside slimvision, in
        ``slimvision/weights/cards/`` (packaged with the weights; site-packages is not ours)."""
        from slimvision.export.card import card_path

        cards: dict[str, Path] = {}
        for role, asset in self.files.items():
            path = asset.path()
            graphs = _weight_files(path) if path.is_dir() else []
            for graph in graphs or [path]:
                key = role if not graphs else f"{role}/{graph.name}"
                cards[key] = _card_location(asset, card_path(graph))
        return cards

    def read_cards(self) -> dict[str, ArtifactCard]:
        """Each graph's card (see :meth:`card_files`), read and checked by ``export.card.read_card``."""
        from slimvision.export.card import read_card

        return {role: read_card(path) for role, path in self.card_files().items()}

    def load(self, **overrides: Any) -> Any:
        """The pipeline, built now (its sessions may still load on first use).

        Args:
            **overrides: further keyword arguments of the pipeline (e.g. ``settings``). One that
                names a file argument runs the same pipeline on another file (a model the user
                trained, ``--model PATH``); the shipped file is then not looked for at all.
        """
        factory = import_object(self.pipeline)
        paths = {argument: self.files[role].path() for argument, role in self.file_arguments.items()
                 if argument not in overrides}
        return factory(**{**self.arguments, **paths, **overrides})

    def describe(self) -> dict[str, Any]:
        """What ``slimvision models --json`` and the server's ``/api/models`` list: name, system,
        speed, purpose, bytes on disk, and each file's role, size and provenance (a file whose
        package is not installed has bytes None)."""
        files = [{"role": role, "bytes": _installed_bytes(asset), **asset.provenance()}
                 for role, asset in self.files.items()]
        return {"name": self.name, "system": self.system, "speed": self.speed, "purpose": self.purpose,
                "bytes": sum(file["bytes"] or 0 for file in files), "files": files}


def _installed_bytes(asset: Asset) -> int | None:
    """Bytes on disk of a file or folder, or None when the package that ships it is missing."""
    from slimvision.errors import MissingAssetError

    try:
        path = asset.path()
    except MissingAssetError:
        return None
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size if path.is_file() else None


def _weight_files(folder: Path) -> list[Path]:
    """The graphs in a folder, or where it has none, its other weight files."""
    return sorted(folder.glob("*.onnx")) or sorted([*folder.glob("*.npz"), *folder.glob("*.safetensors")])


def _card_location(asset: Asset, beside: Path) -> Path:
    """Where a graph's card lives: beside it when slimvision ships it, else in ``weights/cards/``."""
    from slimvision.assets import PackagedFile, package_root

    if isinstance(asset, PackagedFile) and asset.distribution != "slimvision":
        return package_root() / "weights" / "cards" / beside.name
    return beside


class ArtifactRegistry(Registry[Callable[..., Any]]):
    """Registered :class:`ArtifactSpec` records; :meth:`create` builds the named pipeline."""

    def add(self, spec: ArtifactSpec) -> ArtifactSpec:
        """Register ``spec`` under its name (a duplicate name is an error)."""
        if not isinstance(spec, ArtifactSpec):
            raise TypeError(f"artifacts are registered as ArtifactSpec records, got {type(spec).__name__}")
        self._add(spec.name, spec)
        return spec

    def register(self, name: str) -> Callable[[F], F]:
        raise TypeError(f"register artifact {name!r} with ARTIFACTS.add(ArtifactSpec(...)) in slimvision.artifacts")

    def spec(self, name: str) -> ArtifactSpec:
        """The record registered as ``name`` (UnknownNameError suggests close names)."""
        return self.get(name)  # type: ignore[return-value]

    def create(self, name: str, **overrides: Any) -> Any:
        """The pipeline of the artifact ``name``, loaded (see :meth:`ArtifactSpec.load`)."""
        return self.spec(name).load(**overrides)

    def specs(self, system: str | None = None) -> list[ArtifactSpec]:
        """Every registered spec (of one system), by name."""
        return [self.spec(name) for name in self.names() if system is None or self.spec(name).system == system]

    @contextmanager
    def temporarily(self, spec: ArtifactSpec) -> Iterator[ArtifactSpec]:
        """Register ``spec`` for a ``with`` block (in place of one of the same name), then put the
        table back as it was: for tests, and for trying a model before giving it its line."""
        entries = self._discovered()
        before = entries.get(spec.name)
        entries.pop(spec.name, None)
        self.add(spec)
        try:
            yield spec
        finally:
            entries.pop(spec.name, None)
            if before is not None:
                entries[spec.name] = before

    def describe(self) -> list[dict[str, Any]]:
        """:meth:`ArtifactSpec.describe` of every artifact, by system (in :data:`SYSTEMS` order),
        then name: the one listing behind ``slimvision models`` and the server's ``/api/models``."""
        specs = sorted(self.specs(), key=lambda spec: (SYSTEMS.index(spec.system), spec.name))
        return [spec.describe() for spec in specs]


def discover_packages(*names: str, subpackages: bool = False) -> Callable[[], None]:
    """A registry's discovery: import the named modules (with ``subpackages``, every subpackage
    of each, found with pkgutil), whose imports register their entries.

    The registry names where its entries live, as plugin entry points do; it does not depend on
    their code, which is imported only on the first lookup.
    """

    def discover() -> None:
        import pkgutil

        for name in names:
            package = importlib.import_module(name)
            if subpackages:
                for module in pkgutil.iter_modules(package.__path__, prefix=f"{name}."):
                    if module.ispkg:
                        importlib.import_module(module.name)

    return discover


#: Trainable networks (nn.Module factories), registered by ``@register_model`` in
#: ``slimvision.models.*``; every family is imported on the first lookup.
MODELS: Registry[Callable[..., Any]] = Registry("model", discover=discover_packages("slimvision.models",
                                                                                   subpackages=True))
#: Every shipped artifact of the five systems, registered in :mod:`slimvision.artifacts`
#: (imported on the first lookup).
ARTIFACTS = ArtifactRegistry("artifact", discover=discover_packages("slimvision.artifacts"))

register_model = MODELS.register
create_model = MODELS.create
list_models = MODELS.names
