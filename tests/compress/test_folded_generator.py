"""The folded sampling generator (batch norms folded, sub-pixel convs) computes what the trained one does."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from slimvision.compress.folded_generator import FoldedGenerator  # noqa: E402
from slimvision.models.gan import DCGANConfig, DCGANGenerator  # noqa: E402


@pytest.mark.parametrize("resolution", [32, 64])
def test_the_folded_sampling_generator_equals_the_trained_one(resolution):
    torch.manual_seed(0)
    generator = DCGANGenerator(DCGANConfig(resolution=resolution, base_channels=8)).train()
    with torch.no_grad():
        for _ in range(3):  # batch-norm statistics that are not the identity
            generator(torch.rand(16, 100) * 4 - 2)
    generator.eval()
    noise = torch.rand(4, 100) * 2 - 1
    folded = FoldedGenerator(generator)
    kinds = [type(layer).__name__ for layer in folded.modules()]
    assert "BatchNorm2d" not in kinds and "ConvTranspose2d" not in kinds
    with torch.no_grad():
        assert torch.allclose(folded(noise), generator(noise), atol=1e-5)  # borders included
