"""``slimvision style ...`` end to end, in-process (plus one real subprocess for the entry point)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from tests.cli.helpers import exit_code, one_line_error
from tests.conftest import make_content, make_scene, read_png, save_png


def run(*args: str | Path) -> int:
    """The exit code of ``slimvision style ARGS``, argparse's refusals (SystemExit) included."""
    return exit_code(["style", *args])


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture()
def content(tmp_path, content_image) -> Path:
    return save_png(content_image, tmp_path / "photo.png")


def test_entry_point_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "slimvision.cli.main", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "style" in result.stdout and "usage: slimvision" in result.stdout


def test_console_entry_flushes_its_output_before_the_fast_exit(content, image_files, tmp_path):
    """run() skips the interpreter's teardown: stdout must still arrive, and codes must hold."""
    out = tmp_path / "via_run.png"
    command = [sys.executable, "-m", "slimvision.cli.main", "style", "stylize", str(content),
               "-s", str(image_files["style"]), "-o", str(out), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"][0]["output"] == str(out)
    assert read_png(out).shape == read_png(content).shape
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)  # exists, no --overwrite
    assert again.returncode == 2 and again.stderr.startswith("error: ") and again.stdout == ""


def test_stylize_one_file(content, image_files, tmp_path, pipeline_fast, capsys):
    """No --model: the fast bundle, which meets issue 24's fidelity targets (docs/compress.md)."""
    out = tmp_path / "result.png"
    assert run("stylize", content, "-s", image_files["style"], "-o", out, "--threads", "2") == 0
    result = read_png(out)
    assert result.shape == (96, 128, 3)
    expected = pipeline_fast(read_png(content), image_files["style"])
    assert np.abs(result.astype(int) - expected).max() <= 1
    assert f"-> {out}" in capsys.readouterr().out
    assert listing(tmp_path) == ["photo.png", "result.png"]


def test_the_teacher_is_one_word_away_and_int8_alone_means_the_teacher(content, image_files, tmp_path,
                                                                      pipeline, pipeline_fp32, capsys):
    teacher, int8 = tmp_path / "teacher.png", tmp_path / "int8.png"
    assert run("stylize", content, "-s", image_files["style"], "--model", "teacher", "-o", teacher,
               "--threads", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["artifact"] == "magenta-arbitrary-v1-fp32"
    expected = pipeline_fp32(read_png(content), image_files["style"])
    assert np.abs(read_png(teacher).astype(int) - expected).max() <= 1
    # The only int8 graph is the teacher's: --precision int8 without --model runs it, not an error.
    assert run("stylize", content, "-s", image_files["style"], "--precision", "int8", "-o", int8,
               "--threads", "2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["artifact"] == "magenta-arbitrary-v1-int8"
    expected = pipeline(read_png(content), image_files["style"])
    assert np.abs(read_png(int8).astype(int) - expected).max() <= 1


def test_stylize_a_folder(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    for i, shape in enumerate([(40, 56), (64, 48), (33, 71)]):
        save_png(make_content(*shape), folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "styled"
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "-q", "--threads", "2") == 0
    assert listing(out) == ["p0_style.png", "p1_style.png", "p2_style.png"]
    assert read_png(out / "p2_style.png").shape == (33, 71, 3)
    assert "3 images in" in capsys.readouterr().out


def test_workers_paint_a_folder_exactly_like_one_worker(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    for i, shape in enumerate([(40, 56), (64, 48), (33, 71), (52, 52)]):
        save_png(make_content(*shape), folder / f"p{i}.png")
    for workers in ("1", "3"):
        assert run("stylize", folder, "-s", image_files["style"], "-o", tmp_path / f"w{workers}",
                   "--workers", workers, "-q") == 0
    assert listing(tmp_path / "w1") == listing(tmp_path / "w3") == [f"p{i}_style.png" for i in range(4)]
    for name in listing(tmp_path / "w1"):
        np.testing.assert_array_equal(read_png(tmp_path / "w1" / name), read_png(tmp_path / "w3" / name))
    capsys.readouterr()
    assert run("stylize", folder, "-s", image_files["style"], "-o", tmp_path / "w0", "--workers", "0") == 2
    assert one_line_error(capsys).startswith("error: --workers must be at least 1, got '0'")


def test_json_summary_lists_the_outputs(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    save_png(make_content(40, 56), folder / "a.png")
    save_png(make_content(48, 48), folder / "b.png")
    out = tmp_path / "styled"
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "--format", "jpg", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert [Path(item["output"]).name for item in summary["outputs"]] == ["a_style.jpg", "b_style.jpg"]
    assert [item["size"] for item in summary["outputs"]] == [[56, 40], [48, 48]]
    assert all(Path(item["output"]).is_file() for item in summary["outputs"])
    assert summary["seconds"] >= 0


def test_precision_int8_runs_the_shipped_graph(content, image_files, tmp_path, pipeline, pipeline_fp32):
    out = tmp_path / "int8.png"
    assert run("stylize", content, "-s", image_files["style"], "--precision", "int8", "-o", out,
               "--threads", "2") == 0
    result = read_png(out)
    expected = pipeline(read_png(content), image_files["style"])  # the int8 pipeline
    assert np.abs(result.astype(int) - expected).max() <= 1
    assert not np.array_equal(result, pipeline_fp32(read_png(content), image_files["style"]))


def test_two_styles_with_weights(content, image_files, tmp_path, pipeline_fp32):
    out = tmp_path / "blend.png"
    assert run("stylize", content, "-s", image_files["style"], "-s", image_files["style2"],
               "--weights", "0.7,0.3", "-o", out, "--threads", "2", "--model", "teacher") == 0
    expected = pipeline_fp32(read_png(content), [image_files["style"], image_files["style2"]], weights=[0.7, 0.3])
    assert np.abs(read_png(out).astype(int) - expected).max() <= 1
    only_first = pipeline_fp32(read_png(content), image_files["style"])
    assert np.abs(read_png(out).astype(int) - only_first).mean() > 1  # the second style counts
    # Outputs written into a folder are tagged "blend".
    folder = tmp_path / "photos"
    save_png(read_png(content), folder / "photo.png")
    assert run("stylize", folder, "-s", image_files["style"], "-s", image_files["style2"],
               "-o", tmp_path / "styled") == 0
    assert listing(tmp_path / "styled") == ["photo_blend.png"]


def test_same_input_twice_is_refused(content, image_files, tmp_path, capsys):
    assert run("stylize", content, content, "-s", image_files["style"], "-o", tmp_path / "folder", "-q") == 2
    assert "two inputs would be written to this same output" in one_line_error(capsys)
    assert listing(tmp_path / "folder") == []


def test_folder_with_one_existing_output_writes_nothing(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    for name in ("a", "b", "c"):
        save_png(make_content(40, 56), folder / f"{name}.png")
    out = tmp_path / "styled"
    out.mkdir()
    (out / "b_style.png").write_bytes(b"old")
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "-q") == 2
    assert "b_style.png: exists" in one_line_error(capsys)
    assert listing(out) == ["b_style.png"] and (out / "b_style.png").read_bytes() == b"old"


def test_weights_count_mismatch(content, image_files, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert run("stylize", content, "-s", image_files["style"], "-s", image_files["style2"],
               "--weights", "1", "-o", out) == 2
    assert "got 2 --style but 1 --weights" in one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("strength", ["1.5", "-0.2"])
def test_strength_out_of_range(content, image_files, tmp_path, capsys, strength):
    assert run("stylize", content, "-s", image_files["style"], "--strength", strength, "-o", tmp_path / "x.png") == 2
    assert "--strength must be at" in one_line_error(capsys)
    assert not (tmp_path / "x.png").exists()


def test_missing_style_file(content, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "painting.jpg"
    assert run("stylize", content, "-s", missing, "-o", tmp_path / "x.png") == 2
    err = one_line_error(capsys)
    assert str(missing) in err and "style file not found" in err


def test_missing_content_file(image_files, tmp_path, capsys):
    assert run("stylize", tmp_path / "ghost.png", "-s", image_files["style"], "-o", tmp_path / "x.png") == 2
    assert "ghost.png: file not found" in one_line_error(capsys)


def test_existing_output_needs_overwrite(content, image_files, tmp_path, capsys):
    out = tmp_path / "result.png"
    old = make_content(10, 10)
    save_png(old, out)
    before = out.read_bytes()
    assert run("stylize", content, "-s", image_files["style"], "-o", out) == 2
    assert "exists; pass --overwrite" in one_line_error(capsys)
    assert out.read_bytes() == before
    assert run("stylize", content, "-s", image_files["style"], "-o", out, "--overwrite") == 0
    assert read_png(out).shape == (96, 128, 3)
    assert listing(tmp_path) == ["photo.png", "result.png"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_output_onto_the_input_is_refused(content, image_files, tmp_path, capsys, overwrite):
    before = content.read_bytes()
    assert run("stylize", content, "-s", image_files["style"], "-o", content, *overwrite) == 2
    assert "is an input file" in one_line_error(capsys)
    assert content.read_bytes() == before


def test_zero_byte_content(image_files, tmp_path, capsys):
    bad = tmp_path / "in" / "empty.png"
    bad.parent.mkdir()
    bad.write_bytes(b"")
    out_dir = tmp_path / "out"
    assert run("stylize", bad, "-s", image_files["style"], "-o", out_dir / "empty_styled.png") == 2
    err = one_line_error(capsys)
    assert str(bad) in err and "empty" in err
    assert listing(out_dir) == []
    assert listing(bad.parent) == ["empty.png"]


def test_style_vector_then_reuse(content, image_files, tmp_path, capsys):
    vector = tmp_path / "vectors" / "painting.npy"
    assert run("vector", image_files["style"], "-o", vector, "--threads", "2") == 0
    assert listing(vector.parent) == ["painting.json", "painting.npy"]
    values = np.load(vector)
    assert values.shape == (100,) and values.dtype == np.float32
    sidecar = json.loads(vector.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["model"] == "magenta-arbitrary-v1"
    assert sidecar["source"]["name"] == "style.png" and len(sidecar["source"]["sha256"]) == 64
    capsys.readouterr()
    from_image, from_vector = tmp_path / "from_image.png", tmp_path / "from_vector.png"
    assert run("stylize", content, "-s", image_files["style"], "-o", from_image, "--threads", "2") == 0
    assert run("stylize", content, "-s", vector, "-o", from_vector, "--threads", "2") == 0
    np.testing.assert_array_equal(read_png(from_vector), read_png(from_image))
    assert from_vector.read_bytes() == from_image.read_bytes()
    # An existing vector is not replaced without --overwrite.
    assert run("vector", image_files["style"], "-o", vector) == 2
    assert "exists" in one_line_error(capsys)


def test_a_vector_of_another_model_is_refused_naming_its_file(content, tmp_path, capsys):
    vector = tmp_path / "other.npy"
    np.save(vector, np.zeros(100, np.float32))
    vector.with_suffix(".json").write_text(json.dumps({"format": "slimvision-style-vector", "model": "other-net"}))
    assert run("stylize", content, "-s", vector, "-o", tmp_path / "out.png") == 2
    error = one_line_error(capsys)
    assert error.startswith(f"error: {vector}: style vector was computed by 'other-net'"), error
    assert not (tmp_path / "out.png").exists()


def test_style_vector_blend_json(image_files, tmp_path, pipeline_fp32, capsys):
    out = tmp_path / "mix.npy"
    assert run("vector", image_files["style"], image_files["style2"], "--weights", "3,1", "-o", out, "--json",
               "--model", "teacher") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(out) and summary["model"] == "magenta-arbitrary-v1"
    first = pipeline_fp32.predict_vector(read_png(image_files["style"]))
    second = pipeline_fp32.predict_vector(read_png(image_files["style2"]))
    np.testing.assert_allclose(np.load(out), 0.75 * first + 0.25 * second, atol=1e-5)


@pytest.mark.parametrize("name", ["vector.png", "vector", "vector.npz"])
def test_style_vector_output_must_be_npy(image_files, tmp_path, capsys, name):
    assert run("vector", image_files["style"], "-o", tmp_path / name) == 2
    assert "saved as .npy" in one_line_error(capsys)
    assert listing(tmp_path) == []


def test_style_vector_missing_style_and_weights_mismatch(image_files, tmp_path, capsys):
    assert run("vector", tmp_path / "nope.jpg", "-o", tmp_path / "v.npy") == 2
    assert "nope.jpg: style file not found" in one_line_error(capsys)
    assert run("vector", image_files["style"], "--weights", "1,2", "-o", tmp_path / "v.npy") == 2
    assert "--weights" in one_line_error(capsys)


def test_max_side(content, image_files, tmp_path):
    out = tmp_path / "small.png"
    assert run("stylize", content, "-s", image_files["style"], "--max-side", "64", "-o", out) == 0
    assert read_png(out).shape == (48, 64, 3)


def test_max_side_too_small(content, image_files, tmp_path, capsys):
    assert run("stylize", content, "-s", image_files["style"], "--max-side", "8", "-o", tmp_path / "x.png") == 2
    assert "--max-side must be at least 16" in one_line_error(capsys)


def test_preserve_color(content, image_files, tmp_path, pipeline_fp32):
    out = tmp_path / "kept.png"
    assert run("stylize", content, "-s", image_files["style"], "--preserve-color", "-o", out, "--threads", "2",
               "--model", "teacher") == 0
    expected = pipeline_fp32(read_png(content), image_files["style"], preserve_color=True)
    assert np.abs(read_png(out).astype(int) - expected).max() <= 1


def test_content_smaller_than_16_pixels(image_files, tmp_path, capsys):
    tiny = save_png(make_content(12, 40), tmp_path / "tiny.png")
    assert run("stylize", tiny, "-s", image_files["style"], "-o", tmp_path / "out.png") == 2
    assert "at least 16x16" in one_line_error(capsys)
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------- video
FRAMES, WIDTH, HEIGHT = 10, 64, 48


def make_video(path: Path, audio: bool = False) -> Path:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate=10"]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440", "-shortest"]
    command += ["-t", "1", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    return path


def test_video(tmp_path, image_files, capsys):
    from slimvision.io.video import iter_frames, probe_video

    clip = make_video(tmp_path / "clip.mp4")
    out = tmp_path / "styled.mp4"
    assert run("video", clip, "-s", image_files["style"], "-o", out, "-q", "--threads", "2") == 0
    info = probe_video(out)
    assert (info.width, info.height) == (WIDTH, HEIGHT)
    frames = list(iter_frames(out))
    assert len(frames) == FRAMES
    assert frames[0].shape == (HEIGHT, WIDTH, 3)
    original = next(iter(iter_frames(clip)))
    assert np.abs(frames[0].astype(int) - original).mean() > 10  # the frames really are painted
    assert f"wrote {out}: {FRAMES} frames of {WIDTH}x{HEIGHT}" in capsys.readouterr().out
    assert listing(tmp_path) == ["clip.mp4", "styled.mp4"]


def test_video_with_audio_warns(tmp_path, image_files, caplog, capsys):
    from slimvision.io.video import probe_video

    clip = make_video(tmp_path / "sound.mp4", audio=True)
    assert probe_video(clip).has_audio
    out = tmp_path / "styled.mp4"
    with caplog.at_level(logging.WARNING):
        assert run("video", clip, "-s", image_files["style"], "-o", out, "--json", "--max-side", "32") == 0
    assert any("audio" in record.getMessage() and record.levelno == logging.WARNING for record in caplog.records)
    summary = json.loads(capsys.readouterr().out)
    assert summary["audio_dropped"] is True and summary["frames"] == FRAMES
    assert summary["size"] == [32, 24]
    info = probe_video(out)
    assert (info.width, info.height) == (32, 24) and not info.has_audio


def test_video_refuses_its_input_and_existing_outputs(tmp_path, image_files, capsys):
    clip = make_video(tmp_path / "clip.mp4")
    before = clip.read_bytes()
    assert run("video", clip, "-s", image_files["style"], "-o", clip, "--overwrite") == 2
    assert "is an input file" in one_line_error(capsys)
    assert clip.read_bytes() == before
    (tmp_path / "out.mp4").write_bytes(b"old")
    assert run("video", clip, "-s", image_files["style"], "-o", tmp_path / "out.mp4") == 2
    assert "exists" in one_line_error(capsys)
    assert (tmp_path / "out.mp4").read_bytes() == b"old"
    assert listing(tmp_path) == ["clip.mp4", "out.mp4"]


def test_video_realtime_keeps_every_frame_in_order(tmp_path, image_files, capsys):
    from slimvision.io.video import iter_frames, probe_video

    clip = make_video(tmp_path / "clip.mp4")
    out = tmp_path / "live.mp4"
    assert run("video", clip, "-s", image_files["style"], "-o", out, "--realtime", "--model", "fast",
               "--work-size", "32", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["realtime"] is True and summary["frames"] == FRAMES and summary["work_size"] == [32, 24]
    assert 1 <= summary["frames_painted"] <= FRAMES
    assert (probe_video(out).width, probe_video(out).height) == (WIDTH, HEIGHT)
    styled, original = list(iter_frames(out)), list(iter_frames(clip))
    assert len(styled) == FRAMES
    assert np.abs(styled[0].astype(int) - original[0]).mean() > 10  # painted
    # testsrc changes every frame (its counter), so every output frame differs from the one before
    steps = [np.abs(b.astype(int) - a).mean() for a, b in zip(styled, styled[1:])]
    assert all(step > 0 for step in steps)
    assert listing(tmp_path) == ["clip.mp4", "live.mp4"]


def test_video_realtime_errors_are_one_line(tmp_path, image_files, capsys):
    missing = tmp_path / "missing.mp4"
    assert run("video", missing, "-s", image_files["style"], "-o", tmp_path / "o.mp4", "--realtime") == 2
    assert f"{missing}: file not found" in one_line_error(capsys)
    clip = make_video(tmp_path / "clip.mp4")
    assert run("video", clip, "-s", image_files["style"], "-o", tmp_path / "o.mp4", "--work-size", "64") == 2
    assert "--work-size, --temporal-blend and --refine-after need --realtime" in one_line_error(capsys)
    assert run("video", clip, "-s", image_files["style"], "-o", tmp_path / "o.mp4", "--refine-after", "2") == 2
    assert "need --realtime" in one_line_error(capsys)
    assert run("video", clip, "-s", image_files["style"], "-o", tmp_path / "o.mp4", "--realtime",
               "--refine-after", "-1") == 2
    assert "--refine-after" in one_line_error(capsys)
    assert run("video", clip, "-s", image_files["style"], "-o", tmp_path / "o.mp4", "--realtime",
               "--temporal-blend", "0") == 2
    assert "--temporal-blend must be more than 0" in one_line_error(capsys)
    assert listing(tmp_path) == ["clip.mp4"]


def test_live_without_a_camera_is_one_line(tmp_path, image_files, capsys):
    try:
        import cv2  # noqa: F401
    except ImportError:
        expected = "needs OpenCV"
    else:
        expected = "cannot open camera 97"
    assert run("live", "--camera", "97", "-s", image_files["style"], "-o", tmp_path / "rec.mp4") == 2
    assert expected in one_line_error(capsys)
    assert listing(tmp_path) == []


class FakeCv2:
    """Just enough of OpenCV for ``style live``: a camera of ``frames`` BGR frames (with
    ``quit_after``, repeated without end, one every 5 ms), a window that records what it shows,
    and a key press of q after ``quit_after`` frames shown."""

    COLOR_BGR2RGB = COLOR_RGB2BGR = 4
    CAP_PROP_FPS = 5
    WINDOW_AUTOSIZE = 1
    WND_PROP_VISIBLE = 4
    error = RuntimeError

    def __init__(self, frames: list[np.ndarray], quit_after: int | None = None, gui: bool = True) -> None:
        self.frames, self.quit_after, self.gui = frames, quit_after, gui
        self.shown: list[np.ndarray] = []
        self.released = False
        fake = self

        class Capture:
            def __init__(self, index: int) -> None:
                self.left = list(fake.frames)

            def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
                return True

            def read(self) -> tuple[bool, np.ndarray | None]:
                if fake.quit_after is not None:  # a camera that never ends: only q stops it
                    time.sleep(0.005)
                    self.left.append(self.left[0])
                return (True, self.left.pop(0)) if self.left else (False, None)

            def get(self, prop: int) -> float:
                return 10.0

            def release(self) -> None:
                fake.released = True

        self.VideoCapture = Capture

    def namedWindow(self, name: str, flags: int) -> None:  # noqa: N802 - OpenCV's name
        if not self.gui:
            raise self.error("The function is not implemented. Rebuild the library with GTK+")

    def cvtColor(self, image: np.ndarray, code: int) -> np.ndarray:  # noqa: N802 - OpenCV's name
        return np.ascontiguousarray(image[..., ::-1])

    def imshow(self, name: str, image: np.ndarray) -> None:
        self.shown.append(image)

    def waitKey(self, delay: int) -> int:  # noqa: N802 - OpenCV's name
        return ord("q") if self.quit_after is not None and len(self.shown) >= self.quit_after else -1

    def getWindowProperty(self, name: str, prop: int) -> float:  # noqa: N802 - OpenCV's name
        return 1.0

    def destroyWindow(self, name: str) -> None:  # noqa: N802 - OpenCV's name
        pass


@pytest.fixture()
def fake_cv2(monkeypatch):
    """Puts a FakeCv2 in sys.modules for ``style live`` to import; the modules that bind OpenCV
    at import (the guided filter) are imported first, so they keep the real one."""
    import slimvision.inference.style_video  # noqa: F401

    def install(fake: FakeCv2) -> FakeCv2:
        monkeypatch.setitem(sys.modules, "cv2", fake)
        return fake

    return install


def camera_frames(count: int) -> list[np.ndarray]:
    """BGR frames, each a different brightness on its right half."""
    frames = []
    for index in range(count):
        frame = np.array(make_scene(WIDTH)[:HEIGHT, :WIDTH])
        frame[:, WIDTH // 2:] = (20 * index) % 256
        frames.append(frame)
    return frames


def test_live_shows_and_records_until_the_camera_ends(tmp_path, image_files, capsys, fake_cv2):
    from slimvision.io.video import iter_frames

    fake = fake_cv2(FakeCv2(camera_frames(6)))
    out = tmp_path / "session.mp4"
    assert run("live", "--camera", "0", "-s", image_files["style"], "--model", "fast", "-o", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    shown = summary["frames_shown"]
    assert 1 <= shown <= 6 and shown + summary["frames_dropped"] == 6 and fake.released
    assert len(fake.shown) == shown and fake.shown[0].shape == (HEIGHT, WIDTH, 3)
    assert len(list(iter_frames(out))) == shown  # what was shown was recorded


def test_live_q_quits_and_a_headless_opencv_is_one_line(tmp_path, image_files, capsys, fake_cv2):
    fake_cv2(FakeCv2(camera_frames(4), quit_after=2))
    assert run("live", "-s", image_files["style"], "--model", "fast", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames_shown"] == 2 and summary["output"] is None
    fake_cv2(FakeCv2(camera_frames(3), gui=False))
    assert run("live", "-s", image_files["style"], "-o", tmp_path / "rec.mp4") == 2
    assert "needs a display and OpenCV with a GUI" in one_line_error(capsys)
    assert listing(tmp_path) == []


# --------------------------------------------------------------------------- memory budget
def test_small_memory_budget_tiles_large_images(tmp_path, image_files, pipeline_fp32, capsys):
    """6 MB: 136 px tiles with the fp32 transformer (330 bytes per pixel), too small for the
    default 64 px overlap (once a raw ValueError; now clamped to 34). 200x200 -> 2x2 tiles."""
    content = save_png(make_scene()[:200, :200].copy(), tmp_path / "big.png")
    out = tmp_path / "out.png"
    assert run("stylize", content, "-s", image_files["style"], "--memory-budget", "6",
               "-o", out, "--threads", "2", "--model", "teacher") == 0
    tiled = read_png(out)
    assert tiled.shape == (200, 200, 3)
    untiled = pipeline_fp32(read_png(content), image_files["style"])
    score = structural_similarity(untiled, tiled, channel_axis=2, data_range=255)
    assert score > 0.92, score
    captured = capsys.readouterr()
    assert "(200x200," in captured.out
    assert "tile passes" in captured.err  # a progress bar for images that are tiled


# --------------------------------------------------------------------------- demo
def test_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run("demo", "-o", out, "--threads", "2", "--json") == 0
    files = listing(out)
    jpgs = [name for name in files if name.endswith(".jpg")]
    assert len(jpgs) == 20
    assert "demo_grid.png" in files and len(files) == 21
    assert "astronaut_starry_night_preserve_color.jpg" in jpgs
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["images"]) == 20 and Path(summary["grid"]).is_file()
    grid = read_png(out / "demo_grid.png")
    assert grid.shape == (4 * 192, 6 * 192, 3)


# --------------------------------------------------------------------------- inputs are never outputs
def test_the_style_image_is_never_an_output(content, image_files, tmp_path, capsys):
    style = save_png(read_png(image_files["style"]), tmp_path / "s.png")
    before = style.read_bytes()
    assert run("stylize", content, "--style", style, "-o", style, "--overwrite") == 2
    assert one_line_error(capsys) == f"error: {style}: is an input file; refusing to overwrite an input"
    assert style.read_bytes() == before
    clip = make_video(tmp_path / "clip.mp4")
    assert run("video", clip, "-s", style, "-o", tmp_path / "s.png", "--overwrite") == 2
    assert "is an input file" in one_line_error(capsys)
    assert style.read_bytes() == before


def test_a_style_vector_and_its_sidecar_are_inputs_too(image_files, tmp_path, capsys):
    vector = tmp_path / "v.npy"
    assert run("vector", image_files["style"], "-o", vector) == 0
    files = {path: path.read_bytes() for path in (vector, vector.with_suffix(".json"))}
    # Re-blending a vector onto itself would destroy the input it reads.
    assert run("vector", vector, image_files["style"], "-o", vector, "--overwrite") == 2
    assert "v.json: is an input file" in one_line_error(capsys)  # the sidecar is read as well
    assert {path: path.read_bytes() for path in files} == files


def test_style_vector_checks_both_files_before_writing_either(image_files, tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x.json").write_text("someone's notes")
    assert run("vector", image_files["style"], "-o", folder / "x.npy") == 2
    assert one_line_error(capsys) == f"error: {folder / 'x.json'}: exists; pass --overwrite to replace it"
    assert listing(folder) == ["x.json"]  # no x.npy without its sidecar
    assert run("vector", image_files["style"], "-o", folder / "x.npy", "--overwrite") == 0
    assert listing(folder) == ["x.json", "x.npy"]
    assert json.loads((folder / "x.json").read_text())["dim"] == 100


def test_style_vector_takes_model(image_files, tmp_path, capsys):
    """--model on every style command: a vector for the fast students comes from their predictor."""
    fast, teacher = tmp_path / "fast.npy", tmp_path / "teacher.npy"
    assert run("vector", image_files["style"], "--model", "fast", "-o", fast) == 0
    assert run("vector", image_files["style"], "--model", "teacher", "-o", teacher) == 0
    assert run("vector", image_files["style"], "-o", tmp_path / "default.npy") == 0  # the default is fast
    np.testing.assert_array_equal(np.load(tmp_path / "default.npy"), np.load(fast))
    sidecars = [json.loads(path.with_suffix(".json").read_text()) for path in (fast, teacher)]
    assert sidecars[0]["predictor"] != sidecars[1]["predictor"]
    assert (sidecars[0]["artifact"], sidecars[1]["artifact"]) == ("slimvision-fast-v7", "magenta-arbitrary-v1-fp32")
    assert not np.array_equal(np.load(fast), np.load(teacher))
    # The same vector as the fast pipeline's own predictor gives, named by the space it lives in
    # (the students were distilled into the teacher's, so either model paints with it).
    from slimvision.inference.style import StyleTransferPipeline, artifact_for

    students = StyleTransferPipeline(artifact_for("fast"))
    np.testing.assert_array_equal(np.load(fast), students.predict_vector(read_png(image_files["style"])))
    assert sidecars[0]["model"] == students.artifact.vector_space
    # As on stylize: a model/precision pair that is not shipped is one line naming what is.
    assert run("vector", image_files["style"], "--model", "fast", "--precision", "int8", "-o", tmp_path / "x.npy") == 2
    assert "--model fast has no int8 variant" in one_line_error(capsys)
    assert not (tmp_path / "x.npy").exists()


def _own_style_model(folder: Path, name: str) -> Any:
    """A style model of our own (fast-v3's two graphs and their cards, copied to ``folder``)
    registered the way docs/models.md shows: files, STYLE_PIPELINE, options."""
    import shutil

    from slimvision.artifacts import STYLE_PIPELINE, artifact
    from slimvision.assets import LocalPath
    from slimvision.export.card import card_path
    from slimvision.registry import ARTIFACTS

    shipped = ARTIFACTS.spec("slimvision-fast-v3")
    files = {}
    for role, path in shipped.paths().items():
        for source in (path, card_path(path)):
            shutil.copyfile(source, folder / source.name)
        files[role] = LocalPath(folder / path.name)
    options = {key: value for key, value in shipped.options.items() if key != "alias"}
    return artifact(name, "style", "interactive", "style transfer, a model of our own", files, STYLE_PIPELINE,
                    artifact=name, options=options)


def test_a_newly_registered_style_model_runs_by_name_with_no_other_edit(content, image_files, tmp_path, capsys):
    """One registration: created by name, offered by every style command's --model (and --help),
    painting exactly as the shipped model whose graphs it has."""
    from slimvision.registry import ARTIFACTS

    folder = tmp_path / "mine"
    folder.mkdir()
    with ARTIFACTS.temporarily(_own_style_model(folder, "my-style-v1")):
        pipeline = ARTIFACTS.create("my-style-v1")
        assert pipeline.artifact.name == "my-style-v1" and pipeline.artifact.predictor.path().parent == folder
        for command in ("stylize", "vector", "video", "demo"):
            assert run(command, "--help") == 0
            assert "my-style-v1" in capsys.readouterr().out, command
        ours, shipped = tmp_path / "ours.png", tmp_path / "shipped.png"
        assert run("stylize", content, "-s", image_files["style"], "--model", "my-style-v1", "-o", ours) == 0
        assert run("stylize", content, "-s", image_files["style"], "--model", "slimvision-fast-v3", "-o", shipped) == 0
        np.testing.assert_array_equal(read_png(ours), read_png(shipped))
        assert run("vector", image_files["style"], "--model", "my-style-v1", "-o", tmp_path / "v.npy") == 0
    # Gone with its registration: --model refuses it again.
    assert run("stylize", content, "-s", image_files["style"], "--model", "my-style-v1", "-o", ours) == 2
    assert "invalid choice: 'my-style-v1'" in capsys.readouterr().err


def test_a_full_model_name_runs_at_its_own_precision(content, image_files, tmp_path, capsys, pipeline):
    """--model NAME: the name's own precision; --precision agreeing is fine, clashing is one line naming both."""
    by_alias, by_name, agreeing = tmp_path / "alias.png", tmp_path / "name.png", tmp_path / "agreeing.png"
    style = image_files["style"]
    assert run("stylize", content, "-s", style, "--precision", "int8", "-o", by_alias) == 0
    assert run("stylize", content, "-s", style, "--model", "magenta-arbitrary-v1-int8", "-o", by_name) == 0
    assert run("stylize", content, "-s", style, "--model", "magenta-arbitrary-v1-int8", "--precision", "int8",
               "-o", agreeing) == 0
    np.testing.assert_array_equal(read_png(by_alias), read_png(by_name))
    np.testing.assert_array_equal(read_png(by_name), read_png(agreeing))
    capsys.readouterr()
    for command, output in (("stylize", tmp_path / "x.png"), ("vector", tmp_path / "x.npy")):
        source = content if command == "stylize" else style
        arguments = [source] + (["-s", style] if command == "stylize" else [])
        assert run(command, *arguments, "--model", "slimvision-fast-v2", "--precision", "int8", "-o", output) == 2
        assert one_line_error(capsys) == ("error: --model slimvision-fast-v2 runs at fp32, not --precision int8 "
                                          "(leave --precision out, or pick a model of that precision)")
        assert not output.exists()


# --------------------------------------------------------------------------- -o and batches
def test_a_file_name_for_several_outputs_is_refused(content, image_files, tmp_path, capsys):
    second = save_png(make_content(40, 56), tmp_path / "second.png")
    assert run("stylize", content, second, "-s", image_files["style"], "-o", tmp_path / "x.png", "-q") == 2
    err = one_line_error(capsys)
    assert f"{tmp_path / 'x.png'}: looks like a file name, but this run writes 2 outputs" in err
    assert listing(tmp_path) == ["photo.png", "second.png"]
    # As a folder it is fine when it is one already, or written with a trailing slash.
    assert run("stylize", content, second, "-s", image_files["style"], "-o", f"{tmp_path / 'y.png'}/", "-q") == 0
    assert listing(tmp_path / "y.png") == ["photo_style.png", "second_style.png"]
    (tmp_path / "z.png").mkdir()
    assert run("stylize", content, "-s", image_files["style"], "-o", tmp_path / "z.png") == 0
    assert listing(tmp_path / "z.png") == ["photo_style.png"]


def test_options_may_sit_between_inputs(content, image_files, tmp_path):
    second = save_png(make_content(40, 56), tmp_path / "second.png")
    assert run("stylize", content, "-s", image_files["style"], second, "-o", tmp_path / "out", "-q") == 0
    assert listing(tmp_path / "out") == ["photo_style.png", "second_style.png"]


def test_a_batch_goes_on_past_bad_files_and_reports_them_at_the_end(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    for name in ("a", "c"):
        save_png(make_content(40, 56), folder / f"{name}.png")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    save_png(make_content(12, 40), folder / "d.png")  # too small to paint
    out = tmp_path / "styled"
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "--workers", "1", "-q") == 1
    captured = capsys.readouterr()
    assert listing(out) == ["a_style.png", "c_style.png"]
    failures = captured.err.strip().splitlines()
    assert len(failures) == 2 and failures[0].startswith(f"failed: {folder / 'b.png'}: ")
    assert failures[1].startswith(f"failed: {folder / 'd.png'}: ") and "16x16" in failures[1]
    assert "2 images in" in captured.out and "2 failed" in captured.out
    assert run("stylize", folder, "-s", image_files["style"], "-o", tmp_path / "j", "--json", "--workers", "2") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["summary"] == {"inputs": 4, "written": 2, "skipped": 0, "failed": 2}
    assert [Path(item["input"]).name for item in summary["failed"]] == ["b.png", "d.png"]
    assert all(item["error"] for item in summary["failed"])


def test_skip_existing_resumes_a_batch(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    for name in ("a", "b", "c"):
        save_png(make_content(40, 56), folder / f"{name}.png")
    out = tmp_path / "styled"
    assert run("stylize", folder / "a.png", "-s", image_files["style"], "-o", f"{out}/") == 0
    first = (out / "a_style.png").stat().st_mtime_ns
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "-q") == 2  # a_style.png exists
    assert "a_style.png: exists" in one_line_error(capsys)
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "--skip-existing", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["summary"] == {"inputs": 3, "written": 2, "skipped": 1, "failed": 0}
    assert listing(out) == ["a_style.png", "b_style.png", "c_style.png"]
    assert (out / "a_style.png").stat().st_mtime_ns == first
    assert run("stylize", folder / "a.png", "-s", image_files["style"], "-o", out / "a_style.png", "--skip-existing") == 0
    assert "a_style.png  (skipped: already complete)" in capsys.readouterr().out
    assert run("stylize", folder, "-s", image_files["style"], "-o", out, "--skip-existing", "--overwrite") == 2
    assert "not both" in one_line_error(capsys)


def test_results_never_go_where_the_inputs_are_searched(tmp_path, image_files, capsys):
    folder = tmp_path / "photos"
    save_png(make_content(40, 56), folder / "a.png")
    assert run("stylize", folder, "-s", image_files["style"], "-o", folder) == 2
    assert f"{folder}: is the input folder" in one_line_error(capsys)
    assert run("stylize", folder, "-s", image_files["style"], "-o", folder / "styled", "--recursive") == 2
    assert "is inside the input folder" in one_line_error(capsys)
    assert listing(folder) == ["a.png"]
    assert run("stylize", folder, "-s", image_files["style"], "-o", folder / "styled", "-q") == 0  # not searched
    assert listing(folder / "styled") == ["a_style.png"]
