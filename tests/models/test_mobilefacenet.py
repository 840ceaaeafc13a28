"""MobileFaceNet: the paper's shape (about 1M parameters, 7x7 before the global depthwise conv)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.models.faces import MobileFaceNet, MobileFaceNetConfig  # noqa: E402


def test_the_papers_network():
    net = MobileFaceNet().eval()
    assert 0.9e6 < sum(p.numel() for p in net.parameters()) < 1.3e6  # the paper: 0.99M
    features = net.blocks(torch.rand(1, 3, 112, 112))
    assert features.shape == (1, 512, 7, 7)
    assert net(torch.rand(3, 3, 112, 112)).shape == (3, 128)
    depthwise = net.head[0][0]
    assert depthwise.kernel_size == (7, 7) and depthwise.groups == 512  # the global depthwise conv


def test_smaller_configs_and_bad_ones():
    small = MobileFaceNetConfig(input_size=64, stem_channels=8, bottlenecks=((2, 8, 1, 2), (2, 16, 1, 2)),
                                feature_channels=32, embedding_dim=16)
    assert MobileFaceNet(small)(torch.rand(2, 3, 64, 64)).shape == (2, 16)
    with pytest.raises(ConfigError, match="multiple of"):
        MobileFaceNet(MobileFaceNetConfig(input_size=100))
    with pytest.raises(ConfigError, match="bottlenecks"):
        MobileFaceNet(MobileFaceNetConfig(bottlenecks=((2, 64, 0, 2),)))
