"""Generated door-camera clips: a still scene with sensor noise, and a visitor who walks in and out.

No labelled face video ships offline, so the motion-gate benchmark makes its own: a fixed
background (any photo, cropped to the frame), per-frame Gaussian sensor noise, and a visitor (a
photo of a real face) who slides in from one side, stands for a while and leaves. The timeline
is returned with the frames, so a test knows which frames show the visitor.

The cases that once fooled the motion gate are settings of the same clip: a visitor who stands
still and then steps out at once (``walk_out=1``), a slow walk-in (a large ``walk``), and a
lighting change (``lighting=brightness_step(...)`` or ``brightness_ramp(...)``).

Example:
    >>> import numpy as np
    >>> room = np.full((480, 640, 3), 120, np.uint8); face = np.full((200, 160, 3), 60, np.uint8)
    >>> clip = DoorClip(room, face, frames=40, enter=10, stay=10)
    >>> frames = list(clip.frames()); len(frames), frames[0].shape, clip.visible(5), clip.visible(22)
    (40, (480, 640, 3), False, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


Lighting = Callable[[int], float]  # frame index -> brightness gain (1: as photographed)


def brightness_step(at: int, gain: float) -> Lighting:
    """A light switched on (gain > 1) or off (< 1) at frame ``at``.

    Example:
        >>> [brightness_step(2, 1.5)(i) for i in range(4)]
        [1.0, 1.0, 1.5, 1.5]
    """
    return lambda index: gain if index >= at else 1.0


def brightness_ramp(start: int, length: int, gain: float) -> Lighting:
    """Light changing steadily from 1 at frame ``start`` to ``gain`` over ``length`` frames (a cloud, dusk).

    Example:
        >>> [round(brightness_ramp(1, 4, 2.0)(i), 2) for i in range(7)]
        [1.0, 1.0, 1.25, 1.5, 1.75, 2.0, 2.0]
    """
    if length < 1:
        raise ValueError("a brightness ramp lasts at least 1 frame")
    return lambda index: 1.0 + (gain - 1.0) * min(max(index - start, 0), length) / length


class DoorClip:
    """A still scene; the visitor walks in over ``walk`` frames starting at ``enter``, stands for
    ``stay`` frames in the middle, and walks out over ``walk_out`` frames (default ``walk``; 1:
    gone from one frame to the next).

    ``background`` is cropped/padded to ``size`` (width, height) around its centre; the visitor
    image is pasted with its top ``top`` of the frame height below the frame's top edge.
    ``lighting`` scales the whole picture's brightness frame by frame (see :func:`brightness_step`
    and :func:`brightness_ramp`); sensor noise is added after it.
    """

    def __init__(self, background: np.ndarray, visitor: np.ndarray, frames: int = 300, enter: int = 100,
                 stay: int = 60, walk: int = 15, noise_sigma: float = 4.0, seed: int = 0,
                 size: tuple[int, int] = (640, 480), top: float = 0.15, walk_out: int | None = None,
                 lighting: Lighting | None = None) -> None:
        width, height = size
        walk_out = walk if walk_out is None else walk_out
        if visitor.shape[0] > height or visitor.shape[1] > width:
            raise ValueError(f"the visitor ({visitor.shape[1]}x{visitor.shape[0]}) must fit in the frame ({width}x{height})")
        if min(frames, walk, walk_out) < 1 or enter < 0 or stay < 0:
            raise ValueError("frames, walk and walk_out must be >= 1, enter and stay >= 0")
        self.background, self.visitor = _fit(background, width, height), visitor
        self.frames_total, self.enter, self.stay, self.walk, self.walk_out = frames, enter, stay, walk, walk_out
        self.noise_sigma, self.seed, self.size, self.top = noise_sigma, seed, size, top
        self.lighting = lighting

    def position(self, index: int) -> int | None:
        """The visitor's left edge in frame ``index``, or None when they are out of the picture."""
        width = self.size[0]
        standing = (width - self.visitor.shape[1]) // 2
        offstage = width  # just beyond the right edge
        step = index - self.enter
        if step < 0 or step >= self.walk + self.stay + self.walk_out:
            return None
        if step < self.walk:  # walking in
            left = offstage + (standing - offstage) * (step + 1) / self.walk
        elif step < self.walk + self.stay:
            left = standing
        else:  # walking out
            left = standing + (offstage - standing) * (step - self.walk - self.stay + 1) / self.walk_out
        return int(round(left)) if left < width else None

    def visible(self, index: int) -> bool:
        """Whether the whole visitor is in frame ``index`` (standing, not half-way in)."""
        left = self.position(index)
        return left is not None and left + self.visitor.shape[1] <= self.size[0]

    def frames(self) -> Iterator[np.ndarray]:
        """The (H, W, 3) uint8 frames, deterministic for a given seed."""
        rng = np.random.default_rng(self.seed)
        height = self.size[1]
        top = int(self.top * height)
        rows = min(self.visitor.shape[0], height - top)
        for index in range(self.frames_total):
            frame = self.background.astype(np.float32)
            left = self.position(index)
            if left is not None:
                columns = min(self.visitor.shape[1], self.size[0] - left)
                frame[top:top + rows, left:left + columns] = self.visitor[:rows, :columns]
            if self.lighting is not None:
                frame *= self.lighting(index)
            frame += rng.normal(0.0, self.noise_sigma, frame.shape).astype(np.float32)
            yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    def write(self, path: str | Path, fps: float = 15.0, overwrite: bool = False) -> Path:
        """Save the clip as a video (atomically; see :class:`slimvision.io.video.VideoWriter`)."""
        from slimvision.io.video import VideoWriter

        width, height = self.size
        with VideoWriter(path, width=width, height=height, fps=fps, overwrite=overwrite) as writer:
            for frame in self.frames():
                writer.write(frame)
        return Path(path)


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` cropped around its centre (or padded with its edge pixels) to height x width."""
    image = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    pad_y, pad_x = max(height - image.shape[0], 0), max(width - image.shape[1], 0)
    if pad_y or pad_x:
        image = np.pad(image, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), mode="edge")
    y0, x0 = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[y0:y0 + height, x0:x0 + width])
