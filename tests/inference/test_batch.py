"""process_files: outputs checked up front, written atomically, one-line errors for bad inputs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from slimvision.errors import InputError, OutputError, SlimvisionError
from slimvision.inference.batch import FileJob, MemoryGate, check_outputs, process_files
from tests.conftest import make_content, read_png, save_png


def invert(image: np.ndarray) -> np.ndarray:
    return 255 - image


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "in"
    return [save_png(make_content(40 + 8 * i, 56 + 4 * i), folder / f"img{i}.png") for i in range(3)]


def names(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_writes_every_output(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}_inv.png") for src in inputs]
    results = list(process_files(jobs, invert))
    assert [r.output for r in results] == [job.output for job in jobs]
    assert names(out) == ["img0_inv.png", "img1_inv.png", "img2_inv.png"]
    for src, result in zip(inputs, results):
        original = read_png(src)
        np.testing.assert_array_equal(read_png(result.output), 255 - original)
        assert (result.height, result.width) == original.shape[:2]
        assert result.source == src and result.seconds >= 0


def test_function_may_change_the_size(inputs, tmp_path):
    jobs = [FileJob(inputs[0], tmp_path / "half.png")]
    (result,) = process_files(jobs, lambda image: image[::2, ::2].copy())
    assert read_png(tmp_path / "half.png").shape == (20, 28, 3)
    assert (result.width, result.height) == (28, 20)


def test_existing_output_is_refused_and_nothing_is_written(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in inputs]
    out.mkdir()
    (out / "img2.png").write_bytes(b"keep me")
    calls = []
    with pytest.raises(OutputError, match="img2.png: exists; pass --overwrite"):
        list(process_files(jobs, lambda image: calls.append(1) or image))
    assert calls == []
    assert names(out) == ["img2.png"]
    assert (out / "img2.png").read_bytes() == b"keep me"
    # With overwrite every output is written, the old one replaced.
    list(process_files(jobs, invert, overwrite=True))
    assert names(out) == ["img0.png", "img1.png", "img2.png"]
    np.testing.assert_array_equal(read_png(out / "img2.png"), 255 - read_png(inputs[2]))


@pytest.mark.parametrize("overwrite", [False, True])
def test_writing_onto_an_input_is_refused(inputs, tmp_path, overwrite):
    before = [src.read_bytes() for src in inputs]
    # The second job would write onto the third job's source.
    jobs = [FileJob(inputs[0], tmp_path / "out" / "a.png"), FileJob(inputs[1], inputs[2]),
            FileJob(inputs[2], tmp_path / "out" / "c.png")]
    with pytest.raises(OutputError, match="is an input file"):
        list(process_files(jobs, invert, overwrite=overwrite))
    assert [src.read_bytes() for src in inputs] == before
    assert names(tmp_path / "out") == []
    with pytest.raises(OutputError, match="is an input file"):
        check_outputs([FileJob(inputs[0], inputs[0])], overwrite=True)


def test_two_jobs_with_the_same_output_are_refused(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(inputs[0], out / "same.png"), FileJob(inputs[1], out / "x" / ".." / "same.png")]
    with pytest.raises(OutputError, match="two inputs would be written to this same output"):
        list(process_files(jobs, invert))
    assert names(out) == []


def test_corrupt_input_in_the_middle(inputs, tmp_path):
    inputs[1].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing valid
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in inputs]
    done = []
    with pytest.raises(InputError) as info:
        for result in process_files(jobs, invert):
            done.append(result.output.name)
    message = str(info.value)
    assert message.startswith(str(inputs[1])) and "\n" not in message
    assert done == ["img0.png"]
    # The finished output is complete; no temporary file and no later output is left behind.
    assert names(out) == ["img0.png"]
    np.testing.assert_array_equal(read_png(out / "img0.png"), 255 - read_png(inputs[0]))


def test_zero_byte_input(inputs, tmp_path):
    inputs[0].write_bytes(b"")
    with pytest.raises(InputError, match="img0.png: file is empty"):
        list(process_files([FileJob(inputs[0], tmp_path / "o.png")], invert))
    assert not (tmp_path / "o.png").exists()


def test_failing_function_leaves_earlier_outputs_only(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in inputs]
    seen = []

    def fn(image):
        seen.append(image.shape)
        if len(seen) == 2:
            raise RuntimeError("model failed")
        return image

    with pytest.raises(RuntimeError, match="model failed"):
        list(process_files(jobs, fn))
    assert names(out) == ["img0.png"]


def test_no_jobs_is_a_no_op():
    assert list(process_files([], invert)) == []


def test_jpeg_quality_is_passed_on(inputs, tmp_path):
    low = list(process_files([FileJob(inputs[2], tmp_path / "low.jpg")], invert, quality=10))
    high = list(process_files([FileJob(inputs[2], tmp_path / "high.jpg")], invert, quality=95))
    assert low and high
    assert (tmp_path / "low.jpg").stat().st_size < (tmp_path / "high.jpg").stat().st_size


# --------------------------------------------------------------------------- several workers
class ConcurrencyProbe:
    """An image function that records how many calls overlap (each sleeps a little)."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        return 255 - image


@pytest.fixture()
def many_inputs(tmp_path):
    folder = tmp_path / "many"
    return [save_png(make_content(24 + 4 * (i % 3), 32 + 4 * i), folder / f"m{i:02d}.png") for i in range(8)]


def test_workers_give_the_same_files_in_the_same_order(many_inputs, tmp_path):
    sequential = [FileJob(src, tmp_path / "one" / f"{src.stem}.png") for src in many_inputs]
    parallel = [FileJob(src, tmp_path / "two" / f"{src.stem}.png") for src in many_inputs]
    probe = ConcurrencyProbe()
    first = list(process_files(sequential, invert))
    second = list(process_files(parallel, probe, workers=3))
    assert [r.source for r in second] == [r.source for r in first] == many_inputs
    assert probe.peak >= 2  # the calls really overlapped
    for a, b in zip(first, second):
        np.testing.assert_array_equal(read_png(a.output), read_png(b.output))


def test_gate_limits_how_many_images_run_at_once(many_inputs, tmp_path):
    jobs = [FileJob(src, tmp_path / "out" / f"{src.stem}.png") for src in many_inputs]
    probe = ConcurrencyProbe()
    gate = MemoryGate(budget_mb=10)
    # Each image "needs" 6 MB of a 10 MB budget: never two at once, although 4 workers could.
    list(process_files(jobs, probe, workers=4, gate=gate, memory_mb=lambda image: 6.0))
    assert probe.peak == 1 and gate.in_use_mb == 0
    probe = ConcurrencyProbe()
    list(process_files(jobs, probe, workers=4, gate=MemoryGate(10), memory_mb=lambda image: 3.0,
                       overwrite=True))
    assert probe.peak == 3  # three 3 MB images fit in 10 MB


def test_bad_input_with_workers_writes_the_jobs_before_it_and_starts_no_new_ones(many_inputs, tmp_path):
    many_inputs[2].write_bytes(b"not a picture")
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in many_inputs]
    done = []
    with pytest.raises(InputError, match="m02.png: not a recognised image"):
        for result in process_files(jobs, ConcurrencyProbe(0.2), workers=2):
            done.append(result.output.name)
    assert done == ["m00.png", "m01.png"]
    written = names(out)
    assert written[:2] == ["m00.png", "m01.png"]
    # Jobs already queued behind the bad one may finish, but the queue is short (2 x workers)
    # and nothing past it starts; no temporary files are left.
    assert len(written) <= 2 + 4 and all(name.endswith(".png") and not name.startswith(".") for name in written)


def test_an_image_larger_than_the_budget_runs_alone():
    gate = MemoryGate(budget_mb=100)
    order = []

    def run(name: str, mb: float, hold: float) -> None:
        with gate.hold(mb):
            order.append((name, "in", gate.in_use_mb))
            time.sleep(hold)
            order.append((name, "out"))

    small = threading.Thread(target=run, args=("small", 30, 0.2))
    small.start()
    time.sleep(0.05)
    big = threading.Thread(target=run, args=("big", 500, 0.05))  # capped at the whole budget
    big.start()
    time.sleep(0.05)
    late = threading.Thread(target=run, args=("late", 30, 0.0))  # fits, but must not overtake
    late.start()
    for thread in (small, big, late):
        thread.join(5)
    assert order == [("small", "in", 30), ("small", "out"), ("big", "in", 100), ("big", "out"),
                     ("late", "in", 30), ("late", "out")]
    with pytest.raises(ValueError, match="positive"):
        MemoryGate(0)


# --------------------------------------------------------------------------- going on, resuming
@pytest.mark.parametrize("workers", [1, 3])
def test_keep_going_passes_over_bad_inputs_and_reports_them(inputs, tmp_path, workers):
    inputs[1].write_bytes(b"not a picture")
    tiny = save_png(make_content(8, 8), tmp_path / "in" / "tiny.png")

    def refuse_tiny(image):
        if image.shape[0] < 16:
            raise SlimvisionError("content must be at least 16x16")  # a refusal inside the model step
        return 255 - image

    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in [*inputs, tiny]]
    results = list(process_files(jobs, refuse_tiny, keep_going=True, workers=workers))
    assert [r.source for r in results] == [*inputs, tiny]
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[1].error.startswith(str(inputs[1])) and "not a recognised image" in results[1].error
    assert results[3].error == f"{tiny}: content must be at least 16x16"  # named, though fn did not
    assert names(out) == ["img0.png", "img2.png"]


def test_keep_going_still_stops_when_outputs_cannot_be_written(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.webm") for src in inputs]  # not an image format
    with pytest.raises(OutputError, match="unsupported output format"):
        list(process_files(jobs, invert, keep_going=True))


def test_skip_existing_keeps_complete_outputs_and_redoes_broken_ones(inputs, tmp_path):
    out = tmp_path / "out"
    jobs = [FileJob(src, out / f"{src.stem}.png") for src in inputs]
    list(process_files(jobs[:1], invert))
    kept = (out / "img0.png").stat().st_mtime_ns
    (out / "img1.png").write_bytes((out / "img0.png").read_bytes()[:60])  # cut short by something else
    calls = []
    results = list(process_files(jobs, lambda image: calls.append(1) or 255 - image, skip_existing=True))
    assert [(r.output.name, r.skipped) for r in results] == [("img0.png", True), ("img1.png", False),
                                                             ("img2.png", False)]
    assert len(calls) == 2 and (out / "img0.png").stat().st_mtime_ns == kept
    for src in inputs:
        np.testing.assert_array_equal(read_png(out / f"{src.stem}.png"), 255 - read_png(src))
    # Resuming never makes an input an output.
    with pytest.raises(OutputError, match="is an input file"):
        list(process_files([FileJob(inputs[0], inputs[1]), FileJob(inputs[1], out / "x.png")], invert,
                           skip_existing=True))


def test_protected_files_besides_the_sources_are_never_outputs(inputs, tmp_path):
    style = save_png(make_content(20, 20), tmp_path / "style.png")
    before = style.read_bytes()
    with pytest.raises(OutputError, match="style.png: is an input file"):
        list(process_files([FileJob(inputs[0], style)], invert, overwrite=True, protected=[style]))
    assert style.read_bytes() == before


_KILLED_BATCH = """
import sys, time
from pathlib import Path
import slimvision.io.atomic as atomic
from slimvision.inference.batch import FileJob, process_files

real_fsync, calls = atomic._fsync_file, []

def hold_second_write(path):
    calls.append(path)
    if len(calls) == 2:  # the second output's data is in its temp file: stop here until killed
        print("writing", path.name, flush=True)
        time.sleep(120)
    real_fsync(path)

atomic._fsync_file = hold_second_write
out = Path(sys.argv[1])
jobs = [FileJob(Path(src), out / (Path(src).stem + ".png")) for src in sys.argv[2:]]
for result in process_files(jobs, lambda image: 255 - image):
    pass
"""


def test_kill_9_mid_batch_leaves_a_temp_that_the_next_run_removes(inputs, tmp_path):
    """A real SIGKILL while the second image is being written; then a resumed run."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_BATCH, str(out), *map(str, inputs)],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = writer.stdout.readline()
        assert line.startswith("writing .img1."), line
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    assert writer.returncode == -signal.SIGKILL
    left = names(out)
    assert len(left) == 2 and left[1] == "img0.png", left
    assert left[0].startswith(f".img1.{writer.pid}-") and left[0].endswith(".tmp.png"), left
    results = list(process_files([FileJob(src, out / f"{src.stem}.png") for src in inputs], invert,
                                 skip_existing=True))
    assert [r.skipped for r in results] == [True, False, False]
    assert names(out) == ["img0.png", "img1.png", "img2.png"]  # the dead run's temp file is gone
    for src in inputs:
        np.testing.assert_array_equal(read_png(out / f"{src.stem}.png"), 255 - read_png(src))


def test_a_png_set_that_fails_half_way_leaves_none_of_its_files(tmp_path):
    from slimvision.inference.batch import write_png_set

    images = [make_content(8, 8), make_content(8, 8)[..., 0], make_content(8, 8)]
    out = tmp_path / "set"
    too_long = out / ("x" * 300 + ".png")  # planned fine, but the file system refuses the name when written
    with pytest.raises(OutputError, match="cannot write in folder"):
        write_png_set(images, [out / "a.png", out / "b.png", too_long], also=[(out / "manifest.json", b"{}")])
    assert names(out) == []  # a.png and b.png were written to temp files, then taken back
    written = write_png_set(images, [out / "a.png", out / "b.png", out / "c.png"],
                            also=[(out / "manifest.json", b"{}")])
    assert [p.name for p in written] == ["a.png", "b.png", "c.png", "manifest.json"]
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(out / "b.png")), images[1])  # grey stays grey
    with pytest.raises(OutputError, match="give a .png name"):
        write_png_set(images[:1], [out / "a.jpg"])
