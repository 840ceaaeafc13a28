"""``slimvision vae``: train on generated files, export, eval, denoise, augment (+ replay) and sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from slimvision.cli.main import main
from tests.cli.helpers import exit_code

nibabel = pytest.importorskip("nibabel")


def _slices(folder, count: int = 8, size: int = 40) -> list:
    """Grey PNGs of bright ellipses on black (40 px: the CLI squares them to the model's 32)."""
    folder.mkdir(parents=True)
    y, x = np.mgrid[:size, :size]
    paths = []
    for index in range(count):
        radius = 8 + index
        image = (((x - 20) / radius) ** 2 + ((y - 20) / (radius * 0.8)) ** 2 < 1) * (120 + 10 * index)
        paths.append(folder / f"slice{index}.png")
        Image.fromarray(image.astype(np.uint8)).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae-cli")
    _slices(root / "data")
    run = root / "run"
    assert main(["vae", "train", str(root / "data"), "-o", str(run), "--image-size", "32", "--latent-dim", "4",
                 "--epochs", "2", "--batch-size", "4", "--sample-every", "1", "--holdout", str(root / "data"),
                 "-q"]) == 0
    return root, run


def test_training_writes_weights_onnx_samples_curves_and_scores(trained, capsys):
    root, run = trained
    for name in ("vae/model.safetensors", "vae/config.json", "export/encoder.card.json", "export/encoder.onnx",
                 "export/decoder.onnx", "losses.png", "metrics.json", "samples/epoch-0002.png"):
        assert (run / name).is_file(), name
    assert main(["vae", "export", str(run), "-o", str(root / "int8"), "--int8-weights"]) == 0
    assert (root / "int8" / "encoder.onnx").stat().st_size < (run / "export" / "encoder.onnx").stat().st_size / 2
    capsys.readouterr()
    assert main(["vae", "eval", str(root / "data"), "--model", str(run / "export"), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["slices"] == 8 and scores["keep"] == 0.4 and 0 < scores["clean_ssim"] <= 1
    assert 0 < scores["damaged_ssim"] < 1 and np.isfinite(scores["inpainted_psnr"])


def test_denoise_keeps_intact_pixels_with_a_mask_and_cuts_volumes_into_slices(trained, tmp_path):
    root, run = trained
    source = root / "data" / "slice3.png"
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "restored.png"
    assert main(["vae", "denoise", str(source), "-o", str(out), "--model", str(run / "export"),
                 "--mask", str(tmp_path / "mask.png")]) == 0
    before, after = np.asarray(Image.open(source)), np.asarray(Image.open(out))
    assert after.shape[:2] == (40, 40)
    outside = mask == 0
    assert np.array_equal(np.asarray(Image.open(out).convert("L"))[outside], before[outside])
    assert main(["vae", "denoise", str(source), "-o", str(out), "--model", str(run / "export")]) != 0  # exists
    volume = np.zeros((20, 20, 5), np.uint8)
    volume[5:15, 5:15, 1:4] = 200
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "head.nii.gz")
    assert main(["vae", "denoise", str(tmp_path / "head.nii.gz"), "-o", str(tmp_path / "slices"),
                 "--model", str(run / "export")]) == 0
    assert len(list((tmp_path / "slices").glob("*.png"))) == 3          # empty end slices skipped


def test_augment_writes_a_manifest_that_rebuilds_the_same_images(trained, tmp_path):
    root, run = trained
    first, second = tmp_path / "aug", tmp_path / "again"
    assert main(["vae", "augment", str(root / "data"), "-n", "5", "-o", str(first), "--model", str(run / "export"),
                 "--operations", "vary,interpolate,prior", "--seed", "3"]) == 0
    manifest = json.loads((first / "manifest.json").read_text())
    assert len(manifest["entries"]) == 5 and {e["operation"] for e in manifest["entries"]} <= {"vary", "interpolate", "prior"}
    assert all("seed" in e and "sources" in e for e in manifest["entries"])
    assert main(["vae", "augment", "--replay", str(first / "manifest.json"), "-o", str(second)]) == 0
    for entry in manifest["entries"]:
        assert (first / entry["file"]).read_bytes() == (second / entry["file"]).read_bytes(), entry
    assert main(["vae", "augment", str(root / "data"), "-o", str(tmp_path / "bad"), "--model", str(run / "export"),
                 "--operations", "dream"]) != 0
    assert main(["vae", "sample", "-o", str(tmp_path / "grid.png"), "--model", str(run / "export"), "-n", "6",
                 "--columns", "3"]) == 0
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)


def test_bad_inputs_get_one_line_errors(trained, tmp_path, capsys):
    root, run = trained
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 10)
    assert main(["vae", "denoise", str(tmp_path / "broken.dcm"), "-o", str(tmp_path / "x.png"),
                 "--model", str(run / "export")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "broken.dcm" in error and "\n" not in error
    assert not (tmp_path / "x.png").exists()
    assert main(["vae", "train", "-o", str(tmp_path / "run")]) == 2                       # no data
    assert main(["vae", "train", str(root / "data"), "-o", str(run), "--image-size", "32", "--latent-dim", "8",
                 "--epochs", "3", "-q"]) == 2                                           # other settings
    assert "differ" in capsys.readouterr().err
    assert main(["vae", "eval", str(root / "data"), "--model", str(tmp_path)]) == 2     # not an export


def test_a_mask_channel_unet_trains_from_the_cli_and_is_told_the_mask_when_denoising(trained, tmp_path):
    root, _ = trained
    run = tmp_path / "unet"
    assert main(["vae", "train", str(root / "data"), "-o", str(run), "--image-size", "32", "--latent-dim", "4",
                 "--epochs", "1", "--batch-size", "4", "--skip-connections", "--mask-channel", "--l1", "1",
                 "--keep", "0.3,0.7", "--constant-lr", "-q"]) == 0
    card = json.loads((run / "export" / "autoencoder.card.json").read_text())
    assert card["preprocessing"]["model"]["mask_channel"] and sorted(p.name for p in (run / "export").iterdir()) == [
        "autoencoder.card.json", "autoencoder.onnx"]
    saved = json.loads((run / "vae" / "config.json").read_text())
    assert json.dumps(saved).count('"mask_channel": true') == 1
    source = root / "data" / "slice3.png"
    mask = np.zeros((40, 40), np.uint8)
    mask[::2] = 255                                       # every other row is missing
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert main(["vae", "denoise", str(source), "-o", str(tmp_path / "told.png"), "--model", str(run / "export"),
                 "--mask", str(tmp_path / "mask.png")]) == 0
    before, after = np.asarray(Image.open(source)), np.asarray(Image.open(tmp_path / "told.png").convert("L"))
    assert np.array_equal(after[1::2], before[1::2])


def test_outputs_are_checked_whole_and_never_an_input(trained, tmp_path, capsys):
    root, run = trained
    model = ["--model", str(run / "export")]
    volume = np.zeros((20, 20, 5), np.uint8)
    volume[5:15, 5:15, 1:4] = 200
    head = tmp_path / "head.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), head)
    # Three slices into "x.png": refused, not silently a folder named x.png.
    assert main(["vae", "denoise", str(head), "-o", str(tmp_path / "x.png"), *model]) == 2
    error = capsys.readouterr().err.strip()
    assert "x.png: looks like a file name, but this run writes 3 outputs" in error and "\n" not in error
    assert "must end with .nii or .nii.gz" in error  # not '.png', which it ends with
    assert not (tmp_path / "x.png").exists()
    assert main(["vae", "denoise", str(head), "-o", f"{tmp_path / 'x.png'}/", *model]) == 0
    assert len(list((tmp_path / "x.png").glob("head_slice-*.png"))) == 3
    # The mask is an input: never replaced by the output, --overwrite or not.
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(mask)
    before = mask.read_bytes()
    assert main(["vae", "denoise", str(root / "data" / "slice3.png"), "-o", str(mask), "--mask", str(mask),
                 "--overwrite", *model]) == 2
    assert "mask.png: is an input file" in capsys.readouterr().err and mask.read_bytes() == before
    # Replaying a manifest into its own folder would overwrite the manifest it reads.
    first = tmp_path / "aug"
    assert main(["vae", "augment", str(root / "data"), "-n", "2", "-o", str(first), *model]) == 0
    manifest = (first / "manifest.json").read_bytes()
    assert main(["vae", "augment", "--replay", str(first / "manifest.json"), "-o", str(first), "--overwrite"]) == 2
    assert "manifest.json: is an input file" in capsys.readouterr().err
    assert (first / "manifest.json").read_bytes() == manifest
    # A run that would replace one existing image stops before making any.
    second = tmp_path / "aug2"
    second.mkdir()
    name = json.loads(manifest)["entries"][1]["file"]
    (second / name).write_bytes(b"mine")
    assert main(["vae", "augment", "--replay", str(first / "manifest.json"), "-o", str(second)]) == 2
    assert f"{name}: exists" in capsys.readouterr().err
    assert sorted(p.name for p in second.iterdir()) == [name]


@pytest.mark.parametrize("option, value", [("--count", "0"), ("--columns", "-1"), ("--temperature", "nan"),
                                           ("--seed", "-1"), ("--seed", "4294967296")])
def test_sample_refuses_bad_numbers_in_one_line(tmp_path, capsys, option, value):
    assert exit_code(["vae", "sample", "-o", str(tmp_path / "g.png"), option, value]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {option} must be") and "\n" not in error
    assert not (tmp_path / "g.png").exists()


def test_a_run_or_augment_folder_inside_the_data_is_refused(trained, capsys):
    root, run = trained
    before = sorted(p.name for p in (root / "data").iterdir())
    assert main(["vae", "train", str(root / "data"), "-o", str(root / "data" / "run"), "-q"]) == 2
    assert "run: is inside the input folder" in capsys.readouterr().err
    assert main(["vae", "augment", str(root / "data"), "-o", str(root / "data"), "--model", str(run / "export")]) == 2
    assert "data: is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "data").iterdir()) == before


def test_training_never_replaces_the_backbone_weights_it_starts_from(trained, tmp_path, capsys):
    root, run = trained
    weights = tmp_path / "run" / "vae" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes((run / "vae" / "model.safetensors").read_bytes())
    before = weights.read_bytes()
    assert main(["vae", "train", str(root / "data"), "-o", str(tmp_path / "run"), "--backbone-weights", str(weights),
                 "--image-size", "32", "--latent-dim", "4", "--epochs", "1", "-q"]) == 2
    assert "model.safetensors: is an input file" in capsys.readouterr().err
    assert weights.read_bytes() == before


def test_a_nifti_header_nibabel_repairs_still_gives_one_line(tmp_path):
    # Zero voxel spacing makes nibabel log a repair through its own handler and ours: the user
    # saw the same warning twice above the error. Run as a user does, in a fresh process, since
    # nibabel's handler writes to the stderr it found at import.
    import struct
    import subprocess
    import sys
    from pathlib import Path

    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 2, 8)          # uint8 voxels, 8 bits
    struct.pack_into("<f", header, 108, 352.0)         # pixdim all zero: nibabel repairs them
    header[344:348] = b"n+1\0"
    volume = tmp_path / "huge.nii"
    volume.write_bytes(bytes(header) + bytes(1004))
    command = [str(Path(sys.executable).parent / "slimvision"), "vae", "denoise", str(volume),
               "-o", str(tmp_path / "out.png")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {volume}: its header says shape 30000 x 30000 x 30000: slices of up to 900.0 MP, above the "
        "limit of 100.0 MP (raise --max-pixels to allow it)"]


@pytest.mark.parametrize("command, name", [(["denoise", "in.png", "-o", "out.png"], "vae-medmix128-unet"),
                                           (["sample", "-o", "out.png"], "vae-mni128")])
def test_without_a_model_the_registered_vae_is_run(tmp_path, capsys, command, name):
    """The shipped exports are found by registered name: registered on another folder (here a
    missing one), the commands look there and say so."""
    from dataclasses import replace

    from slimvision.assets import LocalPath
    from slimvision.registry import ARTIFACTS

    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "in.png")
    shipped = ARTIFACTS.spec(name)
    with ARTIFACTS.temporarily(replace(shipped, files={"model": LocalPath(tmp_path / "elsewhere")})):
        assert exit_code(["vae", *(str(tmp_path / part) if part.endswith(".png") else part for part in command)]) == 2
    assert "this install has no shipped elsewhere model" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_training_on_packaged_sources_and_warm_starting_from_an_export(trained, tmp_path, capsys):
    """--sources reads real scans from installed packages (here pydicom's abdominal MR) as crops
    at their own size; --init-from starts a run from an exported model's weights."""
    pytest.importorskip("pydicom")
    root, _ = trained
    run = tmp_path / "run"
    flags = ["--image-size", "32", "--latent-dim", "4", "--epochs", "1", "--batch-size", "2", "--sample-every", "1",
             "--holdout", str(root / "data"), "--skip-connections", "--mask-channel", "-q"]
    assert main(["vae", "train", "--sources", "pydicom-mr", "-o", str(run), *flags, "--intensity-augment",
                 "--noise-kinds", "gaussian,rician,poisson"]) == 0
    assert (run / "export" / "autoencoder.onnx").is_file()
    assert main(["vae", "train", "--sources", "pydicom-mr", "-o", str(tmp_path / "warm"), *flags,
                 "--init-from", str(run / "export"), "--freeze-batchnorm"]) == 0
    capsys.readouterr()
    assert exit_code(["vae", "train", "--sources", "brainweb", "-o", str(tmp_path / "x"), *flags]) == 2
    assert "unknown medical source 'brainweb'" in capsys.readouterr().err
    assert exit_code(["vae", "train", "--sources", "pydicom-mr", "--mni152", "-o", str(tmp_path / "y"), *flags]) == 2
    assert "one of: training DATA, --mni152, --sources (got --mni152 and --sources" in capsys.readouterr().err


def test_pretraining_on_generic_pictures_then_fine_tuning_with_the_backbone_frozen_first(trained, tmp_path,
                                                                                        monkeypatch, capsys, caplog):
    """--sources generic: the pictures installed packages ship, in grey, as crops at their own size
    (here a folder of generated textures stands in for them); --freeze-backbone-steps / --unfreeze
    freeze the encoder's backbone for the first steps, then train its top blocks."""
    pytest.importorskip("pydicom")
    import slimvision.data.generic_images as generic

    root, _ = trained
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (50 + 10 * index, 70, 3)).astype(np.uint8)).save(pictures / f"t{index}.png")
    monkeypatch.setattr(generic, "generic_folders", lambda: [("textures", pictures)])
    flags = ["--image-size", "32", "--latent-dim", "4", "--epochs", "1", "--batch-size", "2", "--sample-every", "1",
             "--holdout", str(root / "data"), "--skip-connections", "--mask-channel", "-q"]
    assert main(["vae", "train", "--sources", "generic", "-o", str(tmp_path / "pre"), *flags]) == 0
    assert main(["vae", "train", "--sources", "pydicom-mr", "-o", str(tmp_path / "tuned"), *flags,
                 "--init-from", str(tmp_path / "pre" / "export"), "--freeze-batchnorm",
                 "--freeze-backbone-steps", "1", "--unfreeze", "2"]) == 0
    from slimvision.training.checkpoint import CheckpointStore

    saved = CheckpointStore(tmp_path / "tuned" / "checkpoints").latest_extra()["config"]
    assert saved["finetune"] == {"freeze_backbone_steps": 1, "unfreeze": 2, "backbone_lr_scale": 1.0}
    monkeypatch.setattr(generic, "generic_folders", lambda: [("textures", tmp_path / "pre" / "samples")])
    for picture in (tmp_path / "pre" / "samples").iterdir():
        picture.write_bytes(b"broken")
    capsys.readouterr()
    assert exit_code(["vae", "train", "--sources", "generic", "-o", str(tmp_path / "x"), *flags]) == 2
    error = capsys.readouterr().err
    assert "no generic pictures to train on" in error and "skipped, it does not decode" in caplog.text
