"""Real-time video style transfer: the guided upsampler, the temporal reuse, the frame pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from slimvision.errors import SlimvisionError
from slimvision.inference import guided
from slimvision.inference.frame_pipeline import Parallel, run_frames
from slimvision.inference.guided import box_filter, resize_linear, upsample_residual
from slimvision.inference.style_video import (RealtimeSettings, RealtimeStylizer, default_work_size,
                                              stylize_stream, work_shape)
from slimvision.io.pixels import to_uint8


class FakePipe:
    """A stand-in painter: a fixed colour shift plus noise that differs on every call, so any
    repainting shows; optionally slow, with a random delay per call."""

    def __init__(self, delay: float = 0.0, seed: int = 0) -> None:
        self.calls = 0
        self.delay = delay
        self.rng = np.random.default_rng(seed)
        self.lock = threading.Lock()

    def transform_array(self, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            noise = self.rng.normal(0, 0.05, content.shape).astype(np.float32)
            delay = self.delay * self.rng.random()
        if delay:
            time.sleep(delay)
        return np.clip(0.6 * content + 0.2 + noise, 0, 1).astype(np.float32)

    def predict_vector(self, image: np.ndarray) -> np.ndarray:
        return np.zeros(100, np.float32)


VECTOR = np.zeros(100, np.float32)


def scene(height: int = 96, width: int = 128, seed: int = 1) -> np.ndarray:
    """A textured still frame, uint8."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, (height // 8, width // 8, 3)).astype(np.uint8)
    return np.ascontiguousarray(np.kron(base, np.ones((8, 8, 1), np.uint8)))


# --------------------------------------------------------------------------- the upsampler
def test_guided_upsampling_keeps_an_edge_sharper_than_bilinear():
    height, width, scale = 64, 128, 4
    frame = np.full((height, width, 3), 0.2, np.float32)
    frame[:, 61:] = 0.8  # a vertical edge between pixel 60 and 61, not on a 4 px block boundary
    small = frame.reshape(height // scale, scale, width // scale, scale, 3).mean(axis=(1, 3))
    stylize = lambda image: np.clip(1.0 - image * 0.9 + 0.05, 0, 1)  # noqa: E731 - an invertible "style"
    truth = stylize(frame)  # what painting at full resolution would give
    ours = upsample_residual(frame, small, stylize(small), radius=1, eps=1e-4)
    bilinear = resize_linear(stylize(small), height, width)
    band = slice(56, 66)  # the columns around the edge
    error_ours = np.abs(ours - truth)[:, band].mean()
    error_bilinear = np.abs(bilinear - truth)[:, band].mean()
    assert error_ours < 0.25 * error_bilinear
    step = lambda image: np.abs(np.diff(image[32, :, 0])).max()  # noqa: E731 - the steepest step on a row
    assert step(ours) > 0.9 * step(truth) and step(bilinear) < 0.5 * step(truth)
    np.testing.assert_allclose(ours[:, :50], truth[:, :50], atol=1e-3)  # flat parts stay as painted


@pytest.mark.skipif(guided.cv2 is None, reason="OpenCV is not installed: only the numpy path exists")
def test_numpy_filters_match_opencv():
    image = np.random.default_rng(0).random((37, 51, 3)).astype(np.float32)
    for radius in (1, 2, 3):
        np.testing.assert_allclose(box_filter(image, radius, use_cv2=False), box_filter(image, radius), atol=1e-6)
    assert box_filter(image[..., :1], 2).shape == (37, 51, 1)
    for height, width in ((80, 100), (20, 30), (37, 51)):
        np.testing.assert_allclose(resize_linear(image, height, width, use_cv2=False),
                                   resize_linear(image, height, width), atol=1e-6)


def test_work_size_defaults():
    assert default_work_size(720, 1280) == 640 and default_work_size(1080, 1920) == 640
    assert work_shape(720, 1280, None) == (360, 640)
    assert work_shape(48, 64, None) == (48, 64)  # small frames are painted as they are
    assert work_shape(720, 1280, 512) == (288, 512)
    assert work_shape(48, 64, 512) == (48, 64)  # never upscaled
    with pytest.raises(SlimvisionError, match="work size"):
        RealtimeSettings(work_size=8)
    with pytest.raises(SlimvisionError, match="blend"):
        RealtimeSettings(blend=0)


# --------------------------------------------------------------------------- temporal reuse
def test_unchanged_cells_keep_the_previous_output_exactly():
    pipe = FakePipe()
    stylizer = RealtimeStylizer(pipe, VECTOR, settings=RealtimeSettings(cell=8, feather=1))
    first = scene()
    out1 = stylizer(first)
    assert stylizer(first.copy()).tobytes() == out1.tobytes()  # nothing changed: nothing painted
    assert pipe.calls == 1 and stylizer.stats.painted == 1
    moved = first.copy()
    moved[8:24, 8:24] = 255 - moved[8:24, 8:24]  # two cells by two change, top left
    out3 = stylizer(moved)
    assert pipe.calls == 2
    assert np.abs(out3[8:24, 8:24].astype(int) - out1[8:24, 8:24]).mean() > 20  # repainted
    far = np.s_[48:, 64:]  # cells far beyond the feathered border
    assert out3[far].tobytes() == out1[far].tobytes()
    near = out3[8:24, 24:40].astype(int) - out1[8:24, 24:40]  # the feathered border moves a little
    assert 0 < np.abs(near).mean() < np.abs(out3[8:24, 8:24].astype(int) - out1[8:24, 8:24]).mean()


def test_a_painting_without_reuse_flickers_where_the_reuse_does_not():
    frames = [scene() for _ in range(4)]
    pipe = FakePipe()
    stylizer = RealtimeStylizer(pipe, VECTOR)
    reused = [stylizer(frame) for frame in frames]
    fresh = [stylizer.paint(frame) for frame in frames]
    assert all(out.tobytes() == reused[0].tobytes() for out in reused)
    assert np.abs(fresh[1].astype(int) - fresh[0]).mean() > 1  # the fake painter's noise


def test_blend_eases_a_changed_cell_in_and_then_settles():
    settings = RealtimeSettings(cell=8, blend=0.5, feather=0)
    assert settings.settle == 6
    stylizer = RealtimeStylizer(FakePipe(), VECTOR, settings=settings)
    first = scene()
    stylizer(first)
    changed = first.copy()
    changed[:] = 255 - changed
    outputs = [stylizer(changed) for _ in range(settings.settle + 2)]
    steps = [np.abs(b.astype(int) - a).mean() for a, b in zip(outputs, outputs[1:])]
    assert steps[0] > 0 and steps[-1] == 0 and steps[-2] == 0  # eases in over `settle` frames, then still
    assert stylizer.stats.painted == 1 + settings.settle


class SizeRecordingPipe(FakePipe):
    """A FakePipe that remembers the (height, width) of everything it painted, and the paintings."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, int]] = []
        self.paintings: list[np.ndarray] = []

    def transform_array(self, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
        self.shapes.append(content.shape[:2])
        self.paintings.append(super().transform_array(content, vector))
        return self.paintings[-1].copy()


def test_a_resting_view_is_painted_once_at_full_resolution_and_then_kept():
    pipe = SizeRecordingPipe()
    stylizer = RealtimeStylizer(pipe, VECTOR, settings=RealtimeSettings(work_size=64, cell=8, refine_after=2))
    first = scene()  # 96 x 128: painted at 48 x 64
    outputs = [stylizer(first.copy()) for _ in range(6)]
    assert pipe.shapes == [(48, 64), (96, 128)]  # small once; after 2 quiet frames, whole once
    assert stylizer.stats.refined == 1
    assert outputs[1].tobytes() == outputs[0].tobytes()  # first quiet frame: reused
    assert outputs[2].tobytes() != outputs[1].tobytes()  # second: the full-resolution painting
    assert all(out.tobytes() == outputs[2].tobytes() for out in outputs[3:])  # then kept
    assert outputs[2].tobytes() == to_uint8(pipe.paintings[1]).tobytes()  # the painting itself, not upsampled
    moved = first.copy()
    moved[:48, :64] = 255 - moved[:48, :64]  # a quarter of the cells
    stylizer(moved)  # a change: painted small again...
    for _ in range(3):
        stylizer(moved.copy())  # ...and after the next rest, whole again
    assert pipe.shapes[2:] == [(48, 64), (96, 128)] and stylizer.stats.refined == 2


def test_a_few_flickering_cells_do_not_keep_a_rest_from_being_refined():
    pipe = SizeRecordingPipe()
    settings = RealtimeSettings(work_size=64, cell=8, feather=0, refine_after=2, rest_share=0.05)
    stylizer = RealtimeStylizer(pipe, VECTOR, settings=settings)
    first = scene()
    stylizer(first)
    outputs = []
    for step in range(8):  # one cell of the 192 changes on every frame: a rest all the same
        frame = first.copy()
        frame[80:88, 120:128] = 255 * (step % 2)
        outputs.append(stylizer(frame))
    # small paints of the one cell, the full painting after 2 resting frames, then only small ones
    # until the stale cells pass 5% of the frame (10 of 192 cells): one more full painting
    assert [shape for shape in pipe.shapes if shape == (96, 128)] == [(96, 128)] * stylizer.stats.refined
    assert stylizer.stats.refined == 1
    refined = outputs[1]
    assert refined[:64, :96].tobytes() == outputs[-1][:64, :96].tobytes()  # away from the cell: kept


def test_refinement_can_be_turned_off_and_is_refused_below_zero():
    pipe = SizeRecordingPipe()
    stylizer = RealtimeStylizer(pipe, VECTOR, settings=RealtimeSettings(work_size=64, refine_after=0))
    for _ in range(5):
        stylizer(scene())
    assert pipe.shapes == [(48, 64)] and stylizer.stats.refined == 0
    with pytest.raises(SlimvisionError, match="refine_after"):
        RealtimeSettings(refine_after=-1)
    with pytest.raises(SlimvisionError, match="rest_share"):
        RealtimeSettings(rest_share=1.0)


# --------------------------------------------------------------------------- the pipeline
def test_file_mode_writes_every_frame_in_order(tmp_path: Path):
    from slimvision.io.video import VideoWriter, iter_frames

    clip = tmp_path / "clip.mp4"
    levels = [20 + 16 * i for i in range(12)]  # each frame its own brightness
    with VideoWriter(clip, width=64, height=48, fps=10) as writer:
        for level in levels:
            frame = np.full((48, 64, 3), level, np.uint8)
            frame[:, :32] = 255 - level
            writer.write(frame)
    out = tmp_path / "styled.mp4"
    pipe = FakePipe(delay=0.02)  # random delays: two painters finish out of order
    stylizer = RealtimeStylizer(pipe, VECTOR)
    with VideoWriter(out, width=64, height=48, fps=10) as writer:
        stats = stylize_stream(iter_frames(clip), stylizer, writer.write, queue_size=2, paint_workers=2)
    assert (stats.frames_in, stats.frames_out, stats.dropped) == (12, 12, 0)
    written = [frame[:, 32:].mean() for frame in iter_frames(out)]
    expected = [0.6 * level + 0.2 * 255 for level in levels]  # the fake painter's colour shift
    assert len(written) == 12
    np.testing.assert_allclose(written, expected, atol=4)  # in order (noise averages out)


def test_live_mode_drops_stale_frames():
    produced = threading.Event()

    def camera():
        yield from range(20)
        produced.set()  # the camera ran ahead of the painter

    def slow_painter(index: int) -> int:
        produced.wait(timeout=10)
        return index

    delivered: list[int] = []
    stats = run_frames(camera(), [slow_painter], delivered.append, live=True)
    assert delivered[-1] == 19  # the newest frame is always shown
    assert delivered == sorted(set(delivered)) and len(delivered) <= 3
    assert stats.dropped == 20 - len(delivered) and stats.frames_in == 20


def test_file_mode_never_drops_even_when_the_painter_is_slow():
    delivered: list[int] = []
    stats = run_frames(range(10), [Parallel(lambda i: time.sleep(0.01 * (i % 3)) or i, 3)], delivered.append,
                       queue_size=1)
    assert delivered == list(range(10)) and stats.dropped == 0


def test_an_error_in_a_stage_stops_the_pipeline_and_is_raised():
    def broken(index: int) -> int:
        if index == 3:
            raise ValueError("frame 3 is bad")
        return index

    def endless():
        index = 0
        while True:
            yield index
            index += 1

    with pytest.raises(ValueError, match="frame 3"):
        run_frames(endless(), [broken], lambda _: None)


def test_the_sink_can_stop_the_pipeline():
    closed = threading.Event()

    def endless():
        try:
            index = 0
            while True:
                yield index
                index += 1
        finally:
            closed.set()

    stats = run_frames(endless(), [lambda i: i], lambda i: i < 5)
    assert stats.stopped and stats.frames_out == 6 and closed.is_set()
