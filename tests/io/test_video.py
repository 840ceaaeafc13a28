"""Tests for slimvision.io.video: probing, frame iteration and atomic video writing via ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from slimvision.errors import InputError, OutputError  # noqa: E402
from slimvision.io.video import (  # noqa: E402
    SUPPORTED_SUFFIXES,
    VideoInfo,
    VideoWriter,
    iter_frames,
    probe_video,
)

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H, FPS, N = 64, 48, 10, 10
ORANGE = (200, 120, 40)


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _flat(colour: tuple[int, int, int] = ORANGE, width: int = W, height: int = H) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (height, width, 3)).copy()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny test clips made with the bundled ffmpeg: video only, video + audio, audio only."""
    folder = tmp_path_factory.mktemp("media")
    src = f"testsrc=size={W}x{H}:rate={FPS}"
    silent = folder / "silent.mp4"
    _ffmpeg("-f", "lavfi", "-i", src, "-t", "1", "-pix_fmt", "yuv420p", str(silent))
    sound = folder / "sound.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", src, "-f", "lavfi", "-i", "sine=frequency=440",
        "-t", "1", "-shortest", "-pix_fmt", "yuv420p", str(sound),
    )  # fmt: skip
    audio_only = folder / "tone.m4a"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.5", str(audio_only))
    return {"silent": silent, "sound": sound, "audio_only": audio_only}


# ----------------------------------------------------------------------------------- probing


def test_probe_video_without_audio(media: dict[str, Path]) -> None:
    info = probe_video(media["silent"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.frames == N
    assert info.has_audio is False
    assert info.codec == "h264"


def test_probe_video_detects_audio(media: dict[str, Path]) -> None:
    info = probe_video(str(media["sound"]))  # str paths work too
    assert (info.width, info.height) == (W, H)
    assert info.has_audio is True


def test_video_info_is_frozen(media: dict[str, Path]) -> None:
    info = probe_video(media["silent"])
    with pytest.raises(AttributeError):
        info.width = 1  # type: ignore[misc]


# ----------------------------------------------------------------------------------- reading


def test_iter_frames_count_shape_and_layout(media: dict[str, Path]) -> None:
    frames = list(iter_frames(media["sound"]))
    assert len(frames) == N
    for frame in frames:
        assert frame.shape == (H, W, 3)
        assert frame.dtype == np.uint8
        assert frame.flags.c_contiguous and frame.flags.writeable
    assert not np.array_equal(frames[0], frames[-1])  # testsrc moves from frame to frame


def test_iter_frames_can_stop_early(media: dict[str, Path]) -> None:
    iterator = iter_frames(media["silent"])
    first = next(iterator)
    assert first.shape == (H, W, 3)
    iterator.close()  # type: ignore[attr-defined]  # stops ffmpeg without reading the rest


# ----------------------------------------------------------------------------------- bad inputs


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    return {
        "text": (text, "cannot be read as a video"),
        "empty": (empty, "file is empty"),
        "missing": (tmp_path / "missing.mp4", "file not found"),
        "folder": (folder, "is a directory"),
    }


@pytest.mark.parametrize("kind", ["text", "empty", "missing", "folder"])
@pytest.mark.parametrize("reader", [probe_video, iter_frames], ids=["probe", "iter"])
def test_bad_inputs_give_one_line_input_error(tmp_path: Path, kind: str, reader) -> None:
    path, problem = _bad_inputs(tmp_path)[kind]
    with pytest.raises(InputError) as caught:
        reader(path)  # iter_frames checks eagerly, before the first next()
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and problem in message
    assert len(message) < 300


def test_audio_only_file_has_no_video_stream(media: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="has no video stream") as caught:
        probe_video(media["audio_only"])
    assert "\n" not in str(caught.value)


def test_path_that_looks_like_an_option_is_read_as_a_file(
    media: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "-i.mp4"
    odd.write_bytes(media["silent"].read_bytes())
    monkeypatch.chdir(tmp_path)
    assert probe_video("-i.mp4").frames == N


# ----------------------------------------------------------------------------------- writing


def _write_flat(path: Path, n: int = N, width: int = W, height: int = H, **kwargs) -> VideoWriter:
    with VideoWriter(path, width=width, height=height, fps=FPS, **kwargs) as writer:
        for _ in range(n):
            writer.write(_flat(width=width, height=height))
    return writer


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    writer = _write_flat(out)
    assert writer.frames_written == N
    assert _listing(tmp_path) == ["out.mp4"]
    info = probe_video(out)
    assert (info.width, info.height, info.frames, info.has_audio) == (W, H, N, False)
    assert info.fps == pytest.approx(FPS)
    frames = list(iter_frames(out))
    assert len(frames) == N
    mean = np.stack(frames).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(mean, ORANGE, atol=6)


@pytest.mark.parametrize("suffix", [s for s in SUPPORTED_SUFFIXES if s != ".mp4"])
def test_every_supported_container_round_trips(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    _write_flat(out, n=4)
    assert _listing(tmp_path) == [out.name]
    frames = list(iter_frames(out))
    assert len(frames) == 4 and frames[0].shape == (H, W, 3)
    np.testing.assert_allclose(frames[-1].reshape(-1, 3).mean(axis=0), ORANGE, atol=8)


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    width, height = 63, 47
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[:, width // 2 :] = (0, 0, 255)  # right half blue; padding repeats the last column
    with VideoWriter(out, width=width, height=height, fps=FPS) as writer:
        assert writer.output_size == (64, 48)
        for _ in range(3):
            writer.write(frame)
    info = probe_video(out)
    assert (info.width, info.height) == (64, 48)
    last = list(iter_frames(out))[-1]
    assert last[:, -2:, 2].mean() > 200  # padded column is blue, not black
    assert last[-1:, :, :].mean() > 30  # padded row repeats the row above (not black)
    assert last[:, :16].mean() < 20  # left side stays black


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, width=W, height=H, fps=FPS) as writer:
            writer.write(_flat())
            hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
            assert len(hidden) == 1 and hidden[0].suffix == ".mp4"  # the temp file
            raise RuntimeError("boom")
    assert _listing(tmp_path) == []


def test_exception_keeps_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with VideoWriter(out, width=W, height=H, fps=FPS, overwrite=True) as writer:
            writer.write(_flat())
            raise RuntimeError("boom")
    assert out.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.mp4"]


def test_refuses_to_overwrite_without_flag(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists; pass --overwrite to replace it"):
        VideoWriter(out, width=W, height=H, fps=FPS)
    assert out.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.mp4"]
    _write_flat(out, n=2, overwrite=True)
    assert probe_video(out).frames == 2


def test_refuses_to_overwrite_an_input(media: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "in.mp4"
    source.write_bytes(media["silent"].read_bytes())
    before = source.read_bytes()
    alias = tmp_path / "sub" / ".." / "in.mp4"
    (tmp_path / "sub").mkdir()
    for target in (source, alias):
        with pytest.raises(OutputError, match="is an input file; refusing to overwrite an input"):
            VideoWriter(target, width=W, height=H, fps=FPS, overwrite=True, protected=[source])
    assert source.read_bytes() == before
    assert _listing(tmp_path) == ["in.mp4", "sub"]


@pytest.mark.parametrize("name", ["out.gif", "out.MP3", "out"])
def test_unknown_suffix_is_rejected(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    with pytest.raises(OutputError) as caught:
        VideoWriter(out, width=W, height=H, fps=FPS)
    message = str(caught.value)
    assert str(out) in message and ".mp4" in message
    if out.suffix:
        assert out.suffix in message
    assert _listing(tmp_path) == []


def test_no_frames_means_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError, match="no frames were written"):
        with VideoWriter(out, width=W, height=H, fps=FPS):
            pass
    assert _listing(tmp_path) == []


def test_wrong_frame_is_a_value_error_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match="expected"):
        with VideoWriter(out, width=W, height=H, fps=FPS) as writer:
            writer.write(np.zeros((H, W + 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(out, width=W, height=H, fps=FPS) as writer:
            writer.write(np.zeros((H, W, 3), dtype=np.float32))
    assert _listing(tmp_path) == []


def test_ffmpeg_failure_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(OutputError) as caught:
        with VideoWriter(out, width=W, height=H, fps=FPS, codec="no-such-encoder") as writer:
            for _ in range(50):  # the pipe may buffer a few frames before ffmpeg's exit shows
                writer.write(_flat())
    message = str(caught.value)
    assert "\n" not in message and str(out) in message and "ffmpeg" in message
    assert _listing(tmp_path) == []


def test_bad_parameters(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    with pytest.raises(ValueError):
        VideoWriter(out, width=0, height=H, fps=FPS)
    with pytest.raises(ValueError):
        VideoWriter(out, width=W, height=H, fps=0)
    with pytest.raises(ValueError):
        VideoWriter(out, width=W, height=H, fps=FPS, quality=11)
    with pytest.raises(ValueError, match="preset"):
        VideoWriter(out, width=W, height=H, fps=FPS, preset="warp")
    assert _listing(tmp_path) == []


def test_a_speed_preset_writes_the_same_frames(tmp_path: Path) -> None:
    out = tmp_path / "fast.mp4"
    assert _write_flat(out, n=4, preset="veryfast").frames_written == 4
    frames = list(iter_frames(out))
    assert len(frames) == 4
    np.testing.assert_allclose(frames[-1].reshape(-1, 3).mean(axis=0), ORANGE, atol=6)


def test_missing_folder_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "clip.webm"
    _write_flat(out, n=2)
    assert probe_video(out).frames == 2
