"""DCGAN training: one step moves both networks, label smoothing, exact resume, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimvision.errors import ConfigError, InputError
from slimvision.models.gan import DCGANConfig, DCGANDiscriminator, DCGANGenerator
from slimvision.training.gan import DCGANTask, GANTrainingConfig, step_batches, train_dcgan

TINY = DCGANConfig(resolution=16, base_channels=4, latent_dim=8)


def images(count: int = 24) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)


def crops_folder(tmp_path, count: int):
    """``count`` of :func:`images` saved as PNGs in tmp_path/crops, the input of 'gan train'."""
    from PIL import Image

    folder = tmp_path / "crops"
    folder.mkdir()
    for index, picture in enumerate(images(count)):
        Image.fromarray(picture).save(folder / f"{index:02d}.png")
    return folder


def tiny_train_arguments(data, run) -> list[str]:
    """'gan train' on ``data`` into ``run`` with a 16 px, 4-channel DCGAN (no --steps: callers add it)."""
    return ["gan", "train", str(data), "-o", str(run), "--resolution", "16", "--base-channels", "4",
            "--batch-size", "4", "--sample-every", "2", "-q"]


def config(steps: int, **changes) -> GANTrainingConfig:
    return GANTrainingConfig(model=TINY, steps=steps, batch_size=4, checkpoint_every=2, log_every=1, **changes)


def test_one_step_changes_both_networks(tmp_path):
    torch.manual_seed(0)
    before_g = DCGANGenerator(TINY).state_dict()
    before_d = DCGANDiscriminator(TINY).state_dict()
    generator, history = train_dcgan(config(1), images(), tmp_path, progress=False)
    run_dir = tmp_path / "checkpoints"
    assert history.steps == [1] and {"discriminator/loss", "generator/loss"} <= set(history.values)
    after_g = generator.state_dict()
    assert any(not torch.equal(before_g[k], after_g[k]) for k in before_g if k.endswith("weight"))
    from safetensors.torch import load_file
    saved = load_file(str(next(run_dir.glob("step-*")) / "model.safetensors"))
    assert any(not torch.equal(before_d[k], saved["discriminator." + k]) for k in before_d if k.endswith("weight"))


def test_resume_continues_with_the_same_losses(tmp_path):
    straight = train_dcgan(config(4), images(), tmp_path / "straight", progress=False)[1]
    train_dcgan(config(2), images(), tmp_path / "halves", progress=False)
    resumed = train_dcgan(config(4), images(), tmp_path / "halves", progress=False)[1]
    assert resumed.resumed_from == 2 and resumed.steps == [3, 4]
    for key in ("discriminator/loss", "generator/loss"):
        assert resumed.values[key] == pytest.approx(straight.values[key][2:], rel=1e-5)


def test_real_images_are_labelled_below_one():
    discriminator = DCGANDiscriminator(TINY)
    task = DCGANTask(DCGANGenerator(TINY), discriminator, real_label=0.9)
    with torch.no_grad():                       # a discriminator sure of everything: logit +20 for all
        discriminator.logit.weight.zero_()
        discriminator.logit.bias.fill_(20.0)
    loss = task(torch.zeros(2, 3, 16, 16), "discriminator")["loss"].item()
    # real: -0.9 log s(20) - 0.1 log(1 - s(20)) ~ 0.1 * 20 = 2; fake: -log(1 - s(20)) ~ 20
    assert loss == pytest.approx(2.0 + 20.0, abs=0.01)


def test_batches_depend_on_the_step_only_and_span_minus_one_to_one():
    data = images()
    first = list(zip(range(3), step_batches(data, 4, seed=1, start=0)))[2][1]
    again = next(step_batches(data, 4, seed=1, start=2))
    assert torch.equal(first, again) and first.shape == (4, 3, 16, 16)
    assert first.min() >= -1 and first.max() <= 1


def test_bad_images_and_configs_are_refused(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        train_dcgan(config(1), images().astype(np.float32), tmp_path, progress=False)
    with pytest.raises(InputError, match="fewer than one batch"):
        train_dcgan(config(1), images(3), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="real_label"):
        config(1, real_label=0.3)


def test_the_cli_trains_draws_samples_and_resumes(tmp_path, capsys):
    from PIL import Image

    from slimvision.cli.main import main
    from slimvision.models.weights import load_model

    data = crops_folder(tmp_path, 12)
    run = tmp_path / "run"
    arguments = tiny_train_arguments(data, run)
    assert main([*arguments, "--steps", "3"]) == 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-000002.png", "step-000003.png"]
    assert (run / "losses.png").is_file() and isinstance(load_model(run / "generator"), DCGANGenerator)
    grid_at_2 = (run / "samples" / "step-000002.png").read_bytes()
    assert main([*arguments, "--steps", "4"]) == 0                    # resumes: only step 4 is new
    assert "step-000004.png" in {p.name for p in (run / "samples").iterdir()}
    assert (run / "samples" / "step-000002.png").read_bytes() == grid_at_2   # past grids are kept
    Image.fromarray(images(1)[0][:8]).save(data / "odd.png")
    capsys.readouterr()
    assert main([*arguments, "--steps", "5"]) != 0
    err = capsys.readouterr().err
    assert "odd.png" in err and "expected 16x16" in err
    (data / "odd.png").unlink()
    often = [*arguments[:4], str(tmp_path / "often"), *arguments[5:], "--sample-every", "3", "--checkpoint-every", "1"]
    assert main([*often, "--steps", "3"]) == 0                        # every step (the last two kept), not every grid
    assert sorted(p.name for p in (tmp_path / "often" / "checkpoints").glob("step-*")) == [
        "step-00000002", "step-00000003"]


def test_the_exported_generator_draws_what_torch_draws_and_the_cli_saves_grids(tmp_path, capsys):
    from PIL import Image

    from slimvision.cli.main import main
    from slimvision.inference.gan import GANSampler
    from slimvision.models.weights import load_model

    data = crops_folder(tmp_path, 8)
    run = tmp_path / "run"
    assert main(["gan", "train", str(data), "-o", str(run), "--resolution", "16", "--base-channels", "4",
                 "--batch-size", "4", "--steps", "2", "--sample-every", "2", "-q"]) == 0
    assert "max abs diff vs torch" in capsys.readouterr().out
    sampler = GANSampler(run / "generator.onnx")
    noise = sampler.noise(5, seed=7)
    with torch.no_grad():
        expected = load_model(run / "generator")(torch.from_numpy(noise)).add(1).mul(127.5).round()
    drawn = sampler.generate(noise, batch_size=2)                      # batches of 2, 2 and 1
    assert drawn.shape == (5, 16, 16, 3)
    assert np.abs(drawn.astype(int) - expected.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 1
    assert np.array_equal(sampler.sample(3, seed=1), sampler.sample(3, seed=1))

    assert main(["gan", "generate", str(run), "-o", str(tmp_path / "grid.png"), "-n", "4", "--columns", "2"]) == 0
    assert np.asarray(Image.open(tmp_path / "grid.png")).shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    assert main(["gan", "generate", str(run), "-o", str(tmp_path / "strip.png"), "-n", "5",
                 "--interpolate", "1", "2"]) == 0
    assert main(["gan", "generate", str(run), "-o", str(tmp_path / "walk.gif"), "-n", "5",
                 "--interpolate", "1", "2"]) == 0
    with Image.open(tmp_path / "walk.gif") as walk:
        assert walk.n_frames == 5 + 3 and walk.size == (16, 16)          # there and back
    assert main(["gan", "generate", str(run), "-o", str(tmp_path / "plain.gif")]) != 0
    assert "--interpolate" in capsys.readouterr().err and not (tmp_path / "plain.gif").exists()
    assert main(["gan", "generate", str(run / "generator.onnx"), "-o", str(tmp_path / "many"), "-n", "3"]) == 0
    assert len(list((tmp_path / "many").glob("sample_*.png"))) == 3
    assert main(["gan", "generate", str(run), "-o", str(tmp_path / "many"), "-n", "4"]) != 0
    assert "exists" in capsys.readouterr().err
    assert not (tmp_path / "many" / "sample_00003.png").exists()       # nothing half-written
    assert main(["gan", "generate", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "x.png")]) != 0
    assert "missing.onnx" in capsys.readouterr().err


def test_sampling_needs_no_torch():
    import subprocess
    import sys

    code = "import sys, slimvision.inference.gan; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_the_weight_average_follows_its_warm_up_schedule_and_then_the_decay():
    from torch import nn

    from slimvision.training.gan import WeightAverage

    network = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        network.weight.fill_(0.0)
    average = WeightAverage(network, decay=0.5)
    with torch.no_grad():
        network.weight.fill_(1.0)
    average.update(network)                 # warm-up decay (1 + 1) / (10 + 1) = 2/11 < 0.5
    assert average.average.weight.item() == pytest.approx(1 - 2 / 11)
    for _ in range(20):
        average.update(network)
    assert average.average.weight.item() == pytest.approx(1.0, abs=1e-6)
    assert int(average.updates) == 21 and not average.average.weight.requires_grad


def test_the_averaged_generator_is_what_training_returns_and_it_resumes_exactly(tmp_path):
    augmented = {"diff_augment": "color,translation,cutout"}
    straight_g, straight = train_dcgan(config(4, **augmented), images(), tmp_path / "straight", progress=False)
    train_dcgan(config(2, **augmented), images(), tmp_path / "halves", progress=False)
    resumed_g, resumed = train_dcgan(config(4, **augmented), images(), tmp_path / "halves", progress=False)
    for key in ("discriminator/loss", "generator/loss"):
        assert resumed.values[key] == pytest.approx(straight.values[key][2:], rel=1e-5)
    for name, value in straight_g.state_dict().items():
        assert torch.allclose(value, resumed_g.state_dict()[name], atol=1e-6), name
    from safetensors.torch import load_file
    saved = load_file(str(tmp_path / "straight" / "checkpoints" / "step-00000004" / "model.safetensors"))
    assert int(saved["generator_ema.updates"]) == 4
    trained = {k[len("generator."):]: v for k, v in saved.items() if k.startswith("generator.")}
    differs = [k for k, v in straight_g.state_dict().items() if k.endswith("weight") and not torch.equal(v, trained[k])]
    assert differs                                                        # the average, not the last weights
    plain_g, _ = train_dcgan(config(1, ema_decay=0.0), images(), tmp_path / "plain", progress=False)
    assert not any(key.startswith("generator_ema") for key in load_file(
        str(tmp_path / "plain" / "checkpoints" / "step-00000001" / "model.safetensors")))


def test_fid_lite0_is_measured_on_schedule_and_kept_across_resumes(tmp_path):
    from slimvision.training.gan import fid_history, train_with_samples

    run = tmp_path / "run"
    train_with_samples(config(3), images(), run, sample_every=2, fid_every=2, fid_samples=6, progress=False)
    first = fid_history(run)
    assert [row["step"] for row in first] == [2, 3] and all(row["samples"] == 6 for row in first)
    assert all(row["fid_lite0"] > 0 and np.isfinite(row["kid_lite0"]) for row in first)
    assert (run / "fid-real.npz").is_file()
    train_with_samples(config(4), images(), run, sample_every=2, fid_every=2, fid_samples=6, progress=False)
    assert fid_history(run)[:2] == first and [row["step"] for row in fid_history(run)] == [2, 3, 4]


def test_the_cli_trains_a_grey_generator_and_plots_its_fid(tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.inference.gan import GANSampler
    from slimvision.models.weights import load_model

    data = crops_folder(tmp_path, 8)
    run = tmp_path / "run"
    assert main(["gan", "train", str(data), "-o", str(run), "--resolution", "16", "--base-channels", "4",
                 "--batch-size", "4", "--steps", "2", "--sample-every", "2", "--grey", "--fid-every", "2",
                 "--fid-samples", "4", "--diff-augment", "translation", "-q"]) == 0
    assert "FID-Lite0" in capsys.readouterr().out
    assert load_model(run / "generator").config.image_channels == 1
    assert GANSampler(run / "generator.onnx").sample(2).shape == (2, 16, 16, 3)     # grey drawn as RGB
    assert (run / "losses.png").is_file() and (run / "fid.json").is_file()


def test_the_int8_export_draws_close_to_the_float_generator(tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.inference.gan import GANSampler
    from slimvision.models.weights import save_model

    torch.manual_seed(0)
    # Wide initial weights, so the images span the grey range and int8 rounding has something to spoil.
    generator = DCGANGenerator(DCGANConfig(resolution=16, base_channels=8, latent_dim=8, init_std=0.3)).eval()
    save_model(generator, tmp_path / "run" / "generator")
    assert main(["gan", "export", str(tmp_path / "run"), "--int8"]) == 0
    out = capsys.readouterr().out
    assert "generator.int8.onnx" in out and "rewrite vs torch: max abs diff" in out
    assert main(["gan", "export", str(tmp_path / "run")]) == 0
    int8, fp32 = GANSampler(tmp_path / "run" / "generator.int8.onnx"), GANSampler(tmp_path / "run" / "generator.onnx")
    reference = fp32.sample(16, seed=5).astype(int)
    assert reference.std() > 30
    difference = np.abs(int8.sample(16, seed=5).astype(int) - reference)
    assert difference.mean() < 4 and difference.max() < 64                 # grey levels out of 255
    assert main(["gan", "export", str(tmp_path / "run"), "--int8"]) != 0     # exists: not replaced silently
    assert "exists" in capsys.readouterr().err


def test_the_shipped_digits_generator_draws_by_default(tmp_path):
    from PIL import Image

    from slimvision.cli.main import main
    from slimvision.inference.gan import DEMO_GENERATOR, DEMO_WEIGHTS, GANSampler
    from slimvision.models.weights import load_model

    assert main(["gan", "generate", "-o", str(tmp_path / "digits.png"), "-n", "4", "--columns", "4"]) == 0
    grid = np.asarray(Image.open(tmp_path / "digits.png"))
    assert grid.shape == (32 + 4, 4 * 34 + 2, 3)
    digits = GANSampler(DEMO_GENERATOR).sample(8, seed=0)
    assert digits.shape == (8, 32, 32, 3) and np.array_equal(digits[..., 0], digits[..., 2])
    # white strokes on black, like the training digits: mostly dark, some bright ink
    assert np.median(digits) < 40 and (digits > 200).mean() > 0.03
    generator = load_model(DEMO_WEIGHTS)
    assert generator.config.resolution == 32 and generator.config.image_channels == 1


def test_the_int8_generator_runs_channels_last_without_layout_transposes_between_layers(tmp_path):
    import onnx
    import onnxruntime as ort

    from slimvision.export.gan import export_generator_int8

    torch.manual_seed(0)
    generator = DCGANGenerator(DCGANConfig(resolution=64, base_channels=4, latent_dim=8)).eval()
    export_generator_int8(generator, tmp_path / "g.int8.onnx", calibration_samples=32)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "g.int8.onnx"), options, providers=["CPUExecutionProvider"])
    nodes = onnx.load(tmp_path / "optimized.onnx").graph.node
    convs = [node for node in nodes if node.op_type == "QLinearConv"]
    assert len(convs) == 3 * 4 + 1                                  # four phase convs per layer, the image conv
    channels_last = [attribute.i for node in convs for attribute in node.attribute if attribute.name == "channels_last"]
    if not any(channels_last):
        pytest.skip("this CPU's ONNX Runtime keeps int8 convolutions NCHW")
    assert channels_last == [1] * len(convs)
    layouts = [list(a.ints) for node in nodes if node.op_type == "Transpose" for a in node.attribute]
    # into NHWC once, each of the two shuffles between layers, the image back to NCHW once
    assert layouts == [[0, 2, 3, 1], [0, 1, 3, 2, 4, 5], [0, 1, 3, 2, 4, 5], [0, 3, 1, 2]]


def test_the_loss_log_spans_every_session_of_a_run_and_a_finished_rerun(tmp_path):
    """losses.png is drawn from this log: a resumed run keeps the earlier steps, a finished one all of them."""
    from slimvision.training.gan import train_with_samples

    run = tmp_path / "run"
    _, straight = train_with_samples(config(4), images(), tmp_path / "straight", sample_every=2, progress=False)
    _, first = train_with_samples(config(2), images(), run, sample_every=2, progress=False)
    _, resumed = train_with_samples(config(4), images(), run, sample_every=2, progress=False)
    _, finished = train_with_samples(config(4), images(), run, sample_every=2, progress=False)
    assert first["step"] == [1, 2] and resumed["step"] == finished["step"] == straight["step"] == [1, 2, 3, 4]
    for key in ("discriminator/loss", "generator/loss", "discriminator/real_score"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-5) and finished[key] == resumed[key]


def test_the_cli_refuses_to_resume_with_other_settings_naming_them(tmp_path, capsys):
    from slimvision.cli.main import main

    data = crops_folder(tmp_path, 8)
    run = tmp_path / "run"
    arguments = ["gan", "train", str(data), "-o", str(run), "--resolution", "16", "--batch-size", "4",
                 "--sample-every", "2", "-q"]
    assert main([*arguments, "--base-channels", "4", "--steps", "2"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main([*arguments, "--base-channels", "8", "--steps", "4", "--generator-lr", "1e-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {run} was started with other settings")
    assert "(generator_lr, model.base_channels differ)" in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before        # nothing trained
    # More steps and another checkpoint interval are a plain resume; a finished run reruns cleanly.
    assert main([*arguments, "--base-channels", "4", "--steps", "4", "--checkpoint-every", "1"]) == 0
    plot = (run / "losses.png").stat().st_mtime_ns
    assert main([*arguments, "--base-channels", "4", "--steps", "4"]) == 0
    assert (run / "losses.png").stat().st_mtime_ns >= plot
