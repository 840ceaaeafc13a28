"""Generic greyscale pictures for pretraining the medical denoiser: the photos and textures that
ship in installed packages (scikit-image's data, scikit-learn's sample images, matplotlib's
sample data, OpenCV's docs data, slimvision's own samples), as a :class:`CropPool` source.

Each picture is read at its own size, converted to grey (BT.601 luma) and scaled to [0, 1]; the
training batches then crop, jitter and damage it exactly as they do medical slices. No medical
image may enter: the project's public held-out check (matplotlib's ``s1045`` MRI, pydicom's
``CT_small`` / ``MR_small``) is refused by content with
:func:`~slimvision.data.medical_sources.public_check_fingerprints` whatever its file is called,
and the packages' few medical-looking pictures (a CT phantom, retina photos, a histology slide)
are refused by name. A file that does not decode is skipped with a warning.

Example:
    >>> found = generic_slices()                                   # doctest: +SKIP
    >>> sorted(found)                                              # doctest: +SKIP
    ['generic-matplotlib', 'generic-opencv-doc', 'generic-scikit-image', 'generic-scikit-learn']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from slimvision.data.medical_sources import MIN_SIDE, SAME_IMAGE, fingerprint, public_check_fingerprints
from slimvision.errors import ConfigError, SlimvisionError

log = logging.getLogger(__name__)

#: The ``--sources`` name of this pool.
GENERIC = "generic"
#: Suffixes read as pictures (everything else in the folders is code, text or data).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".bmp", ".webp")
#: File stems of medical (or medical-looking) pictures in those folders, never taken: scikit-image's
#: Shepp-Logan CT phantom, its retina photos and its immunohistochemistry slide.
MEDICAL_STEMS = frozenset({"phantom", "retina", "microaneurysms", "ihc"})


def generic_folders() -> list[tuple[str, Path]]:
    """(package, folder) of every installed package that ships pictures (see
    :func:`slimvision.data.style_images.photo_folders`)."""
    from slimvision.data.style_images import photo_folders

    return photo_folders()


def generic_slices(folders: Sequence[tuple[str, Path]] | None = None, *, max_pixels: int = 25_000_000
                   ) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every generic picture as an (H, W) float32 grey image in [0, 1], by ``generic-PACKAGE``
    source, as (file name, pixels) pairs (the form :class:`CropPool` takes).

    A picture is dropped when it does not decode (warning), is medical (by content: the public
    held-out check, flipped or not; by name: :data:`MEDICAL_STEMS`), is flat, is smaller than
    ``MIN_SIDE`` px, or repeats a picture already taken (slimvision's samples copy
    scikit-image's).

    Raises:
        ConfigError: no picture was found (one line).
    """
    from slimvision.io.images import load_image, to_gray

    folders = generic_folders() if folders is None else folders
    prints = public_check_fingerprints()
    taken: list[np.ndarray] = []
    found: dict[str, list[tuple[str, np.ndarray]]] = {}
    for package, folder in folders:
        pictures: list[tuple[str, np.ndarray]] = []
        for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
            if not path.name.lower().endswith(IMAGE_SUFFIXES) or path.stem.lower() in MEDICAL_STEMS:
                continue
            try:
                grey = to_gray(load_image(path, max_pixels=max_pixels)).astype(np.float32) / 255.0
            except (SlimvisionError, OSError, ValueError) as error:
                log.warning("%s: skipped, it does not decode (%s)", path, error)
                continue
            if min(grey.shape) < MIN_SIDE or float(grey.std()) < 1e-3:
                continue
            print_ = fingerprint(grey)
            if np.abs(prints @ print_).max() > SAME_IMAGE:
                log.warning("%s matches a public held-out image; left out", path)
                continue
            if taken and np.abs(np.stack(taken) @ print_).max() > 0.999:
                continue  # the same picture again
            taken.append(print_)
            pictures.append((path.name, grey))
        if pictures:
            found[f"{GENERIC}-{package}"] = pictures
    if not found:
        where = ", ".join(str(folder) for _, folder in folders) or "no package folder found"
        raise ConfigError(f"no generic pictures to train on ({where}); install scikit-image or scikit-learn")
    return found
