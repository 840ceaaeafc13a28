"""Face recognition on video, with the motion gate skipping frames where nothing moved.

:func:`recognize_frames` runs a :class:`slimvision.inference.faces.FaceRecognizer` over a frame
stream. With a :class:`slimvision.inference.motion_gate.MotionGate` it runs detection and
embedding only on the frames the gate lets through and repeats the last result on the others
(a still door camera mostly shows the same empty hall). Each :class:`FrameResult` says whether
it was computed or reused, so callers can report frames processed vs skipped.

:func:`open_stream` reads a video file (ffmpeg, via :mod:`slimvision.io.video`) or, when OpenCV
is installed, a webcam index (``0``) or a stream URL (``rtsp://...``).

Example:
    >>> from slimvision.io.video import iter_frames                              # doctest: +SKIP
    >>> for result in recognize_frames(iter_frames("door.mp4"), FaceRecognizer(), MotionGate()):  # doctest: +SKIP
    ...     print(result.index, result.processed, [face.name for face in result.faces])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimvision.errors import InputError
from slimvision.inference.face_gallery import Gallery
from slimvision.inference.faces import FaceRecognizer, RecognizedFace
from slimvision.inference.motion_gate import MotionGate


@dataclass(frozen=True, eq=False)
class FrameResult:
    """The faces in frame ``index``; ``processed`` is False when they were carried over from the
    last processed frame (the gate's ``reason`` says why it decided either way)."""

    index: int
    frame: np.ndarray
    faces: list[RecognizedFace]
    processed: bool
    reason: str

    @property
    def names(self) -> list[str]:
        """Who is in the frame, by name ("unknown" for faces nobody enrolled is near enough to)."""
        return sorted(face.name or "unknown" for face in self.faces)


def recognize_frames(frames: Iterable[np.ndarray], recognizer: FaceRecognizer, gate: MotionGate | None = None,
                     gallery: Gallery | None = None, top_k: int = 1) -> Iterator[FrameResult]:
    """Faces (identified against ``gallery`` when given) in each frame; see the module docstring."""
    last: list[RecognizedFace] = []
    for index, frame in enumerate(frames):
        decision = gate.update(frame) if gate is not None else None
        if decision is None or decision.process:
            last = recognizer.identify(frame, gallery, top_k) if gallery is not None else recognizer(frame)
            yield FrameResult(index, frame, last, True, decision.reason if decision else "every frame")
        else:
            yield FrameResult(index, frame, last, False, decision.reason)


def open_stream(source: str) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    """(RGB frames, frames per second, (width, height)) of a video file, a webcam index or a URL."""
    if Path(source).is_file():
        from slimvision.io.video import iter_frames, probe_video

        info = probe_video(source)
        return iter_frames(source), info.fps, (info.width, info.height)
    if source.isdigit() or "://" in source:
        return _opencv_stream(source)
    raise InputError(source, "no such video file (a webcam is a number like 0, a stream a URL like rtsp://...)")


def _opencv_stream(source: str) -> tuple[Iterator[np.ndarray], float, tuple[int, int]]:
    try:
        import cv2
    except ImportError:
        raise InputError(source, "webcams and streams need OpenCV: pip install opencv-python-headless") from None
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise InputError(source, "cannot open this camera or stream")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield np.ascontiguousarray(frame[..., ::-1])  # OpenCV's BGR -> RGB
        finally:
            capture.release()

    return frames(), fps, size
