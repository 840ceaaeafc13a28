"""Name -> factory registries, so adding a model never means editing a central switch.

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

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from slimvision.errors import SlimvisionError

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(SlimvisionError, KeyError):
    """Asked for a name no factory was registered under."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class Registry(Generic[F]):
    """A named collection of factories (functions or classes) with helpful lookup errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``factory`` under ``name``; a duplicate name is an error."""

        def decorator(factory: F) -> F:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._factories[name]
        except KeyError:
            import difflib  # only on a miss: keeps CLI start-up lean

            close = difflib.get_close_matches(name, self._factories, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            known = ", ".join(sorted(self._factories)) or "none"
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
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories


#: Trainable networks (nn.Module factories); filled in by ``slimvision.models.*``.
MODELS: Registry[Callable[..., Any]] = Registry("model")
#: Ready-to-run ONNX artifacts (pipelines load these by name); filled in by ``slimvision.assets``.
ARTIFACTS: Registry[Callable[..., Any]] = Registry("artifact")

register_model = MODELS.register
create_model = MODELS.create
list_models = MODELS.names
