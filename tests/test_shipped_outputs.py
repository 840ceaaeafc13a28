"""Every shipped model's outputs stay bit-identical across restructures.

Each group below recomputes what a user gets from the shipped artifacts, through the CLI or the
public Python API: the style demo (every file ``slimvision style demo`` writes), stylizing the
bundled photos with the fast student and the teacher (fp32 and int8), faces found, described and
identified on the bundled astronaut photo, digits drawn by the shipped GAN generator (float
weights and the int8 graph) at a fixed seed, the VAE demo models restoring MNI152 slices, and the
Roman numerals read off a generated page. Each output is compared with the reference in
``tests/data/shipped_outputs.json``: sha256 of its bytes plus shape and dtype. Small outputs
(boxes, descriptors, readings) are stored in full, so a mismatch reports the exact max abs
difference; for images only a grid of 8x8 block means is stored (the file stays small), so for
them the reported difference is that of the block means, a lower bound of the pixel difference.

A deliberate change of outputs (a retrained model, a fixed bug) is re-recorded with::

    .venv/bin/python tests/test_shipped_outputs.py --record

and the diff of the JSON file goes into the commit that changed the outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "data" / "shipped_outputs.json"
FULL_VALUES_UP_TO = 4096   # elements: outputs this small are stored whole
BLOCKS = 8                 # larger outputs: the mean of each of BLOCKS x BLOCKS tiles per channel


# --------------------------------------------------------------------------- recomputing
def _cli(*argv: str) -> str:
    """Run ``slimvision ARGV`` in this process; its stdout (the CLI exits 0 or this fails)."""
    from slimvision.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([str(arg) for arg in argv])
    assert status == 0, f"slimvision {' '.join(map(str, argv))} exited {status}"
    return out.getvalue()


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def _files(folder: Path, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{path.name}": _pixels(path) for path in sorted(folder.iterdir()) if path.is_file()}


def style_demo(work: Path) -> dict[str, np.ndarray]:
    """Every image ``slimvision style demo`` writes (the default model, fast), its grid included."""
    _cli("style", "demo", "-o", work / "demo", "--json")
    return _files(work / "demo", "style-demo")


def style_stylize(work: Path) -> dict[str, np.ndarray]:
    """Two bundled photos in Starry Night: the fast bundle named, the teacher in int8 (what
    ``--precision int8`` alone runs: the fast bundle has no int8 variant), and the float teacher
    at full and at half strength. (The default model, fast, is the demo.)
    """
    from slimvision.assets import samples_dir

    samples = samples_dir()
    contents = [samples / "content" / name for name in ("astronaut.jpg", "chelsea_cat.jpg")]
    outputs: dict[str, np.ndarray] = {}
    runs = {"fast-fp32": ["--model", "fast"], "teacher-int8": ["--precision", "int8"],
            "teacher-fp32": ["--model", "teacher"], "teacher-fp32-strength0.5": ["--model", "teacher", "--strength", "0.5"]}
    for run, options in runs.items():
        folder = work / run
        _cli("style", "stylize", *contents, "-s", samples / "styles" / "starry_night.jpg", "-o", f"{folder}/",
             *options, "--workers", "1", "--quiet")
        outputs.update(_files(folder, f"style-stylize-{run}"))
    return outputs


def faces(work: Path) -> dict[str, np.ndarray]:
    """Boxes, scores, landmarks and descriptors on the astronaut photo; identify after enrolling her."""
    from slimvision.assets import samples_dir
    from slimvision.inference.faces import FaceRecognizer
    from slimvision.io.images import load_image

    photo = samples_dir() / "content" / "astronaut.jpg"
    found = FaceRecognizer()(load_image(photo))
    people = work / "people" / "eileen_collins"
    people.mkdir(parents=True)
    shutil.copy(photo, people / photo.name)
    _cli("faces", "enroll", "--gallery", work / "gallery.db", work / "people", "--json")
    identified = json.loads(_cli("faces", "identify", "--gallery", work / "gallery.db", photo, "--json"))
    (answers,) = identified["images"].values()
    return {
        "faces/boxes": np.array([face.face.box for face in found], np.float64),
        "faces/scores": np.array([face.face.score for face in found], np.float64),
        "faces/landmarks": np.array([face.face.landmarks for face in found], np.float64),
        "faces/descriptors": np.stack([face.descriptor for face in found]),
        "faces/identify-cli-json": _text(json.dumps(answers, sort_keys=True)),
    }


def gan(work: Path) -> dict[str, np.ndarray]:
    """16 digits at seed 0 from the shipped int8 graph (ONNX Runtime) and its float weights (torch)."""
    import torch

    from slimvision.inference.gan import DEMO_GENERATOR, DEMO_WEIGHTS, GANSampler
    from slimvision.io.pixels import to_pixels
    from slimvision.models.weights import load_model

    sampler = GANSampler(DEMO_GENERATOR)
    # The float weights run in float64: in float32, torch's CPU kernels summed in an order that
    # varied between processes and flipped a pixel or two of the 8-bit grid now and then.
    generator = load_model(DEMO_WEIGHTS).eval().double()
    with torch.no_grad():
        fp32 = generator(torch.from_numpy(sampler.noise(16, seed=0)).double()).float().numpy()
    _cli("gan", "generate", "-o", work / "grid.png", "-n", "16", "--seed", "0")
    return {"gan/int8-seed0": sampler.sample(16, seed=0), "gan/fp32-seed0": to_pixels(fp32),
            "gan/generate-cli-grid": _pixels(work / "grid.png")}


def vae(work: Path) -> dict[str, np.ndarray]:
    """The shipped VAEs on held-out MNI152 slices: reconstruct, denoise, fill a hole, sample."""
    from slimvision.data.medical import mni152_slices
    from slimvision.inference.vae import DEMO_DENOISER, DEMO_GENERATIVE, MedicalVAE, kept_from_zeros

    denoiser, generative = MedicalVAE(DEMO_DENOISER), MedicalVAE(DEMO_GENERATIVE)
    slices = mni152_slices("test", denoiser.image_size).images
    picked = slices[:: max(1, len(slices) // 4)][:4]                               # (4, S, S) in [0, 1]
    noisy = np.clip(picked + np.random.default_rng(0).normal(0, 0.1, picked.shape), 0, 1).astype(np.float32)
    holed = picked[1].copy()
    holed[40:80, 40:80] = 0.0
    return {
        "vae/input": picked,
        "vae/denoiser-restore-noisy": denoiser.restore(noisy),
        "vae/denoiser-fill-hole": denoiser.restore_slice(holed, kept=kept_from_zeros(holed)),
        "vae/generative-reconstruct": generative.restore(picked),
        "vae/generative-sample-seed0": generative.sample(4, seed=0),
    }


def numerals(work: Path) -> dict[str, np.ndarray]:
    """A page drawn with matplotlib's own fonts (the same on every machine), read by the shipped map."""
    from slimvision.data.numerals import find_fonts, render_page
    from slimvision.inference.numerals import NumeralReader

    page, _ = render_page([4, 9, 14, 40, 90, 400, 1987, 2024, 3888, 12], _matplotlib_fonts(find_fonts), seed=7)
    readings = NumeralReader()(page)
    return {
        "numerals/page": page,
        "numerals/boxes": np.array([reading.box for reading in readings], np.int64),
        "numerals/confidence": np.array([reading.confidence for reading in readings], np.float64),
        "numerals/readings": _text(json.dumps([reading.to_dict() for reading in readings], sort_keys=True)),
    }


def _matplotlib_fonts(find_fonts: Callable) -> list:
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    folder = Path(next(iter(spec.submodule_search_locations)), "mpl-data", "fonts", "ttf")
    return find_fonts([folder])


def _text(text: str) -> np.ndarray:
    """Text compared byte for byte (a difference shows as the max abs difference of the bytes)."""
    return np.frombuffer(text.encode("utf-8"), np.uint8)


GROUPS: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    "style-demo": style_demo, "style-stylize": style_stylize, "faces": faces, "gan": gan, "vae": vae,
    "numerals": numerals,
}


# --------------------------------------------------------------------------- fingerprints
def fingerprint(array: np.ndarray) -> dict:
    """sha256 + shape + dtype, with the values (small arrays) or 8x8 block means (images)."""
    array = np.ascontiguousarray(array)
    entry: dict = {"sha256": hashlib.sha256(array.tobytes()).hexdigest(), "shape": list(array.shape),
                   "dtype": str(array.dtype)}
    if array.size <= FULL_VALUES_UP_TO:
        entry["values"] = array.astype(np.float64).ravel().tolist()
    else:
        entry["block_means"] = _block_means(array).ravel().tolist()
    return entry


def _block_means(array: np.ndarray) -> np.ndarray:
    """(BLOCKS, BLOCKS, C) means, 6 significant digits: images (.., H, W, C) stacked into one tall
    image; anything else (N, ..., W) as one grey image of W columns."""
    values = array.astype(np.float64)
    if values.ndim >= 3 and values.shape[-1] in (1, 3, 4):
        values = values.reshape(-1, values.shape[-2], values.shape[-1])
    else:
        values = values.reshape(-1, values.shape[-1] if values.ndim >= 2 else 1, 1)
    rows = np.array_split(np.arange(values.shape[0]), BLOCKS)
    columns = np.array_split(np.arange(values.shape[1]), BLOCKS)
    means = np.array([[values[r][:, c].mean(axis=(0, 1)) if len(r) and len(c) else np.zeros(values.shape[2])
                       for c in columns] for r in rows])
    return np.array([float(f"{mean:.6g}") for mean in means.ravel()]).reshape(means.shape)


def difference(expected: dict, array: np.ndarray) -> str | None:
    """None when ``array`` matches the reference, else what differs, with the max abs difference."""
    actual = fingerprint(array)
    if actual["sha256"] == expected["sha256"]:
        return None
    if actual["shape"] != expected["shape"] or actual["dtype"] != expected["dtype"]:
        return f"is {actual['dtype']} {actual['shape']}, was {expected['dtype']} {expected['shape']}"
    if "values" in expected:
        gap = np.max(np.abs(np.asarray(actual["values"]) - np.asarray(expected["values"])))
        return f"max abs difference {gap:.6g}"
    gap = np.max(np.abs(np.asarray(actual["block_means"]) - np.asarray(expected["block_means"])))
    return f"bytes differ; max abs difference of the {BLOCKS}x{BLOCKS} block means {gap:.6g} (pixels differ at least this much)"


# --------------------------------------------------------------------------- the test
@pytest.mark.parametrize("group", sorted(GROUPS))
def test_shipped_outputs_are_bit_identical(group, tmp_path):
    reference = json.loads(REFERENCE.read_text())[group]
    outputs = GROUPS[group](tmp_path)
    assert sorted(outputs) == sorted(reference), "the set of outputs changed (re-record if deliberate)"
    problems = {name: difference(reference[name], array) for name, array in outputs.items()}
    problems = {name: problem for name, problem in problems.items() if problem is not None}
    assert not problems, "shipped outputs changed:\n" + "\n".join(f"  {name}: {text}" for name, text in problems.items())


def test_a_changed_output_is_reported_with_its_difference():
    image = np.full((64, 64, 3), 100, np.uint8)
    changed = image.copy()
    changed[:4, :8] += 16                                                  # half of one 8x8 px block
    assert difference(fingerprint(image), image) is None
    assert "block means 8 " in difference(fingerprint(image), changed)
    small = np.array([0.5, 0.25], np.float32)
    assert difference(fingerprint(small), small + np.float32(0.125)) == "max abs difference 0.125"
    assert "was uint8 [64, 64, 3]" in difference(fingerprint(image), image[:32])


# --------------------------------------------------------------------------- recording
def record(groups: list[str]) -> None:
    """Recompute ``groups`` and write their fingerprints into the reference file (others kept)."""
    import tempfile

    from slimvision.io.atomic import write_text_atomic

    reference = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
    for group in groups:
        with tempfile.TemporaryDirectory() as work:
            reference[group] = {name: fingerprint(array) for name, array in GROUPS[group](Path(work)).items()}
        print(f"{group}: {len(reference[group])} outputs recorded")
    write_text_atomic(REFERENCE, _one_output_a_line(reference), overwrite=True)


def _one_output_a_line(reference: dict) -> str:
    """JSON with one output per line, so a re-recording's diff names the outputs that changed."""
    groups = []
    for group in sorted(reference):
        lines = [f"  {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}" for name, entry in sorted(reference[group].items())]
        groups.append(f"{json.dumps(group)}: {{\n" + ",\n".join(lines) + "\n}")
    return "{\n" + ",\n".join(groups) + "\n}\n"


if __name__ == "__main__":
    if sys.argv[1:2] != ["--record"] or any(name not in GROUPS for name in sys.argv[2:]):
        sys.exit(f"usage: python {sys.argv[0]} --record [GROUP ...]   (groups: {', '.join(GROUPS)})")
    record(sys.argv[2:] or list(GROUPS))
