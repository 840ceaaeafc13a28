"""Generated door-camera clips: deterministic, a visitor on a known timeline, and the gate sees them."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.data.face_clips import DoorClip
from slimvision.inference.motion_gate import MotionGate


def make_clip(**overrides) -> DoorClip:
    rng = np.random.default_rng(3)
    room = np.kron(rng.integers(60, 180, (30, 40, 3)).astype(np.uint8), np.ones((16, 16, 1), np.uint8))
    visitor = np.full((200, 160, 3), 30, np.uint8)
    settings = dict(frames=60, enter=20, stay=10, walk=5, noise_sigma=4.0)
    settings.update(overrides)
    return DoorClip(room, visitor, **settings)


def test_the_visitor_follows_the_timeline_and_frames_repeat_by_seed():
    clip = make_clip()
    assert [clip.position(i) is not None for i in (19, 20, 38, 39)] == [False, True, True, False]
    assert [i for i in range(60) if clip.visible(i)] == list(range(21, 38))
    first, again = list(clip.frames()), list(make_clip().frames())
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], list(make_clip(seed=1).frames())[0])  # noise depends on the seed
    standing = first[30].astype(float)
    assert standing[72:272, 240:400].mean() < 45  # the dark visitor stands in the middle


def test_the_motion_gate_skips_the_empty_scene_and_wakes_for_the_visitor():
    clip = make_clip(frames=120, enter=50, stay=20)
    gate = MotionGate(hold=3, refresh_every=1000)
    decisions = [gate.update(frame) for frame in clip.frames()]
    walking = [i for i in range(50, 90) if clip.position(i) is not None and not clip.visible(i)]
    assert all(decisions[i].process for i in walking)
    assert sum(d.process for d in decisions[1:50]) <= 2 and sum(d.process for d in decisions[100:]) == 0


def test_bad_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must fit in the frame"):
        DoorClip(np.zeros((10, 10, 3), np.uint8), np.zeros((500, 10, 3), np.uint8))
    clip = make_clip(frames=6)
    path = clip.write(tmp_path / "clip.mp4", fps=5)
    from slimvision.io.video import probe_video

    info = probe_video(path)
    assert (info.width, info.height) == (640, 480)


def test_a_visitor_can_step_out_at_once_and_the_light_can_change():
    clip = make_clip(frames=40, enter=5, stay=10, walk=5, walk_out=1)
    assert [clip.position(i) is not None for i in (19, 20)] == [True, False]  # in the doorway, then gone
    from slimvision.data.face_clips import brightness_ramp, brightness_step

    plain = list(make_clip(frames=12, enter=100).frames())
    dimmed = list(make_clip(frames=12, enter=100, lighting=brightness_step(6, 0.5)).frames())
    ratios = [dimmed[i].mean() / plain[i].mean() for i in (5, 6, 11)]
    assert ratios[0] == pytest.approx(1.0) and ratios[1] == pytest.approx(0.5, abs=0.01) == ratios[2]
    ramp = list(make_clip(frames=12, enter=100, lighting=brightness_ramp(2, 8, 1.4)).frames())
    means = [frame.mean() / base.mean() for frame, base in zip(ramp, plain)]
    assert means[2] == pytest.approx(1.0)
    assert means[6] == pytest.approx(1.2, abs=0.01) and means[11] == pytest.approx(1.4, abs=0.01)
    with pytest.raises(ValueError, match="walk_out must be >= 1"):
        make_clip(walk_out=0)
    with pytest.raises(ValueError, match="at least 1 frame"):
        brightness_ramp(0, 0, 2.0)
