"""Warm starts for students whose layers have another shape than the teacher's.

Two linear-algebra moves, each the best fit in its own sense, so distillation starts close to
the teacher instead of from noise:

* :func:`separable_from_conv`: a full k x k convolution -> a depthwise k x k conv followed by
  a 1x1 conv. For every input channel ``i`` the teacher's filters ``W[:, i]`` (out x k^2) are
  replaced by their best rank-1 approximation (truncated SVD, Eckart-Young): one spatial
  filter for the depthwise conv and one column of the pointwise conv. The relative error says
  how much the separable form loses before any training.
* :func:`fit_conv_to_outputs`: a conv of a smaller kernel fitted by least squares to reproduce
  a layer's outputs on real inputs (e.g. a 3x3 conv standing in for the teacher's 9x9).

Example:
    >>> import torch
    >>> full = torch.nn.Conv2d(8, 16, 3)
    >>> depthwise, pointwise, error = separable_from_conv(full.weight)
    >>> depthwise.shape, pointwise.shape
    (torch.Size([8, 1, 3, 3]), torch.Size([16, 8, 1, 1]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def separable_from_conv(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Best depthwise-then-pointwise factorisation of a conv weight (C_out, C_in, k, k).

    Returns:
        depthwise weight (C_in, 1, k, k), pointwise weight (C_out, C_in, 1, 1), and the
        relative Frobenius error |W - W_separable| / |W|.
    """
    out_channels, in_channels, kh, kw = weight.shape
    per_input = weight.permute(1, 0, 2, 3).reshape(in_channels, out_channels, kh * kw)  # (C_in, C_out, k^2)
    u, s, vh = torch.linalg.svd(per_input, full_matrices=False)  # batched over input channels
    # Split the singular value evenly so neither factor's scale dwarfs the other's.
    root = s[:, 0].sqrt()  # (C_in,)
    spatial = vh[:, 0, :] * root[:, None]  # (C_in, k^2)
    mixing = u[:, :, 0] * root[:, None]  # (C_in, C_out)
    depthwise = spatial.reshape(in_channels, 1, kh, kw)
    pointwise = mixing.t().reshape(out_channels, in_channels, 1, 1)
    approximation = torch.einsum("io,ik->oik", mixing, spatial).reshape(weight.shape)
    error = float((weight - approximation).norm() / weight.norm().clamp_min(1e-12))
    return depthwise.contiguous(), pointwise.contiguous(), error


@torch.no_grad()
def fit_conv_to_outputs(inputs: torch.Tensor, targets: torch.Tensor, kernel_size: int,
                        padding_mode: str = "reflect", ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Least-squares ``kernel_size`` conv (stride 1, same size) mapping ``inputs`` to ``targets``.

    Args:
        inputs: (N, C_in, H, W) what the layer sees.
        targets: (N, C_out, H, W) what it should produce (before any activation).
        kernel_size: odd; the input is padded by kernel_size // 2 with ``padding_mode``.
        ridge: Tikhonov term relative to the mean diagonal of the normal matrix (keeps the solve
            stable on flat images).

    Returns:
        weight (C_out, C_in, k, k), bias (C_out,), and the fit's R^2 on the given data.
    """
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    pad = kernel_size // 2
    padded = F.pad(inputs, (pad,) * 4, mode=padding_mode) if pad else inputs
    patches = F.unfold(padded, kernel_size)  # (N, C_in * k^2, H * W)
    features = patches.permute(0, 2, 1).reshape(-1, patches.shape[1]).double()  # (N*H*W, C_in*k^2)
    wanted = targets.permute(0, 2, 3, 1).reshape(-1, targets.shape[1]).double()  # (N*H*W, C_out)
    design = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], dim=1)
    normal = design.t() @ design
    normal += ridge * normal.diagonal().mean() * torch.eye(len(normal), dtype=normal.dtype)
    solution = torch.linalg.solve(normal, design.t() @ wanted)  # (C_in*k^2 + 1, C_out)
    residual = wanted - design @ solution
    r2 = float(1 - residual.pow(2).sum() / (wanted - wanted.mean(0)).pow(2).sum().clamp_min(1e-12))
    weight = solution[:-1].t().reshape(targets.shape[1], inputs.shape[1], kernel_size, kernel_size)
    return weight.float().contiguous(), solution[-1].float().contiguous(), r2
