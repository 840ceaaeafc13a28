"""Every real medical image that ships offline in a PyPI package, as named sources held out whole.

A *source* is one family of scans from one package: the MNI152 template, pydicom's CT head
series, dipy's diffusion volumes... Training and held-out data are split by source, never by
slice, so a held-out score says how the model does on scans it has never seen anything of.
Nothing is downloaded: each source is a list of files inside an installed package (found with
:func:`importlib.util.find_spec`, without importing the package), read by
:func:`~slimvision.io.medical.read_medical` at their own size.

Three images are the project's public held-out check and never enter any source: matplotlib's
``s1045.ima.gz`` and pydicom's ``CT_small.dcm`` and ``MR_small.dcm``. pydicom ships
re-encodings of the same pixels (``MR_small_RLE.dcm``, ``MR_small_bigendian.dcm``...), so
every slice is also compared by content with the three (:func:`public_check_fingerprints`)
and dropped when it matches, whatever its file is called.

Example:
    >>> pool = source_slices(["mni152", "dipy-dwi"], split="train")          # doctest: +SKIP
    >>> sorted(pool)                                                          # doctest: +SKIP
    ['dipy-dwi', 'mni152']
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimvision.errors import ConfigError, MissingAssetError
from slimvision.io.medical import Intensity, read_medical

log = logging.getLogger(__name__)

#: |correlation| of two 32 x 32 thumbnails above which two slices count as the same image.
SAME_IMAGE = 0.95
#: Slices narrower than this (the edge-on cuts of thin volumes) are not taken.
MIN_SIDE = 16


@dataclass(frozen=True)
class MedicalSource:
    """One family of real scans inside an installed package.

    Attributes:
        name: the registry key (``--sources NAME``).
        package: the PyPI package that ships the files (``pip install PACKAGE``).
        module: its import name (searched with find_spec, not imported).
        folder: the files' folder inside the module.
        files: file names in ``folder``.
        modality / description / licence: what the scans are and under which terms they ship.
        axes: slicing axes of volumes (NIfTI): all three by default.
        every: keep every ``every``-th slice of a file (long cine loops, dense volumes).
        held_out: a source kept out of training and used to choose settings.
        weight: relative chance that a training crop comes from this source.
    """

    name: str
    package: str
    module: str
    folder: str
    files: tuple[str, ...]
    modality: str
    description: str
    licence: str
    axes: tuple[int, ...] = (0, 1, 2)
    every: int = 1
    held_out: bool = False
    weight: float = 1.0

    def paths(self) -> list[Path]:
        """The source's files, refused in one line naming the package when it is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingAssetError(f"source {self.name!r} ships in the {self.package!r} package, which is not "
                                    f"installed; run: pip install {self.package}")
        root = Path(next(iter(spec.submodule_search_locations))) / self.folder
        missing = [name for name in self.files if not (root / name).is_file()]
        if missing:
            raise MissingAssetError(f"source {self.name!r}: {', '.join(missing)} missing from {root}; "
                                    f"reinstall {self.package}")
        return [root / name for name in self.files]


_PYDICOM, _STORE = "data/test_files", "data"
#: The registry: every source found, in the order of the docs' table. ``mni152`` is special:
#: its slices are split by slice index (see :mod:`slimvision.data.medical`); the tissue maps,
#: cut from the same template grid, follow that split so no held-out slice leaks.
SOURCES: dict[str, MedicalSource] = {source.name: source for source in (
    MedicalSource("mni152", "nilearn", "nilearn", "datasets/data",
                  ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",), "MRI T1",
                  "MNI152 2009a symmetric T1 template, 197 x 233 x 189, 1 mm", "nilearn BSD-3; template (c) McConnell "
                  "Brain Imaging Centre, free use with its copyright notice", weight=4.0),
    MedicalSource("nilearn-tissue", "nilearn", "nilearn", "datasets/data",
                  ("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                   "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"), "MRI tissue maps",
                  "MNI152 2009a grey- and white-matter probability maps (every 4th slice)",
                  "as mni152", every=4),
    MedicalSource("nibabel-epi", "nibabel", "nibabel", "tests/data", ("example4d.nii.gz",), "fMRI EPI",
                  "a real EPI volume, 128 x 96 x 24 (first of its two), axial", "nibabel MIT (test data)", axes=(2,)),
    MedicalSource("nibabel-dicom", "nibabel", "nibabel", "nicom/tests/data", ("0.dcm", "1.dcm"), "MRI (Siemens)",
                  "two 256 px Siemens MR images (mosaic EPI)", "nibabel MIT (test data)"),
    MedicalSource("nibabel-anat", "nibabel", "nibabel", "tests/data", ("anatomical.nii",), "MRI T1",
                  "a tiny real T1 volume, 33 x 41 x 25", "nibabel MIT (test data)", held_out=True),
    MedicalSource("dipy-dwi", "dipy", "dipy", "data/files",
                  ("S0_10slices.nii.gz", "aniso_vox.nii.gz", "test_piesno.nii.gz"), "diffusion MRI",
                  "b0 / diffusion volumes: 128 px x 10 slices, 58 px anisotropic voxels, a noisy 96 px volume",
                  "dipy BSD-3 (bundled data)", axes=(2,)),
    MedicalSource("dipy-t1", "dipy", "dipy", "data/files", ("t1_coronal_slice.npy",), "MRI T1",
                  "one 256 x 256 coronal T1 slice", "dipy BSD-3 (bundled data)", held_out=True),
    MedicalSource("pydicom-ct-head", "pydicom", "pydicom", _PYDICOM, ("693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"),
                  "CT", "two 512 px head CT slices (JPEG 2000)", "pydicom MIT (test files)", held_out=True),
    MedicalSource("pydicom-data-ct", "pydicom-data", "data_store", _STORE,
                  ("eCT_Supplemental.dcm", "explicit_VR-UN.dcm"), "CT",
                  "an enhanced CT (2 frames, 512 px) and a pancreas CT slice", "pydicom-data MIT (test files)"),
    MedicalSource("pydicom-mr", "pydicom", "pydicom", _PYDICOM, ("examples_overlay.dcm",), "MRI",
                  "a 300 x 484 abdominal MR slice (Siemens)", "pydicom MIT (test files)"),
    MedicalSource("pydicom-data-mr", "pydicom-data", "data_store", _STORE, ("MR2_UNCR.dcm", "emri_small.dcm"),
                  "MRI", "a 1024 px shoulder MR slice (Philips) and a 10-frame 64 px head MR",
                  "pydicom-data MIT (test files)"),
    MedicalSource("pydicom-nm", "pydicom", "pydicom", _PYDICOM, ("JPEG2000.dcm",), "nuclear medicine",
                  "a 1024 x 256 whole-body bone scan", "pydicom MIT (test files)"),
    MedicalSource("pydicom-data-xray", "pydicom-data", "data_store", _STORE, ("RG1_UNCR.dcm", "RG3_UNCR.dcm"),
                  "radiography", "two large radiographs (chest CR 1955 x 1841, 1760 px)",
                  "pydicom-data MIT (test files)"),
    MedicalSource("pydicom-us", "pydicom", "pydicom", _PYDICOM,
                  ("examples_ybr_color.dcm", "examples_rgb_color.dcm", "examples_jpeg2k.dcm"), "ultrasound",
                  "ultrasound (a 30-frame 240 x 320 loop, two 480 x 640 frames; colour read as grey, every 3rd frame)",
                  "pydicom MIT (test files)", every=3),
    MedicalSource("pydicom-data-us", "pydicom-data", "data_store", _STORE,
                  ("US1_UNCR.dcm", "color3d_jpeg_baseline.dcm"), "ultrasound",
                  "ultrasound (one 480 x 640 frame, a 120-frame 3-D loop; every 12th frame)",
                  "pydicom-data MIT (test files)", every=12),
)}
#: The project's public held-out check: never trained on, never used to choose settings.
PUBLIC_CHECK = ("matplotlib:s1045.ima.gz", "pydicom:CT_small.dcm", "pydicom:MR_small.dcm")


def training_sources() -> list[str]:
    """Names of the sources a model trains on (all but the held-out ones)."""
    return [name for name, source in SOURCES.items() if not source.held_out]


def held_out_sources() -> list[str]:
    """Names of the sources kept out of training and used to choose settings."""
    return [name for name, source in SOURCES.items() if source.held_out]


def resolve_sources(names: Iterable[str]) -> list[str]:
    """``all`` / ``train`` / ``held-out`` or source names, checked; refused naming the unknown ones."""
    chosen: list[str] = []
    for name in names:
        group = {"all": list(SOURCES), "train": training_sources(), "held-out": held_out_sources()}.get(name, [name])
        for item in group:
            if item not in SOURCES:
                raise ConfigError(f"unknown medical source {item!r}; known: all, train, held-out, {', '.join(SOURCES)}")
            if item not in chosen:
                chosen.append(item)
    return chosen


def matplotlib_mri() -> np.ndarray:
    """matplotlib's sample MRI slice ``s1045.ima.gz``: raw 256 x 256 uint16, read as matplotlib's
    own example reads it (part of the public held-out check)."""
    import matplotlib.cbook

    with gzip.open(matplotlib.cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as handle:
        return np.frombuffer(handle.read(), np.uint16).reshape(256, 256)


def public_check_images() -> dict[str, np.ndarray]:
    """The public held-out check's three images, raw (as the files hold them)."""
    from pydicom.data import get_testdata_file
    import pydicom

    images = {PUBLIC_CHECK[0]: matplotlib_mri().astype(np.float32)}
    for key in PUBLIC_CHECK[1:]:
        images[key] = pydicom.dcmread(get_testdata_file(key.split(":")[1])).pixel_array.astype(np.float32)
    return images


def fingerprint(pixels: np.ndarray) -> np.ndarray:
    """A 32 x 32 thumbnail, zero mean and unit norm: the dot product of two is their correlation,
    whatever their size, value range or encoding."""
    import cv2

    thumb = cv2.resize(np.asarray(pixels, np.float32), (32, 32), interpolation=cv2.INTER_AREA).ravel()
    thumb = thumb - thumb.mean()
    norm = float(np.linalg.norm(thumb))
    return thumb / norm if norm > 0 else thumb


def public_check_fingerprints() -> np.ndarray:
    """(3, 1024) fingerprints of the public held-out check (and of each one flipped left-right)."""
    images = list(public_check_images().values())
    return np.stack([fingerprint(image) for image in images] + [fingerprint(image[:, ::-1]) for image in images])


def matches_public_check(pixels: np.ndarray, prints: np.ndarray | None = None) -> bool:
    """Whether a slice is one of the public held-out images (any encoding, scale or size)."""
    prints = public_check_fingerprints() if prints is None else prints
    return bool(np.abs(prints @ fingerprint(pixels)).max() > SAME_IMAGE)


def source_slices(names: Sequence[str], *, split: str = "train", intensity: Intensity | None = None
                  ) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Each named source's slices at their own size, in [0, 1], as (name, pixels) pairs.

    ``split`` only matters for ``mni152`` and ``nilearn-tissue`` (slice blocks, see
    :mod:`slimvision.data.medical`); the others are held out whole. Slices that match the
    public held-out check by content, or repeat another slice already taken, are dropped.
    """
    from slimvision.data.medical import is_held_out

    intensity = intensity or Intensity()
    prints = public_check_fingerprints()
    taken: list[np.ndarray] = []
    found: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in resolve_sources(names):
        source, slices = SOURCES[name], []
        for path in source.paths():
            pieces = _read(path, source, intensity)
            for index, (label, pixels) in enumerate(pieces):
                if index % source.every:
                    continue
                if name in ("mni152", "nilearn-tissue") and split != "all":
                    slice_index = int(label.rsplit("-", 1)[1])
                    if is_held_out(slice_index) != (split == "test"):
                        continue
                if min(pixels.shape) < MIN_SIDE or float(pixels.std()) < 1e-3:
                    continue
                print_ = fingerprint(pixels)
                if np.abs(prints @ print_).max() > SAME_IMAGE:
                    log.warning("%s: %s matches a public held-out image; left out", name, label)
                    continue
                if name != "mni152" and taken and np.abs(np.stack(taken) @ print_).max() > 0.999:
                    continue  # the same pixels in another encoding
                taken.append(print_)
                slices.append((label, pixels))
        found[name] = slices
    return found


def _read(path: Path, source: MedicalSource, intensity: Intensity) -> list[tuple[str, np.ndarray]]:
    if path.suffix == ".npy":  # dipy's T1 slice: a plain float array in [0, 1]
        pixels = np.load(path, allow_pickle=False).astype(np.float32)
        low, high = np.percentile(pixels, [0.5, 99.5])
        return [(path.name, np.clip((pixels - low) / max(high - low, 1e-6), 0, 1).astype(np.float32))]
    if path.name.endswith((".nii", ".nii.gz")):
        return [(f"{path.name}#axis{axis}-slice-{piece.index:03d}", piece.pixels)
                for axis in source.axes for piece in read_medical(path, intensity=intensity, axis=axis)]
    return [(f"{path.name}#{number}", piece.pixels)
            for number, piece in enumerate(read_medical(path, intensity=intensity))]


class CropPool:
    """Slices of any size from several sources, drawn as square crops at their own resolution.

    A crop's source is drawn by the sources' ``weight``, then a slice of it in proportion to its
    area (a 1024 px radiograph holds many more distinct crops than a 64 px MR slice). A slice
    smaller than the crop is placed at a random spot on black, as the scanner's background
    would surround it; of a larger one, a random window is taken, preferring (over 4 tries)
    one that is not all background.

    Example:
        >>> pool = CropPool({"a": [("x", np.ones((40, 300), np.float32))]})
        >>> pool.crops(np.random.default_rng(0), 2, 64).shape
        (2, 64, 64)
    """

    def __init__(self, sources: dict[str, list[tuple[str, np.ndarray]]],
                 weights: dict[str, float] | None = None) -> None:
        self.slices: list[np.ndarray] = []
        self.names: list[str] = []
        chance: list[float] = []
        filled = {name: found for name, found in sources.items() if found}
        if not filled:
            raise ConfigError("no training slices: every source given is empty")
        total = sum(_weight(name, weights) for name in filled)
        for name, found in filled.items():
            areas = np.array([pixels.size for _, pixels in found], np.float64)
            for (label, pixels), area in zip(found, areas):
                self.slices.append(np.asarray(pixels, np.float32))
                self.names.append(f"{name}:{label}")
                chance.append(_weight(name, weights) / total * area / areas.sum())
        self.chance = np.array(chance) / np.sum(chance)

    def __len__(self) -> int:
        return len(self.slices)

    def crops(self, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        """(count, size, size) float32 crops in [0, 1]."""
        chosen = rng.choice(len(self.slices), count, p=self.chance)
        return np.stack([self._crop(self.slices[index], rng, size) for index in chosen])

    @staticmethod
    def _crop(pixels: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
        height, width = pixels.shape
        best = None
        for _ in range(4):
            top = int(rng.integers(0, height - size + 1)) if height > size else 0
            left = int(rng.integers(0, width - size + 1)) if width > size else 0
            piece = pixels[top:top + size, left:left + size]
            if best is None or piece.mean() > best.mean():
                best = piece
            if piece.mean() > 0.05:
                break
        assert best is not None
        if best.shape == (size, size):
            return best.copy()
        canvas = np.zeros((size, size), np.float32)
        top = int(rng.integers(0, size - best.shape[0] + 1))
        left = int(rng.integers(0, size - best.shape[1] + 1))
        canvas[top:top + best.shape[0], left:left + best.shape[1]] = best
        return canvas

    def center_squares(self, size: int, limit: int | None = None) -> np.ndarray:
        """(N, size, size) central crops (padded on black), e.g. held-out slices scored during training."""
        picks = range(len(self.slices)) if limit is None or limit >= len(self.slices) else \
            np.linspace(0, len(self.slices) - 1, limit).round().astype(int)
        out = []
        for index in picks:
            pixels = self.slices[index]
            top, left = max(0, (pixels.shape[0] - size) // 2), max(0, (pixels.shape[1] - size) // 2)
            piece = pixels[top:top + size, left:left + size]
            canvas = np.zeros((size, size), np.float32)
            canvas[:piece.shape[0], :piece.shape[1]] = piece
            out.append(canvas)
        return np.stack(out)


def _weight(name: str, weights: dict[str, float] | None) -> float:
    if weights and name in weights:
        return weights[name]
    return SOURCES[name].weight if name in SOURCES else 1.0
