"""The motion gate skips a still, noisy scene and wakes up for anything that moves into it."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.inference.motion_gate import MotionGate


def scene(rng: np.random.Generator) -> np.ndarray:
    """A textured still scene (480x640 RGB)."""
    base = rng.integers(40, 200, (60, 80, 3)).astype(np.uint8)
    return np.kron(base, np.ones((8, 8, 1), np.uint8))


def noisy(frame: np.ndarray, rng: np.random.Generator, sigma: float = 6.0) -> np.ndarray:
    return np.clip(frame + rng.normal(0, sigma, frame.shape), 0, 255).astype(np.uint8)


def test_a_still_noisy_scene_is_skipped_and_a_visitor_is_not():
    rng = np.random.default_rng(0)
    background = scene(rng)
    gate = MotionGate(hold=5, refresh_every=1000)
    decisions = [gate.update(noisy(background, rng)) for _ in range(60)]
    assert decisions[0].reason == "first" and sum(d.process for d in decisions[1:]) <= 2  # sensor noise
    visitor = []
    for step in range(20):  # a 120x80 dark figure walks in from the left
        frame = background.copy()
        left = 20 * step
        frame[200:320, left:left + 80] = 15
        visitor.append(gate.update(noisy(frame, rng)))
    assert all(d.process and d.reason == "motion" for d in visitor)
    after = [gate.update(noisy(background, rng)) for _ in range(30)]  # gone again
    # The empty hall differs from the last look (the visitor): once, then 5 more frames, then rest.
    assert [d.reason for d in after[:7]] == ["motion"] + ["hold"] * 5 + ["still"]
    assert not any(d.process for d in after[6:])
    assert gate.frames == 110 and gate.skipped == 110 - gate.processed


def test_a_small_change_counts_but_a_global_flicker_of_noise_does_not():
    rng = np.random.default_rng(1)
    background = scene(rng)
    gate = MotionGate(hold=0)
    for _ in range(20):
        gate.update(noisy(background, rng))
    assert not gate.update(noisy(background, rng, sigma=8.0)).process  # stronger noise, same scene
    small = background.copy()
    small[100:140, 300:340] = 255  # a 40x40 object: 25 of the 4,800 cells
    assert gate.update(noisy(small, rng)).process
    assert not gate.update(noisy(small, rng)).process  # it stays: nothing new since the last look
    assert gate.update(noisy(background, rng)).process  # it went: the last result is out of date


def test_refresh_keeps_results_from_going_stale_and_bad_frames_are_refused():
    gate = MotionGate(refresh_every=10, hold=0)
    still = np.full((64, 64), 100, np.uint8)
    decisions = [gate.update(still) for _ in range(30)]
    assert [i for i, d in enumerate(decisions) if d.process] == [0, 10, 20]
    assert {d.reason for d in decisions if d.process} == {"first", "refresh"}
    with pytest.raises(ValueError, match="at least 8 px"):
        gate.update(np.zeros((4, 4), np.uint8))


def test_a_visitor_who_stands_still_and_then_steps_out_is_noticed_at_once():
    # Issue 29: the noise level was learnt from the distance to the background, so a visitor
    # standing still raised it within 3 frames and their leaving no longer counted as a change.
    rng = np.random.default_rng(2)
    background = scene(rng)
    present = background.copy()
    present[120:360, 240:400] = 20  # a dark figure in the middle
    gate = MotionGate(refresh_every=1000)
    for _ in range(10):
        gate.update(noisy(background, rng))
    assert gate.update(noisy(present, rng)).reason == "motion"
    standing = [gate.update(noisy(present, rng)) for _ in range(15)]
    assert [d.reason for d in standing[:5]] == ["hold"] * 5 and not any(d.process for d in standing[5:])
    limit = gate.noise_sigmas * np.sqrt(gate.variance)
    assert limit.max() < 2 * gate.noise_sigmas  # still sensor noise (sigma 6 over 64 px is 0.75), not the figure
    gone = gate.update(noisy(background, rng))
    assert gone.process and gone.reason == "motion"


def test_a_tracked_face_is_rechecked_until_it_is_gone_and_an_empty_scene_is_not():
    still = np.full((64, 64), 100, np.uint8)
    gate = MotionGate(hold=2, recheck_every=3, refresh_every=1000)
    gate.update(still)
    tracked = [gate.update(still, tracking=True).reason for _ in range(8)]
    assert tracked == ["still", "still", "recheck"] * 2 + ["still", "still"]  # every 3rd frame processed
    assert not any(gate.update(still).process for _ in range(20))  # nobody in the last result: skipped
    with pytest.raises(ValueError, match="recheck_every >= 1"):
        MotionGate(recheck_every=0)


def test_docs_state_the_gates_defaults():
    """The figures docs/faces.md gives (frames held after motion, re-check and refresh rates) are the code's."""
    import re
    from pathlib import Path

    from slimvision.inference import motion_gate

    docs = (Path(__file__).parents[2] / "docs" / "faces.md").read_text()
    section = docs[docs.index("## The motion gate"):]
    section = section[:section.index("\n## ", 1)]
    figures = {"hold": r"the next (\d+) frames are processed", "recheck": r"every (\d+)(?:rd|th|nd) frame",
               "refresh": r"one frame in (\d+)"}
    found = {key: int(re.search(pattern, " ".join(section.split())).group(1)) for key, pattern in figures.items()}
    assert found == {"hold": motion_gate.HOLD_FRAMES, "recheck": motion_gate.RECHECK_EVERY,
                     "refresh": motion_gate.REFRESH_EVERY}
    gate = MotionGate()
    assert (gate.hold, gate.recheck_every, gate.refresh_every) == tuple(found.values())
