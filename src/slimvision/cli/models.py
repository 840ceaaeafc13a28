"""``slimvision models``: every registered artifact of the five systems, with its size, speed
class, purpose, files and their provenance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slimvision.cli.arguments import add_json


def add_commands(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("models", help="list the shipped model artifacts: size, speed and purpose",
                               description="List every registered model artifact of the five systems (style, "
                                           "faces, vae, gan, numerals): what it is for, its speed class, its "
                                           "files, their size on disk, where they come from and under which "
                                           "licence. Speed classes: realtime (under 30 ms a call), interactive "
                                           "(30 ms to 1 s), batch (over 1 s).")
    add_json(parser, "the list")
    parser.set_defaults(run=run_models)


def describe_artifacts() -> list[dict[str, Any]]:
    """One row per registered artifact, by system then name; files not installed have bytes None."""
    from slimvision.registry import ARTIFACTS, SYSTEMS

    specs = sorted(ARTIFACTS.specs(), key=lambda spec: (SYSTEMS.index(spec.system), spec.name))
    rows = []
    for spec in specs:
        files = [{"role": role, "bytes": _installed_bytes(asset), **asset.provenance()}
                 for role, asset in spec.files.items()]
        rows.append({"name": spec.name, "system": spec.system, "speed": spec.speed, "purpose": spec.purpose,
                     "bytes": sum(file["bytes"] or 0 for file in files), "files": files})
    return rows


def _installed_bytes(asset: Any) -> int | None:
    """Bytes on disk of a file or folder, or None when the package that ships it is missing."""
    from slimvision.errors import MissingAssetError

    try:
        path: Path = asset.path()
    except MissingAssetError:
        return None
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size if path.is_file() else None


def run_models(args: argparse.Namespace) -> int:
    rows = describe_artifacts()
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
