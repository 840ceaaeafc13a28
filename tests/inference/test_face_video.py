"""Face video with the motion gate gives the answers of processing every frame, and the `faces video` CLI.

The clips are generated from a real face photo (Grace Hopper) on a real photo of a room, in the
cases that once fooled the gate: a visitor who stands still and then steps out from one frame to
the next, a slow walk-in, and lighting changes. Each is run with and without the gate; events and
every frame's names must agree, allowing the documented lag (the gate's re-check rate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")

from slimvision.assets import samples_dir  # noqa: E402
from slimvision.data.face_clips import DoorClip, brightness_ramp, brightness_step  # noqa: E402
from slimvision.inference.face_gallery import DLIB_RESNET_V1, Gallery  # noqa: E402
from slimvision.inference.face_video import FrameResult, PresenceEvents, recognize_frames  # noqa: E402
from slimvision.inference.faces import FaceRecognizer  # noqa: E402
from slimvision.inference.motion_gate import RECHECK_EVERY, MotionGate  # noqa: E402
from slimvision.graph.session import SessionSettings  # noqa: E402

# docs/faces.md: a person who leaves is noticed within RECHECK_EVERY - 1 frames.
MAX_LAG = RECHECK_EVERY - 1


def grace_hopper() -> Image.Image:
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


@pytest.fixture(scope="module")
def recognizer() -> FaceRecognizer:
    return FaceRecognizer(SessionSettings(threads=1))


@pytest.fixture(scope="module")
def gallery(recognizer, tmp_path_factory) -> Gallery:
    gallery = Gallery.open(tmp_path_factory.mktemp("video") / "people.sqlite", DLIB_RESNET_V1)
    gallery.add("grace", recognizer.main_face(np.asarray(grace_hopper())).descriptor[None])
    return gallery


def door_clip(**settings) -> DoorClip:
    """A 320x240 door camera: the coffee photo as the room, Grace Hopper as the visitor."""
    hall = np.asarray(Image.open(samples_dir() / "content" / "coffee.jpg").convert("RGB").resize((320, 240)))
    visitor = np.asarray(grace_hopper().resize((120, 140)))
    return DoorClip(hall, visitor, size=(320, 240), top=0.2, **settings)


CLIPS = {
    # Stands still for 18 frames, then is gone from one frame to the next (the issue's clip).
    "still visitor then exit": dict(frames=45, enter=4, walk=4, stay=18, walk_out=1),
    # 2 px a frame: every step is small, only their sum is a change.
    "slow walk-in": dict(frames=140, enter=2, walk=110, stay=8, walk_out=2),
    # A light switched off while the visitor stands, who steps out 18 frames later.
    "lighting step": dict(frames=60, enter=4, walk=4, stay=40, walk_out=1, lighting=brightness_step(30, 0.7)),
    # Dusk: the light falls by a quarter over 40 frames, then the visitor comes, stands and steps out.
    "slow lighting ramp": dict(frames=80, enter=40, walk=4, stay=20, walk_out=1, lighting=brightness_ramp(5, 40, 0.75)),
}


def events_of(results: list[FrameResult]) -> list[dict]:
    presence = PresenceEvents(fps=15)
    return [event for event in map(presence.update, results) if event is not None]


def assert_agree(gated: list[FrameResult], every: list[FrameResult], lag: int) -> int:
    """Same events (each at most ``lag`` frames late) and the same names in every frame outside
    those lags; returns the largest lag seen."""
    gated_events, every_events = events_of(gated), events_of(every)
    strip = [{key: e[key] for key in ("present", "entered", "left")} for e in gated_events]
    assert strip == [{key: e[key] for key in ("present", "entered", "left")} for e in every_events]
    delays = [g["frame"] - e["frame"] for g, e in zip(gated_events, every_events)]
    assert all(0 <= delay <= lag for delay in delays), delays
    late = {e["frame"] + step for e, delay in zip(every_events, delays) for step in range(delay)}
    wrong = [i for i, (g, e) in enumerate(zip(gated, every)) if g.names != e.names and i not in late]
    assert not wrong, f"frames {wrong} name other people with the gate"
    return max(delays, default=0)


@pytest.mark.parametrize("case", CLIPS)
def test_the_gate_names_the_same_people_in_every_frame_as_processing_every_frame(recognizer, gallery, case):
    clip = door_clip(**CLIPS[case])
    frames = list(clip.frames())
    every = list(recognize_frames(frames, recognizer, None, gallery))
    gated = list(recognize_frames(frames, recognizer, MotionGate(), gallery))
    assert events_of(every)[0]["entered"] == ["grace"] and events_of(every)[-1]["left"] == ["grace"]
    assert assert_agree(gated, every, MAX_LAG) == 0  # on these clips the gate is never late
    assert sum(result.processed for result in gated) < len(frames)  # and it still skips frames
    if case == "still visitor then exit":  # a still, tracked face is re-checked, not only held
        assert any(result.reason == "recheck" for result in gated)
    standing = [i for i in range(len(frames)) if clip.visible(i)]
    assert all(every[i].names == ["grace"] for i in standing)  # the clip shows what it means to


def test_the_gate_skips_most_of_an_empty_scene(recognizer):
    clip = door_clip(frames=40, enter=1000)  # nobody comes
    results = list(recognize_frames(clip.frames(), recognizer, MotionGate()))
    assert [r.index for r in results if r.processed] == [0] and not any(r.faces for r in results)


def test_presence_events_count_repeated_names():
    from slimvision.inference.face_detect import Face
    from slimvision.inference.faces import RecognizedFace

    def result(index: int, names: list[str]) -> FrameResult:
        """A frame with len(names) faces nobody enrolled."""
        faces = [RecognizedFace(Face((10.0 * i, 0.0, 10.0 * i + 8, 8.0), 0.99, np.zeros((5, 2))), np.zeros(128))
                 for i in range(len(names))]
        return FrameResult(index, np.zeros((8, 40, 3), np.uint8), faces, True, "motion")

    presence = PresenceEvents(fps=0)
    events = [presence.update(result(i, names)) for i, names in enumerate([[], ["?"] * 2, ["?"] * 2, ["?"]])]
    assert events[0] is None and events[2] is None
    assert events[1] == {"frame": 1, "time_s": None, "present": ["unknown", "unknown"],
                         "entered": ["unknown", "unknown"], "left": []}
    assert events[3]["left"] == ["unknown"] and events[3]["present"] == ["unknown"]


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def door_video(tmp_path_factory) -> tuple[Path, Path]:
    """The issue's clip as an .mp4, and a gallery file with Grace Hopper enrolled by the CLI."""
    from slimvision.cli.main import main

    folder = tmp_path_factory.mktemp("door")
    video = door_clip(**CLIPS["still visitor then exit"]).write(folder / "door.mp4", fps=15)
    people = folder / "people" / "grace"
    people.mkdir(parents=True)
    grace_hopper().save(people / "grace.jpg")
    assert main(["faces", "enroll", str(folder / "people"), "--gallery", str(folder / "g.sqlite"), "--json"]) == 0
    return video, folder / "g.sqlite"


def test_video_cli_events_file_json_summary_and_the_issue_clip(door_video, tmp_path, capsys):
    from slimvision.cli.main import main

    video, gallery = door_video
    runs = {}
    for kind, extra in (("gated", []), ("every", ["--no-gate"])):
        capsys.readouterr()
        events = tmp_path / f"{kind}.jsonl"
        assert main(["faces", "video", str(video), "--gallery", str(gallery), "--events", str(events),
                     "-o", str(tmp_path / f"{kind}.mp4"), "--json", *extra]) == 0
        summary = json.loads(capsys.readouterr().out)  # stdout is the JSON summary alone
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        assert summary["events"] == lines and summary["frames"] == 45 and summary["motion_gate"] == (kind == "gated")
        runs[kind] = summary
    assert runs["gated"]["events"] == runs["every"]["events"]
    assert [e["left"] for e in runs["gated"]["events"]] == [[], ["grace"]]  # the exit is seen
    assert runs["gated"]["skipped"] > 0 and runs["every"]["skipped"] == 0
    # Without --events the changes are printed; -q hides the bar (stderr stays empty).
    assert main(["faces", "video", str(video), "--gallery", str(gallery), "-q"]) == 0
    captured = capsys.readouterr()
    assert "entered grace" in captured.out and "left grace" in captured.out and captured.err == ""
    assert main(["faces", "video", str(video), "--max-frames", "3", "--no-gate"]) == 0
    captured = capsys.readouterr()
    assert "faces video" in captured.err and captured.out.startswith("3 frames in")  # the bar, then the summary


@pytest.mark.parametrize("options, message", [
    (["--max-frames", "0"], "--max-frames must be at least 1"),
    (["--max-frames", "nan"], "--max-frames must be a"),
    (["--max-frames", "-3"], "--max-frames must be at least 1"),
    (["-o", "{video}", "--overwrite"], "is an input file"),
    (["--events", "{video}", "--overwrite"], "is an input file"),
    (["--events", "{gallery}", "--overwrite"], "is an input file"),
    (["-o", "{tmp}/same.mp4", "--events", "{tmp}/same.mp4"], "is also the -o video"),
    (["-o", "{tmp}/old.mp4"], "exists; pass --overwrite"),
    (["-o", "{tmp}/out.mp4", "--events", "{tmp}"], "is a directory"),
])
def test_video_cli_refuses_bad_options_in_one_line_and_leaves_inputs_alone(door_video, tmp_path, capsys, options,
                                                                           message):
    from slimvision.cli.main import main

    video, gallery = door_video
    (tmp_path / "old.mp4").write_bytes(b"old")
    before = video.read_bytes(), gallery.read_bytes()
    options = [o.format(video=video, gallery=gallery, tmp=tmp_path) for o in options]
    command = ["faces", "video", str(video), "--gallery", str(gallery), *options]
    if options[0] == "--max-frames":  # refused by argparse: exit status 2 too
        with pytest.raises(SystemExit) as exit_:
            main(command)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    else:
        assert main(command) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
    assert (video.read_bytes(), gallery.read_bytes()) == before
    assert (tmp_path / "old.mp4").read_bytes() == b"old"
    assert not (tmp_path / "same.mp4").exists() and not (tmp_path / "out.mp4").exists()


def test_ctrl_c_stops_a_camera_recording_and_keeps_it_but_aborts_a_file(door_video, tmp_path, monkeypatch, capsys):
    # A camera has no end, so Ctrl-C is how a recording stops: the video and events recorded so
    # far are kept (they were discarded). A file has an end: Ctrl-C there aborts, leaving nothing.
    import slimvision.inference.face_video as face_video
    from slimvision.cli.main import main
    from slimvision.io.video import iter_frames, probe_video

    video, gallery = door_video
    info = probe_video(video)

    def camera(source: str) -> face_video.Stream:
        assert source == "0"

        def frames():
            for index, frame in enumerate(iter_frames(video)):
                if index == 20:
                    raise KeyboardInterrupt
                yield frame
        return face_video.Stream(frames(), info.fps, (info.width, info.height), None)

    monkeypatch.setattr(face_video, "open_stream", camera)
    recording, events = tmp_path / "camera.mp4", tmp_path / "camera.jsonl"
    assert main(["faces", "video", "0", "--gallery", str(gallery), "-o", str(recording), "--events", str(events),
                 "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 20
    assert probe_video(recording).frames == 20 and [json.loads(line)["entered"] for line in
                                                    events.read_text().splitlines()] == [["grace"]]

    def interrupted_file(source: str) -> face_video.Stream:
        stream = camera("0")
        return stream._replace(length=info.frames)

    monkeypatch.setattr(face_video, "open_stream", lambda source: interrupted_file("0"))
    capsys.readouterr()
    assert main(["faces", "video", str(video), "-o", str(tmp_path / "file.mp4"), "-q"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["camera.jsonl", "camera.mp4"]
