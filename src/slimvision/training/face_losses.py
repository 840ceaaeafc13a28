"""Margin-softmax heads for the face student: ArcFace, CosFace and MarginDistillation.

Each head turns a batch of descriptors and their pseudo-identities
(:class:`slimvision.data.face_identities.PseudoIdentities`) into class logits with a margin on the
true class, and a cross-entropy loss. The heads are training-only: they are checkpointed with
the student but never exported (the embedder graph is the student alone).

- **ArcFace** (Deng et al. 2019, "ArcFace: Additive Angular Margin Loss for Deep Face
  Recognition"): the true class's logit is ``s * cos(theta + m)``, against learnable class centres.
  When ``theta + m`` passes pi the cosine would rise again, so past ``theta > pi - m`` the logit
  falls back to ``cos(theta) - m * sin(m)`` (insightface's rule), or with ``easy_margin`` the margin
  only applies while ``cos(theta) > 0``.
- **CosFace** (Wang et al. 2018, "CosFace: Large Margin Cosine Loss for Deep Face Recognition"):
  the true class's logit is ``s * (cos(theta) - m)``.
- **MarginDistillation** (Svitov & Alyamkin, arXiv 2003.02586; github david-svitov/margindistillation):
  the teacher's class centres become the student's *fixed* classifier, and the margin follows the
  teacher. The paper's idea is that the student should reach the angles to the class centres that
  the teacher reaches: where the teacher puts a class's pictures close to their centre, the class
  is easy for it and the student is asked for a large margin; where the teacher's own pictures
  spread, a large margin would ask more than the teacher can give. The reference code sets a
  per-sample margin linear in the teacher's cosine to its centre, divided by the batch's largest
  cosine (m in [0.2, 0.5] at s=64). Here it is per class and fixed before training, since every
  teacher descriptor is cached: with theta_c the mean angle of the teacher's pictures of class c
  to its centre, ``m_c = m_max - (m_max - m_min) * (theta_c - theta_lo) / (theta_hi - theta_lo)``
  clipped to ``[m_min, m_max]``, with theta_lo, theta_hi the 5th and 95th percentiles of theta_c
  over the classes (percentiles, not the extremes, so that one badly aligned face does not squeeze
  every other class's margin into a narrow band). A per-class margin also does not depend on which
  pictures share a batch, and a resumed run uses the same margins.

**Angles from the teacher's mean descriptor.** dlib's descriptors (trained with a Euclidean
pairwise loss, not a margin softmax) all lie in a narrow cone: on 383 synthetic pseudo-identities
the median angle between two class centres is 0.45 rad and a picture's nearest other centre is
0.33 rad away, so a margin softmax on the raw directions cannot separate classes the teacher's
way (the teacher's own descriptors score a cross-entropy of 3.2 at s=30 with no margin) and would
pull the student out of the teacher's space to spread them. Measured from the teacher's mean
descriptor (``origin``), the same centres sit 1.58 rad apart (median) and the nearest other
centre 1.06 rad from a picture, the geometry a margin softmax expects (the teacher then scores
0.08 at s=30, m=0.3). Subtracting a fixed vector leaves every Euclidean distance, and so the
gallery's 0.6 threshold, unchanged.

Example:
    >>> targets = torch.randn(12, 8)
    >>> identities = torch.arange(12) % 3
    >>> origin = targets.mean(0)
    >>> centres = teacher_class_centres(targets, identities, 3, origin)
    >>> head = ArcFaceHead(3, 8, margin=0.3, scale=30.0, centres=centres, origin=origin)
    >>> head.loss(targets, identities).shape
    torch.Size([])
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: ``1 - cos^2`` is held at least this far from 0, so that sin(theta) has a finite gradient where a
#: descriptor lies exactly on (or opposite) a centre; float32 cosines reach it nowhere else.
_SINE_FLOOR = 1e-12


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero)."""
    return nn.functional.normalize(x, dim=-1)


def teacher_class_centres(targets: torch.Tensor, identities: torch.Tensor, num_classes: int,
                          origin: torch.Tensor | None = None) -> torch.Tensor:
    """(C, D) unit class centres: the mean of the teacher's unit descriptors of each class.

    Args:
        targets: (N, D) teacher descriptors.
        identities: (N,) class of each, in ``[0, num_classes)``.
        num_classes: C; every class must have a picture.
        origin: (D,) the point angles are measured from (the teacher's mean descriptor), or None.
    """
    directions = _unit(targets.float() - (0 if origin is None else origin))  # (N, D)
    sums = torch.zeros(num_classes, directions.shape[1], dtype=directions.dtype)
    sums.index_add_(0, identities.long(), directions)
    counts = torch.bincount(identities.long(), minlength=num_classes)
    if (counts == 0).any():
        raise ValueError(f"classes without a picture: {torch.nonzero(counts == 0).flatten()[:5].tolist()}")
    return _unit(sums)


def class_angles(targets: torch.Tensor, identities: torch.Tensor, centres: torch.Tensor,
                 origin: torch.Tensor | None = None) -> torch.Tensor:
    """(C,) mean angle (radians) between the teacher's pictures of each class and its centre."""
    directions = _unit(targets.float() - (0 if origin is None else origin))  # (N, D)
    cosines = (directions * centres[identities.long()]).sum(dim=1).clamp(-1.0, 1.0)  # (N,)
    sums = torch.zeros(len(centres), dtype=cosines.dtype).index_add_(0, identities.long(), torch.acos(cosines))
    return sums / torch.bincount(identities.long(), minlength=len(centres)).clamp_min(1)


def distillation_margins(angles: torch.Tensor, min_margin: float, max_margin: float,
                         quantiles: tuple[float, float] = (0.05, 0.95)) -> torch.Tensor:
    """(C,) per-class margins from the teacher's class angles (see the module docstring): the
    tightest classes get ``max_margin``, the loosest ``min_margin``, linear in angle between the
    ``quantiles`` of the angles. All classes get ``max_margin`` when their angles do not differ."""
    low, high = torch.quantile(angles.float(), torch.tensor(quantiles, dtype=torch.float32)).tolist()
    if high - low <= 1e-12:
        return torch.full_like(angles, max_margin, dtype=torch.float32)
    spread = ((angles.float() - low) / (high - low)).clamp(0.0, 1.0)
    return max_margin - (max_margin - min_margin) * spread


class MarginHead(nn.Module):
    """Scaled cosine logits of descriptors against unit class centres, a margin on the true class.

    Descriptors are measured from ``origin`` (a fixed (D,) buffer: the teacher's mean descriptor;
    zeros for plain angles) and scaled to unit length, as are the centres, so only angles count.
    Subclasses say how the margin changes the true class's cosine (:meth:`with_margin`).

    Args:
        num_classes: C, the pseudo-identities.
        dim: D, the descriptor size.
        scale: s, the logits' scale (the inverse temperature of the softmax).
        centres: (C, D) starting centres (normalised here); None: N(0, 0.01) as insightface starts them.
        origin: (D,) the point angles are measured from; None: zeros.
        learnable: the centres train (a Parameter) or stay fixed (a buffer: saved, never stepped).
    """

    def __init__(self, num_classes: int, dim: int, scale: float, centres: torch.Tensor | None = None,
                 origin: torch.Tensor | None = None, learnable: bool = True) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1 or not scale > 0:
            raise ValueError(f"a margin head needs classes, a dimension and a scale > 0; got {num_classes}, {dim}, "
                             f"{scale}")
        if centres is None:
            centres = torch.randn(num_classes, dim) * 0.01
        if centres.shape != (num_classes, dim):
            raise ValueError(f"centres must be ({num_classes}, {dim}), got {tuple(centres.shape)}")
        weight = _unit(centres.detach().float().clone())
        if learnable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)
        self.register_buffer("origin", torch.zeros(dim) if origin is None else origin.detach().float().clone())
        self.scale = float(scale)

    def cosines(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(B, C) cosines between the descriptors (from ``origin``) and every class centre."""
        return _unit(descriptors - self.origin) @ _unit(self.weight).t()

    def with_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B,) the true classes' cosines (B,) after the margin; ``labels`` (B,) for per-class margins."""
        raise NotImplementedError

    def forward(self, descriptors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, C) scaled logits, the true class's (``labels``, (B,)) lowered by the margin."""
        cosines = self.cosines(descriptors)  # (B, C)
        rows = torch.arange(len(labels), device=labels.device)
        target = self.with_margin(cosines[rows, labels], labels)  # (B,)
        logits = cosines.index_put((rows, labels), target)
        return self.scale * logits

    def loss(self, descriptors: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits."""
        return nn.functional.cross_entropy(self(descriptors, labels), labels)


def _additive_angle(cosine: torch.Tensor, margin: torch.Tensor | float, easy_margin: bool) -> torch.Tensor:
    """cos(theta + m) from cos(theta), with ArcFace's handling where theta + m would pass pi.

    Without ``easy_margin`` (insightface's default), past ``theta > pi - m`` the logit becomes
    ``cos(theta) - m * sin(m)``: still falling as theta grows, where cos(theta + m) would rise.
    With ``easy_margin`` the margin is only added while ``cos(theta) > 0`` (theta < pi/2).
    """
    margin = torch.as_tensor(margin, dtype=cosine.dtype, device=cosine.device)
    sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(_SINE_FLOOR))
    shifted = cosine * torch.cos(margin) - sine * torch.sin(margin)  # cos(theta + m)
    if easy_margin:
        return torch.where(cosine > 0, shifted, cosine)
    threshold = torch.cos(math.pi - margin)
    return torch.where(cosine > threshold, shifted, cosine - margin * torch.sin(margin))


class ArcFaceHead(MarginHead):
    """ArcFace: additive angular margin, ``s * cos(theta_y + m)``, learnable centres.

    Args:
        margin: m in radians (the paper: 0.5 with s=64 on 512-d embeddings of 85k identities).
        easy_margin: apply the margin only while cos(theta) > 0 instead of insightface's fallback.
        (The rest as :class:`MarginHead`.)
    """

    def __init__(self, num_classes: int, dim: int, margin: float, scale: float, centres: torch.Tensor | None = None,
                 origin: torch.Tensor | None = None, easy_margin: bool = False) -> None:
        super().__init__(num_classes, dim, scale, centres, origin, learnable=True)
        if not 0 <= margin < math.pi / 2:
            raise ValueError(f"an ArcFace margin is an angle in [0, pi/2), got {margin}")
        self.margin, self.easy_margin = float(margin), easy_margin

    def with_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _additive_angle(cosine, self.margin, self.easy_margin)


class CosFaceHead(MarginHead):
    """CosFace: additive cosine margin, ``s * (cos(theta_y) - m)``, learnable centres.

    Args:
        margin: m, subtracted from the cosine (the paper: 0.35 with s=64).
        (The rest as :class:`MarginHead`.)
    """

    def __init__(self, num_classes: int, dim: int, margin: float, scale: float, centres: torch.Tensor | None = None,
                 origin: torch.Tensor | None = None) -> None:
        super().__init__(num_classes, dim, scale, centres, origin, learnable=True)
        if not 0 <= margin <= 2:
            raise ValueError(f"a CosFace margin is a cosine difference in [0, 2], got {margin}")
        self.margin = float(margin)

    def with_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cosine - self.margin


class MarginDistillationHead(MarginHead):
    """MarginDistillation: the teacher's class centres as a fixed classifier, ArcFace's logit with
    a margin per class (:func:`distillation_margins`).

    Args:
        centres: (C, D) the teacher's unit class centres (:func:`teacher_class_centres`); fixed.
        margins: (C,) each class's angular margin in radians; fixed.
        scale, origin: as :class:`MarginHead`.
    """

    def __init__(self, centres: torch.Tensor, margins: torch.Tensor, scale: float,
                 origin: torch.Tensor | None = None) -> None:
        super().__init__(centres.shape[0], centres.shape[1], scale, centres, origin, learnable=False)
        if margins.shape != (centres.shape[0],) or not bool(((margins >= 0) & (margins < math.pi / 2)).all()):
            raise ValueError(f"margins must be ({centres.shape[0]},) angles in [0, pi/2)")
        self.register_buffer("margins", margins.detach().float().clone())

    def with_margin(self, cosine: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _additive_angle(cosine, self.margins[labels], easy_margin=False)
