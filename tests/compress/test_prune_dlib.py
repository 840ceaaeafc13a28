"""Pruning dlib's face ResNet keeps the zero-padded shortcuts: width 1 is the teacher, width 0.5 its best half."""

from __future__ import annotations

import pytest
import torch

from slimvision.compress.prune_dlib import narrow_dlib_resnet, narrower_config, stream_channels
from slimvision.errors import ConfigError
from slimvision.models.faces.config import DlibResNetConfig
from slimvision.models.faces.dlib_resnet import DlibResNet

SMALL = DlibResNetConfig(input_size=64, stem_channels=8, levels=((8, 2), (16, 2), (32, 1), (32, 1)), embedding_dim=16)


def _teacher(config: DlibResNetConfig = SMALL) -> DlibResNet:
    torch.manual_seed(0)
    teacher = DlibResNet(config).eval()
    with torch.no_grad():  # uneven magnitudes, so importance has something to rank
        for parameter in teacher.parameters():
            parameter.mul_(torch.rand_like(parameter) * 2)
    return teacher


def test_full_width_is_the_teacher_itself():
    teacher = _teacher()
    student, report = narrow_dlib_resnet(teacher, width=1.0)
    image = torch.rand(3, 3, 64, 64)
    assert torch.equal(student.eval()(image), teacher(image))
    assert report["params_after"] == report["params_before"]


def test_half_width_keeps_each_levels_shortcut_channels_first():
    teacher = _teacher()
    student, report = narrow_dlib_resnet(teacher, width=0.5)
    assert student.config == narrower_config(SMALL, 0.5)
    assert student.config.levels == ((4, 2), (8, 2), (16, 1), (16, 1))
    streams = report["stream_channels"]
    for previous, current, (old, _), (new, _) in zip(streams, streams[1:], SMALL.levels, SMALL.levels[1:]):
        assert current[:len(previous)] == previous  # the zero-padded shortcut lands where it did in the teacher
        assert all(channel >= old for channel in current[len(previous):]) or old == new
    assert streams[-1] == streams[-2]  # the last level does not widen: the same channels
    # every kept weight is the teacher's: the stem's rows, the embedding's columns
    assert torch.equal(student.stem.weight, teacher.stem.weight[streams[0]])
    assert torch.equal(student.embedding.weight, teacher.embedding.weight[:, streams[-1]])
    assert student(torch.rand(2, 3, 64, 64)).shape == (2, 16)
    assert report["params_after"] < report["params_before"] / 3


def test_the_most_important_channels_are_kept():
    teacher = _teacher()
    with torch.no_grad():  # make stem channel 5 (and the level-0 stream) clearly the strongest
        teacher.stem.weight[5] *= 100
        for block in teacher.blocks[:2]:
            block.conv2.weight[5] *= 100
    assert 5 in stream_channels(teacher, narrower_config(SMALL, 0.25))[0]


def test_impossible_students_are_refused():
    teacher = _teacher()
    with pytest.raises(ConfigError, match="width"):
        narrow_dlib_resnet(teacher, width=0.0)
    deeper = DlibResNetConfig(input_size=64, stem_channels=4, levels=((4, 3), (8, 2), (16, 1), (16, 1)), embedding_dim=16)
    with pytest.raises(ConfigError, match="depth"):
        narrow_dlib_resnet(teacher, config=deeper)
    squeezed = DlibResNetConfig(input_size=64, stem_channels=8, levels=((8, 2), (4, 2), (16, 1), (16, 1)),
                                embedding_dim=16)
    with pytest.raises(ConfigError, match="cannot hold"):
        narrow_dlib_resnet(teacher, config=squeezed)


def test_batch_norms_fold_back_into_the_convs_exactly():
    from slimvision.compress.prune_dlib import with_batch_norm
    from slimvision.models.faces.dlib_resnet import fold_batch_norm

    normed = with_batch_norm(_teacher())
    assert normed.config.batch_norm and sum(isinstance(m, torch.nn.BatchNorm2d) for m in normed.modules()) == 13
    with torch.no_grad():  # trained-looking norms: running statistics, scales and shifts far from (0, 1)
        normed.train()
        normed(torch.rand(8, 3, 64, 64))
        for module in normed.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_()
    normed.eval()
    folded = fold_batch_norm(normed)
    assert not folded.config.batch_norm and not any("norm" in key for key in folded.state_dict())
    image = torch.rand(3, 3, 64, 64)
    assert torch.allclose(folded(image), normed(image), rtol=1e-4, atol=1e-5)


def test_norms_started_from_the_teacher_give_each_channel_the_teachers_statistics():
    from slimvision.compress.prune_dlib import conv_output_statistics, teacher_channels, with_batch_norm

    teacher = _teacher()
    chips = [torch.rand(6, 3, 64, 64) for _ in range(2)]
    student, report = narrow_dlib_resnet(teacher, width=0.5)
    normed = with_batch_norm(student, teacher, report, chips)
    norms = [normed.stem_norm] + [norm for block in normed.blocks for norm in (block.norm1, block.norm2)]
    theirs = conv_output_statistics(teacher, chips)
    for norm, (mean, std), kept in zip(norms, theirs, teacher_channels(normed, report)):
        assert torch.allclose(norm.bias, mean[kept]) and torch.allclose(norm.weight, std[kept].clamp_min(1e-4))
    # The running statistics are the student's own conv outputs in training mode, over the same chips.
    running = [norm.running_mean.clone() for norm in norms]
    normed.train()
    ours = conv_output_statistics(normed, chips)
    for kept_mean, (mean, _) in zip(running, ours):
        assert torch.allclose(kept_mean, mean, atol=1e-4)
    with pytest.raises(ConfigError, match="calibration"):
        with_batch_norm(student, teacher, report, [])


def test_at_full_width_norms_from_the_teacher_fold_back_to_the_teacher():
    from slimvision.compress.prune_dlib import with_batch_norm
    from slimvision.models.faces.dlib_resnet import fold_batch_norm

    teacher = _teacher()
    chips = torch.rand(64, 3, 64, 64)
    student, report = narrow_dlib_resnet(teacher, width=1.0)
    folded = fold_batch_norm(with_batch_norm(student, teacher, report, [chips]))
    # Each norm maps its channel's statistics onto themselves: the teacher again, up to the
    # running variance's n / (n - 1) and the norms' epsilon.
    assert torch.allclose(folded(chips[:4]), teacher(chips[:4]), rtol=0.02, atol=0.02)
    assert not torch.equal(folded.blocks[0].conv1.weight, teacher.blocks[0].conv1.weight)
