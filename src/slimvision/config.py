"""Configuration dataclasses that round-trip through JSON and reject what they do not know.

A config is saved beside the weights (``config.json``) so a model can always be rebuilt from
its own constructor arguments. Unknown keys are an error naming the key: a typo in a config
must never be silently ignored.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class TinyConfig(BaseConfig):
    ...     width: int = 8
    ...     name: str = "tiny"
    >>> TinyConfig.from_dict({"width": 4}).width
    4
    >>> TinyConfig.from_json(TinyConfig(width=2).to_json()) == TinyConfig(width=2)
    True
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Self, TypeVar, get_args, get_origin, get_type_hints

from slimvision.errors import ConfigError

T = TypeVar("T", bound="BaseConfig")


@dataclasses.dataclass
class BaseConfig:
    """Base class for every config: JSON round-trip, key checks and light type validation."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check field types; subclasses extend this with range checks (call super first)."""
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not _matches(value, hints[field.name]):
                raise ConfigError(
                    f"{type(self).__name__}.{field.name}: expected {_type_name(hints[field.name])}, "
                    f"got {type(value).__name__} {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON-compatible values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a dict, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        hints = get_type_hints(cls)
        kwargs = {key: _coerce(value, hints[key]) for key, value in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{cls.__name__}: invalid JSON ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json``-style JSON atomically."""
        from slimvision.io.atomic import write_text_atomic

        return write_text_atomic(Path(path), self.to_json(), overwrite=True)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
        try:
            return cls.from_json(text)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def replace(self, **overrides: Any) -> Self:
        """A copy with some fields changed; unknown names are an error."""
        return type(self).from_dict({**self.to_dict(), **overrides})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """A small runtime type check covering the types configs use."""
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(tp))
    if origin is typing.Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):
        args = get_args(tp)
        if not isinstance(value, origin):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args))
        return all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict:
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return isinstance(value, dict) and all(
            _matches(k, key_tp) and _matches(v, val_tp) for k, v in value.items()
        )
    if isinstance(tp, type) and issubclass(tp, BaseConfig):
        return isinstance(value, tp)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _coerce(value: Any, tp: Any) -> Any:
    """Turn JSON values back into the declared type (lists -> tuples, dicts -> nested configs)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            if arg is not type(None) and value is not None:
                return _coerce(value, arg)
        return value
    if origin is tuple and isinstance(value, list):
        args = get_args(tp)
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        return tuple(_coerce(v, a) for v, a in zip(value, args)) if len(args) == len(value) else tuple(value)
    if isinstance(tp, type) and issubclass(tp, BaseConfig) and isinstance(value, dict):
        return tp.from_dict(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
