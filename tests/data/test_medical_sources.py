"""Real scans from installed packages, held out by source; the public held-out check never enters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from slimvision.data.corruption import NOISE_KINDS, Corruption, add_noise, add_noise_of_kind, corrupt, jitter_intensity
from slimvision.data.medical_sources import (PUBLIC_CHECK, SOURCES, CropPool, MedicalSource, held_out_sources,
                                             matches_public_check, public_check_fingerprints, resolve_sources,
                                             source_slices, training_sources)
from slimvision.errors import ConfigError, MissingAssetError

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("nibabel")
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _installed(name: str) -> bool:
    return importlib.util.find_spec(SOURCES[name].module) is not None


def test_every_source_names_its_package_licence_and_files_and_the_split_is_by_source():
    for name, source in SOURCES.items():
        assert source.name == name and source.package and source.licence and source.files and source.modality
    assert set(training_sources()).isdisjoint(held_out_sources())
    assert set(training_sources()) | set(held_out_sources()) == set(SOURCES)
    assert {"pydicom-ct-head", "dipy-t1", "nibabel-anat"} <= set(held_out_sources())
    assert resolve_sources(["train", "mni152"]) == training_sources()
    with pytest.raises(ConfigError, match="unknown medical source 'brainweb'"):
        resolve_sources(["brainweb"])


def test_a_missing_package_is_one_line_naming_what_to_install(monkeypatch):
    ghost = MedicalSource("ghost", "ghost-data", "ghost_data_module_xyz", "data", ("a.dcm",), "CT", "none", "none")
    with pytest.raises(MissingAssetError, match="pip install ghost-data"):
        ghost.paths()


def test_re_encodings_of_the_public_check_are_recognised_by_content():
    prints = public_check_fingerprints()
    assert len(prints) == 2 * len(PUBLIC_CHECK)
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                 "MR_small_implicit.dcm", "MR_small_padded.dcm", "CT_small.dcm"):
        pixels = pydicom.dcmread(DICOM_FILES / name).pixel_array.astype(np.float32)
        assert matches_public_check(pixels, prints), name
        assert matches_public_check(pixels * 3.5 + 100, prints)          # another scale and offset
    other = pydicom.dcmread(DICOM_FILES / "693_J2KI.dcm").pixel_array.astype(np.float32)
    assert not matches_public_check(other, prints)


def test_a_source_holding_a_public_check_file_gives_none_of_its_slices(monkeypatch):
    sneaky = MedicalSource("sneaky", "pydicom", "pydicom", "data/test_files",
                           ("MR_small_RLE.dcm", "MR_small_bigendian.dcm", "examples_overlay.dcm"), "MRI", "test", "MIT")
    monkeypatch.setitem(SOURCES, "sneaky", sneaky)
    found = source_slices(["sneaky"])
    assert [label for label, _ in found["sneaky"]] == ["examples_overlay.dcm#0"]


def test_the_training_set_holds_no_public_check_image():
    """The hard rule: every installed training source, every slice, compared by content."""
    names = [name for name in training_sources() if _installed(name)]
    prints = public_check_fingerprints()
    found = source_slices(names, split="train")
    assert sum(len(slices) for slices in found.values()) > 100
    for name, slices in found.items():
        for label, pixels in slices:
            assert not matches_public_check(pixels, prints), f"{name}: {label}"


def test_mni152_and_its_tissue_maps_follow_the_slice_block_split():
    if not _installed("mni152"):
        pytest.skip("nilearn is not installed")
    train = source_slices(["mni152"], split="train")["mni152"]
    test = source_slices(["mni152"], split="test")["mni152"]
    assert len(train) == 368 and len(test) == 100
    assert not {label for label, _ in train} & {label for label, _ in test}


def test_crops_are_square_at_the_slices_own_resolution_and_follow_the_weights():
    wide = np.tile(np.linspace(0, 1, 300, dtype=np.float32), (40, 1))        # 40 x 300, a ramp
    small = np.full((20, 10), 0.5, np.float32)
    pool = CropPool({"wide": [("w", wide)], "small": [("s", small)]}, weights={"wide": 3.0, "small": 1.0})
    np.testing.assert_allclose(pool.chance, [0.75, 0.25])
    crops = pool.crops(np.random.default_rng(0), 400, 64)
    assert crops.shape == (400, 64, 64) and crops.dtype == np.float32
    from_small = [crop for crop in crops if np.isclose(crop.max(), 0.5) and crop.min() == 0]
    assert 60 < len(from_small) < 140
    assert all((crop == 0.5).sum() == 200 for crop in from_small)          # pasted whole, not resized
    ramp = next(crop for crop in crops if crop.max() > 0.5)
    steps = np.diff(ramp[0][ramp[0] > 0])
    np.testing.assert_allclose(steps, 1 / 299, atol=1e-5)                  # native pixel spacing kept
    with pytest.raises(ConfigError, match="no training slices"):
        CropPool({"empty": []})


def test_noise_models_stay_in_range_and_gaussian_alone_keeps_the_old_random_stream():
    image = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    for kind in NOISE_KINDS:
        noisy = add_noise_of_kind(image, kind, 0.05, np.random.default_rng(1))
        assert noisy.shape == image.shape and 0 <= noisy.min() and noisy.max() <= 1
        assert 0.01 < float(np.std(noisy - image)) < 0.1, kind
    rician = add_noise_of_kind(np.zeros((64, 64), np.float32), "rician", 0.05, np.random.default_rng(1))
    assert rician.mean() > 0.03                                             # Rician noise lifts the black background
    np.testing.assert_array_equal(add_noise_of_kind(image, "gaussian", 0.05, np.random.default_rng(2)),
                                  add_noise(image, 0.05, np.random.default_rng(2)))
    old = corrupt(image, Corruption(), np.random.default_rng(3))
    mixed = corrupt(image, Corruption(noise_kinds="gaussian,poisson"), np.random.default_rng(3))
    assert old[1].shape == mixed[1].shape
    with pytest.raises(ConfigError, match="unknown noise model"):
        Corruption(noise_kinds="gaussian,speckle").validate()


def test_intensity_jitter_keeps_black_black_and_values_in_range():
    rng = np.random.default_rng(0)
    image = np.zeros((48, 48), np.float32)
    image[10:40, 8:30] = np.linspace(0.2, 1, 22, dtype=np.float32)
    outputs = [jitter_intensity(image, rng) for _ in range(20)]
    for out in outputs:
        assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        assert (out[image == 0] == 0).all()
    assert np.std([out[20, 20] for out in outputs]) > 0.02                  # the contrast really changes
