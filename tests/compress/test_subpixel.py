"""Transposed convs rewritten as conv + depth-to-space: same outputs, ineligible layers untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimvision.compress.subpixel import SubPixelConv, rewrite_transposed_convs


@pytest.mark.parametrize(("kernel", "padding", "output_padding"), [(5, 2, 1), (4, 1, 0), (3, 1, 1), (2, 0, 0)])
def test_stride_two_layers_become_subpixel_convs_with_the_same_output(kernel, padding, output_padding):
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(3, 4, kernel, stride=2, padding=padding, output_padding=output_padding))
    x = torch.randn(2, 3, 5, 7)
    before = net(x)
    assert rewrite_transposed_convs(net) == 1 and isinstance(net[0], SubPixelConv)
    assert before.shape == (2, 4, 10, 14)
    assert torch.allclose(net(x), before, atol=1e-5)


def test_stride_one_layers_become_flipped_convs_and_odd_ones_are_left_alone():
    torch.manual_seed(1)
    net = nn.Sequential(nn.ConvTranspose2d(3, 2, 5, padding=2, bias=False),
                        nn.ConvTranspose2d(2, 2, 3, stride=3),                  # stride 3: left as it is
                        nn.Sequential(nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, groups=2)))  # groups
    x = torch.randn(1, 3, 6, 6)
    before = net(x)
    assert rewrite_transposed_convs(net) == 1
    assert isinstance(net[0], nn.Conv2d) and net[0].bias is None
    assert isinstance(net[1], nn.ConvTranspose2d) and isinstance(net[2][0], nn.ConvTranspose2d)
    assert torch.allclose(net(x), before, atol=1e-5)


def test_a_rewritten_dcgan_generator_draws_the_same_images():
    from slimvision.models.gan import DCGANConfig, DCGANGenerator, sample_noise

    generator = DCGANGenerator(DCGANConfig(resolution=32, base_channels=8)).eval()
    noise = sample_noise(3, 100, torch.Generator().manual_seed(0))
    before = generator(noise)
    assert rewrite_transposed_convs(generator) == 3
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in generator.modules())
    assert torch.allclose(generator(noise), before, atol=1e-5)


def test_a_phase_split_conv_keeps_only_each_phases_taps():
    from slimvision.compress.subpixel import PhaseSplitConv, SubPixelConv

    torch.manual_seed(0)
    transposed = nn.ConvTranspose2d(6, 4, 5, stride=2, padding=2, output_padding=1)
    sub_pixel = SubPixelConv(transposed)
    split = PhaseSplitConv(sub_pixel.conv)
    x = torch.randn(2, 6, 7, 9)
    with torch.no_grad():
        assert torch.allclose(split(x), sub_pixel.conv(x), atol=1e-5)
        assert torch.allclose(sub_pixel.shuffle(split(x)), transposed(x), atol=1e-5)
    kept = sum(conv.weight.numel() for conv in split.convs)
    assert kept == 4 * 6 * 25 and sub_pixel.conv.weight.numel() == 4 * 6 * 36  # 25 of 36 taps per pair
    assert [tuple(conv.kernel_size) for conv in split.convs] == [(3, 3), (3, 2), (2, 3), (2, 2)]
    with pytest.raises(ValueError, match="stride-1 sub-pixel"):
        PhaseSplitConv(nn.Conv2d(6, 6, 3, padding=1))


def test_phase_major_split_and_shuffle_equal_the_transposed_conv_and_run_channels_last_in_ort(tmp_path):
    import onnx
    import onnxruntime as ort

    from slimvision.export.onnx import CardInfo, export_onnx
    from slimvision.compress.subpixel import PhaseMajorShuffle, PhaseSplitConv, SubPixelConv

    torch.manual_seed(0)
    transposed = nn.ConvTranspose2d(6, 4, 5, stride=2, padding=2, output_padding=1)
    net = nn.Sequential(PhaseSplitConv(SubPixelConv(transposed).conv, phase_major=True), PhaseMajorShuffle(4, 7, 9)).eval()
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    out = net(x)
    assert torch.allclose(out, transposed(x), atol=1e-5)
    out.square().sum().backward()
    expected = torch.autograd.grad(transposed(x).square().sum(), x)[0]
    assert torch.allclose(x.grad, expected, atol=1e-4)
    # Between two convs, ONNX Runtime's layout pass leaves no transposes: only the block shuffle.
    pair = nn.Sequential(net, nn.Conv2d(4, 4, 3, padding=1)).eval()
    card = CardInfo(system="gan", task="test", layouts={"x": "NCHW", "output": "NCHW"})
    path = export_onnx(pair, tmp_path / "split.onnx", {"x": x.detach()}, card=card).onnx_path
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    kinds = [node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert "DepthToSpace" not in kinds
    assert kinds.count("Transpose") <= 3, kinds  # into NHWC, the shuffle's own, back to NCHW
