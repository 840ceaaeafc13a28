"""``slimvision models``: every registered artifact of the five systems, with its size, speed
class, purpose, files and their provenance; ``--markdown`` prints the table of docs/models.md."""

from __future__ import annotations

import argparse
import json
from typing import Any

from slimvision.cli.arguments import add_json


def add_commands(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("models", help="list the shipped model artifacts: size, speed and purpose",
                               description="List every registered model artifact of the five systems (style, "
                                           "faces, vae, gan, numerals): what it is for, its speed class, its "
                                           "files, their size on disk, where they come from and under which "
                                           "licence. Speed classes: realtime (under 30 ms a call), interactive "
                                           "(30 ms to 1 s), batch (over 1 s).")
    formats = parser.add_mutually_exclusive_group()
    add_json(formats, "the list")  # type: ignore[arg-type]  (a group takes add_argument as a parser does)
    formats.add_argument("--markdown", action="store_true",
                         help="print the name/system/speed/purpose table that docs/models.md shows "
                              "(paste it there after registering a model)")
    parser.set_defaults(run=run_models)


#: The header of the table ``--markdown`` prints (and docs/models.md shows).
MARKDOWN_HEADER = "| name | system | speed | what it is for |\n|---|---|---|---|"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows of ``ARTIFACTS.describe()`` as a Markdown table: name, system, speed, purpose as
    registered (a ``|`` in it escaped).

    Example:
        >>> print(markdown_table([{"name": "m", "system": "gan", "speed": "realtime", "purpose": "a | b"}]))
        | name | system | speed | what it is for |
        |---|---|---|---|
        | `m` | gan | realtime | a \\| b |
    """
    lines = [f"| `{row['name']}` | {row['system']} | {row['speed']} | {row['purpose'].replace('|', chr(92) + '|')} |"
             for row in rows]
    return "\n".join([MARKDOWN_HEADER, *lines])


def run_models(args: argparse.Namespace) -> int:
    from slimvision.registry import ARTIFACTS

    rows = ARTIFACTS.describe()  # the rows the server's /api/models answers too
    if args.markdown:
        print(markdown_table(rows))
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    system = None
    for row in rows:
        if row["system"] != system:
            system = row["system"]
            print(f"{system}:")
        print(f"  {row['name']}  ({row['bytes'] / 1e6:.2f} MB, {row['speed']})\n    {row['purpose']}")
        for file in row["files"]:
            size = "not installed" if file["bytes"] is None else f"{file['bytes'] / 1e6:.2f} MB"
            print(f"    {file['role']:<9} {size:>13}  {file['resource']}  [{file['distribution']} "
                  f"{file['version']}, {file['licence']}]")
    return 0
