"""The CAT dataset (Zhang, Sun and Tang, 2008): parse its 9-point head annotations and crop heads.

Each photo ``NAME.jpg`` has ``NAME.jpg.cat``: one line, the point count (9) then 9 x/y pairs:
left eye, right eye, mouth, then three points for each ear (left ear, then right ear). The
cat-face DCGAN this project builds on merges the folders ``CAT_00`` .. ``CAT_06``, applies two
fixes to the annotations, drops about 130 photos (drawings, corrupted, inverted, blocked faces,
``cat_outliers.txt`` beside this module), rotates each photo so the eyes are level, and crops a
square around the head. :func:`prepare_cats` does all of that and reports what it kept and why
it dropped the rest.

No copy of the dataset ships offline, so the tests write fixtures in the exact ``.cat`` format.

Example:
    >>> points = parse_cat_text("9 10 20 30 20 20 30 5 10 8 2 12 8 28 8 32 2 35 10", "x.cat")
    >>> crop_box(points)[2]    # the eyes are already level: no rotation
    0.0
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from slimvision.errors import InputError
from slimvision.io.atomic import write_text_atomic
from slimvision.io.images import find_images, load_image, save_image
from slimvision.progress import progress_bar

#: Order of the 9 points in a ``.cat`` file.
POINT_NAMES = ("left_eye", "right_eye", "mouth", "left_ear_1", "left_ear_tip", "left_ear_3",
               "right_ear_1", "right_ear_tip", "right_ear_3")
#: The two annotation fixes of the reference preparation: a broken file to delete, and a file
#: shipped outside its folder that belongs with its photo.
BROKEN_ANNOTATION = "00000003_019.jpg.cat"
STRAY_ANNOTATION = "00000003_015.jpg.cat"
#: Sides of the head crops, each bucket keeping heads at least that many pixels wide.
DEFAULT_BUCKETS = (64, 128)


def outlier_names() -> frozenset[str]:
    """File names of the photos the reference preparation drops (``cat_outliers.txt``)."""
    text = resources.files("slimvision.data").joinpath("cat_outliers.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def parse_cat_text(text: str, name: str) -> np.ndarray:
    """The 9 (x, y) points of a ``.cat`` file's text, (9, 2) float64.

    Raises:
        InputError: naming ``name``: not numbers, a count other than 9, or too few values.
    """
    try:
        values = [float(token) for token in text.split()]
    except ValueError:
        raise InputError(name, "not a .cat annotation: expected numbers (a count, then x y pairs)") from None
    if not values or values[0] != len(POINT_NAMES):
        raise InputError(name, f"expected {len(POINT_NAMES)} points, the file says {values[0] if values else 'nothing'}")
    if len(values) < 1 + 2 * len(POINT_NAMES):
        raise InputError(name, f"expected {2 * len(POINT_NAMES)} coordinates, found {len(values) - 1}")
    return np.asarray(values[1:1 + 2 * len(POINT_NAMES)], np.float64).reshape(len(POINT_NAMES), 2)


def crop_box(points: np.ndarray) -> tuple[tuple[float, float], float, float]:
    """Where to cut the head: (centre x, centre y), side, and the angle (degrees) that levels the eyes.

    The points are turned about the eyes' midpoint by the angle, and the square is the bounding
    box of all 9 turned points, grown on its short side to a square about the same centre (in
    the turned frame, mapped back to the photo).
    """
    left, right = points[0], points[1]
    angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    pivot = (left + right) / 2
    turned = _rotate(points, pivot, -angle)
    low, high = turned.min(axis=0), turned.max(axis=0)
    side = float(max(high - low))
    centre = _rotate(((low + high) / 2)[None], pivot, angle)[0]
    return (float(centre[0]), float(centre[1])), side, round(angle, 6) + 0.0


def crop_head(image: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The head, eyes level, as a ``size`` x ``size`` RGB crop; and the head's side in photo pixels.

    Parts of the square outside the photo are filled with the photo's edge colours (PIL's
    transform pads with black, which the GAN would learn as part of cats).
    """
    (cx, cy), side, angle = crop_box(points)
    # Sample the square in the levelled frame: each output pixel maps back through the rotation.
    theta = math.radians(angle)
    scale = side / size
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    # Affine map output (u, v) -> photo (x, y) about the square's centre.
    a, b = cos, -sin
    d, e = sin, cos
    c = cx - a * size / 2 - b * size / 2
    f = cy - d * size / 2 - e * size / 2
    pad = int(math.ceil(side))
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    crop = Image.fromarray(padded).transform((size, size), Image.Transform.AFFINE, (a, b, c + pad, d, e, f + pad),
                                             resample=Image.Resampling.BICUBIC)
    return np.asarray(crop), side


@dataclass
class CatReport:
    """What :func:`prepare_cats` kept and dropped, and why; saved as ``report.json``."""

    kept: dict[str, int] = field(default_factory=dict)            # bucket side -> crops written
    dropped: dict[str, list[str]] = field(default_factory=dict)   # reason -> photo names

    def drop(self, reason: str, name: str) -> None:
        self.dropped.setdefault(reason, []).append(name)


@dataclass
class _Buckets:
    """Writes crops into ``output/<size>/`` and keeps the report of what was kept and dropped."""

    output: Path
    sizes: tuple[int, ...]
    overwrite: bool
    report: CatReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = CatReport(kept={str(size): 0 for size in self.sizes})

    def fitting(self, side: float, name: str, too_small: str) -> list[int]:
        """The sizes a square ``side`` pixels wide fills (smaller ones would be upscaled blur);
        none: ``name`` is dropped as ``too_small``."""
        sizes = [size for size in self.sizes if side >= size]
        if not sizes:
            self.report.drop(f"{too_small} {min(self.sizes)} px", name)
        return sizes

    def write(self, crop: np.ndarray, size: int, name: str, source: Path) -> None:
        save_image(crop, self.output / str(size) / name, overwrite=self.overwrite, protected=[source])
        self.report.kept[str(size)] += 1

    def finish(self) -> CatReport:
        write_text_atomic(self.output / "report.json", json.dumps(asdict(self.report), indent=1) + "\n",
                          overwrite=True)
        return self.report


def prepare_cats(source: str | Path, output: str | Path, *, buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                 overwrite: bool = False, progress: bool = False) -> CatReport:
    """Crop every annotated cat head under ``source`` into ``output/<side>/`` for each bucket it fills.

    ``source`` is the unpacked dataset (``CAT_00`` .. ``CAT_06``, or their merged contents). A
    head goes into bucket ``s`` when its square is at least ``s`` photo pixels wide, resized to
    ``s`` x ``s``; smaller heads would be upscaled blur. Photos are never modified.
    """
    source, output = Path(source), Path(output)
    if not source.is_dir():
        raise InputError(source, "not a folder: expected the unpacked CAT dataset (CAT_00 .. CAT_06)")
    outliers = outlier_names()
    writer = _Buckets(output, buckets, overwrite)
    annotations = {path.name: path for path in sorted(source.rglob("*.jpg.cat"))}
    annotations.pop(BROKEN_ANNOTATION, None)           # fix 1: its points are wrong
    photos = sorted(source.rglob("*.jpg"))
    if not photos:
        raise InputError(source, "no .jpg photos found")
    with progress_bar(len(photos), enabled=progress, desc="cropping cat heads", unit="photo") as bar:
        for photo in photos:
            _prepare_photo(photo, annotations, outliers, writer)
            bar.update()
    return writer.finish()


def prepare_images(source: str | Path, output: str | Path, *, buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                   overwrite: bool = False, progress: bool = False) -> CatReport:
    """Any image folder as GAN data: the centre square of each image into every bucket it fills.

    For photos without head annotations (your own cats, faces, textures). Images that cannot
    be read are dropped with the reason, not fatal: one broken file in 9,000 should not stop a run.
    """
    source, output = Path(source), Path(output)
    images = find_images(source, recursive=True)
    if not images:
        raise InputError(source, "no images found")
    writer = _Buckets(output, buckets, overwrite)
    with progress_bar(len(images), enabled=progress, desc="cropping images", unit="image") as bar:
        for path in images:
            _prepare_image(path, source, writer)
            bar.update()
    return writer.finish()


def _prepare_image(path: Path, source: Path, writer: _Buckets) -> None:
    """The centre square of one image into every size it fills, or the reason it was dropped."""
    try:
        image = load_image(path)
    except InputError as exc:
        writer.report.drop(f"unreadable: {exc.problem}", path.name)
        return
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top: top + side, left: left + side])
    name = str(path.relative_to(source).with_suffix(".png")).replace("/", "_")
    for size in writer.fitting(side, path.name, "smaller than"):
        writer.write(np.asarray(square.resize((size, size), Image.Resampling.LANCZOS)), size, name, path)


def _prepare_photo(photo: Path, annotations: dict[str, Path], outliers: frozenset[str], writer: _Buckets) -> None:
    """Crop one photo's head into every size it fills, or record why it was dropped."""
    name = photo.name
    if name in outliers:
        writer.report.drop("outlier (cat_outliers.txt)", name)
        return
    annotation = photo.with_name(name + ".cat")
    # fix 2: the stray file is found wherever it lies in the tree.
    annotation = annotation if annotation.is_file() else annotations.get(name + ".cat")
    if annotation is None or annotation.name == BROKEN_ANNOTATION:
        writer.report.drop("no usable annotation", name)
        return
    points = parse_cat_text(annotation.read_text(encoding="utf-8", errors="replace"), str(annotation))
    sizes = writer.fitting(crop_box(points)[1], name, "head smaller than")
    if not sizes:
        return   # not even decoded: most of the dataset's time goes into reading JPEGs
    image = load_image(photo)
    for size in sizes:
        writer.write(crop_head(image, points, size)[0], size, photo.stem + ".png", photo)


def _rotate(points: np.ndarray, pivot: np.ndarray, degrees: float) -> np.ndarray:
    theta = math.radians(degrees)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return (points - pivot) @ rotation.T + pivot
