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
