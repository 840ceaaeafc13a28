"""Full-resolution convolutions rewritten to run at half resolution on space-to-depth phase planes.

A 2x pixel-unshuffle turns a (C, H, W) map into (4C, H/2, W/2): one plane per pixel phase (row
parity r, column parity s), channel ``c * 4 + r * 2 + s`` as ``F.pixel_unshuffle`` orders them.
A stride-1 k x k convolution on the full map is then an ordinary convolution between phase
planes: output phase (r, s) at half-resolution offset (a, b) reads input phase (p, q) through
full-resolution tap (2a + p - r, 2b + q - s). With k = 9 that is a 5 x 5 convolution, with k = 3
a 3 x 3 one, exact away from the border. ONNX Runtime runs these far faster than the original
layers, whose full-resolution maps have too few channels (3, 8, 16) for its blocked kernels.

Variants the style transformer needs:

* :func:`phase_conv_weight`: phase planes in, phase planes out (a stride-1 conv);
* ``outputs="even"``: only phase (0, 0) out: a stride-2 conv whose window is centred on the
  even pixels (reflect-pad k // 2, then a VALID stride-2 conv, as the teacher's);
* ``inputs="repeated"``: the input is a nearest-neighbour 2x upsampling of a half-resolution map
  (all four phases equal), so the input phases are summed: upsample + conv becomes one
  sub-pixel convolution (Shi et al. 2016).

Example:
    >>> import torch, torch.nn.functional as F
    >>> weight, bias = torch.randn(2, 3, 9, 9), torch.randn(2)
    >>> x = torch.randn(1, 3, 32, 32)
    >>> full = F.conv2d(x, weight, bias, padding=4)
    >>> phase_weight, phase_bias = phase_conv_weight(weight, bias)
    >>> half = F.conv2d(F.pixel_unshuffle(x, 2), phase_weight, phase_bias, padding=2)
    >>> bool(torch.allclose(F.pixel_shuffle(half, 2)[..., 6:-6, 6:-6], full[..., 6:-6, 6:-6], atol=1e-4))
    True
"""

from __future__ import annotations

from typing import Literal

import torch

PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row parity, column parity), in pixel_unshuffle's order


def phase_kernel_size(kernel_size: int) -> int:
    """Side of the half-resolution kernel that holds a full-resolution odd ``kernel_size``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {kernel_size}")
    return 2 * ((kernel_size // 2 + 1) // 2) + 1


@torch.no_grad()
def phase_conv_weight(weight: torch.Tensor, bias: torch.Tensor | None,
                      inputs: Literal["phases", "repeated"] = "phases",
                      outputs: Literal["phases", "even"] = "phases") -> tuple[torch.Tensor, torch.Tensor | None]:
    """The half-resolution (weight, bias) equal to a stride-1 full-resolution conv ``weight``
    (O, I, k, k), padded by k // 2; see the module docstring for ``inputs`` and ``outputs``.
    The result's kernel is :func:`phase_kernel_size` (k), to be padded by half of it."""
    out_channels, in_channels, k, _ = weight.shape
    pad, size = k // 2, phase_kernel_size(k)
    half = size // 2
    phase_weight = weight.new_zeros(out_channels, 4, in_channels, 4, size, size)
    for o_index, (r, s) in enumerate(PHASES):
        for i_index, (p, q) in enumerate(PHASES):
            for a in range(-half, half + 1):
                for b in range(-half, half + 1):
                    dy, dx = 2 * a + p - r, 2 * b + q - s
                    if abs(dy) <= pad and abs(dx) <= pad:
                        phase_weight[:, o_index, :, i_index, a + half, b + half] = weight[:, :, dy + pad, dx + pad]
    if inputs == "repeated":
        phase_weight = phase_weight.sum(dim=3, keepdim=True)
    out_phases = 1 if outputs == "even" else 4
    phase_weight = phase_weight[:, :out_phases].reshape(out_channels * out_phases, -1, size, size)
    phase_bias = None if bias is None else bias.repeat_interleave(out_phases)
    return phase_weight.contiguous(), phase_bias


def crop_kernel(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The central ``kernel_size`` x ``kernel_size`` taps of ``weight`` (O, I, k, k)."""
    k = weight.shape[-1]
    if kernel_size > k or kernel_size % 2 == 0:
        raise ValueError(f"cannot crop a {k}x{k} kernel to {kernel_size}x{kernel_size}")
    start = (k - kernel_size) // 2
    return weight[..., start:start + kernel_size, start:start + kernel_size].contiguous()
