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
import reprlib
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
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        _check_fields(values, get_type_hints(type(self)), type(self).__name__)

    def require_at_least(self, minimum: float, *names: str) -> None:
        """Range check for subclasses' ``validate``: each named field must be >= ``minimum``."""
        for name in names:
            value = getattr(self, name)
            if value < minimum:
                raise ConfigError(f"{type(self).__name__}.{name} must be at least {minimum}, got {value}")

    def require_positive(self, *names: str) -> None:
        """Range check for subclasses' ``validate``: each named field must be > 0."""
        for name in names:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{type(self).__name__}.{name} must be > 0, got {value}")

    def require_range(self, name: str, low: float, high: float, meaning: str = "") -> None:
        """Range check for subclasses' ``validate``: the named field must lie in [low, high];
        ``meaning`` explains the scale in the error."""
        value = getattr(self, name)
        if not low <= value <= high:
            note = f" ({meaning})" if meaning else ""
            raise ConfigError(f"{type(self).__name__}.{name} must be in [{low}, {high}]{note}, got {value}")

    def require_one_of(self, name: str, options: tuple[Any, ...]) -> None:
        """Choice check for subclasses' ``validate``: the named field must be one of ``options``."""
        value = getattr(self, name)
        if value not in options:
            raise ConfigError(f"{type(self).__name__}.{name} must be one of {options}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON-compatible values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a dict, rejecting unknown keys by name; nested configs are rebuilt at any depth."""
        return cls._from_dict_at(data, cls.__name__)

    @classmethod
    def _from_dict_at(cls, data: Any, path: str) -> Self:
        """``from_dict`` for a config found at ``path`` (``Model.stages[2]``), which every error names."""
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
        fields = dataclasses.fields(cls)
        known = {f.name for f in fields}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"known keys are {', '.join(sorted(known))}"
            )
        missing = [f.name for f in fields if f.name not in data and _is_required(f)]
        if missing:
            raise ConfigError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
        hints = get_type_hints(cls)
        kwargs = {key: _coerce(value, hints[key], f"{path}.{key}") for key, value in data.items()}
        # Check here, where the path is known: the constructor's validate() can only name the class.
        _check_fields(kwargs, hints, path)
        try:
            return cls(**kwargs)
        except ConfigError as exc:  # a subclass's range check, which names its class but not where it sits
            if path == cls.__name__:
                raise
            raise ConfigError(f"{path}: {exc}") from None

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


# Error messages are one line: a long list or string is shortened rather than printed whole.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80


def _type_name(tp: Any) -> str:
    """Readable name of a type hint: ``list[Inner]`` rather than ``list`` or a module-qualified str."""
    if tp is type(None):
        return "None"
    if tp is Ellipsis:
        return "..."
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is not None and args:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_config(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseConfig)


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return (field.init and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING)


def _check_fields(values: dict[str, Any], hints: dict[str, Any], path: str) -> None:
    """Raise a ConfigError naming the first field (and the path inside it) whose value has the wrong type."""
    for name, value in values.items():
        problem = _mismatch(value, hints[name], f"{path}.{name}")
        if problem is not None:
            raise ConfigError(problem)


def _expected(value: Any, tp: Any, path: str) -> str:
    return f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {_REPR.repr(value)}"


def _mismatch(value: Any, tp: Any, path: str) -> str | None:
    """None if ``value`` fits the type hint ``tp``, else a message naming the deepest wrong place.

    Covers the types configs use: scalars, ``Literal``, unions, ``list``/``tuple``/``dict`` and nested
    configs (checked by class only: a config instance validated itself when it was built).
    """
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union_mismatch(value, tp, path)
    if origin in (list, tuple, dict):
        if not isinstance(value, origin):
            return _expected(value, tp, path)
        return _dict_mismatch(value, tp, path) if origin is dict else _sequence_mismatch(value, tp, path)
    return None if _matches_plain(value, tp) else _expected(value, tp, path)


def _matches_plain(value: Any, tp: Any) -> bool:
    """The check for a hint that holds no other hints (or a generic this module does not look inside)."""
    if tp is Any:
        return True
    if get_origin(tp) is typing.Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _union_mismatch(value: Any, tp: Any, path: str) -> str | None:
    args = get_args(tp)
    if any(_mismatch(value, arg, path) is None for arg in args):
        return None
    # When only one member has the value's outer type (the X of ``X | None`` given a list, say), the
    # error inside that member says what is wrong; otherwise only the union as a whole can be named.
    fitting = [arg for arg in args if _has_outer_type(value, arg)]
    if len(fitting) == 1:
        return _mismatch(value, fitting[0], path)
    return _expected(value, tp, path)


def _has_outer_type(value: Any, tp: Any) -> bool:
    outer = get_origin(tp) or tp
    return isinstance(outer, type) and isinstance(value, outer)


def _sequence_mismatch(value: list[Any] | tuple[Any, ...], tp: Any, path: str) -> str | None:
    item_types = _item_types(tp, len(value))
    if item_types is None:
        return _expected(value, tp, path)
    for index, (item, item_tp) in enumerate(zip(value, item_types)):
        problem = _mismatch(item, item_tp, f"{path}[{index}]")
        if problem is not None:
            return problem
    return None


def _dict_mismatch(value: dict[Any, Any], tp: Any, path: str) -> str | None:
    key_tp, value_tp = get_args(tp) or (Any, Any)
    for key, item in value.items():
        problem = _mismatch(key, key_tp, f"{path} key {key!r}")
        problem = problem or _mismatch(item, value_tp, f"{path}[{key!r}]")
        if problem is not None:
            return problem
    return None


def _item_types(tp: Any, length: int) -> tuple[Any, ...] | None:
    """The hint for each of ``length`` items of a list/tuple hint.

    None when a fixed-size tuple hint has a different number of items.
    """
    args = get_args(tp)
    if not args:
        return (Any,) * length
    if get_origin(tp) is list or args[-1] is Ellipsis:
        return (args[0],) * length
    if args == ((),):  # ``tuple[()]`` on Python versions that spell the empty tuple this way
        args = ()
    return args if len(args) == length else None


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Turn JSON values back into the declared type, at any depth: lists -> tuples, dicts -> configs.

    Values that do not fit are returned unchanged, for the type check to report with their path;
    a nested config that cannot be built raises a ConfigError naming its path here.
    """
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(value, tp, path)
    # A tuple field accepts a list (JSON has no tuples); a list field is not loosened to take a tuple.
    if (origin is list and isinstance(value, list)) or (origin is tuple and isinstance(value, (list, tuple))):
        item_types = _item_types(tp, len(value)) or (Any,) * len(value)
        items = [_coerce(item, item_tp, f"{path}[{index}]")
                 for index, (item, item_tp) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        value_tp = (get_args(tp) or (Any, Any))[1]
        return {key: _coerce(item, value_tp, f"{path}[{key!r}]") for key, item in value.items()}
    if _is_config(tp) and isinstance(value, dict):
        return tp._from_dict_at(value, path)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _coerce_union(value: Any, tp: Any, path: str) -> Any:
    """Coerce into the first member the value fits once coerced (declaration order decides ties)."""
    if value is None:
        return None
    members = [arg for arg in get_args(tp) if arg is not type(None)]
    if len(members) == 1:  # ``X | None``: errors inside X (a bad nested config) are the useful ones
        return _coerce(value, members[0], path)
    errors = []
    for member in members:
        try:
            candidate = _coerce(value, member, path)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if _mismatch(candidate, member, path) is None:
            return candidate
    # A member raises only when the value is shaped for a config inside it, so its error is the one to show.
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError(f"{path}: fits none of {_type_name(tp)} ({'; '.join(errors)})")
    return value
