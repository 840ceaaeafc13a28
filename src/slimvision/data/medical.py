"""Medical slice datasets: any files or folders, and the MNI152 demo set with held-out slice ranges.

A dataset is an (N, S, S) float32 array in [0, 1] (every slice padded to a square and resized by
:func:`~slimvision.io.medical.to_square`) plus one name per slice, so every training image can be
traced back to its file and slice.

The demo data is the MNI152 2009a symmetric T1 template (197 x 233 x 189 voxels of 1 mm) that
the ``nilearn`` package ships. Its non-empty slices along all three axes are split by slice
index into blocks of ten: every fifth block (indices 40-49, 90-99, ...) is held out, so a test
slice is on average several millimetres from the nearest training slice, and never one of them.

Example:
    >>> train = mni152_slices("train", size=128)                     # doctest: +SKIP
    >>> train.images.shape, train.names[0]                           # doctest: +SKIP
    ((353, 128, 128), 'mni152_t1.nii.gz#axis0-slice-018')
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimvision.errors import MissingAssetError
from slimvision.io.images import DEFAULT_MAX_PIXELS, files_of
from slimvision.io.medical import (DEFAULT_MAX_VOXELS, Intensity, MedicalSlice, find_medical_files, read_medical,
                                   to_square)


MNI152_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: Slice indices are grouped in blocks of HOLDOUT_BLOCK; every HOLDOUT_EVERY-th block is held out.
HOLDOUT_BLOCK, HOLDOUT_EVERY = 10, 5
SPLITS = ("train", "test", "all")


@dataclass
class SliceSet:
    """Slices ready for a network: ``images`` (N, S, S) float32 in [0, 1] and a name for each."""

    images: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)


def mni152_path() -> Path:
    """The T1 template inside the installed ``nilearn`` (found without importing nilearn, which is slow)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError("the MNI152 template ships in the 'nilearn' package, which is not installed; "
                                "run: pip install 'slimvision[medical]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / MNI152_FILE
    if not path.is_file():
        raise MissingAssetError(f"{path}: missing from the installed nilearn; reinstall it (nilearn 0.10 or newer)")
    return path


def is_held_out(index: int) -> bool:
    """Whether slice ``index`` belongs to the test split of the MNI152 demo set."""
    return (index // HOLDOUT_BLOCK) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


def mni152_slices(split: str = "train", size: int = 128, axes: Sequence[int] = (0, 1, 2)) -> SliceSet:
    """The MNI152 demo set: non-empty slices along ``axes``, ``train`` / ``test`` / ``all``."""
    names, pieces = zip(*mni152_native(split, axes))
    return SliceSet(np.stack([to_square(pixels, size) for pixels in pieces]), list(names))


def mni152_native(split: str = "test", axes: Sequence[int] = (0, 1, 2)) -> list[tuple[str, np.ndarray]]:
    """The MNI152 demo set's slices at their own size (1 mm pixels: 197 x 233 and the like), named."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    path = mni152_path()
    found = []
    for axis in axes:
        for piece in read_medical(path, axis=axis):
            assert piece.index is not None
            if split == "all" or is_held_out(piece.index) == (split == "test"):
                found.append((f"{path.name}#axis{axis}-slice-{piece.index:03d}", piece.pixels))
    return found


def load_slices(sources: Sequence[str | Path], size: int, *, intensity: Intensity | None = None,
                axis: int = 2, progress: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                max_voxels: int | None = DEFAULT_MAX_VOXELS) -> SliceSet:
    """Every slice of the given files and folders (searched recursively), squared to ``size``.

    Raises:
        InputError: a source does not exist or holds no medical image; a file is unreadable or its
            header declares a slice of more than ``max_pixels`` pixels or a volume of more than
            ``max_voxels`` voxels (see :func:`read_medical`).
    """
    images, names = [], []
    for piece in native_slices(sources, intensity=intensity, axis=axis, progress=progress, max_pixels=max_pixels,
                               max_voxels=max_voxels):
        images.append(to_square(piece.pixels, size))
        names.append(piece.name)
    return SliceSet(np.stack(images), names)


def native_slices(sources: Sequence[str | Path], *, intensity: Intensity | None = None, axis: int = 2,
                  progress: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                  max_voxels: int | None = DEFAULT_MAX_VOXELS) -> list[MedicalSlice]:
    """Every slice of the given files and folders (searched recursively) at its own size
    (what ``slimvision vae denoise`` works on); errors as :func:`load_slices`."""
    from slimvision.progress import progress_bar

    files = files_of(sources, find_medical_files, "holds no medical images (PNG, JPEG, TIFF, DICOM, NIfTI)")
    found: list[MedicalSlice] = []
    with progress_bar(len(files), enabled=progress, desc="reading", unit="file") as bar:
        for path in files:
            found += read_medical(path, intensity=intensity, axis=axis, max_pixels=max_pixels, max_voxels=max_voxels)
            bar.update(1)
    return found
