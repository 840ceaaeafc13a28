"""A motion gate for fixed cameras: run the expensive face pipeline only when the picture changes.

Most frames of a door camera show the same empty scene. For each frame the gate computes a
cheap feature map (grey, box-averaged to cells of ``cell`` x ``cell`` pixels: averaging also
cancels most sensor noise). A running background model of that map (an exponential moving
average, learnt from frames where nothing moves) gives each cell's noise level. A cell has
changed when it differs by more than ``noise_sigmas`` times its noise level (at least
``min_difference`` grey levels). The frame is *processed* when more than ``changed_fraction``
of the cells changed since the frame last processed; otherwise the caller reuses its last
result. Comparing with the last processed frame, not only with the empty scene, also lets the
gate skip a visitor who stands still: the last result already has them. Every decision also
reports the share of cells that differ from the background (``changed``).

Safeguards: the first frame is always processed; a frame is processed at least every
``refresh_every`` frames (so a result never goes stale forever); after motion stops, ``hold``
more frames are processed (the last moving frame may be blurred).

Example:
    >>> import numpy as np
    >>> gate = MotionGate()
    >>> still = np.full((480, 640, 3), 90, np.uint8)
    >>> [gate.update(still).process for _ in range(3)]
    [True, False, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GateDecision:
    """Whether to run the pipeline on this frame, and why (``first``, ``motion``, ``hold``,
    ``refresh`` or ``still``); ``changed`` is the share of cells that changed."""

    process: bool
    reason: str
    changed: float


class MotionGate:
    """Decides frame by frame whether anything moved (see the module docstring)."""

    def __init__(self, cell: int = 8, changed_fraction: float = 0.002, noise_sigmas: float = 4.0,
                 min_difference: float = 3.0, learning_rate: float = 0.05, hold: int = 5,
                 refresh_every: int = 150) -> None:
        if cell < 1 or not 0 <= changed_fraction < 1 or learning_rate <= 0 or learning_rate > 1:
            raise ValueError("MotionGate: cell >= 1, 0 <= changed_fraction < 1, 0 < learning_rate <= 1")
        self.cell, self.changed_fraction = cell, changed_fraction
        self.noise_sigmas, self.min_difference = noise_sigmas, min_difference
        self.learning_rate, self.hold, self.refresh_every = learning_rate, hold, refresh_every
        self.background: np.ndarray | None = None
        self.variance: np.ndarray | None = None
        self.last: np.ndarray | None = None  # features of the frame last processed
        self.frames = self.processed = 0
        self._since_processed = 0
        self._since_motion = hold + 1  # no motion seen yet: nothing to hold on to

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
        return blocks.mean(axis=(1, 3))

    def update(self, frame: np.ndarray) -> GateDecision:
        """Look at the next frame; returns whether to process it."""
        current = self.features(frame)
        self.frames += 1
        if self.background is None or self.background.shape != current.shape:
            self.background, self.variance = current.copy(), np.full_like(current, 1.0)
            return self._decide(True, "first", 1.0, current)
        limit = np.maximum(self.noise_sigmas * np.sqrt(self.variance), self.min_difference)
        changed = float((np.abs(current - self.background) > limit).mean())
        # Only a change since the frame last processed matters: a visitor standing still in the
        # doorway differs from the empty scene, but the last result already has them.
        moving = float((np.abs(current - self.last) > limit).mean()) > self.changed_fraction
        if not moving:  # learn the scene (and its noise) only from frames where nothing moves
            rate = self.learning_rate
            self.variance += rate * ((current - self.background) ** 2 - self.variance)
            self.background += rate * (current - self.background)
        self._since_motion = 0 if moving else self._since_motion + 1
        if moving:
            return self._decide(True, "motion", changed, current)
        if self._since_motion <= self.hold:
            return self._decide(True, "hold", changed, current)
        if self._since_processed + 1 >= self.refresh_every:
            return self._decide(True, "refresh", changed, current)
        return self._decide(False, "still", changed, current)

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
        return self.frames - self.processed
