"""The README's "Layout" section names every module under src/slimvision, so a newcomer finds
each one there (a module added without its line fails here, naming it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_section() -> str:
    """The code block under README.md's "## Layout" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout"):]
    start = section.index("```") + 3
    return section[start:section.index("```", start)]


def named(stem: str, section: str) -> bool:
    """Whether ``section`` names a module by its file name or its stem as a word ("images",
    "pixels.py"), not as part of a path or a longer name."""
    return re.search(rf"(?<![\w/]){re.escape(stem)}(\.py)?(?!\w)", section) is not None


def test_every_module_is_named_in_the_readme_layout() -> None:
    section = layout_section()
    package = ROOT / "src" / "slimvision"
    modules = [path for path in sorted(package.rglob("*.py"))
               if path.name != "__init__.py" and "weights" not in path.relative_to(package).parts]
    missing = [str(path.relative_to(package)) for path in modules if not named(path.stem, section)]
    assert modules and not missing, f"add a short line for each to README.md's Layout section: {missing}"


def test_a_module_counts_as_named_only_as_a_word() -> None:
    section = "  io/  images (loading), pixels.py (grids), style_tiling.py\n  weights/pixels/"
    assert named("images", section) and named("pixels", section) and named("style_tiling", section)
    assert not named("tiling", section)        # only inside a longer name
    assert not named("weights", "see src/weights/x")  # only inside a path
    assert not named("ink", section)
