"""VAE training: the paper's loss on a hand-checked case, corruption, batches, steps, resume, export."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from slimvision.data.corruption import Corruption, block_mask, corrupt, drop_pixels, drop_pixels_each
from slimvision.errors import ConfigError, InputError
from slimvision.export.vae import export_vae
from slimvision.models.vae import VAEConfig, VariationalAutoencoder
from slimvision.training.vae import VAETrainingConfig, step_batches, train_vae, vae_loss

TINY = VAEConfig(image_size=32, latent_dim=4, reduce_channels=4)


def _images(count: int = 12, size: int = 32) -> np.ndarray:
    """Bright discs of different radii on black, like a head on its background."""
    y, x = np.mgrid[:size, :size]
    radii = np.linspace(size / 5, size / 2.5, count)
    return np.stack([((x - size / 2) ** 2 + (y - size / 2) ** 2 < r ** 2) * (0.4 + 0.5 * r / size)
                     for r in radii]).astype(np.float32)


def test_the_loss_is_the_mean_of_original_dim_times_mse_plus_kld():
    reconstruction = torch.full((1, 1, 2, 2), 0.5)
    target = torch.zeros(1, 1, 2, 2)
    mean, log_var = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    out = vae_loss(reconstruction, target, mean, log_var)
    # MSE 0.25 over 4 values -> 4 x 0.25 = 1; KLD = -0.5 * ((1 + 0 - 1 - 1) + (1 + 0 - 0 - 1)) = 0.5.
    assert out["mse"].item() == pytest.approx(0.25)
    assert out["reconstruction"].item() == pytest.approx(1.0)
    assert out["kld"].item() == pytest.approx(0.5)
    assert out["loss"].item() == pytest.approx(1.5)
    assert vae_loss(reconstruction, target, mean, log_var, beta=2.0)["loss"].item() == pytest.approx(2.0)
    # The optional L1 term: 4 values x (0.25 + 2 x 0.5) = 5, plus the KLD.
    assert vae_loss(reconstruction, target, mean, log_var, l1_weight=2.0)["loss"].item() == pytest.approx(5.5)
    # A batch is the mean of its images' losses.
    batch = vae_loss(torch.cat([reconstruction, target]), torch.cat([target, target]), torch.cat([mean, 0 * mean]),
                     torch.cat([log_var, log_var]))
    assert batch["loss"].item() == pytest.approx(0.75)


def test_corruptions_keep_the_asked_fraction_and_report_what_survived():
    rng = np.random.default_rng(0)
    image = np.full((100, 100), 0.5, np.float32)
    damaged, kept = drop_pixels(image, 0.4, rng)
    assert abs(kept.mean() - 0.4) < 0.02 and (damaged[~kept] == 0).all() and (damaged[kept] == 0.5).all()
    clean, everything = corrupt(image, Corruption.none(), rng)
    assert everything.all() and np.array_equal(clean, image)
    holes = block_mask((50, 50), 2, 0.3, rng)
    assert 0 < (~holes).sum() <= 2 * 15 * 15
    first, second = drop_pixels_each(np.stack([image, image]), 0.4, seed=3), drop_pixels_each(np.stack([image] * 2), 0.4, seed=3)
    assert np.array_equal(first[1], second[1])
    with pytest.raises(ConfigError):
        Corruption(keep_min=0.8, keep_max=0.5)
    always_intact = Corruption(keep_min=0.3, keep_max=0.5, noise_max=0.0, intact_probability=1.0)
    damaged, kept = corrupt(image, always_intact, np.random.default_rng(0))
    assert kept.all() and np.array_equal(damaged, image)
    draws = [corrupt(image, Corruption(keep_min=0.3, keep_max=0.5, intact_probability=0.5), np.random.default_rng(i))[1]
             for i in range(40)]
    assert 5 < sum(mask.all() for mask in draws) < 35


def test_batches_depend_on_the_step_only():
    config = VAETrainingConfig(model=TINY, batch_size=4)
    images = _images()
    first = next(step_batches(images, config, start=5))
    again = next(step_batches(images, config, start=5))
    later = list(zip(range(6), step_batches(images, config, start=0)))[5][1]
    for a, b, c in zip(first, again, later):
        assert a.shape == (4, 1, 32, 32) and torch.equal(a, b) and torch.equal(a, c)
    damaged, clean, kept = first
    assert (damaged <= clean + 0.3).all() and ((damaged == 0) & (clean > 0)).any()      # noise and removed pixels
    assert set(kept.unique().tolist()) == {0.0, 1.0} and (damaged[kept == 0] == 0).all()


def test_one_step_changes_the_weights_and_a_resumed_run_matches_an_uninterrupted_one(tmp_path):
    # A constant rate: a cosine stretches to the new last epoch when a run is extended.
    config = VAETrainingConfig(model=TINY, epochs=2, batch_size=4, sample_every=1, log_every=1, cosine_decay=False)
    torch.manual_seed(config.seed)
    start = VariationalAutoencoder(TINY)
    whole, losses = train_vae(config, _images(), tmp_path / "whole", holdout=_images(4), pretrained=False,
                              progress=False)
    assert losses["step"] == list(range(1, 7)) and all(np.isfinite(losses["loss"]))
    assert not torch.equal(start.decoder.to_image.weight, whole.decoder.to_image.weight)
    first = replace(config, epochs=1)
    train_vae(first, _images(), tmp_path / "split", holdout=_images(4), pretrained=False, progress=False)
    resumed, rest = train_vae(config, _images(), tmp_path / "split", holdout=_images(4), pretrained=False,
                              progress=False)
    # The whole run's log: the first session's steps come from the checkpoint.
    assert rest["step"] == list(range(1, 7)) and rest["loss"] == pytest.approx(losses["loss"], rel=1e-5)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert sorted(p.name for p in (tmp_path / "split" / "samples").iterdir()) == ["epoch-0001.png", "epoch-0002.png"]
    import json

    rows = json.loads((tmp_path / "split" / "metrics.json").read_text())
    assert [row["epoch"] for row in rows] == [1, 2] and rows[0]["keep"] == 0.4
    assert {"inpainted_ssim", "restored_psnr", "damaged_ssim", "reconstructed_ssim"} <= set(rows[1])


def test_resuming_with_other_settings_or_bad_images_is_refused(tmp_path):
    config = VAETrainingConfig(model=TINY, epochs=1, batch_size=4)
    train_vae(config, _images(), tmp_path / "run", pretrained=False, progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        train_vae(VAETrainingConfig(model=TINY, epochs=2, batch_size=2), _images(), tmp_path / "run",
                  pretrained=False, progress=False)
    with pytest.raises(InputError, match="expected"):
        train_vae(config, _images(size=16), tmp_path / "other", pretrained=False, progress=False)
    with pytest.raises(ConfigError, match="CUDA|device"):
        train_vae(VAETrainingConfig(model=TINY, device="cuda:7"), _images(), tmp_path / "gpu", pretrained=False,
                  progress=False)


@pytest.mark.parametrize("skips, mask", [(False, False), (True, False), (True, True)])
def test_the_export_restores_what_torch_restores(tmp_path, skips, mask):
    from slimvision.inference.vae import MedicalVAE
    from slimvision.io.medical import Intensity

    torch.manual_seed(0)
    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4, skip_connections=skips,
                                           mask_channel=mask)).eval()
    drift = export_vae(vae, tmp_path / "export", intensity=Intensity.window(40, 400))
    assert max(drift.values()) < 1e-4
    exported = MedicalVAE(tmp_path / "export")
    assert exported.intensity == Intensity.window(40, 400) and exported.generative is not skips
    images = _images(3)
    with torch.no_grad():
        expected, mean, _ = vae(torch.from_numpy(images)[:, None])
    restored, got_mean, _ = exported.autoencode(images)
    np.testing.assert_allclose(restored, expected[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(got_mean, mean.numpy(), atol=1e-4)
    kept = np.zeros_like(images, bool)
    kept[:, :16] = True
    pasted = exported.restore(images, kept=kept)
    assert np.array_equal(pasted[:, :16], images[:, :16])
    if mask:   # the graph is told which pixels are intact, as torch was
        with torch.no_grad():
            told = vae(torch.from_numpy(images)[:, None], torch.from_numpy(kept)[:, None].float())[0][:, 0].numpy()
        np.testing.assert_allclose(exported.autoencode(images, kept)[0], told, atol=1e-4)
        np.testing.assert_allclose(pasted[:, 16:], told[:, 16:], atol=1e-4)
        assert exported.restore_slice(images[0], kept=kept[0]).shape == (32, 32)
    odd = np.random.default_rng(0).random((20, 50)).astype(np.float32)
    assert exported.restore_slice(odd).shape == (20, 50)
    if skips:
        with pytest.raises(InputError, match="skip connections"):
            exported.sample(2)
    else:
        assert exported.sample(2, seed=1).shape == (2, 32, 32)
        np.testing.assert_array_equal(exported.sample(2, seed=1), exported.sample(2, seed=1))
        assert exported.interpolate(images[0], images[1], 4).shape == (4, 32, 32)


def test_the_returned_losses_cover_the_whole_run_after_a_resume(tmp_path):
    """vae train plots these: a resumed (or finished) run must not lose its earlier epochs."""
    config = VAETrainingConfig(model=TINY, epochs=1, batch_size=4, log_every=1, augment=False)
    _, first = train_vae(config, _images(), tmp_path / "run", pretrained=False, progress=False)
    _, resumed = train_vae(replace(config, epochs=2), _images(), tmp_path / "run", pretrained=False, progress=False)
    _, finished = train_vae(replace(config, epochs=2), _images(), tmp_path / "run", pretrained=False, progress=False)
    assert first["step"] == [1, 2, 3] and resumed["step"] == finished["step"] == [1, 2, 3, 4, 5, 6]
    assert resumed["loss"][:3] == first["loss"] and finished["loss"] == resumed["loss"]


def test_a_resume_names_nested_settings_that_differ(tmp_path):
    config = VAETrainingConfig(model=TINY, epochs=1, batch_size=4)
    train_vae(config, _images(), tmp_path / "run", pretrained=False, progress=False)
    with pytest.raises(ConfigError, match=r"\(model\.latent_dim differ\)"):
        train_vae(replace(config, model=replace(TINY, latent_dim=TINY.latent_dim + 1)), _images(), tmp_path / "run",
                  pretrained=False, progress=False)


@pytest.mark.parametrize("edit, problem", [
    (lambda m: "{not json", "artifact card is not valid JSON"),
    (lambda m: "[]", "artifact card: the card must be a JSON object, not list"),
    (lambda m: {**m, "model": None}, 'has no "model" object'),
    (lambda m: {**m, "model": {**m["model"], "image_size": "big"}}, "model.image_size must be a whole number >= 8, "
                                                                    "got 'big'"),
    (lambda m: {**m, "model": {k: v for k, v in m["model"].items() if k != "latent_dim"}},
     "model.latent_dim must be a whole number >= 1, got None"),
    (lambda m: {**m, "model": {**m["model"], "skip_connections": "yes"}},
     "model.skip_connections must be true or false"),
    (lambda m: {**m, "intensity": {"mode": "sideways"}}, 'its "intensity" is not a valid rule'),
    (lambda m: {**m, "intensity": 3}, 'its "intensity" is not a valid rule'),
])
def test_a_malformed_vae_card_is_a_one_line_error_naming_it(tmp_path, capsys, edit, problem):
    """``edit`` changes the card's preprocessing (model config and intensity rule), or the whole file."""
    import json

    from slimvision.cli.main import main
    from slimvision.inference.vae import MedicalVAE

    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4)).eval()
    export_vae(vae, tmp_path / "export")
    manifest = tmp_path / "export" / "encoder.card.json"
    card = json.loads(manifest.read_text())
    edited = edit(card["preprocessing"])
    manifest.write_text(edited if isinstance(edited, str) else json.dumps({**card, "preprocessing": edited}))
    with pytest.raises(InputError) as caught:
        MedicalVAE(tmp_path / "export")
    assert str(caught.value).startswith(f"{manifest}: {problem}") and "\n" not in str(caught.value)
    capsys.readouterr()
    assert main(["vae", "sample", "--model", str(tmp_path / "export"), "-o", str(tmp_path / "grid.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {manifest}: {problem}") and len(err.splitlines()) == 1


@pytest.mark.parametrize("int8", [False, True])
def test_a_warm_start_from_an_export_computes_what_the_export_does(tmp_path, int8):
    """Batch norms folded into the graph's convolutions come back as pass-throughs."""
    from slimvision.export.vae import export_vae_int8_weights
    from slimvision.inference.vae import MedicalVAE
    from slimvision.training.vae import warm_start_from_onnx

    torch.manual_seed(0)
    config = VAEConfig(image_size=32, latent_dim=4, skip_connections=True, mask_channel=True)
    trained = VariationalAutoencoder(config)
    for module in trained.modules():   # batch norms with statistics of their own, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    trained.eval()
    folder = tmp_path / "export"
    if int8:
        from slimvision.models.weights import save_model

        save_model(trained, tmp_path / "vae")
        export_vae_int8_weights(trained, folder, None, tmp_path / "vae", False)
    else:
        export_vae(trained, folder)
    fresh = VariationalAutoencoder(config)
    warm_start_from_onnx(fresh, folder)
    images = _images(3)
    kept = np.ones_like(images)
    kept[:, ::2] = 0
    graph = MedicalVAE(folder).autoencode(images * kept, kept.astype(bool))[0]
    with torch.no_grad():
        got = fresh.eval()(torch.from_numpy(images * kept)[:, None], torch.from_numpy(kept)[:, None])[0][:, 0].numpy()
    np.testing.assert_allclose(got, graph, atol=1e-4 if not int8 else 1e-3)
    with pytest.raises(InputError, match="does not fit|fewer|more"):
        warm_start_from_onnx(VariationalAutoencoder(TINY), folder)


def test_training_on_a_crop_pool_with_frozen_batch_norms_and_intensity_jitter(tmp_path):
    from slimvision.data.medical_sources import CropPool

    slices = [(f"s{index}", image) for index, image in enumerate(_images(6, 48))] + [("small", _images(1, 20)[0])]
    pool = CropPool({"discs": slices})
    config = VAETrainingConfig(model=replace(TINY, skip_connections=True, mask_channel=True), epochs=1, batch_size=3,
                               intensity_augment=True, freeze_batchnorm=True,
                               corruption=Corruption(noise_kinds="gaussian,rician,poisson"), sample_every=1)
    damaged, clean, kept = next(step_batches(pool, config, 0))
    assert damaged.shape == clean.shape == kept.shape == (3, 1, 32, 32)
    again = next(step_batches(pool, config, 0))
    assert torch.equal(again[1], clean)                                    # a function of the step
    vae = VariationalAutoencoder(config.model)
    norms = {name: module.running_mean.clone() for name, module in vae.named_modules()
             if isinstance(module, torch.nn.BatchNorm2d)}
    before = {name: value.clone() for name, value in vae.state_dict().items()}
    trained, _ = train_vae(config, pool, tmp_path / "run", pretrained=False, progress=False)
    after = trained.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before if name.endswith(".weight"))
    for name, mean in norms.items():                                        # statistics untouched
        assert torch.equal(after[f"{name}.running_mean"], mean), name


def test_the_backbone_stays_frozen_for_its_steps_then_only_its_top_blocks_train(tmp_path):
    """The trainer's FineTuneSchedule on the VAE's encoder backbone: frozen (weights and batch-norm
    statistics) for freeze_backbone_steps while the rest trains; then only the top ``unfreeze``
    blocks join, and a resumed run picks up in the right stage."""
    from slimvision.data.medical_sources import CropPool
    from slimvision.training.trainer import FineTuneSchedule
    from slimvision.training.vae import backbone_blocks

    pool = CropPool({"discs": [(f"s{index}", image) for index, image in enumerate(_images(6, 40))]})
    config = VAETrainingConfig(model=TINY, epochs=1, batch_size=3, sample_every=1,  # 2 steps an epoch
                               finetune=FineTuneSchedule(freeze_backbone_steps=2, unfreeze=1))
    torch.manual_seed(config.seed)                                          # the run's own start
    vae = VariationalAutoencoder(TINY)
    start = {name: value.clone() for name, value in vae.state_dict().items()}
    frozen, _ = train_vae(config, pool, tmp_path / "run", pretrained=False, progress=False)
    after = frozen.state_dict()
    backbone = [name for name in start if name.startswith("encoder.backbone.")]
    assert backbone and all(torch.equal(start[name], after[name]) for name in backbone)   # stats too
    assert not torch.equal(start["encoder.to_latent.weight"], after["encoder.to_latent.weight"])  # the rest trains
    longer, _ = train_vae(replace(config, epochs=3), pool, tmp_path / "run", pretrained=False, progress=False)
    blocks = backbone_blocks(longer)
    names = {id(module): name for name, module in longer.named_modules()}
    top = names[id(blocks[-1])]                                             # encoder.backbone.blocks.N
    final = longer.state_dict()
    moved = {name for name in backbone if not torch.equal(after[name], final[name])}
    assert moved and all(name.startswith(top + ".") for name in moved), sorted(moved)[:5]
    with pytest.raises(ConfigError, match="backbone_lr_scale must stay 1"):
        replace(config, finetune=FineTuneSchedule(backbone_lr_scale=0.5)).validate()
