"""The face student's margin heads: ArcFace, CosFace, MarginDistillation (tiny tensors, no faces)."""

from __future__ import annotations

import math

import pytest
import torch

from slimvision.training.face_losses import (
    ArcFaceHead, CosFaceHead, MarginDistillationHead, _additive_angle, class_angles, distillation_margins,
    teacher_class_centres,
)

CLASSES, DIM = 4, 16


def _clusters(spreads=(0.05, 0.1, 0.2, 0.4), per_class: int = 6, seed: int = 0):
    """Teacher-like descriptors: a shared offset (the narrow cone), one direction per class, and
    each class's own spread around it; (N, D) descriptors, (N,) labels."""
    generator = torch.Generator().manual_seed(seed)
    offset = 3 * torch.randn(DIM, generator=generator)
    directions = torch.nn.functional.normalize(torch.randn(CLASSES, DIM, generator=generator), dim=1)
    labels = torch.arange(CLASSES * per_class) % CLASSES
    noise = torch.randn(len(labels), DIM, generator=generator) * torch.tensor(spreads)[labels, None]
    return offset + directions[labels] + noise, labels


def _heads(descriptors, labels):
    origin = descriptors.mean(dim=0)
    centres = teacher_class_centres(descriptors, labels, CLASSES, origin)
    margins = distillation_margins(class_angles(descriptors, labels, centres, origin), 0.2, 0.4)
    return [ArcFaceHead(CLASSES, DIM, 0.3, 30.0, centres, origin),
            CosFaceHead(CLASSES, DIM, 0.2, 30.0, centres, origin),
            MarginDistillationHead(centres, margins, 30.0, origin)]


def test_each_head_gives_a_finite_loss_and_gradients():
    descriptors, labels = _clusters()
    for head in _heads(descriptors, labels):
        student = descriptors.clone().requires_grad_(True)
        loss = head.loss(student, labels)
        loss.backward()
        assert torch.isfinite(loss) and loss > 0, type(head).__name__
        assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
        learnable = [p for p in head.parameters() if p.requires_grad]
        if isinstance(head, MarginDistillationHead):
            assert learnable == []  # the teacher's centres are a buffer: saved, never stepped
            assert {"weight", "origin", "margins"} <= set(head.state_dict())
        else:
            assert learnable == [head.weight] and torch.isfinite(head.weight.grad).all()
            assert head.weight.grad.abs().sum() > 0


def test_gradients_stay_finite_on_a_class_centre_and_opposite_it():
    head = ArcFaceHead(2, 3, 0.5, 30.0, centres=torch.eye(3)[:2])
    student = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]], requires_grad=True)  # theta = 0 and theta = pi
    head.loss(student, torch.tensor([0, 0])).backward()
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("make", [lambda m: ArcFaceHead(CLASSES, DIM, m, 30.0),
                                  lambda m: CosFaceHead(CLASSES, DIM, m, 30.0)])
def test_the_margin_lowers_the_true_class_logit_only(make):
    descriptors, labels = _clusters()
    torch.manual_seed(0)
    plain, margin = make(0.0), make(0.3)
    margin.load_state_dict(plain.state_dict())  # the same centres
    without, with_margin = plain(descriptors, labels), margin(descriptors, labels)
    assert torch.allclose(without, 30.0 * plain.cosines(descriptors), atol=1e-5)  # no margin: plain scaled cosines
    rows = torch.arange(len(labels))
    assert (with_margin[rows, labels] < without[rows, labels] - 1e-3).all()
    others = torch.ones_like(without, dtype=torch.bool)
    others[rows, labels] = False
    assert torch.equal(with_margin[others], without[others])
    assert margin.loss(descriptors, labels) > plain.loss(descriptors, labels)


def test_arcface_keeps_falling_past_pi_minus_m_and_easy_margin_stops_at_90_degrees():
    margin = 0.5
    theta = torch.linspace(0, math.pi, 2001)
    target = _additive_angle(torch.cos(theta), margin, easy_margin=False)
    before = theta < math.pi - margin - 1e-3
    assert torch.allclose(target[before], torch.cos(theta + margin)[before], atol=1e-5)
    assert (target.diff() <= 1e-6).all()  # cos(theta + m) alone would rise again past pi - m
    assert (torch.cos(theta + margin).diff() > 1e-6).any()
    assert (target <= torch.cos(theta) + 1e-6).all()  # never an easier target than no margin
    easy = _additive_angle(torch.cos(theta), margin, easy_margin=True)
    assert torch.equal(easy[theta > math.pi / 2 + 1e-3], torch.cos(theta)[theta > math.pi / 2 + 1e-3])


def test_margin_distillation_uses_the_teachers_normalised_class_centres_fixed():
    descriptors, labels = _clusters()
    origin = descriptors.mean(dim=0)
    head = _heads(descriptors, labels)[2]
    units = torch.nn.functional.normalize(descriptors - origin, dim=1)
    expected = torch.nn.functional.normalize(torch.stack([units[labels == c].mean(0) for c in range(CLASSES)]), dim=1)
    assert torch.allclose(head.weight, expected, atol=1e-6)
    student = torch.nn.Parameter(descriptors + 0.3 * torch.randn_like(descriptors))
    optimizer = torch.optim.Adam([student, *head.parameters()], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        head.loss(student, labels).backward()
        optimizer.step()
    assert torch.allclose(head.weight, expected, atol=1e-6)  # the student moved, the centres did not


def test_tight_classes_get_the_largest_margins():
    descriptors, labels = _clusters(spreads=(0.05, 0.1, 0.2, 0.4))
    origin = descriptors.mean(dim=0)
    centres = teacher_class_centres(descriptors, labels, CLASSES, origin)
    angles = class_angles(descriptors, labels, centres, origin)
    assert (angles.diff() > 0).all()  # the spreads, in order
    margins = distillation_margins(angles, 0.2, 0.4, quantiles=(0.0, 1.0))
    assert margins[0] == pytest.approx(0.4) and margins[-1] == pytest.approx(0.2) and (margins.diff() < 0).all()
    clipped = distillation_margins(angles, 0.2, 0.4)  # 5th-95th percentiles: the extremes clip
    assert clipped.min() >= 0.2 - 1e-6 and clipped.max() <= 0.4 + 1e-6 and (clipped.diff() <= 0).all()
    assert torch.equal(distillation_margins(torch.full((3,), 0.3), 0.2, 0.4), torch.full((3,), 0.4))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="classes without a picture"):
        teacher_class_centres(torch.randn(4, DIM), torch.tensor([0, 0, 1, 1]), 3)
    with pytest.raises(ValueError, match="pi/2"):
        ArcFaceHead(CLASSES, DIM, 2.0, 30.0)
    with pytest.raises(ValueError, match="centres"):
        CosFaceHead(CLASSES, DIM, 0.2, 30.0, centres=torch.randn(CLASSES, DIM + 1))
    with pytest.raises(ValueError, match="margins"):
        MarginDistillationHead(torch.randn(CLASSES, DIM), torch.full((CLASSES - 1,), 0.3), 30.0)
