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


# ------------------------------------------------------------------ damaged and hostile files
def _nifti_header_only(path: Path, shape: tuple[int, ...], dtype=np.uint8, data: bytes = b"") -> Path:
    """A NIfTI file whose header declares ``shape`` but that holds only ``data`` (a bomb or a cut file)."""
    import gzip

    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    raw = header.binaryblock + b"\0" * 4 + data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def test_a_nifti_declaring_a_huge_volume_is_refused_from_its_header(tmp_path, monkeypatch):
    from slimvision.errors import ImageTooLargeError

    # 2000 x 2000 x 500 voxels declared in a ~1 kB .nii.gz: would be 8 GB as float32.
    bomb = _nifti_header_only(tmp_path / "bomb.nii.gz", (2000, 2000, 500), data=bytes(4096))
    decoded = []
    monkeypatch.setattr(nibabel, "as_closest_canonical", lambda image: decoded.append(image) or image)
    with pytest.raises(ImageTooLargeError, match=r"bomb\.nii\.gz: its header says shape 2000 x 2000 x 500 = 2000 M "
                                                 r"voxels, above the limit of 134 M \(raise --max-voxels"):
        read_medical(bomb)
    # The size of the report's 130 kB file: 200 M voxels took 2.4 GB to read before the check.
    with pytest.raises(ImageTooLargeError, match="200 M voxels"):
        read_medical(_nifti_header_only(tmp_path / "report.nii.gz", (1000, 1000, 200), data=bytes(4096)))
    assert decoded == []  # refused before nibabel was asked for a voxel
    with pytest.raises(ImageTooLargeError, match=r"slices of up to 4\.0 MP, above the limit of 1\.0 MP"):
        read_medical(bomb, max_pixels=1_000_000, max_voxels=None)
    small = _volume(tmp_path)
    with pytest.raises(ImageTooLargeError, match="479 M voxels|0 M voxels, above the limit of 0 M"):
        read_medical(small, max_voxels=100)
    assert len(read_medical(small, max_pixels=80, max_voxels=480)) == 9  # the largest slice is 8 x 10


@pytest.mark.parametrize("name, shape, data, problem", [
    ("empty.nii", None, b"", "not a readable NIfTI volume (ImageFileError: Empty file"),
    ("empty.nii.gz", None, b"", "not a readable NIfTI volume"),
    ("flat.nii", (0, 4, 4), b"", "holds no pixels: its header says shape 0 x 4 x 4"),
    ("timeless.nii.gz", (4, 4, 4, 0), b"", "holds no pixels: its header says shape 4 x 4 x 4 x 0"),
    ("cut.nii", (64, 64, 64), bytes(1000), "not a readable NIfTI volume (OSError: Expected 262144 bytes"),
    ("line.nii", (64,), bytes(64), "expected a 3-D volume, its header says shape (64,)"),
])
def test_empty_cut_and_flat_nifti_files_are_one_line_errors(tmp_path, name, shape, data, problem):
    path = tmp_path / name
    if shape is None:
        path.write_bytes(b"")
    else:
        _nifti_header_only(path, shape, data=data)
    with pytest.raises(InputError) as caught:
        read_medical(path)
    assert str(caught.value).startswith(f"{path}: {problem}") and "\n" not in str(caught.value)


def test_colour_and_complex_nifti_voxels_are_refused(tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nibabel.save(nibabel.Nifti1Image(rgb, np.eye(4)), tmp_path / "rgb.nii")
    nibabel.save(nibabel.Nifti1Image(np.ones((4, 4, 4), np.complex64), np.eye(4)), tmp_path / "phase.nii")
    for name in ("rgb.nii", "phase.nii"):
        with pytest.raises(InputError, match=rf"{name}: holds .* voxels \(colour or complex\); expected grey values"):
            read_medical(tmp_path / name)


def _small_dicom(path: Path, replace: tuple[bytes, bytes] | None = None, **tags) -> Path:
    """An 8 x 8 16-bit CT DICOM with ``tags``; ``replace`` swaps one unique byte string for
    another of the same length afterwards (how a damaged tag is made: pydicom refuses to write one)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Rows = dataset.Columns = 8
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    for key, value in tags.items():
        setattr(dataset, key, value)
    dataset.save_as(path, enforce_file_format=True)
    if replace is not None:
        old, new = replace
        data = path.read_bytes()
        assert data.count(old) == 1 and len(old) == len(new)
        path.write_bytes(data.replace(old, new))
    return path


@pytest.mark.parametrize("tag, text, problem", [
    ("RescaleSlope", b"abc   ", "DICOM tag RescaleSlope is 'abc', not a finite number"),
    ("RescaleIntercept", b"inf   ", "DICOM tag RescaleIntercept is 'inf', not a finite number"),
    ("RescaleIntercept", b"nan   ", "DICOM tag RescaleIntercept is 'nan', not a finite number"),
    ("Rows", b"(\x00\x10\x00US\x02\x00\x00\x00", "holds no pixels: its header says rows x columns 0 x 8"),
])
def test_dicom_numeric_tags_that_are_not_numbers_are_one_line_errors(tmp_path, tag, text, problem):
    placeholder = {"Rows": 8}.get(tag, "-7.125")  # unique bytes in the file, replaced by ``text``
    raw = b"(\x00\x10\x00US\x02\x00\x08\x00" if tag == "Rows" else b"-7.125"  # (0028,0010) US 2 bytes: 8
    path = _small_dicom(tmp_path / "odd.dcm", (raw, text), **{tag: placeholder})
    with pytest.raises(InputError) as caught:
        read_medical(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_dicom_frames_rows_and_window_tags_are_checked(tmp_path, caplog):
    from slimvision.errors import ImageTooLargeError

    huge = _small_dicom(tmp_path / "huge.dcm", Rows=60000, Columns=60000)   # 128 bytes of pixels, 3.6 GP declared
    with pytest.raises(ImageTooLargeError, match=r"huge\.dcm: its header says rows x columns 60000 x 60000"):
        read_medical(huge)
    frames = _small_dicom(tmp_path / "frames.dcm", (b"IS\x02\x001 ", b"IS\x02\x00zz"), NumberOfFrames="1")
    with pytest.raises(InputError, match=r"frames\.dcm: DICOM tag NumberOfFrames is 'zz', not a whole number"):
        read_medical(frames)
    bits = _small_dicom(tmp_path / "bits.dcm", BitsStored=40)               # more bits stored than allocated
    with pytest.raises(InputError, match=r"bits\.dcm: DICOM pixel data cannot be decoded \(ValueError: .*Bits Stored"):
        read_medical(bits)
    window = _small_dicom(tmp_path / "window.dcm", (b"40.25 ", b"x\\y   "), WindowCenter="40.25", WindowWidth="400")
    with caplog.at_level(logging.WARNING):
        assert read_medical(window)[0].pixels.shape == (8, 8)                  # the window is not needed
    assert "ignoring its WindowCenter/WindowWidth" in caplog.text
    with pytest.raises(InputError, match=r"window\.dcm: has no WindowCenter/WindowWidth \(or none usable\)"):
        read_medical(window, intensity=Intensity(mode="dicom-window"))


def test_plain_images_honour_the_callers_limit_not_pillows(tmp_path, monkeypatch):
    """The VAE's PNG reader: --max-pixels decides, before decoding; Pillow's global limit never fires."""
    from slimvision.errors import ImageTooLargeError

    path = tmp_path / "slice.png"
    Image.fromarray(np.full((30, 40), 7, np.uint16)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)       # Pillow would refuse (or warn about) 1200 pixels
    (piece,) = read_medical(path, max_pixels=1200)
    assert piece.pixels.shape == (30, 40)
    with pytest.raises(ImageTooLargeError, match=r"slice\.png: image is 40x30 = 1,200 pixels, above the limit"):
        read_medical(path, max_pixels=1199)
    cut = tmp_path / "cut.png"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(cut)
    cut.write_bytes(cut.read_bytes()[:len(cut.read_bytes()) // 2])
    with pytest.raises(InputError, match=r"cut\.png: image data is truncated or corrupt"):
        read_medical(cut)


def test_the_cli_reports_damaged_medical_files_in_one_line(tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.inference.vae import DEMO_DENOISER

    if not DEMO_DENOISER.is_dir():
        pytest.skip("this install ships no VAE model")
    bomb = _nifti_header_only(tmp_path / "bomb.nii.gz", (2000, 2000, 500), data=bytes(4096))
    slope = _small_dicom(tmp_path / "slope.dcm", (b"-7.125", b"abc   "), RescaleSlope="-7.125")
    empty = tmp_path / "empty.nii"
    empty.write_bytes(b"")
    for path, problem in ((bomb, "its header says shape 2000 x 2000 x 500"),
                          (slope, "DICOM tag RescaleSlope is 'abc'"), (empty, "not a readable NIfTI volume")):
        capsys.readouterr()
        assert main(["vae", "denoise", str(path), "-o", str(tmp_path / "out.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {path}: {problem}") and len(err.splitlines()) == 1


def test_vae_commands_pass_max_pixels_to_the_reader(tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.inference.vae import DEMO_DENOISER
    from slimvision.io.images import DEFAULT_MAX_PIXELS

    if not DEMO_DENOISER.is_dir():
        pytest.skip("this install ships no VAE model")
    from slimvision.cli.main import build_parser

    from slimvision.io.medical import DEFAULT_MAX_VOXELS

    defaults = build_parser().parse_args(["vae", "denoise", "x.png", "-o", "y.png"])
    assert defaults.max_pixels == DEFAULT_MAX_PIXELS and defaults.max_voxels == DEFAULT_MAX_VOXELS
    volume = _volume(tmp_path)                                          # 6 x 8 x 10 = 480 voxels
    assert main(["vae", "denoise", str(volume), "-o", str(tmp_path / "v"), "--max-voxels", "479"]) == 2
    assert "= 0 M voxels, above the limit of 0 M (raise --max-voxels" in capsys.readouterr().err
    path = tmp_path / "slice.png"
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(path)
    assert main(["vae", "denoise", str(path), "-o", str(tmp_path / "a.png"), "--max-pixels", "1199"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {path}: image is 40x30 = 1,200 pixels, above the limit of 1,199 pixels "
                                               "(raise max_pixels to allow it)")
    assert main(["vae", "denoise", str(path), "-o", str(tmp_path / "b.png"), "--max-pixels", "1200"]) == 0
    assert main(["vae", "eval", str(path), "--max-pixels", "100"]) == 2
    assert "above the limit" in capsys.readouterr().err
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(mask)
    assert main(["vae", "denoise", str(path), "-o", str(tmp_path / "c.png"), "--mask", str(mask),   # the mask too
                 "--max-pixels", "1300"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {mask}: image is 40x40")
