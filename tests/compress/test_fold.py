"""Training-time batch norms: calibrated to identity on real data, folded away exactly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from slimvision.compress.fold import calibrate_identity_batch_norms, fold_batch_norms  # noqa: E402


def net(norms: bool) -> nn.Sequential:
    layers = [nn.Conv2d(3, 8, 3, padding=1)] + ([nn.BatchNorm2d(8)] if norms else []) + [nn.ReLU()]
    layers += [nn.Conv2d(8, 4, 3, padding=1, bias=not norms)] + ([nn.BatchNorm2d(4)] if norms else [])
    return nn.Sequential(*layers)


def test_identity_calibration_keeps_the_function_in_eval_and_nearly_in_train_mode() -> None:
    torch.manual_seed(0)
    plain, normed = net(norms=False), net(norms=True)
    conv_keys = {"0.weight": "0.weight", "0.bias": "0.bias", "2.weight": "3.weight"}
    nn.init.zeros_(plain[2].bias)
    normed.load_state_dict({new: plain.state_dict()[old] for old, new in conv_keys.items()}, strict=False)
    data = [torch.randn(16, 3, 12, 12) * 3 + 1 for _ in range(3)]
    assert calibrate_identity_batch_norms(normed, data) == 2
    # The running statistics are the data's (channel means of the first conv's output).
    with torch.no_grad():
        first = plain[0](torch.cat(data)).transpose(0, 1).flatten(1)
    assert torch.allclose(normed[1].running_mean, first.mean(1), atol=1e-3)
    x = data[0]
    with torch.no_grad():
        expected = plain(x)
        assert torch.allclose(normed.eval()(x), expected, atol=1e-4)
        train_mode = normed.train()(x)  # batch statistics of one batch stand in for the running ones
    assert (train_mode - expected).abs().max() < 0.1 * expected.abs().max()


def test_fold_matches_eval_mode_and_loads_into_the_network_without_norms() -> None:
    torch.manual_seed(1)
    normed = net(norms=True)
    for norm in (normed[1], normed[4]):  # non-trivial statistics and affine terms
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        nn.init.uniform_(norm.weight, 0.5, 1.5)
        nn.init.uniform_(norm.bias, -0.5, 0.5)
    x = torch.randn(2, 3, 10, 10)
    with torch.no_grad():
        before = normed.eval()(x)
        assert fold_batch_norms(normed) == 2
        assert isinstance(normed[1], nn.Identity) and normed[3].bias is not None  # a conv without bias gains one
        assert torch.allclose(normed(x), before, atol=1e-5)
    plain = net(norms=False)
    plain.load_state_dict({key.replace("3.", "2.", 1) if key.startswith("3.") else key: value
                           for key, value in normed.state_dict().items()})
    with torch.no_grad():
        assert torch.allclose(plain(x), before, atol=1e-5)
