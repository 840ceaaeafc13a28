"""Real-time video style transfer: paint small, upsample along the frame's edges, repaint what changed.

Painting a 1280x720 frame at full resolution takes the fast model about 170 ms on two cores,
which is 6 frames/s before decoding and encoding. :class:`RealtimeStylizer` does three things
instead:

1. **Paint small.** The frame is area-downscaled to a working size (by default at most
   :data:`DEFAULT_WORK_PIXELS`, i.e. 640x360 for 720p and 1080p; smaller frames are painted as
   they are) and painted there.
2. **Upsample along edges.** The painting's residual (painting - frame, at the working size) is
   brought to full size by the fast guided filter with the full-resolution frame as guide, and
   added to the full-resolution frame (:func:`slimvision.inference.guided.upsample_residual`),
   so the frame's own edges stay sharp.
3. **Keep what did not change.** The frame is compared cell by cell with the frame each cell was
   last painted from, by the faces motion gate's change map
   (:class:`slimvision.inference.motion_gate.CellChanges`: grey cell averages, a per-cell noise
   level learnt from the video). Cells that did not change keep the previous *output* exactly;
   changed cells take the new painting through a feathered mask (dilated and box-blurred at the
   cell grid, then bilinear), so no seam shows. A frame where nothing changed is not painted at
   all. With ``blend`` < 1 a changed cell eases into the new painting over a few frames (weight
   ``blend`` per frame, exact after ``settle`` frames). No optical flow.
4. **Paint in full once the camera rests** (opt-in). After ``refine_after`` frames in a row in which at
   most ``rest_share`` of the cells changed (a resting camera still sees a few cells move:
   encoder noise, a hand), the frame is painted once at full resolution and that painting is the
   output; cells that change during the rest are repainted small over it as before, and once
   those add up to ``rest_share`` of the frame it is painted in full again. Painting small costs
   detail that no upsampler brings back (SSIM about 0.5 against painting at full resolution on
   720p, docs/video.md); a resting view is what a viewer looks at longest, and one full painting
   per rest costs little of the frame rate.

The stylizer is split into three stages so a :func:`slimvision.inference.frame_pipeline.run_frames`
pipeline overlaps them with decoding and encoding (:func:`stylize_stream`): ``decide`` (the
change map, in order), ``paint_stage`` (ONNX Runtime; frames are independent there, so two
one-thread runs can paint two frames at once) and ``finish_stage`` (numpy/OpenCV at full
resolution, in order).

Example:
    >>> from slimvision.registry import ARTIFACTS  # doctest: +SKIP
    >>> pipe = ARTIFACTS.create("slimvision-fast-v7")  # doctest: +SKIP
    >>> stylizer = RealtimeStylizer(pipe, pipe.target_vector("starry.npy").values)  # doctest: +SKIP
    >>> outputs = [stylizer(frame) for frame in iter_frames("clip.mp4")]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slimvision.errors import SlimvisionError
from slimvision.inference.frame_pipeline import Parallel, PipelineStats, run_frames
from slimvision.inference.guided import box_filter, resize_area, resize_linear, upsample_residual
from slimvision.inference.motion_gate import CellChanges
from slimvision.inference.style import MIN_CONTENT_SIDE, StyleTransferPipeline, interpolate, preserve_colour
from slimvision.io.pixels import to_float, to_uint8

#: Pixels painted per frame by default: 640x360. The fast model paints that in about 60 ms on
#: two cores, which leaves time for decoding, upsampling and encoding within 1/15 s.
DEFAULT_WORK_PIXELS = 640 * 360


def default_work_size(height: int, width: int) -> int:
    """Longer side of the working size for a frame: the frame's own if it has at most
    :data:`DEFAULT_WORK_PIXELS` pixels, else scaled down to that many (640 for 1280x720)."""
    if height * width <= DEFAULT_WORK_PIXELS:
        return max(height, width)
    return max(MIN_CONTENT_SIDE, round(max(height, width) * math.sqrt(DEFAULT_WORK_PIXELS / (height * width))))


def work_shape(height: int, width: int, work_size: int | None) -> tuple[int, int]:
    """(height, width) a frame is painted at: longer side ``work_size`` (never above the frame's)."""
    side = default_work_size(height, width) if work_size is None else work_size
    if side >= max(height, width):
        return height, width
    scale = side / max(height, width)
    return max(MIN_CONTENT_SIDE, round(height * scale)), max(MIN_CONTENT_SIDE, round(width * scale))


@dataclass(frozen=True)
class RealtimeSettings:
    """How :class:`RealtimeStylizer` trades quality for speed and stability.

    Attributes:
        work_size: Longer side painted, px; None: :func:`default_work_size`.
        blend: Weight of the new painting in a changed cell per frame, (0, 1]; 1 takes it whole.
        cell: Side of the change map's cells, px.
        feather: Width of the soft border around changed cells, in cells (0: hard cell edges).
        noise_sigmas: A cell changed when it moved more than this many learnt noise levels...
        min_difference: ...and at least this many grey levels.
        radius: Guided filter window radius at the working size, px.
        eps: Guided filter regularisation.
        refine_after: Resting frames in a row after which the frame is painted once at full
            resolution (0, the default: never). Only frames larger than the working size are
            refined. Off by default: the change to the full painting is one step of the whole
            picture, which issue 28's flicker measure counts like a shimmer (docs/video.md).
        rest_share: A frame rests when at most this share of its cells changed.
    """

    work_size: int | None = None
    blend: float = 1.0
    cell: int = 16
    feather: int = 1
    noise_sigmas: float = 4.0
    min_difference: float = 3.0
    radius: int = 1
    eps: float = 1e-2
    refine_after: int = 0
    rest_share: float = 0.02

    def __post_init__(self) -> None:
        if self.work_size is not None and self.work_size < MIN_CONTENT_SIDE:
            raise SlimvisionError(f"work size must be at least {MIN_CONTENT_SIDE} px, got {self.work_size}")
        if not 0 < self.blend <= 1:
            raise SlimvisionError(f"blend must be in (0, 1], got {self.blend}")
        if self.cell < 1 or self.feather < 0 or self.radius < 1 or self.eps <= 0:
            raise SlimvisionError("cell >= 1, feather >= 0, radius >= 1 and eps > 0 are needed")
        if self.refine_after < 0:
            raise SlimvisionError(f"refine_after must be >= 0 (0: never), got {self.refine_after}")
        if not 0 <= self.rest_share < 1:
            raise SlimvisionError(f"rest_share must be in [0, 1), got {self.rest_share}")

    @property
    def settle(self) -> int:
        """Frames a changed cell is blended for: until less than 2% of the old painting is left."""
        return 1 if self.blend >= 1 else max(2, math.ceil(math.log(0.02) / math.log(1 - self.blend)))


@dataclass
class _Frame:
    """One frame on its way through the stages."""

    frame: np.ndarray  # (H, W, 3) uint8, full resolution
    small: np.ndarray | None = None  # (h, w, 3) float32 frame to paint; None when nothing changed
    vector: np.ndarray | None = None  # (100,) the style vector it is painted with
    weights: np.ndarray | None = None  # (rows, cols) float32 weight of the new painting per cell
    painting: np.ndarray | None = None  # (h, w, 3) float32 painting of ``small``
    full: bool = False  # ``small`` is the whole frame at full resolution: the painting replaces the output (no weights)


@dataclass
class RealtimeStats:
    """Frames seen, frames painted (some cell changed), frames painted whole at full resolution
    (the camera rested) and the share of cells repainted."""

    frames: int = 0
    painted: int = 0
    refined: int = 0
    cells_repainted: float = 0.0  # mean over frames of the share of cells taking a new painting
    extra: dict[str, Any] = field(default_factory=dict)


class RealtimeStylizer:
    """Stylizes a stream of frames in order (see the module docstring). Not thread-safe: one
    stream per stylizer; call it frame by frame, or run its two stages in a pipeline.

    Args:
        pipe: The style pipeline whose transformer paints.
        vector: (100,) target style vector.
        strength: 0 keeps the content's own style, 1 applies the full style. Below 1 the
            content's own vector is taken from the first frame, and again on a frame where more
            than half the cells changed (a cut or a fast pan).
        preserve_color: Keep the frame's colours, take the painting's light and texture.
        settings: Working size, blending and upsampling settings.
    """

    def __init__(self, pipe: StyleTransferPipeline, vector: np.ndarray, strength: float = 1.0,
                 preserve_color: bool = False, settings: RealtimeSettings | None = None) -> None:
        self.pipe, self.target = pipe, np.asarray(vector, np.float32).reshape(-1)
        self.strength, self.preserve_color = strength, preserve_color
        self.settings = settings or RealtimeSettings()
        self.cells = CellChanges(self.settings.cell, self.settings.noise_sigmas, self.settings.min_difference)
        self.stats = RealtimeStats()
        self._vector: np.ndarray | None = None
        self._reference: np.ndarray | None = None  # per cell: the features it was last painted from
        self._pending: np.ndarray | None = None  # per cell: frames of blending left
        self._output: np.ndarray | None = None  # the last output frame, float32 [0, 1]
        self._quiet = 0  # resting frames in a row (at most rest_share of the cells changed)
        self._refined = False  # this rest's view was painted at full resolution
        self._stale = 0.0  # share of the cells repainted small since then

    # -- one frame, no memory of the others
    def work_shape(self, frame: np.ndarray) -> tuple[int, int]:
        """(height, width) this frame is painted at."""
        return work_shape(frame.shape[0], frame.shape[1], self.settings.work_size)

    def _small(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame at the working size (float32), and the vector to paint it with."""
        small_pixels = resize_area(frame, *self.work_shape(frame))
        if self.strength < 1.0 and self._vector is None:
            self._vector = interpolate(self.pipe.predict_vector(small_pixels), self.target, self.strength)
        return to_float(small_pixels), self.target if self.strength >= 1.0 else self._vector

    def upsample(self, frame: np.ndarray, small: np.ndarray, painting: np.ndarray) -> np.ndarray:
        """The painting at the frame's size, edges guided by the frame: (H, W, 3) float32."""
        content = to_float(frame)
        full = upsample_residual(content, small, painting, self.settings.radius, self.settings.eps)
        return preserve_colour(full, content) if self.preserve_color else full

    def paint_small(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame at the working size and its painting, both (h, w, 3) float32 (no reuse;
        with strength < 1 the content's own vector is the stream's)."""
        small, vector = self._small(frame)
        return small, self.pipe.transform_array(small, vector)

    def paint(self, frame: np.ndarray) -> np.ndarray:
        """One frame painted small and upsampled, without the temporal reuse: (H, W, 3) uint8."""
        return to_uint8(self.upsample(frame, *self.paint_small(frame)))

    # -- the stream, in three stages
    def decide(self, frame: np.ndarray) -> _Frame:
        """Stage 1 (in order): which cells changed; the frame at the working size when any did."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise SlimvisionError(f"expected (H, W, 3) uint8 frames, got {frame.shape} {frame.dtype}")
        current = self.cells.features(frame)
        if self._reference is None or self._reference.shape != current.shape:
            self.cells.previous = None  # a new stream (or size): everything is new
            changed = np.ones(current.shape, bool)
            self._reference, self._pending = current.copy(), np.zeros(current.shape, np.int32)
        else:
            changed = self.cells.changed(current, self._reference)
        assert self._pending is not None
        self.cells.observe(current)
        self._reference[changed] = current[changed]
        self._pending[changed] = self.settings.settle
        active = self._pending > 0
        self.stats.frames += 1
        if changed.mean() > self.settings.rest_share:
            self._quiet, self._refined, self._stale = 0, False, 0.0
        else:
            self._quiet += 1
        if self._refine_now(frame):
            return self._refine(frame, current)
        if not active.any():
            return _Frame(frame)
        if self._refined:
            self._stale += float(active.mean())
        if self.strength < 1.0 and changed.mean() > 0.5:
            self._vector = None  # a cut or a fast pan: the content's own style is taken again
        weights = np.where(self._pending == 1, np.float32(1.0), np.float32(self.settings.blend))
        weights = np.where(active, weights, np.float32(0.0)).astype(np.float32)
        self._pending[active] -= 1
        self.stats.painted += 1
        small, vector = self._small(frame)
        return _Frame(frame, small, vector, weights)

    def _refine_now(self, frame: np.ndarray) -> bool:
        """Whether this frame is painted whole at full resolution: the camera has rested
        ``refine_after`` frames, and this rest was not refined yet or has since been repainted
        small over ``rest_share`` of its cells. Frames painted at their own size never are."""
        after = self.settings.refine_after
        if not after or self._quiet < after or self.work_shape(frame) == frame.shape[:2]:
            return False
        return not self._refined or self._stale > self.settings.rest_share

    def _refine(self, frame: np.ndarray, current: np.ndarray) -> _Frame:
        """The frame whole at full resolution; every cell counts as painted from it."""
        assert self._reference is not None and self._pending is not None
        self._refined, self._stale = True, 0.0
        self._reference[...] = current
        self._pending[...] = 0
        self.stats.refined += 1
        _, vector = self._small(frame)
        return _Frame(frame, to_float(frame), vector, full=True)

    def paint_stage(self, item: _Frame) -> _Frame:
        """Stage 2 (frames independent: may run several at once): the transformer's painting."""
        if item.small is not None and item.vector is not None:
            item.painting = self.pipe.transform_array(item.small, item.vector)
        return item

    def finish_stage(self, item: _Frame) -> np.ndarray:
        """Stage 3 (in order): the new painting upsampled and laid over the previous output where
        cells changed, or a full-resolution painting taken whole; (H, W, 3) uint8."""
        frame = item.frame
        if self._output is not None and self._output.shape != frame.shape:
            self._output = None
        if item.full and item.painting is not None and item.small is not None:
            self._output = preserve_colour(item.painting, item.small) if self.preserve_color else item.painting
            self._account(1.0)
            return to_uint8(self._output)
        if item.painting is None or item.weights is None or item.small is None:
            self._account(0.0)
            assert self._output is not None, "the first frame is always painted"
            return to_uint8(self._output)
        new = self.upsample(frame, item.small, item.painting)
        mask = self._mask(item.weights, frame.shape[0], frame.shape[1])
        if self._output is None or mask is None:
            self._output = new
        else:
            new -= self._output
            new *= mask[..., None]
            self._output += new  # previous + weight * (new - previous): exact where the weight is 0
        self._account(float((item.weights > 0).mean()))
        return to_uint8(self._output)

    def stages(self, paint_workers: int = 1) -> list[Callable[[Any], Any] | Parallel]:
        """The three stages for :func:`slimvision.inference.frame_pipeline.run_frames`; with
        ``paint_workers`` > 1 that many frames are painted at once (give the pipeline one-thread
        sessions then)."""
        paint: Callable[[Any], Any] | Parallel = (Parallel(self.paint_stage, paint_workers) if paint_workers > 1
                                                  else self.paint_stage)
        return [self.decide, paint, self.finish_stage]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The next frame of the stream, stylized: (H, W, 3) uint8."""
        return self.finish_stage(self.paint_stage(self.decide(frame)))

    # -- internals
    def _account(self, share: float) -> None:
        done = self.stats.frames
        self.stats.cells_repainted += (share - self.stats.cells_repainted) / max(done, 1)

    def _mask(self, weights: np.ndarray, height: int, width: int) -> np.ndarray | None:
        """Per-pixel weight of the new painting, or None where it is 1 everywhere."""
        if weights.min() >= 1.0:
            return None
        feather = self.settings.feather
        if feather:
            # Dilate by feather + 1 cells, then blur by feather: changed cells keep their full
            # weight up to their edges (bilinear upsampling included), the ramp lies outside.
            grown = _dilate(weights, feather + 1)
            weights = np.where(weights > 0, weights, box_filter(grown, feather))  # the ramp only outside
        cell = self.settings.cell
        rows, cols = weights.shape
        mask = resize_linear(weights, rows * cell, cols * cell)
        if mask.shape != (height, width):  # the last partial cells take their neighbour's weight
            mask = np.pad(mask, ((0, height - mask.shape[0]), (0, width - mask.shape[1])), mode="edge")
        mask[mask < 1e-3] = 0.0  # exactly the previous output away from changes
        return mask


def _dilate(weights: np.ndarray, steps: int) -> np.ndarray:
    """Grey dilation by ``steps`` cells (3x3 maximum, repeated)."""
    out = weights
    for _ in range(steps):
        padded = np.pad(out, 1, mode="edge")
        rows, cols = out.shape
        out = np.max([padded[i:i + rows, j:j + cols] for i in range(3) for j in range(3)], axis=0)
    return out


def stylize_stream(frames: Iterable[np.ndarray], stylizer: RealtimeStylizer,
                   sink: Callable[[np.ndarray], bool | None], *, live: bool = False,
                   queue_size: int = 4, paint_workers: int = 1) -> PipelineStats:
    """Decode, paint, upsample and deliver in overlapping threads (see
    :func:`slimvision.inference.frame_pipeline.run_frames`).

    Args:
        frames: The source (``iter_frames(path)``, a camera reader...), read in its own thread.
        stylizer: A fresh :class:`RealtimeStylizer` (it keeps the stream's state).
        sink: Receives each stylized uint8 frame in order (write it, show it); ``False`` stops.
        live: Drop stale frames instead of waiting for the painter (cameras); file mode keeps
            every frame.
        queue_size: Frames each queue holds in file mode.
        paint_workers: Frames painted at once (one per core on one-thread sessions).

    Returns:
        The pipeline's counts (frames in, out, dropped).
    """
    return run_frames(frames, stylizer.stages(paint_workers), sink, live=live, queue_size=queue_size)
