"""Layers only point down, no module cycles, and the torch-free layers never load torch.

Every ``import`` statement in ``src/slimvision`` is read with :mod:`ast`, at any depth (inside
functions and ``TYPE_CHECKING`` blocks too: a lazy import is still a dependency), and each
module is placed in a layer. A module may import from its own layer or any layer below it.

======  ===========================================================================================
layer   modules
======  ===========================================================================================
0 base  ``slimvision`` (the package), errors, config, registry, artifacts (names and file roles
        only), assets, progress, io/, graph/ (ONNX tooling: onnx, onnxruntime, numpy), and
        export/card.py (the card is a JSON file format that every layer reads; it needs no torch)
1       data/
2       models/
3       compress/
4       metrics/ (image quality, FID-Lite0, restoration scores: used by training and bench alike)
5       training/
6       export/ (except card.py)
7       inference/, bench/, plots.py (figures of trained maps)
8       cli/, server/
======  ===========================================================================================

Where this refines ``ARCHITECTURE.md``: compress sits below training (training runs distillation
and quantization, compress never runs training); metrics get their own layer between compress
and training because FID-Lite0 folds its EfficientNet with ``compress.fold``; bench and plots sit
beside inference, since they measure or draw what the lower layers made.

A module that is in no layer fails the test: place it here (and in the README's layout).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SOURCE / "slimvision"

#: Module (or package) name prefixes -> layer; the longest matching prefix wins.
LAYERS: dict[str, int] = {
    "slimvision": 0,
    "slimvision.errors": 0,
    "slimvision.config": 0,
    "slimvision.registry": 0,
    "slimvision.artifacts": 0,
    "slimvision.assets": 0,
    "slimvision.progress": 0,
    "slimvision.io": 0,
    "slimvision.graph": 0,
    "slimvision.export.card": 0,
    "slimvision.data": 1,
    "slimvision.models": 2,
    "slimvision.compress": 3,
    "slimvision.metrics": 4,
    "slimvision.training": 5,
    "slimvision.export": 6,
    "slimvision.inference": 7,
    "slimvision.bench": 7,
    "slimvision.plots": 7,
    "slimvision.cli": 8,
    "slimvision.server": 8,
}
LAYER_NAMES = ["base", "data", "models", "compress", "metrics", "training", "export",
               "inference/bench/plots", "cli/server"]

#: Packages whose every module must import without torch (the ONNX Runtime side of the house).
TORCH_FREE = ("slimvision.inference", "slimvision.server", "slimvision.cli")


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int | None:
    """The layer of a dotted module name: its longest prefix in :data:`LAYERS`."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in LAYERS and (end > 1 or module == "slimvision"):
            return LAYERS[prefix]
    return None


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, slimvision module) for every import statement in ``path``, at any depth.

    ``from package import name`` counts as importing ``package.name`` where that is a module
    of ours, else ``package`` itself.
    """
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.module, node.level)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((node.lineno, child if child in modules else base))
    return [(line, name) for line, name in found if name == "slimvision" or name.startswith("slimvision.")]


def _absolute(module: str, is_package: bool, name: str | None, level: int) -> str:
    """The absolute name of a (possibly relative) ``from ... import``."""
    if level == 0:
        return name or ""
    parts = module.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[:len(anchor) - (level - 1)]
    return ".".join(anchor + ([name] if name else []))


def _nearest_module(name: str, modules: dict[str, Path]) -> str:
    """``name`` if it is one of our modules, else its longest prefix that is (``a.b.Class`` -> ``a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, slimvision modules only."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for line, name in imported_modules(module, path, modules):
            target = _nearest_module(name, modules)
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in graph:
                continue
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in module_files() if layer_of(module) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS and the README layout): {unplaced}"


def test_no_module_imports_from_a_higher_layer():
    graph = import_graph()
    files = module_files()
    upward = []
    for module, edges in sorted(graph.items()):
        own = layer_of(module)
        for target, line in sorted(edges.items(), key=lambda item: item[1]):
            theirs = layer_of(target)
            if own is not None and theirs is not None and theirs > own:
                where = files[module].relative_to(SOURCE.parent)
                upward.append(f"{where}:{line}: {module} ({LAYER_NAMES[own]}) imports {target} "
                              f"({LAYER_NAMES[theirs]})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    graph = import_graph()
    found = cycles(graph)
    lines = []
    for component in found:
        members = set(component)
        edges = [f"{a} -> {b} (line {line})" for a in component for b, line in sorted(graph[a].items())
                 if b in members]
        lines.append(" | ".join(edges))
    assert not found, "import cycles:\n" + "\n".join(lines)


def test_graph_tooling_needs_only_onnx_onnxruntime_and_numpy():
    """graph/ sits at the bottom so every layer can use it: no torch, no other third-party package."""
    allowed = {"numpy", "onnx", "onnxruntime", "slimvision", *sys.stdlib_module_names}
    foreign = []
    for path in sorted((PACKAGE / "graph").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            foreign += [f"{path.name}:{node.lineno}: {name}" for name in names if name.split(".")[0] not in allowed]
    assert not foreign, f"graph/ imports outside numpy/onnx/onnxruntime: {foreign}"


def test_the_checks_see_lazy_upward_imports_and_cycles(tmp_path):
    """The parser finds an import inside a function, and the cycle finder a three-module loop."""
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    if True:\n        from slimvision.cli.main import app\n"
                      "from . import sibling\n", encoding="utf-8")
    modules = {"slimvision.models.lazy": source, "slimvision.models.sibling": source}
    found = imported_modules("slimvision.models.lazy", source, modules)
    assert sorted(found) == [(3, "slimvision.cli.main"), (4, "slimvision.models.sibling")]
    assert layer_of("slimvision.cli.main") > layer_of("slimvision.models.lazy")
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def _torch_free_modules() -> list[str]:
    return [module for module in module_files() if module.startswith(TORCH_FREE)]


# Runs in a fresh interpreter: importing the module must not load torch.
PROBE = "import importlib, sys; importlib.import_module(sys.argv[1]); " \
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"


def _torch_modules_after_importing(module: str) -> str:
    """The probe's answer for ``module``: the torch modules loaded, as a printed sorted list."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", _torch_free_modules())
def test_importing_never_loads_torch(module):
    assert _torch_modules_after_importing(module) == "[]", f"importing {module} loads torch"


def test_the_torch_probe_sees_torch_where_it_is_imported():
    """The probe is not blind: a models module, which builds nn.Modules, does load torch."""
    pytest.importorskip("torch")
    assert "'torch'" in _torch_modules_after_importing("slimvision.models.gan.dcgan")
