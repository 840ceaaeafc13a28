"""How face embedders hold up under the damage real cameras do: JPEG, small faces, blur, noise, night IR.

The thesis behind the faces system measures its compressed networks against the teacher under
JPEG compression, reduced face size and infrared-like greyscale (its tables 14, 16 and 17). This
module does the same for any set of embedders, with the first one as the reference (the teacher):

1. Every face of the photos is detected and its 5 landmarks are kept (:func:`find_faces`).
2. Each face is damaged by each :data:`CORRUPTIONS` level on a crop around it, then aligned with
   the *clean* landmarks, so the network's robustness is measured, not the detector's.
3. Per model and level (:func:`robustness_table`):

   * ``agreement``: over every ordered pair of faces (i, j), itself included, the share of
     same/different decisions "clean face i vs damaged face j" that equal the reference model's
     decision on the two clean faces. For the reference itself this is its own stability; for a
     student it also holds what compression lost, so the two can be set side by side.
   * ``self_match``: the share of damaged faces still matched to their own clean face.
   * ``drift``: the mean distance between a face's clean and damaged descriptors, as a fraction
     of the model's threshold (0: unchanged; 1: as far as the same-person limit).

:func:`save_robustness_plot` draws the curves, one panel per kind of damage.

Example:
    >>> from slimvision.bench.face_robustness import corrupt
    >>> crop = np.full((64, 64, 3), 128, np.uint8)
    >>> corrupt(crop, "grey", 1.0, face_width=64.0, rng=np.random.default_rng(0)).shape
    (64, 64, 3)
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from slimvision.errors import InputError


@dataclass(frozen=True)
class Corruption:
    """One kind of damage and the levels it is measured at.

    ``unit`` names the level's meaning; ``worse`` is the direction in which the damage grows
    ("down": a lower level is worse, as for JPEG quality and face width).
    """

    name: str
    levels: tuple[float, ...]
    unit: str
    worse: str = "up"


#: The damage measured, with the thesis's ranges where it gives them (JPEG quality 10-95, face
#: widths 24-150 px). Blur sigma and noise are in pixels / grey levels of a 150 px wide face.
CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("jpeg", (10, 20, 30, 50, 70, 95), "JPEG quality", worse="down"),
    Corruption("face_width", (24, 32, 48, 64, 96, 150), "face width, px", worse="down"),
    Corruption("blur", (0.5, 1.0, 2.0, 3.0), "Gaussian sigma, px at 150 px face width"),
    Corruption("noise", (4.0, 8.0, 16.0, 32.0), "Gaussian noise sigma, grey levels"),
    Corruption("grey", (1.0,), "greyscale"),
    Corruption("night_ir", (1.0,), "grey, contrast halved, noise 12"),
)
CORRUPTION_NAMES = tuple(corruption.name for corruption in CORRUPTIONS)


@dataclass(frozen=True)
class FaceSample:
    """One detected face: a crop of its photo around it, its landmarks in the crop, its width."""

    label: str
    crop: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (5, 2) in crop pixels
    width: float  # the detector's box width, px


@dataclass(frozen=True)
class EmbedderUnderTest:
    """A model to measure: how it turns aligned chips into descriptors, and how it compares them.

    ``embed`` takes an image and the landmarks of faces in it ((N, 5, 2)) and returns (N, D)
    descriptors (``FaceRecognizer.embed_landmarks``); ``distance`` maps two (N, D) arrays to N
    distances; ``threshold`` is its same-person limit.
    """

    name: str
    embed: Callable[[np.ndarray, np.ndarray], np.ndarray]
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]
    threshold: float


def recognizer_under_test(name: str, recognizer: Any) -> EmbedderUnderTest:
    """A :class:`~slimvision.inference.faces.FaceRecognizer` as a model to measure."""
    metric = recognizer.embedder.metric

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if metric == "euclidean":
            return np.linalg.norm(a - b, axis=-1)
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        return 1.0 - (a * b).sum(-1) / np.maximum(norms, 1e-12)

    return EmbedderUnderTest(name, recognizer.embed_landmarks, distance, float(recognizer.threshold))


def installed_face_photos() -> list[Path]:
    """Real photos of people that installed packages ship (scikit-image's astronaut, matplotlib's
    Grace Hopper, opencv-doc's messi5); none is used to train or choose a face model."""
    import matplotlib

    from slimvision.assets import samples_dir
    from slimvision.data.style_images import OPENCV_DOC_DATA

    found = [samples_dir() / "content" / "astronaut.jpg",
             Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
             OPENCV_DOC_DATA / "messi5.jpg"]
    return [path for path in found if path.is_file()]


#: A face's crop spans this many box widths around the box centre (room for blur and alignment).
CROP_SPAN = 2.2


def find_faces(photos: Sequence[Path], recognizer: Any, min_width: float = 48.0) -> list[FaceSample]:
    """Every face at least ``min_width`` px wide in the photos, as crops (faces smaller than that
    cannot be shrunk along the face-width curve)."""
    from slimvision.io.images import load_image

    faces = []
    for photo in photos:
        image = load_image(photo)
        for number, face in enumerate(recognizer.detect(image)):
            x0, y0, x1, y1 = (float(v) for v in face.box)
            width = x1 - x0
            if width < min_width:
                continue
            half = CROP_SPAN * max(width, y1 - y0) / 2
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            left, top = int(max(cx - half, 0)), int(max(cy - half, 0))
            right, bottom = int(min(cx + half, image.shape[1])), int(min(cy + half, image.shape[0]))
            crop = np.ascontiguousarray(image[top:bottom, left:right, :3])
            landmarks = np.asarray(face.landmarks, np.float64) - [left, top]
            faces.append(FaceSample(f"{photo.name}#{number}", crop, landmarks, width))
    return faces


def corrupt(crop: np.ndarray, kind: str, level: float, face_width: float, rng: np.random.Generator) -> np.ndarray:
    """``crop`` damaged by one :data:`CORRUPTIONS` level; same shape, uint8.

    ``face_width`` scales the blur (given at a 150 px face) and sets the shrink factor of
    ``face_width`` levels (a level at or above the face's own width leaves it as it is).
    """
    image = Image.fromarray(crop)
    if kind == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(level))
        return np.asarray(Image.open(buffer).convert("RGB"))
    if kind == "face_width":
        factor = min(level / face_width, 1.0)
        small = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        return np.asarray(image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.BILINEAR))
    if kind == "blur":
        return np.asarray(image.filter(ImageFilter.GaussianBlur(level * face_width / 150.0)))
    if kind == "noise":
        return _add_noise(crop.astype(np.float32), level, rng)
    if kind == "grey":
        return np.repeat(np.asarray(image.convert("L"))[..., None], 3, axis=2)
    if kind == "night_ir":
        grey = np.asarray(image.convert("L"), np.float32)
        low_contrast = grey.mean() + 0.5 * (grey - grey.mean())
        return np.repeat(_add_noise(low_contrast, 12.0, rng)[..., None], 3, axis=2)
    raise InputError(kind, f"unknown corruption; choose from {', '.join(CORRUPTION_NAMES)}")


def _add_noise(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.round(pixels + rng.normal(0.0, sigma, pixels.shape)), 0, 255).astype(np.uint8)


def _descriptors(model: EmbedderUnderTest, faces: Sequence[FaceSample],
                 crops: Sequence[np.ndarray] | None = None) -> np.ndarray:
    crops = crops if crops is not None else [face.crop for face in faces]
    return np.concatenate([model.embed(crop, face.landmarks[None]) for crop, face in zip(crops, faces)])


def robustness_table(faces: Sequence[FaceSample], models: Sequence[EmbedderUnderTest],
                     corruptions: Sequence[Corruption] = CORRUPTIONS, seed: int = 0,
                     progress: bool = False) -> dict[str, Any]:
    """Agreement, self-match and drift of every model at every level; ``models[0]`` is the reference.

    Raises:
        InputError: fewer than two faces (no pair to decide on) or no model.
    """
    from slimvision.progress import progress_bar

    if len(faces) < 2:
        raise InputError("photos", f"found {len(faces)} usable face(s); robustness needs at least 2")
    if not models:
        raise InputError("models", "no model to measure")
    reference = models[0]
    clean = [_descriptors(model, faces) for model in models]
    d = clean[0]
    reference_same = reference.distance(d[:, None, :], d[None, :, :]) <= reference.threshold
    table: dict[str, Any] = {"reference": reference.name, "faces": [face.label for face in faces],
                             "pairs": len(faces) ** 2, "corruptions": {}}
    total = sum(len(c.levels) for c in corruptions)
    with progress_bar(total, enabled=progress, desc="robustness", unit="level") as bar:
        for corruption in corruptions:
            rows = []
            for level in corruption.levels:
                rng = np.random.default_rng([seed, CORRUPTION_NAMES.index(corruption.name), int(level * 100)])
                damaged = [corrupt(face.crop, corruption.name, level, face.width, rng) for face in faces]
                row: dict[str, Any] = {"level": level, "models": {}}
                for model, model_clean in zip(models, clean):
                    row["models"][model.name] = _scores(model, model_clean, _descriptors(model, faces, damaged),
                                                        reference_same)
                rows.append(row)
                bar.update()
            table["corruptions"][corruption.name] = {"unit": corruption.unit, "worse": corruption.worse,
                                                     "rows": rows}
    table["summary"] = _summary(table, [model.name for model in models])
    return table


def _scores(model: EmbedderUnderTest, clean: np.ndarray, damaged: np.ndarray,
            reference_same: np.ndarray) -> dict[str, float]:
    pair_distances = model.distance(clean[:, None, :], damaged[None, :, :])
    own = model.distance(clean, damaged)
    return {"agreement": float(((pair_distances <= model.threshold) == reference_same).mean()),
            "self_match": float((own <= model.threshold).mean()),
            "drift": float(own.mean() / model.threshold)}


def _summary(table: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """Each model's worst agreement and its largest drop below the reference's at the same level."""
    reference = names[0]
    summary = {}
    for name in names:
        worst, drop = 1.0, 0.0
        for corruption in table["corruptions"].values():
            for row in corruption["rows"]:
                agreement = row["models"][name]["agreement"]
                worst = min(worst, agreement)
                drop = max(drop, row["models"][reference]["agreement"] - agreement)
        summary[name] = {"worst_agreement": worst, "largest_drop_below_reference": drop}
    return summary


def save_robustness_plot(table: dict[str, Any], path: str | Path, overwrite: bool = False) -> None:
    """Agreement (top row) and drift (bottom row) against each damage's level, one line per model;
    written atomically as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimvision.io.atomic import atomic_write

    kinds = list(table["corruptions"])
    figure, axes = plt.subplots(2, len(kinds), figsize=(2.6 * len(kinds), 5.2), dpi=110, squeeze=False)
    names = list(table["summary"])
    for column, kind in enumerate(kinds):
        corruption = table["corruptions"][kind]
        rows = corruption["rows"]
        levels = [row["level"] for row in rows]
        positions = levels if len(levels) > 1 else [0]
        for line, metric in enumerate(("agreement", "drift")):
            ax = axes[line][column]
            for name in names:
                values = [row["models"][name][metric] for row in rows]
                ax.plot(positions, values, marker="o", label=name)
            ax.grid(True, alpha=0.3)
            if len(levels) == 1:
                ax.set_xticks([0], [corruption["unit"]], fontsize=7)
            else:
                ax.set_xlabel(corruption["unit"], fontsize=7)
            if corruption["worse"] == "down" and len(levels) > 1:
                ax.invert_xaxis()  # damage grows to the right in every panel
            if column == 0:
                ax.set_ylabel("decision agreement" if metric == "agreement" else "drift / threshold")
            if line == 0:
                ax.set_title(kind)
                ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.01)
            else:
                ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))  # on the threshold's scale: 1 = the same-person limit
    axes[0][0].legend(fontsize=7, loc="lower left")
    figure.suptitle(f"{len(table['faces'])} faces, {table['pairs']} pairs; reference {table['reference']}",
                    fontsize=9)
    figure.tight_layout()
    with atomic_write(path, overwrite=overwrite) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)
