"""The U-Net VAE at a slice's own size, noise-bounded denoising, and ``vae denoise`` in the file's own values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from slimvision.cli.main import main
from slimvision.inference.vae import DEMO_DENOISER, MedicalVAE
from slimvision.inference.vae_native import (FLAT_SPREAD, bounded_denoise, flat_median_fill, kept_spread, noise_sigma,
                                             run_native)
from slimvision.metrics import ssim
from tests.cli.helpers import one_line_error

pytestmark = pytest.mark.skipif(not (DEMO_DENOISER / "autoencoder.onnx").is_file(), reason="no shipped denoiser")


def _phantom(height: int = 72, width: int = 90) -> np.ndarray:
    """A smooth head-like slice in [0, 1]: a bright ellipse with a darker one inside, on black."""
    y, x = np.mgrid[:height, :width] / np.array([height, width])[:, None, None]
    outer = ((x - 0.5) / 0.4) ** 2 + ((y - 0.5) / 0.42) ** 2 < 1
    inner = ((x - 0.55) / 0.15) ** 2 + ((y - 0.45) / 0.2) ** 2 < 1
    return np.where(outer, 0.7 - 0.3 * inner + 0.1 * np.sin(9 * x), 0.0).astype(np.float32)


@pytest.fixture(scope="module")
def vae() -> MedicalVAE:
    return MedicalVAE(DEMO_DENOISER)


def test_the_native_graph_computes_what_the_shipped_one_does_at_its_size(vae):
    square = _phantom(128, 128)
    shipped = vae.autoencode(square[None])[0][0]
    native = vae._restore_native(square, None)
    assert np.abs(shipped - native).max() < 1e-4


def test_a_size_that_is_no_multiple_of_32_comes_back_at_its_size(vae):
    pixels = _phantom(45, 70)
    restored = vae.restore_slice(pixels)
    assert restored.shape == (45, 70) and restored.dtype == np.float32 and np.isfinite(restored).all()


def test_padding_and_tiles_give_back_every_pixel():
    pixels = np.random.default_rng(0).random((100, 200)).astype(np.float32)
    seen = []

    def network(image: np.ndarray, known: np.ndarray) -> np.ndarray:
        seen.append(image.shape)
        assert image.shape[2] % 32 == 0 and image.shape[3] % 32 == 0 and known.shape == image.shape
        return image

    assert np.allclose(run_native(network, pixels, np.ones_like(pixels)), pixels)
    assert np.allclose(run_native(network, pixels, np.ones_like(pixels), max_side=160), pixels, atol=1e-6)
    assert len(seen) > 2                                                 # the second run was tiled


def test_known_pixels_are_kept_exactly(vae):
    pixels = _phantom()
    kept = np.random.default_rng(1).random(pixels.shape) < 0.4
    restored = vae.restore_slice(np.where(kept, pixels, 0.0), kept)
    assert np.array_equal(restored[kept], pixels[kept])
    assert ssim(pixels, restored) > ssim(pixels, np.where(kept, pixels, 0.0))


def test_a_clean_slice_passes_through_and_a_noisy_one_is_denoised(vae):
    clean = _phantom()
    assert noise_sigma(clean) < 0.01
    assert ssim(clean, vae.restore_slice(clean)) >= 0.97
    noisy = np.clip(clean + np.random.default_rng(2).normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    assert ssim(clean, vae.restore_slice(noisy)) > ssim(clean, noisy)


def test_noise_is_measured_and_bounds_the_change():
    rng = np.random.default_rng(3)
    smooth = np.tile(np.linspace(0.2, 0.8, 200, dtype=np.float32), (200, 1))
    noisy = smooth + rng.normal(0, 0.03, smooth.shape).astype(np.float32)
    assert noise_sigma(smooth) < 0.002
    assert 0.025 < noise_sigma(noisy) < 0.035
    assert np.array_equal(bounded_denoise(smooth, smooth + 0.3), smooth)   # no noise: nothing moves
    moved = bounded_denoise(noisy, smooth, sigma=0.03)
    assert np.abs(moved - smooth).mean() < np.abs(noisy - smooth).mean() / 5


def test_noise_estimate_is_not_inflated_by_edges_or_texture():
    # Immerkaer's kernel is the product of the row and column second differences: planes, straight
    # edges along an axis and slow texture give (almost) no response, so strong edges inflate the
    # estimate little (docs/vae.md: edge-excluding estimators measured no better on real slices).
    y, x = np.mgrid[0:160, 0:160].astype(np.float32)
    edges = 0.2 + 0.1 * x / 160
    edges = np.where((x - 60) ** 2 + (y - 70) ** 2 < 35 ** 2, 0.7 + 0.05 * y / 160, edges)
    edges = np.where((x > 100) & (y > 20) & (y < 140), 0.45, edges)
    edges = np.where(np.abs(x - y) < 6, 0.9, edges).astype(np.float32)
    texture = (0.5 + 0.15 * np.sin(2 * np.pi * x / 12) * np.sin(2 * np.pi * y / 15)
               + 0.1 * np.sin(2 * np.pi * (x + 2 * y) / 40)).astype(np.float32)
    assert noise_sigma(edges) < 0.001 and noise_sigma(texture) < 0.001
    for std in (0.01, 0.05):
        noise = np.random.default_rng(4).normal(0, std, edges.shape).astype(np.float32)
        for image in (edges, texture):
            assert abs(noise_sigma(image + noise) / std - 1) < 0.15


def test_a_16_bit_png_comes_back_16_bit_in_its_own_values(tmp_path, capsys):
    raw = np.rint(1000 + _phantom() * 40000).astype(np.uint16)
    Image.fromarray(raw).save(tmp_path / "slice.png")
    mask = np.zeros(raw.shape, np.uint8)
    mask[20:30, 30:50] = 255
    Image.fromarray(mask).save(tmp_path / "holes.png")
    assert main(["vae", "denoise", str(tmp_path / "slice.png"), "-o", str(tmp_path / "out.png"),
                 "--mask", str(tmp_path / "holes.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.dtype == np.uint16 and out.shape == raw.shape
    assert np.array_equal(out[mask == 0], raw[mask == 0])                  # intact pixels, bit for bit
    assert raw.min() <= out.min() and out.max() <= raw.max()
    assert "16-bit PNG in the input's values" in capsys.readouterr().out
    assert main(["vae", "denoise", str(tmp_path / "slice.png"), "-o", str(tmp_path / "clean.png")]) == 0
    clean = np.asarray(Image.open(tmp_path / "clean.png")).astype(np.float64)
    assert ssim(raw / 65535.0, clean / 65535.0) >= 0.97


@pytest.mark.parametrize("name, content", [("broken.png", b"\x89PNG\r\n\x1a\nnot really"),
                                           ("broken.dcm", b"\0" * 128 + b"DICM" + b"\x02\x00"),
                                           ("notes.txt", b"hello")])
def test_a_broken_or_unknown_file_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    assert main(["vae", "denoise", str(tmp_path / name), "-o", str(tmp_path / "out.png")]) != 0
    assert name in one_line_error(capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == [name]


def test_a_dicom_comes_back_as_a_dicom_in_its_stored_values(tmp_path, capsys):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small.dcm")
    original = pydicom.dcmread(source)
    mask = np.zeros(original.pixel_array.shape, np.uint8)
    mask[20:30, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "holes.png")
    assert main(["vae", "denoise", source, "-o", str(tmp_path / "out.dcm"), "--mask", str(tmp_path / "holes.png")]) == 0
    written = pydicom.dcmread(tmp_path / "out.dcm")
    assert written.pixel_array.dtype == original.pixel_array.dtype
    assert np.array_equal(written.pixel_array[mask == 0], original.pixel_array[mask == 0])
    assert written.PatientName == original.PatientName and written.SOPInstanceUID != original.SOPInstanceUID
    Image.fromarray(mask).save(tmp_path / "slice.png")
    assert main(["vae", "denoise", str(tmp_path / "slice.png"), "-o", str(tmp_path / "x.dcm")]) != 0
    assert "x.dcm" in one_line_error(capsys) and not (tmp_path / "x.dcm").exists()


def test_a_nifti_volume_comes_back_as_one_volume_in_its_values(tmp_path, capsys):
    nibabel = pytest.importorskip("nibabel")
    volume = np.zeros((48, 40, 6), np.uint16)
    for index in range(1, 5):                                            # slices 0 and 5 are empty
        volume[:, :, index] = np.rint(200 + _phantom(40, 48).T * (3000 + 100 * index))
    affine = np.diag([-1.0, 1.0, 2.0, 1.0])                              # not RAS: the reader reorients
    nibabel.save(nibabel.Nifti1Image(volume, affine), tmp_path / "head.nii.gz")
    assert main(["vae", "denoise", str(tmp_path / "head.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) == 0
    written = nibabel.load(tmp_path / "out.nii.gz")
    source = nibabel.as_closest_canonical(nibabel.load(tmp_path / "head.nii.gz"))
    assert written.get_data_dtype() == np.uint16 and written.shape == volume.shape
    assert np.allclose(written.affine, source.affine)
    # Clean, noise-free slices pass through: every voxel, in its place, unchanged.
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(source.dataobj))
    assert "NIfTI volume" in capsys.readouterr().out
    assert main(["vae", "denoise", str(tmp_path / "head.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) != 0


def test_kept_spread_is_the_std_of_the_kept_neighbours_only():
    rng = np.random.default_rng(3)
    pixels = rng.random((9, 11)).astype(np.float32)
    kept = rng.random(pixels.shape) < 0.5
    kept[0:3, 0:3] = False  # a window with no kept pixel: spread inf
    spread = kept_spread(pixels, kept)
    for y, x in [(4, 5), (7, 1), (0, 10)]:
        window = (slice(max(y - 2, 0), y + 3), slice(max(x - 2, 0), x + 3))
        values = pixels[window][kept[window]]
        assert spread[y, x] == pytest.approx(values.std() if values.size else np.inf, abs=1e-6)
    assert np.isinf(spread[0, 0])


def test_flat_neighbourhoods_take_the_median_and_textured_ones_keep_the_network():
    y, x = np.mgrid[:40, :40]
    texture = np.random.default_rng(1).uniform(0.2, 0.8, x.shape)  # std 0.17: never flat
    pixels = np.where(x < 20, 0.5, texture).astype(np.float32)  # flat | textured
    kept = np.random.default_rng(0).random(pixels.shape) < 0.4
    network = np.full_like(pixels, 0.9)  # a fill that is wrong everywhere
    filled = flat_median_fill(pixels, kept, np.where(kept, pixels, network), below=0.05)
    assert np.array_equal(filled[kept], pixels[kept])
    flat_side, textured_side = ~kept & (x < 17), ~kept & (x > 22)
    assert np.allclose(filled[flat_side], 0.5) and np.allclose(filled[textured_side], 0.9)
    off = flat_median_fill(pixels, kept, np.where(kept, pixels, network), below=0.0)
    assert np.allclose(off[~kept], 0.9)


def test_the_gate_is_what_restore_slice_applies_and_0_turns_it_off(vae):
    pixels = _phantom()
    kept = np.random.default_rng(1).random(pixels.shape) < 0.4
    damaged = np.where(kept, pixels, 0.0)
    vae.flat_spread = 0.0
    try:
        plain = vae.restore_slice(damaged, kept)
    finally:
        vae.flat_spread = FLAT_SPREAD
    gated = vae.restore_slice(damaged, kept)
    assert np.array_equal(gated, flat_median_fill(damaged, kept, plain, FLAT_SPREAD))
    assert not np.array_equal(gated, plain)  # the phantom's flat interior is gated


def test_the_cli_defaults_are_the_library_defaults():
    from slimvision.cli import vae as cli_vae
    from slimvision.cli.main import build_parser
    from slimvision.inference.vae import DENOISER

    args = build_parser().parse_args(["vae", "denoise", "in.png", "-o", "out.png"])
    assert args.flat_median_below == FLAT_SPREAD
    assert cli_vae.DENOISER == DENOISER  # the CLI names it without importing inference at start-up


def test_noise_clipped_at_the_range_ends_is_left_out_of_the_estimate():
    # Half the slice is black background, a tenth is white (a CT window's bone): noise added and
    # clipped to [0, 1] there is shrunk, and counting it read about 0.6x the noise on MNI152.
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:200, 0:200].astype(np.float32)
    slice_ = np.where(x < 100, 0.0, 0.3 + 0.3 * y / 200)
    slice_ = np.where((x > 150) & (y < 20), 1.0, slice_).astype(np.float32)
    for std in (0.02, 0.05):
        noisy = np.clip(slice_ + rng.normal(0, std, slice_.shape), 0, 1).astype(np.float32)
        assert abs(noise_sigma(noisy) / std - 1) < 0.1
    assert noise_sigma(np.zeros((50, 50), np.float32)) == 0.0  # all background: nothing to measure
