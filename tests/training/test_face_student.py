"""The face student end to end on a tiny run: synthetic faces, pruned warm start, export the pipeline reads, resume."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("face_recognition_models", reason="needs the faces extra: pip install '.[faces]'")
pytest.importorskip("gan_face_generate", reason="the train extra installs gan-face-generate")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.training.face_student import (  # noqa: E402
    DescriptorRegressionTask, FaceStudentConfig, train_face_student,
)


def _canvas_maker():
    from slimvision.data.face_identities import FaceCanvasMaker
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.face_detect import FaceDetector

    detector = FaceDetector(SessionSettings(threads=2), min_face_size=40)

    def landmarks(image):
        faces = detector.detect(image)
        return faces[0].landmarks if faces else None

    return FaceCanvasMaker(landmarks)


def test_a_tiny_run_exports_an_embedder_the_pipeline_loads_and_resumes(tmp_path):
    from slimvision.export.faces import export_face_student
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=3, batch_size=4, checkpoint_every=3, log_every=1)
    report = train_face_student(config, tmp_path / "run", canvas_maker=_canvas_maker(), export=export_face_student,
                                progress=False)
    assert report["steps_done"] == 3 and report["faces_aligned"] >= 4
    assert report["pictures"] == 2 * report["faces_aligned"]
    assert report["params"] < report["teacher_params"] / 3
    run = tmp_path / "run"
    assert json.loads((run / "report.json").read_text())["steps_done"] == 3
    targets = np.load(run / "targets.npy")
    assert targets.shape == (report["pictures"], 128) and 0.5 < np.linalg.norm(targets, axis=1).mean() < 2

    student = FaceRecognizer(SessionSettings(threads=2), model=run / "embedder.onnx", card=run / "embedder.card.json")
    assert student.embedder.name == "run-embedder" and student.embedder.dim == 128 and student.threshold == 0.6
    chips = np.zeros((1, 150, 150, 3), np.uint8)
    (descriptor,) = student.network.run({student.card.input.name: student.card.to_input(chips)})
    assert descriptor.shape == (1, 128)

    longer = FaceStudentConfig(faces=6, samples_per_face=2, steps=5, batch_size=4, checkpoint_every=5, log_every=1)
    again = train_face_student(longer, run, canvas_maker=lambda image: pytest.fail("canvases are cached"),
                               export=export_face_student, progress=False)
    assert again["resumed_from"] == 3 and again["steps_done"] == 5
    with pytest.raises(ConfigError, match="width"):
        train_face_student(FaceStudentConfig(faces=6, samples_per_face=2, steps=6, width=0.25), run,
                           canvas_maker=_canvas_maker(), export=export_face_student, progress=False)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """A run folder of the tiny setup whose canvases and teacher descriptors are cached."""
    run = tmp_path_factory.mktemp("cached") / "run"
    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=1, batch_size=4, checkpoint_every=1, log_every=1)
    train_face_student(config, run, canvas_maker=_canvas_maker(), export=lambda student, run_dir: {}, progress=False)
    return run


def _seeded_run(cached_run, tmp_path):
    """A fresh run folder holding the cached run's canvases and teacher targets (no GAN, no MTCNN)."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("canvases.npy", "canvases.json", "targets.npy", "targets.json"):
        shutil.copy(cached_run / name, run / name)
    return run


def _no_canvases(image):
    pytest.fail("the canvases are cached")


@pytest.mark.parametrize("loss", ["arcface", "cosface", "margin-distillation"])
def test_a_margin_loss_checkpoints_its_head_exports_the_student_alone_and_resumes(loss, cached_run, tmp_path):
    from safetensors.torch import load_file

    from slimvision.models.faces.dlib_resnet import DlibResNet
    from slimvision.training.face_losses import teacher_class_centres

    run = _seeded_run(cached_run, tmp_path)
    exported = []

    def export(student, run_dir):
        exported.append(student)
        return {}

    config = FaceStudentConfig(loss=loss, faces=6, samples_per_face=2, steps=2, batch_size=4, checkpoint_every=2,
                               log_every=1)
    report = train_face_student(config, run, canvas_maker=_no_canvases, export=export, progress=False)
    classes = report["faces_aligned"]
    assert report["steps_done"] == 2 and report["loss"]["loss"] == loss and report["loss"]["classes"] == classes
    assert all(math.isfinite(value) for key in ("loss", "margin_loss", "regression_loss", "accuracy")
               for value in report["train_log"][key])

    # The checkpoint holds the head: angles from the teacher's mean descriptor, centres from its classes.
    weights = load_file(str(run / "checkpoints" / "step-00000002" / "model.safetensors"))
    head = {key.removeprefix("head."): value for key, value in weights.items() if key.startswith("head.")}
    targets = torch.from_numpy(np.load(run / "targets.npy"))
    origin = targets.mean(dim=0)
    centres = teacher_class_centres(targets, torch.arange(len(targets)) % classes, classes, origin)
    assert torch.allclose(head["origin"], origin, atol=1e-6)
    if loss == "margin-distillation":
        assert torch.allclose(head["weight"], centres, atol=1e-6)  # the teacher's centres, fixed
        assert 0.2 - 1e-6 <= float(head["margins"].min()) and float(head["margins"].max()) <= 0.4 + 1e-6
    else:
        assert head["weight"].shape == (classes, 128) and "margins" not in head
        assert not torch.allclose(head["weight"], centres, atol=1e-6)  # started at the teacher's centres, trained
        assert torch.allclose(torch.nn.functional.normalize(head["weight"], dim=1), centres, atol=0.05)

    # The export and the saved student are the student alone.
    (student,) = exported
    assert isinstance(student, DlibResNet) and sum(p.numel() for p in student.parameters()) == report["params"]
    saved = load_file(str(run / "student" / "model.safetensors"))
    assert set(saved) == set(student.state_dict()) and not any(key.startswith("head.") for key in saved)

    again = train_face_student(config.replace(steps=3, checkpoint_every=3), run, canvas_maker=_no_canvases,
                               export=export, progress=False)
    assert again["resumed_from"] == 2 and again["steps_done"] == 3
    with pytest.raises(ConfigError, match="loss"):  # a run keeps its loss
        train_face_student(FaceStudentConfig(faces=6, samples_per_face=2, steps=4), run, canvas_maker=_no_canvases,
                           export=export, progress=False)


def test_the_regression_loss_is_zero_only_at_the_teachers_descriptor():
    student = torch.nn.Identity()
    task = DescriptorRegressionTask(student, mse_weight=1.0, cosine_weight=1.0)
    target = torch.randn(4, 128)
    assert float(task({"chips": target.clone(), "targets": target}, "main")["loss"]) < 1e-6
    out = task({"chips": target * 1.5, "targets": target}, "main")  # same direction, longer: only the MSE sees it
    assert float(out["cosine"]) == pytest.approx(1.0) and float(out["loss"]) > 0.1


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="width"):
        FaceStudentConfig(width=1.5).validate()
    with pytest.raises(ConfigError, match="both be 0"):
        FaceStudentConfig(mse_weight=0, cosine_weight=0).validate()
    with pytest.raises(ConfigError):
        FaceStudentConfig(loss="triplet").validate()
    assert FaceStudentConfig(loss="cosface").loss_margin() == 0.2
    assert FaceStudentConfig(loss="arcface", margin=0.5).loss_margin() == 0.5
    with pytest.raises(ConfigError, match="does not use margin, scale"):  # silently ignored otherwise
        FaceStudentConfig(margin=0.3, scale=64)
    with pytest.raises(ConfigError, match="does not use min_margin"):
        FaceStudentConfig(loss="arcface", min_margin=0.1)
    with pytest.raises(ConfigError, match="min_margin must be in"):
        FaceStudentConfig(loss="margin-distillation", margin=0.1)
    with pytest.raises(ConfigError, match="margin must be in"):
        FaceStudentConfig(loss="cosface", margin=2.0)
    with pytest.raises(ConfigError, match="scale must be > 0"):
        FaceStudentConfig(loss="arcface", scale=0.0)


def test_a_mobilefacenet_student_reads_arcface_chips_and_its_card_says_so(tmp_path):
    from slimvision.data.face_align import ARCFACE_CHIP
    from slimvision.export.faces import export_face_student
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.faces import FaceRecognizer

    config = FaceStudentConfig(student="mobilefacenet", init="scratch", faces=6, samples_per_face=2, steps=2,
                               batch_size=4, checkpoint_every=2, log_every=1)
    report = train_face_student(config, tmp_path / "mfn", canvas_maker=_canvas_maker(), export=export_face_student,
                                progress=False)
    assert 0.9e6 < report["params"] < 1.3e6
    student = FaceRecognizer(SessionSettings(threads=2), model=tmp_path / "mfn" / "embedder.onnx")
    assert student.card.template == "arcface" and student.template.size == 112
    assert np.allclose(student.template.pixel_points(), ARCFACE_CHIP.pixel_points())
    with pytest.raises(ConfigError, match="init='scratch'"):
        FaceStudentConfig(student="mobilefacenet").validate()


def test_the_relational_term_compares_every_pairs_distance_and_survives_a_collapsed_student():
    from slimvision.training.face_student import relational_term

    target = torch.randn(6, 128)
    assert float(relational_term(target.clone(), target)) < 1e-6
    assert float(relational_term(target + 3.0, target)) < 1e-6  # a shift keeps every distance
    assert float(relational_term(target * 0.5, target)) > 0.01  # the distances' scale counts (the 0.6 threshold)
    collapsed = torch.zeros(6, 128, requires_grad=True)  # every face on one point: the failure it is for
    loss = relational_term(collapsed, target)
    loss.backward()
    assert float(loss.detach()) > 0.1 and torch.isfinite(collapsed.grad).all()
    assert float(relational_term(target[:1], target[:1])) == 0.0


def test_a_centred_target_space_sees_a_student_that_predicts_the_mean_descriptor():
    from slimvision.training.face_student import DescriptorSpace, regression_terms

    torch.manual_seed(0)
    mean = torch.randn(128)
    targets = mean + 0.05 * torch.randn(64, 128)  # a narrow cone, as dlib's descriptors are
    constant = targets.mean(dim=0).expand(64, 128)  # the collapsed student: the mean for every face
    raw = regression_terms(constant, targets, 1.0, 1.0)
    space = DescriptorSpace.of("centred", targets.numpy())
    centred = regression_terms(constant, targets, 1.0, 1.0, space.origin, space.spread)
    assert float(raw["cosine"]) > 0.99 and float(raw["loss"]) < 0.4  # raw: the mean looks nearly right
    assert float(centred["loss"]) > 0.99  # centred: its cosine to each face is 0
    assert float(centred["distance"]) == pytest.approx(float(raw["distance"]))  # logged in the raw space
    standard = DescriptorSpace.of("standardised", targets.numpy())
    assert float(standard.spread.pow(2).mean()) == pytest.approx(1.0, rel=1e-5)
    assert DescriptorSpace.of("raw", targets.numpy()).origin is None


def test_a_batch_norm_student_trains_and_exports_in_dlibs_layout(cached_run, tmp_path):
    from safetensors.torch import load_file

    from slimvision.models.faces.config import DlibResNetConfig
    from slimvision.models.faces.dlib_resnet import DlibResNet

    run = _seeded_run(cached_run, tmp_path)
    exported = []

    def export(student, run_dir):
        exported.append(student)
        return {}

    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=2, batch_size=4, checkpoint_every=2, log_every=1,
                               batch_norm=True, target_space="standardised", relational_weight=1.0, hint_weight=1.0,
                               distance_scale=False)  # the exported student is then the trained one, folded
    report = train_face_student(config, run, canvas_maker=_no_canvases, export=export, progress=False)
    assert report["loss"]["target_space"] == "standardised" and report["loss"]["relational_weight"] == 1.0
    assert all(math.isfinite(value) for key in ("loss", "relational", "target_space_cosine", "hint")
               for value in report["train_log"][key])
    (student,) = exported
    assert isinstance(student, DlibResNet) and not student.config.batch_norm
    assert not any("norm" in key for key in load_file(str(run / "student" / "model.safetensors")))
    # The exported student is the trained one with its norms folded in: the checkpoint's model in eval mode.
    weights = load_file(str(run / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert any("norm" in key for key in weights)
    trained = DlibResNet(DlibResNetConfig.from_dict({**student.config.to_dict(), "batch_norm": True}))
    trained.load_state_dict(weights)
    chips = torch.rand(2, 3, 150, 150)
    assert torch.allclose(student(chips), trained.eval()(chips), atol=1e-4)
    with pytest.raises(ConfigError, match="batch_norm"):
        FaceStudentConfig(student="mobilefacenet", init="scratch", batch_norm=True).validate()
    with pytest.raises(ConfigError, match="target_space"):
        FaceStudentConfig(target_space="whitened").validate()


def test_level_hints_compare_each_levels_features_with_the_teacher_channels_the_student_holds():
    from slimvision.compress.prune_dlib import narrow_dlib_resnet
    from slimvision.models.faces.config import DlibResNetConfig
    from slimvision.models.faces.dlib_resnet import DlibResNet
    from slimvision.training.face_student import LevelHints

    torch.manual_seed(0)
    teacher = DlibResNet(DlibResNetConfig(input_size=64, stem_channels=8, levels=((8, 2), (16, 1), (16, 1)),
                                          embedding_dim=16)).eval()
    chips = torch.rand(3, 3, 64, 64)
    whole, report = narrow_dlib_resnet(teacher, width=1.0)  # the teacher itself: every hint is 0
    hints = LevelHints(teacher, whole, report["stream_channels"])
    whole(chips)
    assert float(hints.loss(chips)) < 1e-10
    hints.close()
    half, report = narrow_dlib_resnet(teacher, width=0.5)
    hints = LevelHints(teacher, half, report["stream_channels"])
    half(chips)
    loss = hints.loss(chips)
    assert float(loss) > 1e-3
    hints.close()
    assert not half.blocks[1]._forward_hooks and not teacher.blocks[1]._forward_hooks
    with pytest.raises(ConfigError, match="hint_weight"):
        FaceStudentConfig(init="scratch", hint_weight=1.0).validate()


def test_the_distance_scale_undoes_a_student_whose_distances_are_compressed(cached_run, tmp_path):
    from safetensors.torch import load_file

    from slimvision.training.face_student import fit_distance_scale

    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(20, 128))
    assert fit_distance_scale(teacher / 1.5 + 3.0, teacher) == pytest.approx(1.5)  # shifts do not matter
    with pytest.raises(Exception, match="one point"):
        fit_distance_scale(np.ones((4, 128)), teacher[:4])

    run = _seeded_run(cached_run, tmp_path)
    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=2, batch_size=4, checkpoint_every=2, log_every=1,
                               distance_scale=False)
    plain = train_face_student(config, run, canvas_maker=_no_canvases, export=lambda s, d: {}, progress=False)
    assert "distance_scale" not in plain["loss"]
    before = load_file(str(run / "student" / "model.safetensors"))["embedding.weight"]
    # Rerunning the finished run with the switch trains nothing and exports the scaled student.
    scaled = train_face_student(config.replace(distance_scale=True), run, canvas_maker=_no_canvases,
                                export=lambda s, d: {}, progress=False)
    factor = scaled["loss"]["distance_scale"]
    assert scaled["steps_done"] == 2 and factor > 0 and factor != pytest.approx(1.0)
    after = load_file(str(run / "student" / "model.safetensors"))["embedding.weight"]
    assert torch.allclose(after, before * factor, rtol=1e-4)
    with pytest.raises(ConfigError, match="distance_scale"):
        FaceStudentConfig(student="mobilefacenet", init="scratch", distance_scale=True).validate()


def _train_cli(run, *words):
    """``slimvision train face-student`` in ``run``, its --json summary and the report it wrote."""
    from slimvision.cli.main import main

    assert main(["train", "face-student", "--run-dir", str(run), "-q", "--json", *words]) == 0
    return json.loads((run / "report.json").read_text())


def test_the_cli_trains_the_measured_recipe_by_default_and_resumes_it(cached_run, tmp_path, capsys):
    run = _seeded_run(cached_run, tmp_path)  # the tiny faces: --faces 6 --samples-per-face 2 matches their cache
    report = _train_cli(run, "--faces", "6", "--samples-per-face", "2", "--steps", "4", "--batch-size", "4")
    saved = report["config"]  # the resolved settings, as the checkpoints hold them
    assert (saved["batch_norm"], saved["target_space"], saved["relational_weight"], saved["hint_weight"],
            saved["distance_scale"]) == (True, "centred", 1.0, 1.0, True)
    assert report["steps_done"] == 4 and report["loss"]["distance_scale"] > 0
    assert all(math.isfinite(value) for key in ("loss", "relational", "hint") for value in report["train_log"][key])
    assert (run / "embedder.onnx").is_file()
    again = _train_cli(run, "--steps", "5")  # no other flag: the run's own settings
    assert again["resumed_from"] == 4 and again["steps_done"] == 5 and again["config"] == {**saved, "steps": 5}
    capsys.readouterr()


def test_a_run_trained_under_the_old_defaults_resumes_through_the_cli_as_it_was(cached_run, tmp_path, capsys):
    from slimvision.training.checkpoint import TRAINER_FILE
    from slimvision.training.face_student import LEGACY_DEFAULTS

    run = _seeded_run(cached_run, tmp_path)
    config = FaceStudentConfig(**LEGACY_DEFAULTS, faces=6, samples_per_face=2, steps=1, batch_size=4,
                               checkpoint_every=1, log_every=1)
    train_face_student(config, run, canvas_maker=_no_canvases, export=lambda s, d: {}, progress=False)
    # As the code before the recipe's fields wrote it: none of those keys in the saved config.
    (checkpoint,) = (run / "checkpoints").glob("step-*")
    trainer = json.loads((checkpoint / TRAINER_FILE).read_text())
    trainer["extra"]["config"] = {key: value for key, value in trainer["extra"]["config"].items()
                                  if key not in LEGACY_DEFAULTS}
    (checkpoint / TRAINER_FILE).write_text(json.dumps(trainer))

    again = _train_cli(run, "--steps", "2")
    assert again["resumed_from"] == 1 and again["steps_done"] == 2
    assert {key: again["config"][key] for key in LEGACY_DEFAULTS} == LEGACY_DEFAULTS
    assert "distance_scale" not in again["loss"] and "hint" not in again["train_log"]
    capsys.readouterr()


@pytest.fixture(scope="module")
def group_photos(tmp_path_factory):
    """A folder with one "group photo": four synthetic faces, 192 px each, side by side in a 2 x 2 grid."""
    from PIL import Image

    from slimvision.data.face_identities import DETECTION_SIDE, synthetic_faces

    faces = [Image.fromarray(face).resize((DETECTION_SIDE, DETECTION_SIDE), Image.Resampling.BICUBIC)
             for face in synthetic_faces(4, seed=3)]
    photo = Image.new("RGB", (2 * DETECTION_SIDE, 2 * DETECTION_SIDE))
    for index, face in enumerate(faces):
        photo.paste(face, (DETECTION_SIDE * (index % 2), DETECTION_SIDE * (index // 2)))
    folder = tmp_path_factory.mktemp("photos") / "mine"
    folder.mkdir()
    photo.save(folder / "group.png")
    return folder


def test_the_faces_of_your_own_photos_train_a_student_alone_or_beside_the_synthetic_ones(group_photos, tmp_path,
                                                                                          capsys):
    from slimvision.cli.faces import face_canvas_maker

    run = tmp_path / "photos-only"
    report = _train_cli(run, "--faces", "0", "--photos", str(group_photos), "--samples-per-face", "2",
                        "--steps", "2", "--batch-size", "4")
    assert report["config"]["photos"] == [str(group_photos.resolve())] and report["config"]["faces"] == 0
    assert 3 <= report["faces_aligned"] <= 4 and report["pictures"] == 2 * report["faces_aligned"]
    stamp = json.loads((run / "canvases.json").read_text())
    assert [entry[0] for entry in stamp["photos"]] == ["group.png"]  # keyed by name, size and time
    made = (run / "canvases.npy").stat().st_mtime_ns
    again = _train_cli(run, "--steps", "3")  # the run's own photos, from the cache
    assert again["resumed_from"] == 2 and again["steps_done"] == 3
    assert (run / "canvases.npy").stat().st_mtime_ns == made
    assert "faces from your photos" not in capsys.readouterr().out  # --json: the summary only

    config = FaceStudentConfig(faces=6, photos=(str(group_photos),), samples_per_face=2, steps=1, batch_size=4,
                               checkpoint_every=1, log_every=1)
    both = train_face_student(config, tmp_path / "both", canvas_maker=face_canvas_maker(),
                              export=lambda s, d: {}, progress=False)
    assert both["faces_aligned"] >= report["faces_aligned"] + 4


def test_photos_that_cannot_be_used_are_refused_before_anything_is_written(group_photos, tmp_path, capsys):
    from slimvision.cli.main import main

    run = tmp_path / "run"
    assert main(["train", "face-student", "--run-dir", str(run), "-q", "--photos", str(tmp_path / "missing")]) != 0
    error = capsys.readouterr().err.strip()
    assert "missing: does not exist" in error and len(error.splitlines()) == 1
    assert not run.exists()
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    assert main(["train", "face-student", "--run-dir", str(run), "-q", "--faces", "0",
                 "--photos", str(tmp_path / "broken.jpg")]) != 0
    assert "broken.jpg: not a recognised image" in capsys.readouterr().err
    assert not run.exists()  # the run folder it made for the canvases is gone again
    with pytest.raises(ConfigError, match="faces is 0 and no photos"):
        FaceStudentConfig(faces=0)


def test_an_int8_fine_tune_continues_the_run_keeps_its_gallery_and_resumes(cached_run, tmp_path, capsys):
    from slimvision.cli.main import main
    from slimvision.errors import InputError
    from slimvision.export.card import read_card
    from slimvision.export.faces import export_face_student
    from slimvision.training.face_qat import FaceInt8TuneConfig, tune_for_int8

    run = _seeded_run(cached_run, tmp_path)
    config = FaceStudentConfig(faces=6, samples_per_face=2, steps=2, batch_size=4, checkpoint_every=2, log_every=1)
    train_face_student(config, run, canvas_maker=_no_canvases, export=export_face_student, progress=False)
    with pytest.raises(ConfigError, match="a batch of 13 is more than the 12 pictures of the 6 faces"):
        tune_for_int8(run, FaceInt8TuneConfig(steps=2, batch_size=13), canvas_maker=_no_canvases,
                      export=export_face_student, progress=False)
    tune = FaceInt8TuneConfig(steps=2, checkpoint_every=2, log_every=1)  # the run's batch of 4
    report = tune_for_int8(run, tune, canvas_maker=_no_canvases, export=export_face_student, progress=False)
    assert report["steps_done"] == 2 and report["distance_scale"] > 0 and report["settings"]["batch_size"] == 4
    assert all(math.isfinite(value) for value in report["train_log"]["loss"])
    graph = run / "int8-tune" / "embedder.onnx"
    assert report["graph"] == str(graph) and (run / "int8-tune" / "student" / "model.safetensors").is_file()
    card = read_card(run / "int8-tune" / "embedder.card.json")
    assert card.preprocessing["descriptor"]["gallery_name"] == "run-embedder"  # the float student's gallery
    longer = tune_for_int8(run, tune.replace(steps=3, checkpoint_every=3), canvas_maker=_no_canvases,
                           export=export_face_student, progress=False)
    assert longer["resumed_from"] == 2 and longer["steps_done"] == 3
    with pytest.raises(ConfigError, match="learning_rate"):
        tune_for_int8(run, tune.replace(steps=4, learning_rate=1e-3), canvas_maker=_no_canvases,
                      export=export_face_student, progress=False)
    with pytest.raises(InputError, match="no trained face student"):
        tune_for_int8(tmp_path / "empty", tune, canvas_maker=_no_canvases, export=export_face_student, progress=False)

    capsys.readouterr()
    assert main(["compress", "face-int8", "--model", str(run), "-o", str(tmp_path / "a.onnx"), "--calibration", "4",
                 "--tune-steps", "3", "--tune-lr", "1e-3", "-q"]) != 0  # not the rate of the fine-tune above
    assert f"delete {run / 'int8-tune'}" in capsys.readouterr().err and not (tmp_path / "a.onnx").exists()
    shutil.rmtree(run / "int8-tune")
    output = tmp_path / "tuned.int8.onnx"  # the command: fine-tune, then int8
    assert main(["compress", "face-int8", "--model", str(run), "-o", str(output), "--calibration", "4",
                 "--tune-steps", "3", "-q"]) == 0
    card = read_card(tmp_path / "tuned.int8.card.json")
    assert "--tune-steps 3" in card.remake and "int8-aware fine-tuning" in card.provenance["graph"]
    assert card.preprocessing["descriptor"]["gallery_name"] == "run-embedder"
    capsys.readouterr()
    assert main(["compress", "face-int8", "--model", str(run / "embedder.onnx"), "-o", str(tmp_path / "b.onnx"),
                 "--tune-steps", "3", "-q"]) != 0
    assert "give its run folder" in capsys.readouterr().err
