"""BaseConfig: JSON round-trip, unknown keys and wrong types rejected by name, save/load, replace."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from slimvision.config import BaseConfig
from slimvision.errors import ConfigError


@dataclass
class Inner(BaseConfig):
    channels: int = 8
    scale: float = 1.0


@dataclass
class Training(BaseConfig):
    name: str = "tiny"
    width: int = 16
    rate: float = 0.5
    sizes: tuple[int, ...] = (64, 128)
    pair: tuple[int, str] = (1, "a")
    mode: Literal["fast", "slow"] = "fast"
    note: str | None = None
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    stages: tuple[Inner, ...] = ()


@dataclass
class WithListOfConfigs(BaseConfig):
    layers: list[Inner] = field(default_factory=list)


@dataclass
class WithDictOfConfigs(BaseConfig):
    heads: dict[str, Inner] = field(default_factory=dict)


@dataclass
class Nested(BaseConfig):
    maybe: Inner | None = None
    maybe_old: Optional[Inner] = None  # the typing spelling works too
    grid: list[list[Inner]] = field(default_factory=list)
    stacks: dict[str, tuple[Inner, ...]] = field(default_factory=dict)
    labelled: tuple[Inner, str] = field(default_factory=lambda: (Inner(), "default"))
    spec: int | list[Inner] = 0
    either: Inner | Holder | None = None


@dataclass
class Outer(BaseConfig):
    blocks: list[WithListOfConfigs] = field(default_factory=list)


@dataclass
class Positive(BaseConfig):
    channels: int  # required: no default

    def validate(self) -> None:
        super().validate()
        if self.channels <= 0:
            raise ConfigError(f"Positive.channels must be > 0, got {self.channels}")


@dataclass
class Holder(BaseConfig):
    items: list[Positive] = field(default_factory=list)


def full_config() -> Training:
    return Training(name="big", width=32, rate=0.25, sizes=(8, 16, 32), pair=(7, "z"), mode="slow",
                    note="hello", tags=["a", "b"], inner=Inner(channels=3, scale=2.5),
                    stages=(Inner(1, 0.5), Inner(2, 0.75)))


def test_round_trip_is_equal_and_keeps_tuples():
    config = full_config()
    back = Training.from_json(config.to_json())
    assert back == config
    assert isinstance(back.sizes, tuple) and back.sizes == (8, 16, 32)
    assert isinstance(back.pair, tuple) and back.pair == (7, "z")
    assert isinstance(back.inner, Inner) and back.inner == Inner(3, 2.5)
    assert all(isinstance(stage, Inner) for stage in back.stages)
    assert isinstance(back.stages, tuple)


def test_defaults_round_trip_and_json_is_plain():
    config = Training()
    data = json.loads(config.to_json())
    assert data["sizes"] == [64, 128]  # tuples are JSON lists on disk
    assert data["inner"] == {"channels": 8, "scale": 1.0}
    assert Training.from_dict(data) == config


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError) as info:
        Training.from_dict({"width": 4, "widht": 5})
    message = str(info.value)
    assert "'widht'" in message
    assert "width" in message  # the known keys are listed to help spot the typo


def test_unknown_key_in_nested_config_is_an_error():
    with pytest.raises(ConfigError, match="chanels"):
        Training.from_dict({"inner": {"chanels": 3}})


@pytest.mark.parametrize(
    "field_name, value, where",
    [("width", "wide", "width"), ("width", 2.5, "width"), ("width", True, "width"),
     ("rate", "fast", "rate"), ("sizes", (1, "x"), "sizes[1]"), ("pair", (1, 2), "pair[1]"),
     ("pair", (1, "a", 2), "pair"), ("mode", "medium", "mode"), ("note", 3, "note"),
     ("tags", ["a", 1], "tags[1]")],
)
def test_wrong_type_is_an_error_naming_the_field(field_name, value, where):
    # The message names the innermost wrong place: the item of a list, not just the list.
    where = re.escape(where)
    with pytest.raises(ConfigError, match=rf"^Training\.{where}: expected"):
        Training(**{field_name: value})
    with pytest.raises(ConfigError, match=rf"^Training\.{where}: expected"):
        Training.from_dict({field_name: list(value) if isinstance(value, tuple) else value})


def test_non_object_json_is_rejected():
    with pytest.raises(ConfigError, match="expected a JSON object"):
        Training.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="invalid JSON"):
        Training.from_json("{not json")


def test_int_is_accepted_for_a_float_field_and_becomes_float():
    config = Training.from_dict({"rate": 1})
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert Training(rate=2).rate == 2  # accepted directly too
    nested = Training.from_dict({"inner": {"scale": 3}})
    assert isinstance(nested.inner.scale, float)


def test_save_and_load(tmp_path):
    config = full_config()
    path = config.save(tmp_path / "config.json")
    assert path == tmp_path / "config.json"
    assert json.loads(path.read_text(encoding="utf-8")) == config.to_dict()
    assert Training.load(path) == config
    # Saving again replaces the file atomically: no temporary files are left beside it.
    config.replace(width=99).save(path)
    assert Training.load(path).width == 99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match="nope.json: cannot read config"):
        Training.load(missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"width": 1, "colour": 2}', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Training.load(bad)
    assert str(bad) in str(info.value) and "'colour'" in str(info.value)


def test_replace_returns_a_changed_copy():
    config = full_config()
    changed = config.replace(width=64, sizes=(1, 2))
    assert changed.width == 64 and changed.sizes == (1, 2)
    assert changed.name == config.name and changed.inner == config.inner
    assert config.width == 32  # the original is untouched
    with pytest.raises(ConfigError, match="'depth'"):
        config.replace(depth=3)
    with pytest.raises(ConfigError, match="width"):
        config.replace(width="x")


def test_nested_config_round_trip():
    config = Training(inner=Inner(channels=5, scale=0.125), stages=(Inner(9, 9.0),))
    back = Training.from_dict(json.loads(config.to_json()))
    assert back.inner == Inner(channels=5, scale=0.125)
    assert back.stages == (Inner(9, 9.0),)
    with pytest.raises(ConfigError, match=r"^Training\.inner\.channels: expected int, got str 'many'$"):
        Training.from_dict({"inner": {"channels": "many"}})


def test_list_of_nested_configs_round_trips():
    config = WithListOfConfigs(layers=[Inner(2, 0.5), Inner(3, 1.5)])
    back = WithListOfConfigs.from_json(config.to_json())
    assert back == config
    assert isinstance(back.layers, list) and all(isinstance(layer, Inner) for layer in back.layers)


def test_dict_of_nested_configs_round_trips():
    config = WithDictOfConfigs(heads={"a": Inner(2, 0.5), "b": Inner(4, 0.25)})
    back = WithDictOfConfigs.from_json(config.to_json())
    assert back == config
    assert all(isinstance(head, Inner) for head in back.heads.values())


def test_optional_nested_config_round_trips_both_ways():
    for config in (Nested(), Nested(maybe=Inner(5, 2.0), maybe_old=Inner(6, 3.0))):
        back = Nested.from_json(config.to_json())
        assert back == config
    assert isinstance(back.maybe, Inner) and isinstance(back.maybe_old, Inner)


def test_nested_containers_of_configs_round_trip():
    config = Nested(grid=[[Inner(1, 0.5)], [], [Inner(2, 1.0), Inner(3, 1.5)]],
                    stacks={"x": (Inner(4, 2.0),), "y": ()}, labelled=(Inner(7, 0.5), "seven"),
                    spec=[Inner(8, 4.0)])
    back = Nested.from_json(config.to_json())
    assert back == config
    assert isinstance(back.grid[2][1], Inner)
    assert isinstance(back.stacks["x"], tuple) and isinstance(back.stacks["x"][0], Inner)
    assert isinstance(back.labelled, tuple) and isinstance(back.labelled[0], Inner)
    assert isinstance(back.spec, list) and isinstance(back.spec[0], Inner)
    assert Nested.from_dict({"spec": 3}).spec == 3  # the other member of the union


def test_union_of_two_configs_picks_the_one_the_keys_fit():
    for either in (Inner(3, 0.5), Holder(items=[Positive(2)]), None):
        back = Nested.from_json(Nested(either=either).to_json())
        assert back.either == either and type(back.either) is type(either)
    with pytest.raises(ConfigError, match=r"^Nested\.either: fits none of Inner \| Holder \| None "
                                          r"\(Nested\.either: unknown key\(s\) 'size'.*; "
                                          r"Nested\.either: unknown key\(s\) 'size'"):
        Nested.from_dict({"either": {"size": 1}})


def test_configs_nested_two_levels_inside_lists_round_trip():
    config = Outer(blocks=[WithListOfConfigs([Inner(1, 1.0)]), WithListOfConfigs([])])
    back = Outer.from_json(config.to_json())
    assert back == config
    assert isinstance(back.blocks[0], WithListOfConfigs) and isinstance(back.blocks[0].layers[0], Inner)


@pytest.mark.parametrize(
    "cls, data, message",
    [
        (Training, {"stages": [{}, {}, {"channels": "x"}]},
         r"Training\.stages\[2\]\.channels: expected int, got str 'x'"),
        (WithListOfConfigs, {"layers": [{"scale": "big"}]},
         r"WithListOfConfigs\.layers\[0\]\.scale: expected float, got str 'big'"),
        (WithDictOfConfigs, {"heads": {"a": {}, "b": {"channels": 1.5}}},
         r"WithDictOfConfigs\.heads\['b'\]\.channels: expected int, got float 1\.5"),
        (Nested, {"maybe": {"channels": None}}, r"Nested\.maybe\.channels: expected int, got NoneType None"),
        (Nested, {"maybe_old": {"scale": True}}, r"Nested\.maybe_old\.scale: expected float, got bool True"),
        (Nested, {"maybe": [1]}, r"Nested\.maybe: expected Inner \| None, got list \[1\]"),
        (Nested, {"grid": [[{}], [{}, {"channels": "2"}]]},
         r"Nested\.grid\[1\]\[1\]\.channels: expected int, got str '2'"),
        (Nested, {"grid": [{}]}, r"Nested\.grid\[0\]: expected list\[Inner\], got dict \{\}"),
        (Nested, {"stacks": {"x": [{}, {"scale": []}]}},
         r"Nested\.stacks\['x'\]\[1\]\.scale: expected float, got list \[\]"),
        (Nested, {"labelled": [{}, 7]}, r"Nested\.labelled\[1\]: expected str, got int 7"),
        (Nested, {"labelled": [{}]}, r"Nested\.labelled: expected tuple\[Inner, str\], got tuple"),
        (Nested, {"spec": "x"}, r"Nested\.spec: expected int \| list\[Inner\], got str 'x'"),
        (Nested, {"spec": [{"channels": "x"}]}, r"Nested\.spec\[0\]\.channels: expected int, got str 'x'"),
        (Outer, {"blocks": [{}, {"layers": [{"channels": "x"}]}]},
         r"Outer\.blocks\[1\]\.layers\[0\]\.channels: expected int, got str 'x'"),
        (WithListOfConfigs, {"layers": {"channels": 1}},
         r"WithListOfConfigs\.layers: expected list\[Inner\], got dict"),
        (WithListOfConfigs, {"layers": [3]}, r"WithListOfConfigs\.layers\[0\]: expected Inner, got int 3"),
    ],
)
def test_bad_nested_value_is_an_error_naming_its_path(cls, data, message):
    with pytest.raises(ConfigError, match=rf"^{message}"):
        cls.from_dict(data)
    with pytest.raises(ConfigError, match=rf"^{message}"):
        cls.from_json(json.dumps(data))


def test_bad_item_given_directly_is_an_error_naming_its_path():
    with pytest.raises(ConfigError, match=r"^WithListOfConfigs\.layers\[1\]: expected Inner, got dict"):
        WithListOfConfigs(layers=[Inner(), {"channels": 1}])
    with pytest.raises(ConfigError, match=r"^WithDictOfConfigs\.heads key 1: expected str, got int 1"):
        WithDictOfConfigs(heads={1: Inner()})
    with pytest.raises(ConfigError, match=r"^Nested\.grid\[0\]\[0\]: expected Inner, got str 'x'"):
        Nested(grid=[["x"]])


def test_unknown_and_missing_keys_inside_a_list_name_their_path():
    with pytest.raises(ConfigError, match=r"^Training\.stages\[1\]: unknown key\(s\) 'chanels'"):
        Training.from_dict({"stages": [{}, {"chanels": 3}]})
    with pytest.raises(ConfigError, match=r"^Holder\.items\[0\]: missing key\(s\) 'channels'"):
        Holder.from_dict({"items": [{}]})
    with pytest.raises(ConfigError, match=r"^Holder\.items\[0\]: expected Positive, got list \[1\]"):
        Holder.from_dict({"items": [[1]]})


def test_subclass_range_check_inside_a_list_names_its_path():
    assert Holder.from_dict({"items": [{"channels": 1}]}) == Holder(items=[Positive(1)])
    with pytest.raises(ConfigError, match=r"^Positive\.channels must be > 0, got 0$"):
        Positive.from_dict({"channels": 0})
    with pytest.raises(ConfigError, match=r"^Holder\.items\[1\]: Positive\.channels must be > 0, got 0$"):
        Holder.from_dict({"items": [{"channels": 1}, {"channels": 0}]})


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ConfigError) as info:
        Training.from_dict({"width": "w" * 10_000})
    assert len(str(info.value)) < 200


def test_replace_takes_python_values_for_nested_configs():
    config = Nested().replace(grid=[[Inner(1, 1.0)]], stacks={"a": [Inner(2, 2.0)]}, maybe=Inner(3, 3.0))
    assert config.grid == [[Inner(1, 1.0)]] and config.maybe == Inner(3, 3.0)
    assert config.stacks == {"a": (Inner(2, 2.0),)}  # a list for a tuple field becomes a tuple
    with pytest.raises(ConfigError, match=r"^Nested\.grid: expected list\[list\[Inner\]\], got tuple"):
        Nested().replace(grid=([Inner()],))  # a tuple for a list field is still refused


def test_require_at_least_names_the_class_field_and_value():
    import dataclasses

    from slimvision.config import BaseConfig

    @dataclasses.dataclass
    class Steps(BaseConfig):
        steps: int = 1
        batch: int = 1

        def validate(self) -> None:
            super().validate()
            self.require_at_least(1, "steps", "batch")

    assert Steps(steps=3).steps == 3
    with pytest.raises(ConfigError, match=r"^Steps.batch must be at least 1, got 0$"):
        Steps(batch=0)


def test_require_positive_refuses_zero_and_names_the_field():
    import dataclasses

    from slimvision.config import BaseConfig

    @dataclasses.dataclass
    class Rate(BaseConfig):
        rate: float = 0.1

        def validate(self) -> None:
            super().validate()
            self.require_positive("rate")

    assert Rate(rate=1e-9).rate == 1e-9
    for bad in (0.0, -1.0):
        with pytest.raises(ConfigError, match=rf"^Rate.rate must be > 0, got {bad}$"):
            Rate(rate=bad)
