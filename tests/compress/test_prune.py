"""Structured pruning on tiny models: channels really go, the model still runs, the right ones go."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
from torch import nn  # noqa: E402

from slimvision.compress.prune import channel_counts, prune_channels  # noqa: E402
from slimvision.errors import SlimvisionError  # noqa: E402


class ResidualNet(nn.Module):
    """conv-bn-relu stem, one residual block (its add couples channels), a fixed 10-way head."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.block(x))
        return self.head(x.mean(dim=(2, 3)))


class ConditionalNorm(nn.Module):
    """Instance norm whose scale and shift come from a style vector (the style transformer's)."""

    def __init__(self, channels: int, style_dim: int = 8) -> None:
        super().__init__()
        self.scale = nn.Linear(style_dim, channels)
        self.shift = nn.Linear(style_dim, channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        x = nn.functional.instance_norm(x)
        return x * self.scale(style)[:, :, None, None] + self.shift(style)[:, :, None, None]


class StyledNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.norm1 = ConditionalNorm(width)
        self.conv2 = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv2(torch.relu(self.norm1(self.conv1(x), style))))


@pytest.fixture()
def image() -> torch.Tensor:
    return torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_half_the_channels_go_and_the_head_stays(image):
    torch.manual_seed(0)
    model = ResidualNet()
    report = prune_channels(model, image, ratio=0.5, ignored_layers=[model.head])
    counts = channel_counts(model)
    assert counts["stem.0"] == counts["block.0"] == counts["block.3"] == 8  # the residual add kept them equal
    assert counts["head"] == 10 and model.head.in_features == 8
    assert model(image).shape == (1, 10)
    assert report.params_after < 0.4 * report.params_before  # 3x3 convs shrink on both sides
    assert report.macs_after < 0.4 * report.macs_before
    assert "params" in report.summary() and model.training  # training mode restored


def test_bn_scale_removes_the_channels_with_small_scales(image):
    torch.manual_seed(1)
    model = ResidualNet(width=8)
    with torch.no_grad():
        for bn in (model.stem[1], model.block[4]):  # coupled by the residual add
            bn.weight.fill_(1.0)
            bn.weight[[2, 5]] = 1e-3  # the two channels Network Slimming would drop
        inner = model.block[1]  # the block's own channels, free of the add
        inner.weight.fill_(1.0)
        inner.weight[[0, 6]] = 1e-3
    stem_filters = model.stem[0].weight.detach().clone()
    inner_filters = model.block[0].weight.detach().clone()
    prune_channels(model, image, ratio=0.25, importance="bn_scale", ignored_layers=[model.head])
    keep = [0, 1, 3, 4, 6, 7]
    torch.testing.assert_close(model.stem[0].weight, stem_filters[keep])
    assert model.block[0].out_channels == 6
    torch.testing.assert_close(model.block[0].weight, inner_filters[[1, 2, 3, 4, 5, 7]][:, keep])


def test_conditional_norm_scales_are_pruned_with_their_conv(image):
    torch.manual_seed(2)
    model = StyledNet()
    style = torch.randn(1, 8)
    prune_channels(model, (image, style), ratio=0.5, round_to=4)
    counts = channel_counts(model)
    assert counts["conv1"] == counts["norm1.scale"] == counts["norm1.shift"] == 8
    assert counts["conv2"] == 3  # an output layer: nothing after it to stay consistent with
    assert model(image, style).shape == (1, 3, 16, 16)


def test_round_to_keeps_simd_friendly_counts(image):
    model = ResidualNet(width=24)
    prune_channels(model, image, ratio=0.3, round_to=8, ignored_layers=[model.head])
    assert all(count % 8 == 0 for name, count in channel_counts(model).items() if name != "head")


def test_zero_ratio_changes_nothing(image):
    model = ResidualNet()
    before = channel_counts(model)
    report = prune_channels(model, image, ratio=0.0, ignored_layers=[model.head])
    assert channel_counts(model) == before and report.params_after == report.params_before


@pytest.mark.parametrize("kwargs, message", [({"ratio": 1.0}, "ratio must be in"), ({"ratio": -0.1}, "ratio must be in"),
                                             ({"ratio": 0.5, "importance": "random"}, "importance must be"),
                                             ({"ratio": 0.5, "iterative_steps": 0}, "iterative_steps")])
def test_bad_arguments(image, kwargs, message):
    with pytest.raises(SlimvisionError, match=message):
        prune_channels(ResidualNet(), image, **kwargs)


def test_prune_to_match_fills_a_narrow_model_with_the_strongest_channels() -> None:
    from slimvision.compress.prune import prune_to_match

    torch.manual_seed(0)
    wide, narrow = ResidualNet(width=16).eval(), ResidualNet(width=8).eval()
    with torch.no_grad():  # make channels 0-7 of the stream clearly the strongest
        wide.stem[0].weight[8:] *= 0.01
    strongest = wide.stem[0].weight[:8].clone()
    report = prune_to_match(wide, narrow, torch.randn(1, 3, 16, 16))
    assert channel_counts(narrow) == channel_counts(wide)
    assert channel_counts(narrow)["block.3"] == 8 and channel_counts(narrow)["head"] == 10
    # The residual add couples the stem and the block's last conv: both keep the same 8 channels.
    assert torch.equal(narrow.stem[0].weight, strongest)
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    assert narrow(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_prune_to_match_refuses_a_wider_target() -> None:
    from slimvision.compress.prune import prune_to_match

    with pytest.raises(SlimvisionError, match="wants 32"):
        prune_to_match(ResidualNet(width=16), ResidualNet(width=32), torch.randn(1, 3, 16, 16))


def test_macs_count_subclassed_convs() -> None:
    from slimvision.compress.prune import count_params_and_macs
    from slimvision.models.layers.mobilenet import SamePadConv2d

    params, macs = count_params_and_macs(nn.Sequential(SamePadConv2d(3, 8, 3, stride=2)), torch.randn(1, 3, 16, 16))
    assert params == 3 * 8 * 9 + 8 and macs == 8 * 8 * 8 * 3 * 9
