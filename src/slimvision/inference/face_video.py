"""Face recognition on video, with the motion gate skipping frames where nothing moved.

:func:`recognize_frames` runs a :class:`slimvision.inference.faces.FaceRecognizer` over a frame
stream. With a :class:`slimvision.inference.motion_gate.MotionGate` it runs detection and
embedding only on the frames the gate lets through and repeats the last result on the others
(a still door camera mostly shows the same empty hall). Each :class:`FrameResult` says whether
it was computed or reused, so callers can report frames processed vs skipped. While the last
result has a face in it, the gate is told so and re-checks still frames every few frames, so a
person who leaves is never kept on screen by what the gate's background learnt.
:class:`PresenceEvents` turns the results into "who entered, who left" events.

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
from typing import Any, NamedTuple

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
        decision = gate.update(frame, tracking=bool(last)) if gate is not None else None
        if decision is None or decision.process:
            last = recognizer.identify(frame, gallery, top_k) if gallery is not None else recognizer(frame)
            yield FrameResult(index, frame, last, True, decision.reason if decision else "every frame")
        else:
            yield FrameResult(index, frame, last, False, decision.reason)


class PresenceEvents:
    """Who is in view, frame after frame; :meth:`update` returns an event when that changes.

    An event is a dict: ``frame``, ``time_s`` (None when the frame rate is unknown), ``present``
    (the names in view, sorted, "unknown" for each face nobody enrolled is near enough to),
    ``entered`` and ``left``.

    Example:
        >>> presence = PresenceEvents(fps=25)
        >>> for result in recognize_frames(frames, recognizer, gate, gallery):  # doctest: +SKIP
        ...     if (event := presence.update(result)) is not None:
        ...         print(event["frame"], event["entered"], event["left"])
    """

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.present: list[str] = []
        self.count = 0

    def update(self, result: FrameResult) -> dict[str, Any] | None:
        """The event of ``result``'s frame, or None when the same people are in view."""
        names, before = result.names, self.present
        if names == before:
            return None
        self.present = names
        self.count += 1
        return {"frame": result.index, "time_s": round(result.index / self.fps, 3) if self.fps > 0 else None,
                "present": names, "entered": _minus(names, before), "left": _minus(before, names)}


def _minus(names: list[str], others: list[str]) -> list[str]:
    """``names`` less ``others``, counting repeats (two "unknown" faces and then one: one left)."""
    remaining = list(others)
    kept = []
    for name in names:
        if name in remaining:
            remaining.remove(name)
        else:
            kept.append(name)
    return kept


class Stream(NamedTuple):
    """An open video source: RGB ``frames``, frames per second (0 when unknown), (width, height),
    and the number of frames when known (a file's estimate; None for cameras and streams)."""

    frames: Iterator[np.ndarray]
    fps: float
    size: tuple[int, int]
    length: int | None


def open_stream(source: str) -> Stream:
    """A video file, a webcam index or a URL, opened for reading (see :class:`Stream`)."""
    if Path(source).is_file():
        from slimvision.io.video import iter_frames, probe_video

        info = probe_video(source)
        return Stream(iter_frames(source), info.fps, (info.width, info.height), info.frames)
    if source.isdigit() or "://" in source:
        return _opencv_stream(source)
    raise InputError(source, "no such video file (a webcam is a number like 0, a stream a URL like rtsp://...)")


def _opencv_stream(source: str) -> Stream:
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

    return Stream(frames(), fps, size, None)
