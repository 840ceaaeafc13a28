"""slimvision batch's one code path, on the local worker pool: sources, planning, the manifest,
resuming, bad files as rows (the Ray engine runs the same jobs: tests/inference/test_batch_ray.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from slimvision.errors import InputError, OutputError
from slimvision.io import atomic
from slimvision.inference.batch_jobs import DONE, FAILED, MANIFEST_NAME, Manifest, Row, read_sources, run_batch
from slimvision.inference.batch_tasks import TaskSpec
from tests.conftest import save_png

DENOISE = TaskSpec("vae-denoise")


def grey_images(folder: Path, count: int, size: int = 48) -> list[Path]:
    rng = np.random.default_rng(0)
    return [save_png(rng.integers(0, 255, (size, size), dtype=np.uint8), folder / f"slice{i}.png")
            for i in range(count)]


def manifest_rows(dest: Path) -> list[dict]:
    """The manifest's rows (its first line names the job)."""
    lines = (dest / MANIFEST_NAME).read_text().splitlines()
    assert "job" in json.loads(lines[0])
    return [json.loads(line) for line in lines[1:]]


def test_sources_from_a_folder_a_glob_and_lists(tmp_path):
    files = grey_images(tmp_path / "in", 2) + grey_images(tmp_path / "in" / "sub", 1)
    assert read_sources(tmp_path / "in")[0] == files[:2]
    assert read_sources(tmp_path / "in", recursive=True)[0] == sorted(files)
    found, root = read_sources(str(tmp_path / "in" / "**" / "*.png"))
    assert sorted(found) == sorted(files) and root == tmp_path / "in"
    (tmp_path / "list.csv").write_text("path\nin/slice1.png\n" + f"{files[2]}\n")
    assert read_sources(tmp_path / "list.csv")[0] == [tmp_path / "in" / "slice1.png", files[2]]
    (tmp_path / "bare.csv").write_text("in/slice0.png\n")
    assert read_sources(tmp_path / "bare.csv")[0] == [tmp_path / "in" / "slice0.png"]
    parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow (the scale extra) reads Parquet lists")
    import pyarrow

    parquet.write_table(pyarrow.table({"id": [1], "input": [str(files[0])]}), tmp_path / "list.parquet")
    assert read_sources(tmp_path / "list.parquet")[0] == [files[0]]


@pytest.mark.parametrize("source, problem", [("missing", "not found"), ("in/*.jpg", "matches no files"),
                                             ("two.csv", "name the paths' column"), ("empty.csv", "lists no paths"),
                                             ("twice.csv", "lists the same file twice")])
def test_bad_sources_are_one_line_errors_naming_them(tmp_path, source, problem):
    grey_images(tmp_path / "in", 1)
    (tmp_path / "two.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty.csv").write_text("path\n")
    (tmp_path / "twice.csv").write_text("path\nin/slice0.png\n./in/slice0.png\n")
    with pytest.raises(InputError, match=problem) as caught:
        read_sources(str(tmp_path / source))
    assert str(tmp_path / source) in str(caught.value) and "\n" not in str(caught.value)


def test_a_python_list_of_paths_is_a_source(tmp_path):
    files = grey_images(tmp_path / "in", 2) + grey_images(tmp_path / "in" / "sub", 1)
    found, root = read_sources([str(files[2]), files[0]])
    assert found == [files[2], files[0]] and root == tmp_path / "in"
    summary = run_batch(DENOISE, [files[0], files[2]], tmp_path / "out", workers=1)
    assert summary.done == 2 and (tmp_path / "out" / "sub" / "slice0.png").is_file()
    assert run_batch(DENOISE, [files[0], files[2]], tmp_path / "out", workers=1).skipped == 2  # resumes


@pytest.mark.parametrize("paths, problem", [([], "lists no paths"), (["a.png", "./a.png"], "lists the same file twice")])
def test_a_bad_python_list_is_one_line_naming_it(tmp_path, paths, problem):
    with pytest.raises(InputError, match=problem) as caught:
        read_sources([tmp_path / path for path in paths])
    assert "the list of input paths" in str(caught.value) and "\n" not in str(caught.value)


def test_a_bad_file_is_a_row_and_a_rerun_skips_what_is_done(tmp_path):
    grey_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    dest = tmp_path / "out"
    summary = run_batch(DENOISE, tmp_path / "in", dest, workers=2)
    assert (summary.done, summary.skipped, len(summary.failed)) == (3, 0, 1)
    rows = {Path(row["input"]).name: row for row in manifest_rows(dest)}
    assert rows["broken.png"]["status"] == FAILED and "broken.png" in rows["broken.png"]["error"]
    assert all(rows[f"slice{i}.png"]["status"] == DONE for i in range(3))
    assert sorted(path.name for path in dest.iterdir()) == [MANIFEST_NAME, "slice0.png", "slice1.png", "slice2.png"]
    (dest / "slice1.png").unlink()  # a lost output is redone, the failed file is tried again
    again = run_batch(DENOISE, tmp_path / "in", dest, workers=2)
    assert (again.done, again.skipped, len(again.failed)) == (1, 2, 1)
    assert len(manifest_rows(dest)) == 4  # one row per input after the run


def test_a_killed_run_is_finished_by_the_rerun_exactly_once(tmp_path, monkeypatch):
    """What a SIGKILL leaves: rows for some inputs, a torn last line, an output written but not
    recorded, a dead writer's temp file. The rerun does the rest, each input once."""
    files = grey_images(tmp_path / "in", 4)
    dest = tmp_path / "out"
    run_batch(DENOISE, tmp_path / "in", dest, workers=1)
    rows = (dest / MANIFEST_NAME).read_text().splitlines()
    (dest / MANIFEST_NAME).write_text("\n".join(rows[:3]) + "\n" + rows[3][:25])  # the job, 2 rows, torn mid-row
    (dest / "slice3.png").unlink()
    stale = dest / f".slice3.{2**22 + 12345}-0badc0de.tmp.png"  # a PID no process has
    stale.write_bytes(b"half")
    os.utime(stale, (1e9, 1e9))
    monkeypatch.setattr(atomic, "_cleaned_folders", set())  # the rerun is a new process: it cleans again
    summary = run_batch(DENOISE, tmp_path / "in", dest, workers=2)
    assert (summary.done, summary.skipped) == (2, 2)
    final = manifest_rows(dest)
    assert sorted(row["input"] for row in final) == sorted(map(str, files))
    assert {row["status"] for row in final} == {DONE}
    assert not [path for path in dest.iterdir() if path.name.startswith(".")]


def test_outputs_of_another_job_are_refused_and_outputs_never_go_into_the_source(tmp_path):
    grey_images(tmp_path / "in", 1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "slice0.png").write_bytes(b"someone's file")
    with pytest.raises(OutputError, match="exists"):
        run_batch(DENOISE, tmp_path / "in", tmp_path / "out")
    assert run_batch(DENOISE, tmp_path / "in", tmp_path / "out", overwrite=True).done == 1
    with pytest.raises(OutputError):
        run_batch(DENOISE, tmp_path / "in", tmp_path / "in" / "out", recursive=True)


def test_the_manifest_keeps_the_latest_row_and_skips_torn_lines(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.append([Row("a", "x", FAILED, "bad"), Row("a", "x", DONE)])
    with open(manifest.path, "a") as handle:
        handle.write('{"input": "b", "outp')
    assert manifest.load() == {"a": Row("a", "x", DONE)}
    manifest.compact()
    assert manifest.path.read_text().count("\n") == 1


def test_vae_denoise_writes_16_bit_slices_in_their_own_values_as_the_vae_command_does(tmp_path):
    from PIL import Image

    from slimvision.cli.main import main

    ramp = np.linspace(1200, 42000, 64 * 48).reshape(64, 48)
    scan = np.clip(ramp + np.random.default_rng(1).normal(0, 300, ramp.shape), 0, 65535).astype(np.uint16)
    save_png(scan, tmp_path / "in" / "scan.png")
    assert run_batch(DENOISE, tmp_path / "in", tmp_path / "out", workers=1).done == 1
    assert main(["vae", "denoise", str(tmp_path / "in" / "scan.png"), "-o", str(tmp_path / "one.png")]) == 0
    with Image.open(tmp_path / "out" / "scan.png") as image, Image.open(tmp_path / "one.png") as reference:
        assert image.mode.startswith("I") and image.size == (48, 64)  # 16-bit grey, the slice's own size
        written, expected = np.asarray(image), np.asarray(reference)
    assert np.array_equal(written, expected)  # one code path: what `slimvision vae denoise` writes
    assert written.max() > 255 and abs(float(written.mean()) - float(scan.mean())) < 0.02 * float(np.ptp(scan))
    assert int(scan.min()) - 1000 <= int(written.min()) and int(written.max()) <= int(scan.max()) + 1000  # its range


def test_a_manifest_of_another_job_is_refused_and_its_outputs_kept(tmp_path):
    """Another task, other options or another source of the same names into the same folder
    would skip (or overwrite) the first job's outputs without a word."""
    grey_images(tmp_path / "in", 2)
    dest = tmp_path / "out"
    run_batch(DENOISE, tmp_path / "in", dest)
    first = (dest / "slice0.png").read_bytes()
    for other, problem in [(TaskSpec("style", {"vector": [0.0] * 100}), "records a vae-denoise job"),
                           (TaskSpec("vae-denoise", {"model": "other.onnx"}), r"different options \(model\)")]:
        with pytest.raises(OutputError, match=problem) as caught:
            run_batch(other, tmp_path / "in", dest)
        assert str(dest / MANIFEST_NAME) in str(caught.value)
    grey_images(tmp_path / "elsewhere", 1)  # slice0.png again, another file
    with pytest.raises(OutputError, match="holds the output of"):
        run_batch(DENOISE, tmp_path / "elsewhere", dest)
    assert (dest / "slice0.png").read_bytes() == first
    assert run_batch(DENOISE, tmp_path / "in", dest).skipped == 2  # the same job still resumes
    assert run_batch(DENOISE, str(tmp_path / "in" / "*.png"), dest).skipped == 2  # however the source is spelled


@pytest.mark.parametrize("content, problem", [(None, "is not a file"), ("[1, 2]\n", "is not a batch manifest"),
                                              ("", "exists; pass --overwrite")])
def test_a_manifest_path_that_is_no_manifest_is_refused_before_any_output(tmp_path, content, problem):
    grey_images(tmp_path / "in", 1)
    manifest = tmp_path / "out" / MANIFEST_NAME
    manifest.parent.mkdir()
    manifest.mkdir() if content is None else manifest.write_text(content)
    if not content:  # an empty manifest records nothing: the folder's files are not this job's to replace
        (tmp_path / "out" / "slice0.png").write_bytes(b"someone's file")
    with pytest.raises(OutputError, match=problem):
        run_batch(DENOISE, tmp_path / "in", tmp_path / "out")
    assert MANIFEST_NAME in [path.name for path in (tmp_path / "out").iterdir()]
    assert content is None or manifest.read_text() == content


@pytest.mark.parametrize("pattern, dest, refused", [("in/**/*.png", "in/out", True), ("in/*/*.png", "in/out", True),
                                                    ("in/*.png", "in/out", False), ("in/**/*.png", "out", False)])
def test_outputs_the_source_pattern_would_match_are_refused(tmp_path, monkeypatch, pattern, dest, refused):
    """A glob that would read the job's own outputs back next run (one folder deeper each time)."""
    monkeypatch.chdir(tmp_path)
    grey_images(tmp_path / "in", 1), grey_images(tmp_path / "in" / "sub", 1)
    if refused:
        with pytest.raises(OutputError, match="match the source pattern"):
            run_batch(DENOISE, pattern, dest)
        assert not (tmp_path / dest).exists()
    else:
        assert not run_batch(DENOISE, pattern, dest).failed


def test_a_job_is_the_same_however_its_model_path_is_spelled(tmp_path, monkeypatch):
    from slimvision.inference.batch_jobs import job_record

    monkeypatch.chdir(tmp_path)
    (tmp_path / "vae").mkdir()
    spelled = [job_record(TaskSpec("vae-denoise", {"model": name})) for name in ("vae", "./vae/", str(tmp_path / "vae"))]
    assert spelled[0] == spelled[1] == spelled[2]
    assert job_record(TaskSpec("vae-denoise")) == job_record(TaskSpec("vae-denoise", {"model": None}))


def test_vae_denoise_takes_a_folders_dicom_files_too(tmp_path):
    """'batch vae-denoise scans/' said 'folder holds no images' for a folder of DICOM slices."""
    pydicom_data = pytest.importorskip("pydicom.data", reason="pydicom (the medical extra) ships the test scan")
    import shutil

    files = grey_images(tmp_path / "in", 1)
    shutil.copy(pydicom_data.get_testdata_file("CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    shutil.copy(tmp_path / "in" / "ct.dcm", tmp_path / "in" / "IM0001")  # DICOM without a suffix
    (tmp_path / "in" / "notes.txt").write_text("not a scan")
    assert read_sources(tmp_path / "in")[0] == files
    found = read_sources(tmp_path / "in", medical=True)[0]
    assert found == sorted([*files, tmp_path / "in" / "ct.dcm", tmp_path / "in" / "IM0001"])
    summary = run_batch(DENOISE, tmp_path / "in", tmp_path / "out")
    assert (summary.done, summary.failed) == (3, [])
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == sorted(["IM0001.png", MANIFEST_NAME, "ct.png",
                                                                                 "slice0.png"])
