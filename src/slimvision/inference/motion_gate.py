"""A motion gate for fixed cameras: run the expensive face pipeline only when the picture changes.

Most frames of a door camera show the same empty scene. For each frame the gate computes a
cheap feature map (grey, box-averaged to cells of ``cell`` x ``cell`` pixels: averaging also
cancels most sensor noise). Each cell's noise level is learnt from the difference between
consecutive frames where nothing moves (half its mean square). A cell has changed when it
differs by more than ``noise_sigmas`` times its noise level (at least ``min_difference`` grey
levels). The frame is *processed* when more than ``changed_fraction`` of the cells changed since
the frame last processed; otherwise the caller reuses its last result. Comparing with the last
processed frame lets the gate skip an empty scene, and notice any change since the last look.

The per-cell change map (features, learnt noise, which cells changed) is :class:`CellChanges`,
shared with the realtime video stylizer (``slimvision.inference.style_video``), which keeps
the previous painting in the cells that did not change.

Why frame-to-frame differences and not the distance to a background model: a visitor who
stands still is "still" but far from the empty scene. A noise level learnt from that distance
grew with the visitor's contrast within 2-3 frames, and then the visitor leaving no longer
counted as a change (the bug of issue 29). Consecutive frames of a still visitor differ only
by sensor noise, so the noise level stays true whoever stands there. The running background
(an exponential moving average of still frames) only reports ``changed``: the share of cells
that differ from it.

Safeguards, none of which depends on what the background learnt:
- the first frame is always processed;
- after motion stops, the next ``hold`` frames are processed (the last moving frame may be
  blurred);
- while the caller's last result has a face in it (``tracking=True``), a still frame is
  processed at least every ``recheck_every`` frames, so a person who leaves is noticed within
  ``recheck_every - 1`` frames even if their leaving were missed as motion;
- a frame is processed at least every ``refresh_every`` frames, so a result never goes stale.

Example:
    >>> import numpy as np
    >>> gate = MotionGate()
    >>> still = np.full((480, 640, 3), 90, np.uint8)
    >>> [gate.update(still).process for _ in range(3)]
    [True, False, False]
    >>> [gate.update(still, tracking=True).reason for _ in range(4)]  # a face in the last result
    ['recheck', 'still', 'still', 'recheck']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The defaults, named so that docs/faces.md can be checked against them (tests/inference/test_motion_gate.py).
HOLD_FRAMES = 5
RECHECK_EVERY = 3
REFRESH_EVERY = 150


@dataclass(frozen=True)
class GateDecision:
    """Whether to run the pipeline on this frame, and why (``first``, ``motion``, ``hold``,
    ``recheck``, ``refresh`` or ``still``); ``changed`` is the share of cells that differ from
    the learnt background."""

    process: bool
    reason: str
    changed: float


class CellChanges:
    """The per-cell change map the gate decides with, shared with the realtime video stylizer.

    A frame becomes a feature map of grey (BT.601 luma) averages over ``cell`` x ``cell`` blocks.
    Each cell's sensor noise is learnt from the steps between consecutive frames where that cell
    is quiet (half the mean square step); a cell has changed when it differs from a reference by
    more than ``noise_sigmas`` noise levels and at least ``min_difference`` grey levels.

    Args:
        cell: Side of the square cells the frame is averaged over, px.
        noise_sigmas: A cell changed when it moved more than this many noise levels...
        min_difference: ...and at least this many grey levels.
        learning_rate: Weight of each still frame in the running noise level.

    Example:
        >>> import numpy as np
        >>> cells = CellChanges(cell=8)
        >>> a = cells.features(np.full((48, 64, 3), 90, np.uint8))
        >>> b = a.copy(); b[1, 2] += 40
        >>> cells.observe(a); cells.changed(b, a).nonzero()
        (array([1]), array([2]))
    """

    def __init__(self, cell: int = 8, noise_sigmas: float = 4.0, min_difference: float = 3.0,
                 learning_rate: float = 0.05) -> None:
        if cell < 1 or learning_rate <= 0 or learning_rate > 1:
            raise ValueError("CellChanges: cell >= 1, 0 < learning_rate <= 1")
        self.cell, self.noise_sigmas, self.min_difference = cell, noise_sigmas, min_difference
        self.learning_rate = learning_rate
        self.variance: np.ndarray | None = None  # per-cell sensor noise (variance of one frame's value)
        self.previous: np.ndarray | None = None  # features of the frame just before

    def features(self, frame: np.ndarray) -> np.ndarray:
        """The cheap feature map: grey (BT.601 luma) averaged over cell x cell blocks."""
        if frame.ndim not in (2, 3) or frame.shape[0] < self.cell or frame.shape[1] < self.cell:
            raise ValueError(f"MotionGate: expected an (H, W) or (H, W, C) frame of at least {self.cell} px, "
                             f"got shape {frame.shape}")
        grey = frame.astype(np.float32)
        if grey.ndim == 3:
            grey = grey[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if grey.shape[2] >= 3 else grey[..., 0]
        rows, cols = grey.shape[0] // self.cell, grey.shape[1] // self.cell
        blocks = grey[:rows * self.cell, :cols * self.cell].reshape(rows, self.cell, cols, self.cell)
        return blocks.mean(axis=(1, 3))  # (rows, cols)

    def limit(self) -> np.ndarray:
        """Per-cell threshold of a change, grey levels (rows, cols)."""
        assert self.variance is not None, "observe() a first frame before asking for changes"
        return np.maximum(self.noise_sigmas * np.sqrt(self.variance), self.min_difference)

    def changed(self, current: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Boolean (rows, cols) map of the cells of ``current`` that differ from ``reference``."""
        return np.abs(current - reference) > self.limit()

    def observe(self, current: np.ndarray, learn: bool = True) -> None:
        """Take the next frame's features; with ``learn``, learn the noise from its quiet cells.

        A cell whose step from the frame before is beyond its limit is left out of the noise
        level: whatever changed it (something moving slowly, a flicker) is not sensor noise, and
        counting it would raise the limit until real changes pass unseen. A first frame (or one
        of another size) starts afresh, with a noise level of one grey level.
        """
        if self.previous is None or self.variance is None or self.previous.shape != current.shape:
            self.variance = np.full_like(current, 1.0)
        elif learn:
            step = current - self.previous
            quiet = np.abs(step) <= self.limit()
            self.variance[quiet] += self.learning_rate * (step[quiet] ** 2 / 2 - self.variance[quiet])  # var(a - b) = 2 var
        self.previous = current


class MotionGate:
    """Decides frame by frame whether anything moved (see the module docstring).

    Args:
        cell: Side of the square cells the frame is averaged over, px.
        changed_fraction: Share of cells that must change for the frame to count as motion.
        noise_sigmas: A cell changed when it moved more than this many noise levels...
        min_difference: ...and at least this many grey levels.
        learning_rate: Weight of each still frame in the running noise level and background.
        hold: Frames processed after motion stops.
        recheck_every: While a face is tracked, a still frame is processed at least this often.
        refresh_every: A frame is processed at least this often, whatever happens.
    """

    def __init__(self, cell: int = 8, changed_fraction: float = 0.002, noise_sigmas: float = 4.0,
                 min_difference: float = 3.0, learning_rate: float = 0.05, hold: int = HOLD_FRAMES,
                 recheck_every: int = RECHECK_EVERY, refresh_every: int = REFRESH_EVERY) -> None:
        if cell < 1 or not 0 <= changed_fraction < 1 or learning_rate <= 0 or learning_rate > 1:
            raise ValueError("MotionGate: cell >= 1, 0 <= changed_fraction < 1, 0 < learning_rate <= 1")
        if hold < 0 or recheck_every < 1 or refresh_every < 1:
            raise ValueError("MotionGate: hold >= 0, recheck_every >= 1, refresh_every >= 1")
        self.cells = CellChanges(cell, noise_sigmas, min_difference, learning_rate)
        self.changed_fraction = changed_fraction
        self.learning_rate, self.hold = learning_rate, hold
        self.recheck_every, self.refresh_every = recheck_every, refresh_every
        self.background: np.ndarray | None = None
        self.last: np.ndarray | None = None  # features of the frame last processed
        self.frames = self.processed = 0
        self._since_processed = 0
        self._since_motion = hold + 1  # no motion seen yet: nothing to hold on to

    @property
    def cell(self) -> int:
        return self.cells.cell

    @property
    def noise_sigmas(self) -> float:
        return self.cells.noise_sigmas

    @property
    def min_difference(self) -> float:
        return self.cells.min_difference

    @property
    def variance(self) -> np.ndarray | None:
        """Per-cell sensor noise (variance of one frame's value)."""
        return self.cells.variance

    def features(self, frame: np.ndarray) -> np.ndarray:
        """The cheap feature map: grey (BT.601 luma) averaged over cell x cell blocks."""
        return self.cells.features(frame)

    def update(self, frame: np.ndarray, tracking: bool = False) -> GateDecision:
        """Look at the next frame; returns whether to process it.

        Args:
            frame: (H, W) or (H, W, C) image of the camera.
            tracking: Whether the caller's last result has a face in it: then still frames are
                re-checked every ``recheck_every`` frames until the face is gone.
        """
        current = self.cells.features(frame)
        self.frames += 1
        if self.background is None or self.background.shape != current.shape:
            self.cells.previous = None  # a new scene: start the noise level afresh
            self.cells.observe(current)
            self.background = current.copy()
            return self._decide(True, "first", 1.0, current)
        changed = float(self.cells.changed(current, self.background).mean())
        moving = float(self.cells.changed(current, self.last).mean()) > self.changed_fraction
        self.cells.observe(current, learn=not moving)
        if not moving:  # the scene, for ``changed``
            self.background += self.learning_rate * (current - self.background)
        self._since_motion = 0 if moving else self._since_motion + 1
        return self._decide(*self._reason(moving, tracking), changed, current)

    def _reason(self, moving: bool, tracking: bool) -> tuple[bool, str]:
        if moving:
            return True, "motion"
        if self._since_motion <= self.hold:
            return True, "hold"
        if tracking and self._since_processed + 1 >= self.recheck_every:
            return True, "recheck"
        if self._since_processed + 1 >= self.refresh_every:
            return True, "refresh"
        return False, "still"

    def _decide(self, process: bool, reason: str, changed: float, current: np.ndarray) -> GateDecision:
        if process:
            self.processed += 1
            self._since_processed = 0
            self.last = current
        else:
            self._since_processed += 1
        return GateDecision(process, reason, changed)

    @property
    def skipped(self) -> int:
        """Frames the caller did not have to process."""
        return self.frames - self.processed
