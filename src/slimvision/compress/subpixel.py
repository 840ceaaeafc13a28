"""Transposed convolutions rewritten as ordinary convolutions, for faster inference graphs.

A stride-2 transposed convolution writes each input pixel's k x k footprint into the output;
inference engines compute it as a GEMM followed by a scatter-add (col2im), which runs far below
the speed of a plain convolution. The same function is a plain convolution on the input that
produces 4 x the output channels, one group per output phase (row parity, column parity),
followed by a depth-to-space shuffle (Shi et al. 2016, "sub-pixel convolution"). For phase r
along one axis, output pixel 2m + r gathers input m + d through kernel tap
``r + padding - 2 d``; taps that fall outside the kernel are zero. With k = 5 that is a 3 x 3
convolution, exact in float, with 4 x 9 / 25 = 1.44x the multiply-adds, all of them in a kernel
that ONNX Runtime (and its int8 path) runs well. A stride-1 transposed convolution is simply a
convolution with the kernel flipped and its channel axes swapped.

:func:`rewrite_transposed_convs` swaps every eligible ``nn.ConvTranspose2d`` in a module for its
equivalent in place (same outputs to float rounding), so the module then exports as Conv +
DepthToSpace; ineligible ones (groups, dilation, other strides or paddings) are left alone.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.ConvTranspose2d(4, 2, 5, stride=2, padding=2, output_padding=1))
    >>> x = torch.randn(1, 4, 6, 6)
    >>> before = net(x)
    >>> rewrite_transposed_convs(net)
    1
    >>> bool(torch.allclose(net(x), before, atol=1e-5)), tuple(net(x).shape)
    (True, (1, 2, 12, 12))
"""

from __future__ import annotations

import torch
from torch import nn


class SubPixelConv(nn.Module):
    """A stride-2 transposed convolution as ``Conv2d(C_in, 4 C_out, K) -> PixelShuffle(2)``."""

    def __init__(self, transposed: nn.ConvTranspose2d) -> None:
        super().__init__()
        c_in, c_out, k_h, k_w = transposed.weight.shape
        taps_h, reach_h = _taps(k_h, transposed.padding[0])
        taps_w, reach_w = _taps(k_w, transposed.padding[1])
        self.conv = nn.Conv2d(c_in, 4 * c_out, (2 * reach_h + 1, 2 * reach_w + 1), padding=(reach_h, reach_w),
                              bias=transposed.bias is not None)
        weight = torch.zeros_like(self.conv.weight).view(c_out, 2, 2, c_in, 2 * reach_h + 1, 2 * reach_w + 1)
        source = transposed.weight.detach().permute(1, 0, 2, 3)  # (C_out, C_in, k, k)
        for phase_h in range(2):
            for phase_w in range(2):
                for (u, k_y) in taps_h[phase_h]:
                    for (v, k_x) in taps_w[phase_w]:
                        weight[:, phase_h, phase_w, :, u, v] = source[:, :, k_y, k_x]
        with torch.no_grad():
            self.conv.weight.copy_(weight.view_as(self.conv.weight))
            if transposed.bias is not None:
                self.conv.bias.copy_(transposed.bias.detach().repeat_interleave(4))
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, 2H, 2W)
        return self.shuffle(self.conv(x))


def _taps(kernel: int, padding: int) -> tuple[list[list[tuple[int, int]]], int]:
    """Per output phase r: the (conv tap u, transposed-kernel index) pairs, and the conv's reach.

    Output 2m + r reads input m + d through transposed-kernel index r + padding - 2d.
    """
    pairs = [[(d, r + padding - 2 * d) for d in range(-kernel, kernel + 1) if 0 <= r + padding - 2 * d < kernel]
             for r in range(2)]
    reach = max(abs(d) for phase in pairs for d, _ in phase)
    return [[(d + reach, index) for d, index in phase] for phase in pairs], reach


def _flipped_conv(transposed: nn.ConvTranspose2d) -> nn.Conv2d:
    """A stride-1 transposed conv as the plain conv it equals (kernel flipped, channel axes swapped)."""
    c_in, c_out, k_h, k_w = transposed.weight.shape
    pad_h, pad_w = k_h - 1 - transposed.padding[0], k_w - 1 - transposed.padding[1]
    conv = nn.Conv2d(c_in, c_out, (k_h, k_w), padding=(pad_h, pad_w), bias=transposed.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(transposed.weight.detach().flip(2, 3).transpose(0, 1))
        if transposed.bias is not None:
            conv.bias.copy_(transposed.bias.detach())
    return conv


def _replacement(layer: nn.ConvTranspose2d) -> nn.Module | None:
    simple = layer.groups == 1 and layer.dilation == (1, 1) and layer.padding_mode == "zeros"
    if not simple:
        return None
    kernel, padding, extra = layer.kernel_size, layer.padding, layer.output_padding
    if layer.stride == (1, 1) and all(0 <= p <= k - 1 for p, k in zip(padding, kernel)):
        return _flipped_conv(layer)
    # Stride 2 with an output of exactly twice the input: k - 2p + output_padding == 2 per axis.
    if layer.stride == (2, 2) and all(k - 2 * p + o == 2 for k, p, o in zip(kernel, padding, extra)):
        return SubPixelConv(layer)
    return None


def rewrite_transposed_convs(module: nn.Module) -> int:
    """Replace every eligible ``nn.ConvTranspose2d`` under ``module`` in place; returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.ConvTranspose2d):
            replacement = _replacement(child)
            if replacement is not None:
                setattr(module, name, replacement.to(child.weight.device))
                count += 1
        else:
            count += rewrite_transposed_convs(child)
    return count


class PhaseSplitConv(nn.Module):
    """A sub-pixel convolution (``C_in -> 4 C_out``, output channel ``4c + phase``) as four
    convolutions, one per output phase, each with only the taps its phase uses.

    A stride-2 5x5 transposed convolution's sub-pixel form is a 3x3 convolution whose phases use
    3x3, 3x2, 2x3 and 2x2 of its taps: the other 11 of 36 are zeros, 30% of its multiply-adds.
    Here each phase gets its own convolution over just its taps (the zero taps are found in the
    weights), padded on the sides that phase reaches (a constant pad the ONNX export folds into
    the convolution), and the four results are interleaved back into the ``4c + phase`` order.
    Exact.

    ``phase_major=True`` skips the interleave: the phases are concatenated as they come, channel
    ``phase * C_out + c`` (ONNX's DCR depth-to-space order), for :class:`PhaseMajorShuffle`
    or for a following conv on phase planes with its input channels permuted. The interleave
    is an element-by-element copy of the whole output; the concatenation copies whole blocks.
    """

    def __init__(self, conv: nn.Conv2d, phase_major: bool = False) -> None:
        super().__init__()
        self.phase_major = phase_major
        weight = conv.weight.detach()
        channels = weight.shape[0] // 4
        if weight.shape[0] % 4 or conv.stride != (1, 1) or conv.groups != 1 or not isinstance(conv.padding, tuple):
            raise ValueError("PhaseSplitConv needs a stride-1 sub-pixel conv with 4 x C_out outputs")
        per_phase = weight.view(channels, 4, *weight.shape[1:])
        bias = conv.bias.detach().view(channels, 4) if conv.bias is not None else None
        self.convs = nn.ModuleList()
        self.pads: list[tuple[int, int, int, int]] = []
        pad_h, pad_w = conv.padding
        for phase in range(4):
            used = per_phase[:, phase].abs().sum(dim=(0, 1)) != 0  # (k_h, k_w) taps this phase reads
            rows, cols = used.any(1).nonzero().flatten(), used.any(0).nonzero().flatten()
            if not len(rows):
                raise ValueError(f"PhaseSplitConv: phase {phase} has no taps")
            top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
            pads = (pad_w - left, right - pad_w, pad_h - top, bottom - pad_h)  # F.pad order: l, r, t, b
            if min(pads) < 0:
                raise ValueError(f"PhaseSplitConv: phase {phase}'s taps do not reach the centre")
            part = nn.Conv2d(weight.shape[1], channels, (bottom - top + 1, right - left + 1), bias=bias is not None)
            with torch.no_grad():
                part.weight.copy_(per_phase[:, phase, :, top:bottom + 1, left:right + 1])
                if bias is not None:
                    part.bias.copy_(bias[:, phase])
            self.convs.append(part)
            self.pads.append(pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, 4 C_out, H, W)
        phases = [conv(nn.functional.pad(x, pads)) for conv, pads in zip(self.convs, self.pads)]
        if self.phase_major:
            return torch.cat(phases, dim=1)  # channel phase * C + c: DepthToSpace's DCR order
        return torch.stack(phases, dim=2).flatten(1, 2)  # channel 4c + phase, as PixelShuffle expects


class PhaseMajorShuffle(nn.Module):
    """``PixelShuffle(2)`` for channels in phase-major order (``phase * C + c``, phase = 2 row + column
    parity), as :class:`PhaseSplitConv` with ``phase_major=True`` writes them, for a fixed
    ``channels`` x ``height`` x ``width`` input (any batch).

    It is written channels-last (permute to NHWC, split the channels into (2, 2, C), swap the
    column phase with the rows' width, permute back) because that is how ONNX Runtime runs int8
    convolutions: its layout pass turns them channels-last and cancels the transposes on either
    side of this one, and what remains moves whole C-channel blocks. The same shuffle as one
    ``DepthToSpace`` node (NCHW only) costs two layout transposes and an element-by-element copy:
    a quarter of the 64 px DCGAN's int8 time. Sizes are constructor arguments so that the export's
    reshapes are constants.

    Example:
        >>> x = torch.randn(1, 8, 3, 5)
        >>> crd = x.view(1, 4, 2, 3, 5).transpose(1, 2).reshape(1, 8, 3, 5)  # 4c + phase order
        >>> bool(torch.equal(PhaseMajorShuffle(2, 3, 5)(x), nn.PixelShuffle(2)(crd)))
        True
    """

    def __init__(self, channels: int, height: int, width: int) -> None:
        super().__init__()
        self.channels, self.height, self.width = channels, height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 4C, H, W) -> (B, C, 2H, 2W)
        channels, height, width = self.channels, self.height, self.width
        per_pixel = x.permute(0, 2, 3, 1).reshape(-1, height, width, 2, 2, channels)  # (B, H, W, row, col, C)
        rows = per_pixel.permute(0, 1, 3, 2, 4, 5).reshape(-1, 2 * height, 2 * width, channels)
        return rows.permute(0, 3, 1, 2)
