"""Read and write videos one frame at a time, using the ffmpeg binary bundled with imageio-ffmpeg.

No torch or OpenCV is needed: frames come out as ``H x W x 3`` ``uint8`` RGB numpy arrays and go
back in the same way, streamed through an ``ffmpeg`` subprocess, so memory use does not grow with
the length of the video.

Audio is **not** carried over: :class:`VideoWriter` writes a video-only file. Use
:attr:`VideoInfo.has_audio` from :func:`probe_video` to warn the user when the input had a sound
track.

Example:
    >>> from slimvision.io.video import VideoWriter, iter_frames, probe_video
    >>> info = probe_video("clip.mp4")  # doctest: +SKIP
    >>> with VideoWriter("out.mp4", width=info.width, height=info.height,
    ...                  fps=info.fps, protected=["clip.mp4"]) as writer:  # doctest: +SKIP
    ...     for frame in iter_frames("clip.mp4"):
    ...         writer.write(255 - frame)  # any per-frame processing
"""

from __future__ import annotations

import math
import numbers
import os
import re
import subprocess
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from slimvision.errors import InputError, OutputError
from slimvision.io.atomic import atomic_write

__all__ = ["SUPPORTED_SUFFIXES", "VideoInfo", "VideoWriter", "iter_frames", "probe_video"]

# Output suffix -> (ffmpeg muxer, default video encoder). All of these encoders are in the ffmpeg
# build that imageio-ffmpeg ships (checked with ``ffmpeg -encoders``).
_FORMATS: dict[str, tuple[str, str]] = {
    ".mp4": ("mp4", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".mov": ("mov", "libx264"),
    ".avi": ("avi", "mpeg4"),
    ".webm": ("webm", "libvpx-vp9"),
}

#: Output file suffixes :class:`VideoWriter` accepts.
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_FORMATS)

# Lines of ffmpeg's stderr that never explain an error (banner, build configuration).
_NOISE_PREFIXES = ("ffmpeg version", "built with", "configuration:", "lib", "Copyright")
_LOG_CONTEXT = re.compile(r"^\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*")
_MAX_PROBLEM_CHARS = 200


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found out about a video file.

    Attributes:
        width: Frame width in pixels, as :func:`iter_frames` yields it (after any rotation
            stored in the file's metadata has been applied).
        height: Frame height in pixels, as :func:`iter_frames` yields it.
        fps: Frames per second reported by the container; ``0.0`` if ffmpeg could not tell.
        frames: Estimated frame count (``round(duration * fps)``), or None when either value is
            unknown. Variable-frame-rate files can differ from it by a few frames.
        duration: Length in seconds, or None if unknown.
        has_audio: True if the file has at least one audio stream (it will not be copied).
        codec: The video codec name ffmpeg reports (e.g. ``"h264"``), or None.
    """

    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None
    has_audio: bool
    codec: str | None


def _ffmpeg_exe() -> str:
    """Return the ffmpeg binary that imageio-ffmpeg provides (imported lazily)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _ffmpeg_url(path: Path) -> str:
    """Spell a local path so ffmpeg never reads it as an option (``-x``) or a protocol (``a:b``)."""
    return "file:" + os.path.abspath(path)


def _summarise_ffmpeg_log(text: str) -> str:
    """Reduce an ffmpeg stderr dump to the one line that says what went wrong."""
    lines = [_LOG_CONTEXT.sub("", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE_PREFIXES)]
    for line in lines:
        if "Error opening input:" in line:
            return line.split("Error opening input:", 1)[1].strip()
    for line in lines:
        if line.startswith("Unknown encoder"):
            return line[:_MAX_PROBLEM_CHARS]
    if any("does not contain any stream" in line for line in lines):
        return "no video stream"
    for line in reversed(lines):
        if "rror" in line or "nvalid" in line or "not" in line:
            return line[:_MAX_PROBLEM_CHARS]
    return lines[-1][:_MAX_PROBLEM_CHARS] if lines else "ffmpeg gave no reason"


def _check_readable(path: Path) -> None:
    """Raise a one-line InputError if ``path`` is missing, a folder, empty or unreadable."""
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not a video file")
    try:
        with open(path, "rb") as handle:
            first = handle.read(1)
    except OSError as exc:
        raise InputError(path, f"cannot be opened: {exc.strerror or type(exc).__name__}") from None
    if not first:
        raise InputError(path, "file is empty")


def _open_reader(path: Path) -> tuple[Iterator[bytes], dict[str, Any]]:
    """Start ffmpeg decoding ``path`` to RGB24; return the frame generator and its metadata."""
    import imageio_ffmpeg

    _check_readable(path)
    reader = imageio_ffmpeg.read_frames(_ffmpeg_url(path), pix_fmt="rgb24")
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration, IndexError, AttributeError, ValueError) as exc:
        # imageio-ffmpeg raises OSError("Could not load meta information\n=== stderr ===\n...")
        # with the whole ffmpeg log; the parsing helpers can also trip on odd headers.
        _close_reader(reader, _traceback_process(exc))
        problem = _summarise_ffmpeg_log(str(exc))
        if problem == "no video stream":
            raise InputError(path, "has no video stream") from None
        raise InputError(path, f"cannot be read as a video ({problem})") from None
    return reader, meta


def _reader_process(reader: Iterator[bytes]) -> subprocess.Popen[bytes] | None:
    """The ffmpeg process inside a suspended ``read_frames`` generator, if it can be found.

    imageio-ffmpeg leaves the process's pipes open when ffmpeg has already exited by the time the
    generator finishes (a ResourceWarning under ``python -X dev``); we close them ourselves.
    """
    frame = getattr(reader, "gi_frame", None)
    process = frame.f_locals.get("process") if frame is not None else None
    return process if isinstance(process, subprocess.Popen) else None


def _traceback_process(exc: BaseException) -> subprocess.Popen[bytes] | None:
    """The ffmpeg process of a ``read_frames`` generator that failed (see _reader_process)."""
    tb = exc.__traceback__
    while tb is not None:
        process = tb.tb_frame.f_locals.get("process")
        if isinstance(process, subprocess.Popen):
            return process
        tb = tb.tb_next
    return None


def _close_reader(reader: Iterator[bytes], process: subprocess.Popen[bytes] | None) -> None:
    """Stop a ``read_frames`` generator and release its ffmpeg process and pipes."""
    reader.close()  # type: ignore[attr-defined]
    if process is None:
        return
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            try:
                stream.close()
            except OSError:
                pass
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate, length and stream layout without decoding it all.

    Args:
        path: The video file.

    Returns:
        The file's :class:`VideoInfo`.

    Raises:
        InputError: The file is missing, empty, a directory, has no video stream or is not a
            video ffmpeg can read. The message is one line naming the file.

    Example:
        >>> info = probe_video("clip.mp4")  # doctest: +SKIP
        >>> (info.width, info.height, info.fps, info.has_audio)  # doctest: +SKIP
        (640, 360, 30.0, True)
    """
    path = Path(path)
    reader, meta = _open_reader(path)
    _close_reader(reader, _reader_process(reader))  # Only the header was needed.
    width, height = (int(v) for v in meta["size"])
    fps = float(meta.get("fps") or 0.0)
    duration = float(meta.get("duration") or 0.0) or None
    frames = round(duration * fps) if duration and fps > 0 else None
    return VideoInfo(
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        duration=duration,
        has_audio="audio_codec" in meta,
        codec=meta.get("codec") or None,
    )


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video one at a time as RGB arrays.

    The file is checked and ffmpeg started when this function is called, so a bad file raises
    here rather than on the first ``next()``. Stopping early (``break``) stops ffmpeg.

    Args:
        path: The video file.

    Returns:
        An iterator of ``(height, width, 3)`` ``uint8`` C-contiguous, writable arrays.

    Raises:
        InputError: The file cannot be read as a video (see :func:`probe_video`), or decoding
            fails part way (raised from the iterator).

    Example:
        >>> for frame in iter_frames("clip.mp4"):  # doctest: +SKIP
        ...     print(frame.shape, frame.dtype)
        (360, 640, 3) uint8
    """
    path = Path(path)
    reader, meta = _open_reader(path)
    width, height = (int(v) for v in meta["size"])
    return _decode(path, reader, width, height)


def _decode(path: Path, reader: Iterator[bytes], width: int, height: int) -> Iterator[np.ndarray]:
    """Turn imageio-ffmpeg's raw frame bytes into arrays, with one-line errors."""
    process = _reader_process(reader)
    index = 0
    try:
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                return
            except RuntimeError as exc:
                problem = _summarise_ffmpeg_log(str(exc))
                raise InputError(path, f"cannot decode frame {index + 1} ({problem})") from None
            # frombuffer over bytes is read-only; copy so callers may modify frames in place.
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
            index += 1
    finally:
        _close_reader(reader, process)


#: x264/x265 speed presets, fastest first (``VideoWriter(preset=...)``).
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _quality_args(codec: str, quality: int) -> list[str]:
    """Map quality 1 (smallest file) .. 10 (best) to the codec's own rate-control option."""
    if codec in ("libx264", "libx265"):
        return ["-crf", str(33 - 2 * quality)]  # 8 -> crf 17 (near transparent), 5 -> 23 (default)
    if codec == "libvpx-vp9":
        # Constant-quality mode needs -b:v 0; cpu-used/row-mt keep VP9 encoding reasonably fast.
        return ["-crf", str(48 - 3 * quality), "-b:v", "0", "-cpu-used", "4", "-row-mt", "1"]
    return ["-q:v", str(12 - quality)]  # mpeg4 and most others: qscale 2 (best) .. 31 (worst)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Stop ffmpeg for good (used on errors, Ctrl-C and garbage collection)."""
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - the kernel did not reap it
        pass
    for stream in (process.stdin,):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


class _Aborted(Exception):
    """Passed into atomic_write to make it delete the temporary file."""


class VideoWriter:
    """Write RGB frames to a video file atomically (context manager).

    Frames go to a hidden temporary file in the destination folder (same suffix), which is moved
    onto ``path`` with ``os.replace`` only when the writer closes cleanly. If the ``with`` block
    raises, or ffmpeg fails, the temporary file is deleted and ``path`` is left untouched (it does
    not appear if it did not exist). Missing parent folders are created.

    Codecs per suffix (unless ``codec`` is given): ``.mp4``, ``.mkv``, ``.mov`` -> ``libx264``;
    ``.avi`` -> ``mpeg4``; ``.webm`` -> ``libvpx-vp9``. Pixels are stored as ``yuv420p``, the
    format every player supports, which needs even sizes: an odd ``width`` or ``height`` is
    padded by one pixel (repeating the last column/row), so the output is up to one pixel larger;
    see :attr:`output_size`. Audio is not written.

    ``quality`` goes from 1 (smallest file) to 10 (best); the default 8 maps to x264 ``-crf 17``,
    VP9 ``-crf 24`` and MPEG-4 ``-q:v 4``.

    Args:
        path: Destination file; its suffix picks the container.
        width: Width of the frames that will be written.
        height: Height of the frames that will be written.
        fps: Frames per second (e.g. :attr:`VideoInfo.fps` of the input).
        overwrite: Replace ``path`` if it exists.
        protected: Input files that must never be overwritten, whatever ``overwrite`` says.
        codec: ffmpeg video encoder; None picks the one for the suffix (see above).
        quality: 1 to 10, higher is better and bigger.
        preset: x264/x265 speed preset (``ultrafast`` ... ``veryslow``; None: the encoder's
            default, ``medium``); ``veryfast`` encodes 720p several times faster, for real time.
            Other codecs ignore it.

    Raises:
        OutputError: Unsupported suffix; ``path`` exists and ``overwrite`` is False; ``path`` is
            one of ``protected``; the folder cannot be written; or (from ``write``/``close``)
            ffmpeg failed, summarised in one line.
        ValueError: ``width``, ``height``, ``fps`` or ``quality`` is out of range.

    Example:
        >>> import numpy as np
        >>> with VideoWriter("out.mp4", width=64, height=48, fps=10) as writer:  # doctest: +SKIP
        ...     for _ in range(10):
        ...         writer.write(np.zeros((48, 64, 3), dtype=np.uint8))
    """

    def __init__(
        self,
        path: str | Path,
        *,
        width: int,
        height: int,
        fps: float,
        overwrite: bool = False,
        protected: Iterable[str | Path] = (),
        codec: str | None = None,
        quality: int = 8,
        preset: str | None = None,
    ) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FORMATS:
            shown = f"'{self.path.suffix}'" if self.path.suffix else "no suffix"
            raise OutputError(
                self.path,
                f"unsupported video file type ({shown}); "
                f"use one of {', '.join(SUPPORTED_SUFFIXES)}",
            )
        if not all(isinstance(v, numbers.Integral) and v > 0 for v in (width, height)):
            raise ValueError(f"width and height must be positive integers: {width!r}, {height!r}")
        if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if preset is not None and preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
        if not (isinstance(quality, numbers.Integral) and 1 <= quality <= 10):
            raise ValueError(f"quality must be between 1 and 10, got {quality!r}")
        muxer, default_codec = _FORMATS[suffix]
        self.width = int(width)
        self.height = int(height)
        self.fps = float(fps)
        self.codec = codec or default_codec
        #: (width, height) actually encoded: rounded up to even numbers for yuv420p.
        self.output_size: tuple[int, int] = (
            self.width + self.width % 2,
            self.height + self.height % 2,
        )
        self.frames_written = 0
        self._closed = False

        # Checks the target (input / exists / directory), creates the folder and the temp file.
        self._atomic = atomic_write(self.path, overwrite=overwrite, protected=protected)
        self._temp: Path = self._atomic.__enter__()
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._log = tempfile.TemporaryFile()
            rate = Fraction(float(fps)).limit_denominator(1_000_000)
            out_w, out_h = self.output_size
            command = [
                _ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{out_w}x{out_h}", "-r", str(rate),
                "-i", "pipe:0",
                "-an", "-c:v", self.codec, "-pix_fmt", "yuv420p",
                *_quality_args(self.codec, quality),
            ]  # fmt: skip
            if preset is not None and self.codec in ("libx264", "libx265"):
                command += ["-preset", preset]
            if muxer in ("mp4", "mov"):
                command += ["-movflags", "+faststart"]
            command += ["-f", muxer, _ffmpeg_url(self._temp)]
            # start_new_session: Ctrl-C reaches only Python, which then aborts ffmpeg itself.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                start_new_session=True,
            )
        except BaseException as exc:
            self._cleanup(exc)
            if isinstance(exc, OSError):
                raise OutputError(self.path, f"cannot start ffmpeg: {exc}") from None
            raise
        # If the writer is dropped without close(), still stop ffmpeg (the temp file is deleted
        # when the atomic_write generator is garbage collected).
        self._finalizer = weakref.finalize(self, _kill, self._process)

    # ----------------------------------------------------------------------------- public API

    def write(self, frame: np.ndarray) -> None:
        """Append one frame.

        Args:
            frame: ``(height, width, 3)`` ``uint8`` RGB array with the size given to the writer.

        Raises:
            ValueError: The writer is closed, or the frame has the wrong shape or dtype.
            OutputError: ffmpeg stopped (the output is abandoned and the temp file deleted).

        Example:
            >>> writer.write(np.zeros((48, 64, 3), dtype=np.uint8))  # doctest: +SKIP
        """
        if self._closed:
            raise ValueError(f"{self.path}: write() on a closed VideoWriter")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            got = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"{self.path}: frames must be uint8 numpy arrays, got {got}")
        expected = (self.height, self.width, 3)
        if frame.shape != expected:
            raise ValueError(
                f"{self.path}: frame has shape {frame.shape}, "
                f"expected {expected} (height, width, RGB)"
            )
        pad_w = self.output_size[0] - self.width
        pad_h = self.output_size[1] - self.height
        if pad_w or pad_h:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = np.ascontiguousarray(frame)
        assert self._process is not None and self._process.stdin is not None
        try:
            self._process.stdin.write(frame.data)
        except OSError:  # BrokenPipeError: ffmpeg exited (bad codec, disk full, ...)
            problem = self._ffmpeg_problem(wait=True)
            self._abort()
            raise OutputError(self.path, f"ffmpeg stopped while encoding: {problem}") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish encoding and move the finished file onto ``path``.

        Calling it again does nothing.

        Raises:
            OutputError: No frame was written, or ffmpeg failed; the temp file is deleted and
                ``path`` is left as it was.

        Example:
            >>> writer.close()  # doctest: +SKIP
        """
        if self._closed:
            return
        assert self._process is not None and self._process.stdin is not None
        if self.frames_written == 0:
            self._abort()
            raise OutputError(self.path, "no frames were written; nothing saved")
        try:
            try:
                self._process.stdin.close()
            except OSError:
                pass  # ffmpeg already gone; its exit code tells why.
            code = self._process.wait()
        except BaseException:  # Ctrl-C while ffmpeg flushes
            self._abort()
            raise
        if code != 0:
            problem = self._ffmpeg_problem(wait=False)
            self._abort()
            raise OutputError(self.path, f"ffmpeg failed (exit code {code}): {problem}")
        self._closed = True
        self._finalizer.detach()
        self._close_log()
        self._atomic.__exit__(None, None, None)  # fsync + os.replace onto the final path

    def abort(self) -> None:
        """Stop ffmpeg and delete the temporary file; ``path`` is left as it was.

        Example:
            >>> writer.abort()  # doctest: +SKIP
        """
        if not self._closed:
            self._abort()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.frames_written} frames written"
        return (
            f"VideoWriter({str(self.path)!r}, {self.width}x{self.height} @ {self.fps:g} fps, "
            f"{self.codec}, {state})"
        )

    # ---------------------------------------------------------------------------- internals

    def _ffmpeg_problem(self, *, wait: bool) -> str:
        """One line from ffmpeg's log explaining why it failed."""
        if self._process is not None and wait:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._log is None:
            return "ffmpeg gave no reason"
        self._log.seek(0)
        return _summarise_ffmpeg_log(self._log.read().decode("utf-8", "replace"))

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _abort(self) -> None:
        self._closed = True
        self._cleanup(_Aborted())

    def _cleanup(self, exc: BaseException) -> None:
        """Kill ffmpeg, close the log and let atomic_write delete the temp file."""
        if self._process is not None:
            _kill(self._process)
            if hasattr(self, "_finalizer"):
                self._finalizer.detach()
        self._close_log()
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)
