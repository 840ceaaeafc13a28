"""``slimvision models``: every registered model artifact with its files, sizes and provenance."""

from __future__ import annotations

import argparse
import json
from typing import Any

from slimvision.cli.arguments import add_json


def add_commands(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("models", help="list the model artifacts with size and provenance",
                               description="List the registered model artifacts: the files each one runs, their "
                                           "size on disk, where they come from and under which licence.")
    add_json(parser, "the list")
    parser.set_defaults(run=run_models)


def describe_artifacts() -> list[dict[str, Any]]:
    import slimvision.inference.style  # noqa: F401  (registers the style artifacts)
    from slimvision.errors import MissingAssetError
    from slimvision.registry import ARTIFACTS

    rows = []
    for name in ARTIFACTS.names():
        artifact = ARTIFACTS.create(name)
        files = []
        for role in ("predictor", "transform"):
            asset = getattr(artifact, role)
            try:
                size: int | None = asset.path().stat().st_size
            except MissingAssetError:
                size = None
            files.append({"role": role, "bytes": size, **asset.provenance()})
        rows.append({"name": name, "precision": artifact.precision, "description": artifact.description,
                     "bytes": sum(f["bytes"] or 0 for f in files), "files": files})
    return rows


def run_models(args: argparse.Namespace) -> int:
    rows = describe_artifacts()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  ({row['bytes'] / 1e6:.2f} MB, {row['precision']})\n  {row['description']}")
        for file in row["files"]:
            size = "not installed" if file["bytes"] is None else f"{file['bytes'] / 1e6:.2f} MB"
            print(f"  {file['role']:<9} {size:>9}  {file['resource']}  [{file['distribution']} "
                  f"{file['version']}, {file['licence']}]")
    return 0
