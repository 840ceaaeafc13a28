"""``slimvision models``: every registered artifact of the five systems, as text and as JSON."""

from __future__ import annotations

import json

from slimvision.registry import ARTIFACTS, SPEED_CLASSES, SYSTEMS
from tests.cli.helpers import exit_code


def test_json_lists_every_artifact_with_size_speed_and_purpose(capsys):
    assert exit_code(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == sorted(ARTIFACTS.names(), key=lambda name: (
        SYSTEMS.index(ARTIFACTS.spec(name).system), name))
    assert {row["system"] for row in rows} == set(SYSTEMS)
    for row in rows:
        spec = ARTIFACTS.spec(row["name"])
        assert row["speed"] in SPEED_CLASSES and row["purpose"] == spec.purpose
        assert [file["role"] for file in row["files"]] == list(spec.files)
        installed = [file["bytes"] for file in row["files"] if file["bytes"] is not None]
        assert row["bytes"] == sum(installed) and all(size > 0 for size in installed)
        for file in row["files"]:
            assert file["licence"] and file["distribution"] and file["resource"]


def test_sizes_count_every_file_of_a_folder_artifact(capsys):
    assert exit_code(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    folder = ARTIFACTS.spec("vae-mni128").paths()["model"]
    assert rows["vae-mni128"]["bytes"] == sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert rows["vae-mni128"]["bytes"] > (folder / "encoder.onnx").stat().st_size


def test_text_groups_by_system_and_names_speed_and_purpose(capsys):
    assert exit_code(["models"]) == 0
    out = capsys.readouterr().out
    headings = [line[:-1] for line in out.splitlines() if not line.startswith(" ")]
    assert headings == list(SYSTEMS)
    for spec in ARTIFACTS.specs():
        assert f"  {spec.name}  (" in out and f", {spec.speed})" in out and spec.purpose in out


def test_markdown_is_one_table_row_per_artifact_with_the_registered_purpose(capsys):
    from slimvision.cli.models import MARKDOWN_HEADER

    assert exit_code(["models", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "\n".join(lines[:2]) == MARKDOWN_HEADER
    rows = [line.split(" | ") for line in lines[2:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        (f"| `{spec['name']}`", spec["system"], spec["speed"]) for spec in ARTIFACTS.describe()]
    for row in rows:
        assert " | ".join(row[3:]) == ARTIFACTS.spec(row[0][3:-1]).purpose + " |"


def test_markdown_escapes_a_bar_in_a_purpose_and_is_not_json_too(capsys):
    from slimvision.cli.models import markdown_table

    table = markdown_table([{"name": "m", "system": "gan", "speed": "realtime", "purpose": "either | or"}])
    assert table.splitlines()[-1] == "| `m` | gan | realtime | either \\| or |"
    assert exit_code(["models", "--markdown", "--json"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
