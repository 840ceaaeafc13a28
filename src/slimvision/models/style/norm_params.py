"""Every scale and offset a style transformer's conditional instance norms compute from a style vector.

The style vector reaches the painting only through these numbers: each
:class:`~slimvision.models.style.transformer.ConditionalInstanceNorm` maps it through two
``nn.Linear`` layers (Magenta's graph: 1x1 convolutions of the (1, 1, D) vector) to a per-channel
scale ``gamma`` and offset ``beta``. So the map from vector to parameters is exactly affine,
``params = W @ vector + b`` with ``W`` the stacked linear weights (P, D), not just near-linear:
:class:`NormParameterMap` holds ``W`` and ``b`` and :meth:`NormParameterMap.check_affine` measures
it. Two vectors' parameter difference is then ``W @ (a - b)``, and its squared length
``(a - b)^T W^T W (a - b)`` weights the D directions of the vector space by how strongly the
transformer's norms respond to them; directions the transformer ignores cost nothing.

What this does not see: how much the painting moves per unit of each parameter (a last-layer
offset shifts colours directly; a residual scale is damped by later norms). That needs the
image itself (the painting loss of ``training.style_predictor``).

Example:
    >>> from slimvision.models.style import StyleTransformer, StyleTransformerConfig
    >>> params = NormParameterMap(StyleTransformer(StyleTransformerConfig()))
    >>> params.matrix.shape                                   # (P, D): P = 2 x norm channels
    torch.Size([694, 100])
    >>> params(torch.zeros(2, 100)).shape
    torch.Size([2, 694])
"""

from __future__ import annotations

import torch
from torch import nn

from slimvision.models.style.transformer import StyleTransformer

__all__ = ["NormParameterMap"]


class NormParameterMap(nn.Module):
    """The affine map vector -> (every gamma, every beta) of a transformer's style norms, frozen.

    The rows are the norms' scales then offsets, norm by norm in the order they run
    (``transformer.norms()``). The map copies the weights, so the transformer is not held.
    """

    def __init__(self, transformer: StyleTransformer) -> None:
        super().__init__()
        linears = [linear for norm in transformer.norms() for linear in (norm.gamma, norm.beta)]
        with torch.no_grad():
            self.register_buffer("matrix", torch.cat([linear.weight for linear in linears]).detach().clone())
            self.register_buffer("offset", torch.cat([linear.bias for linear in linears]).detach().clone())
        # tr(W^T W): the expected squared parameter error of a unit-variance isotropic vector error.
        self.register_buffer("trace", (self.matrix ** 2).sum())

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        """(B, D) style vectors -> (B, P) norm parameters."""
        return style @ self.matrix.T + self.offset

    def difference(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, P): the parameters of ``a`` minus those of ``b``; the offsets cancel exactly."""
        return (a - b) @ self.matrix.T

    def normalised_error(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``|W (a - b)|^2 / tr(W^T W)``.

        Divided by the trace so an error spread evenly over the D dimensions scores what the
        vector MSE scores (for e with i.i.d. entries of variance s^2, E|W e|^2 = s^2 tr(W^T W)):
        the two losses share a scale and a weight of 1 means "as much as the vector MSE".
        """
        return (self.difference(a, b) ** 2).sum(dim=1).mean() / self.trace

    def direction_weights(self) -> torch.Tensor:
        """Eigenvalues of ``W^T W / tr(W^T W) * D``, largest first: how much the norms weight each
        principal direction of the vector space (all 1 would be plain vector MSE)."""
        gram = self.matrix.T @ self.matrix
        return torch.linalg.eigvalsh(gram).flip(0) / self.trace * self.matrix.shape[1]

    @torch.no_grad()
    def check_affine(self, transformer: StyleTransformer, style: torch.Tensor) -> float:
        """Largest difference between the transformer's own gamma / beta layers on ``style``
        and this map: 0 up to float rounding, since every conditional norm is a linear layer."""
        direct = torch.cat([linear(style) for norm in transformer.norms() for linear in (norm.gamma, norm.beta)],
                           dim=1)
        return float((direct - self(style)).abs().max())
