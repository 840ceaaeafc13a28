"""Registry: register / create / names, duplicate names, helpful unknown-name errors."""

from __future__ import annotations

import pytest

from slimvision.errors import SlimvisionError
from slimvision.registry import ARTIFACTS, Registry, UnknownNameError


@pytest.fixture()
def shapes() -> Registry:
    shapes = Registry("shape")

    @shapes.register("square")
    def make_square(side: int = 2) -> list[int]:
        return [side, side]

    @shapes.register("rectangle")
    def make_rectangle(width: int = 1, height: int = 2) -> list[int]:
        return [width, height]

    @shapes.register("anything")
    def make_anything(**kwargs: int) -> dict[str, int]:
        return kwargs

    return shapes


def test_register_create_and_names(shapes):
    assert shapes.names() == ["anything", "rectangle", "square"]
    assert shapes.create("square") == [2, 2]
    assert shapes.create("square", side=5) == [5, 5]
    assert shapes.create("rectangle", height=7) == [1, 7]
    assert shapes.create("anything", a=1, b=2) == {"a": 1, "b": 2}
    assert "square" in shapes and "circle" not in shapes


def test_register_returns_the_factory_unchanged():
    registry = Registry("thing")

    def factory() -> int:
        return 1

    assert registry.register("one")(factory) is factory
    assert registry.get("one") is factory
    # Registering the very same factory again (a module imported twice) is harmless.
    registry.register("one")(factory)
    assert registry.names() == ["one"]


def test_duplicate_name_is_an_error(shapes):
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        @shapes.register("square")
        def another_square() -> list[int]:
            return [0, 0]
    assert shapes.create("square") == [2, 2]  # the first registration survives


def test_unknown_name_lists_close_matches(shapes):
    with pytest.raises(UnknownNameError) as info:
        shapes.create("sqare")
    message = str(info.value)
    assert message.startswith("unknown shape 'sqare'")
    assert "did you mean square" in message
    assert "known: anything, rectangle, square" in message
    assert isinstance(info.value, SlimvisionError) and isinstance(info.value, KeyError)


def test_unknown_name_without_close_matches(shapes):
    with pytest.raises(UnknownNameError) as info:
        shapes.get("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert "known: anything, rectangle, square" in str(info.value)
    empty = Registry("widget")
    with pytest.raises(UnknownNameError, match=r"\(known: none\)"):
        empty.get("x")


def test_unknown_keyword_is_rejected(shapes):
    with pytest.raises(TypeError, match="shape 'square' does not accept colour, depth"):
        shapes.create("square", depth=3, colour="red")


def test_artifacts_has_the_magenta_teacher():
    import slimvision.inference.style  # noqa: F401 - registers the artifact on import

    assert {"magenta-arbitrary-v1-int8", "magenta-arbitrary-v1-fp32"} <= set(ARTIFACTS.names())
    artifact = ARTIFACTS.create("magenta-arbitrary-v1-int8")
    assert artifact.name == "magenta-arbitrary-v1-int8" and artifact.precision == "int8"
    assert artifact.style_size == 256
    assert artifact.predictor.resource.endswith(".onnx") and artifact.transform.resource.endswith(".onnx")
