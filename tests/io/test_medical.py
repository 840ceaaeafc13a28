"""Medical image readers: DICOM (pydicom's own files), NIfTI, 8/16-bit images, intensity rules, bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimvision.errors import ConfigError, InputError
from slimvision.io.medical import Intensity, find_medical_files, from_square, read_medical, to_square

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")
DICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def test_ct_values_are_rescaled_to_hounsfield_units_before_the_window():
    dataset = pydicom.dcmread(DICOM_FILES / "CT_small.dcm")
    hounsfield = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    (ct,) = read_medical(DICOM_FILES / "CT_small.dcm", intensity=Intensity.window(center=40, width=400))
    expected = np.clip((hounsfield - (40 - 200)) / 400, 0, 1)
    assert ct.pixels.shape == (128, 128) and ct.pixels.dtype == np.float32
    np.testing.assert_allclose(ct.pixels, expected, atol=1e-6)


def test_mr_files_use_percentiles_by_default_and_their_own_window_on_request():
    (mr,) = read_medical(DICOM_FILES / "MR_small.dcm")
    assert mr.pixels.shape == (64, 64) and 0 <= mr.pixels.min() and mr.pixels.max() == 1
    assert 0.004 < float((mr.pixels == 1).mean()) < 0.02          # the top 0.5% (plus ties) clip to 1
    dataset = pydicom.dcmread(DICOM_FILES / "MR_small.dcm")
    center, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    (windowed,) = read_medical(DICOM_FILES / "MR_small.dcm", intensity=Intensity(mode="dicom-window"))
    np.testing.assert_allclose(windowed.pixels, np.clip((dataset.pixel_array - (center - width / 2)) / width, 0, 1),
                               atol=1e-6)
    with pytest.raises(InputError, match="no WindowCenter"):
        read_medical(DICOM_FILES / "CT_small.dcm", intensity=Intensity(mode="dicom-window"))


def test_corrupt_and_imageless_dicom_files_are_rejected_by_name(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 40)
    with pytest.raises(InputError, match=r"garbage\.dcm: (not a readable DICOM|DICOM file holds no image)"):
        read_medical(garbage)
    cut = tmp_path / "cut.dcm"
    cut.write_bytes((DICOM_FILES / "CT_small.dcm").read_bytes()[:20_000])
    with pytest.raises(InputError, match=r"cut\.dcm: "):
        read_medical(cut)
    with pytest.raises(InputError, match="holds no image"):
        read_medical(DICOM_FILES / "rtplan.dcm")
    with pytest.raises(InputError, match="file not found"):
        read_medical(tmp_path / "missing.dcm")


def _volume(tmp_path: Path) -> Path:
    """A 6 x 8 x 10 volume in RAS orientation: voxel value = 100 * x + 10 * (y % 10) + z; slice z = 0 empty."""
    x, y, z = np.meshgrid(np.arange(6), np.arange(8), np.arange(10), indexing="ij")
    volume = (100 * x + 10 * (y % 10) + z).astype(np.int16)
    volume[:, :, 0] = 0
    path = tmp_path / "head.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), path)
    return path


def test_nifti_volumes_are_cut_along_the_chosen_axis_upper_side_up_and_empty_slices_skipped(tmp_path):
    path = _volume(tmp_path)
    axial = read_medical(path, axis=2, intensity=Intensity(mode="range", low=0, high=1000))
    assert [s.index for s in axial] == list(range(1, 10))            # slice 0 is empty
    first = axial[0].pixels * 1000                                    # z = 1: rows run anterior (y = 7) to posterior
    assert first.shape == (8, 6)
    np.testing.assert_allclose(first[0], 100 * np.arange(6) + 70 + 1, atol=1e-3)
    np.testing.assert_allclose(first[-1], 100 * np.arange(6) + 1, atol=1e-3)
    sagittal = read_medical(path, axis=0, intensity=Intensity(mode="range", low=0, high=1000))
    assert sagittal[0].pixels.shape == (10, 8) and sagittal[0].name == "head.nii.gz#slice-000"


def test_the_mni152_template_that_nilearn_ships_is_read(tmp_path):
    from slimvision.data.medical import is_held_out, mni152_path, mni152_slices

    slices = read_medical(mni152_path(), axis=2)
    assert 100 < len(slices) < 189 and slices[0].pixels.shape == (233, 197)
    test = mni152_slices("test", size=32, axes=(2,))
    assert test.images.shape[1:] == (32, 32) and all(is_held_out(int(n[-3:])) for n in test.names)


def test_eight_and_sixteen_bit_images_and_colour_with_a_warning(tmp_path, caplog):
    gray8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    (eight,) = read_medical(tmp_path / "g8.png")
    np.testing.assert_allclose(eight.pixels, gray8 / 255, atol=1e-6)          # auto: 8-bit by its full range
    gray16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 200 + 1000)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    (sixteen,) = read_medical(tmp_path / "g16.png", intensity=Intensity(mode="percentile", low=0, high=100))
    np.testing.assert_allclose(sixteen.pixels, (gray16 - 1000) / (255 * 200), atol=1e-6)
    Image.fromarray(np.stack([gray8, gray8, gray8], axis=2)).save(tmp_path / "rgb.png")
    with caplog.at_level(logging.WARNING):
        (colour,) = read_medical(tmp_path / "rgb.png")
    assert "converted to grey" in caplog.text
    np.testing.assert_allclose(colour.pixels, gray8 / 255, atol=1e-5)
    (tmp_path / "notes.txt").write_text("x")
    assert find_medical_files(tmp_path) == sorted([tmp_path / "g16.png", tmp_path / "g8.png", tmp_path / "rgb.png"])
    with pytest.raises(InputError, match="not a medical image"):
        read_medical(tmp_path / "notes.txt")


def test_squares_round_trip_and_intensity_rules_are_validated():
    pixels = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    square = to_square(pixels, 60)
    assert square.shape == (60, 60) and square[:10].max() == 0 and square[-10:].max() == 0
    np.testing.assert_array_equal(from_square(square, (40, 60)), pixels)
    assert to_square(pixels, 30).shape == (30, 30)
    with pytest.raises(ConfigError, match="mode"):
        Intensity(mode="auto-magic")
    with pytest.raises(ConfigError, match="below"):
        Intensity(mode="range", low=5, high=1)
    with pytest.raises(ConfigError, match="width"):
        Intensity.window(40, 0)
