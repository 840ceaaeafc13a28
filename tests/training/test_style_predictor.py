"""The predictor distillation recipe end to end on a tiny student: trains, resumes, exports, evaluates."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.export.style import export_predictor  # noqa: E402
from slimvision.graph.session import OnnxModel  # noqa: E402
from slimvision.training.style_predictor import PredictorDistillConfig, distill_predictor  # noqa: E402
from slimvision.training.trainer import CosineDecay  # noqa: E402


def tiny(steps: int) -> PredictorDistillConfig:
    return PredictorDistillConfig(width_multiplier=0.1, last_channels=32, steps=steps, batch_size=2, samples=8,
                                  checkpoint_every=2, log_every=1, learning_rate=1e-3)


def test_a_tiny_run_trains_resumes_exports_and_reports(tmp_path):
    first = distill_predictor(tiny(3), tmp_path / "run", progress=False, export=export_predictor)
    assert first["steps_done"] == 3 and first["resumed_from"] == 0
    assert len(first["train_log"]["loss"]) == 3
    second = distill_predictor(tiny(5), tmp_path / "run", progress=False, export=export_predictor)
    assert second["resumed_from"] == 3 and second["steps_done"] == 5
    assert second["train_log"]["steps"] == [1, 2, 3, 4, 5]  # the whole run's log, the first session's too
    assert second["train_log"]["loss"][:3] == first["train_log"]["loss"]
    held_out = second["held_out"]
    assert held_out["images"] >= 3 and -1.0 <= held_out["mean_cosine"] <= 1.0
    assert any("starry_night" in name for name in held_out["per_image"])  # the demo painting is never trained on
    assert second["export_max_abs_diff"] <= 1e-4
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["params"] == second["params"] < 200_000
    student = OnnxModel(tmp_path / "run" / "student.onnx")
    import numpy as np

    (vectors,) = student.run({student.input_names[0]: np.random.rand(2, 3, 256, 256).astype(np.float32)})
    assert vectors.shape == (2, 100)
    assert (tmp_path / "run" / "student" / "model.safetensors").is_file()
    assert len(list((tmp_path / "run" / "teacher-cache").glob("*.npy"))) >= 6


def test_learning_rate_follows_one_cosine_across_a_resume():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    straight = CosineDecay(iter([{}] * 10), optimizer, 1.0, 0, 10)
    rates = []
    for _ in straight:
        rates.append(optimizer.param_groups[0]["lr"])
    resumed = CosineDecay(iter([{}] * 4), optimizer, 1.0, 6, 10)
    assert [optimizer.param_groups[0]["lr"] for _ in resumed] == pytest.approx(rates[6:])
    assert rates[0] == 1.0 and rates[5] == pytest.approx(0.5)


def test_config_checks():
    with pytest.raises(ConfigError, match="width_multiplier"):
        PredictorDistillConfig(width_multiplier=0)
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        PredictorDistillConfig(batch_size=0)
    with pytest.raises(ConfigError, match="stem_stride must be 2 or 4"):
        PredictorDistillConfig(stem_stride=3)
    with pytest.raises(ConfigError, match=r"stage_repeats .*MobileNetV2 has \[1, 2, 3, 4, 3, 3, 1\]"):
        PredictorDistillConfig(stage_repeats=(1, 2, 3, 5, 3, 3, 1))


def test_a_patchify_student_never_computes_at_half_resolution():
    config = PredictorDistillConfig(stem_stride=4, stage_repeats=(1, 1, 2, 2, 2, 2, 1)).student_config()
    assert (config.stem_kernel_size, config.stem_stride) == (4, 4)
    assert [stage[2:] for stage in config.stages] == [(1, 1), (1, 1), (2, 2), (2, 2), (2, 1), (2, 2), (1, 1)]
    from slimvision.models.style import StylePredictor

    features = StylePredictor(config).blocks(torch.zeros(1, 16, 64, 64))
    assert features.shape[-2:] == (8, 8)  # total stride 32, as MobileNetV2's
    assert PredictorDistillConfig().student_config().stages[1] == (6, 24, 2, 2)


def test_cli_command(tmp_path, capsys):
    from slimvision.cli.main import main

    code = main(["train", "style-predictor", "--run-dir", str(tmp_path / "cli"), "--width", "0.1", "--last-channels",
                 "32", "--steps", "2", "--batch-size", "2", "--samples", "4", "--json", "--stem-stride", "4",
                 "--stage-repeats", "1,1,1,1,1,1,1"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps_done"] == 2 and summary["export_max_abs_diff"] <= 1e-4
    assert -1 <= summary["held_out_mean_cosine"] <= 1


def test_evaluation_reports_the_mean_vector_baseline():
    import numpy as np

    from slimvision.data.style_images import find_style_sources, split_sources
    from slimvision.training.style_predictor import evaluate_predictor

    _, held_out = split_sources(find_style_sources())
    rng = np.random.default_rng(0)
    table = {source.name: rng.standard_normal(100).astype(np.float32) + 5 for source in held_out}
    mean = np.full(100, 5.0, np.float32)
    order = iter(held_out)

    def teacher(pixels):  # a vector per file, with a big shared component (+5), like style vectors
        return table[next(order).name][None]

    class Constant(torch.nn.Module):  # "predicts" the mean vector for every image
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor(mean))

        def forward(self, x):
            return self.bias.expand(len(x), 100)

    report = evaluate_predictor(Constant(), teacher, held_out, reference_mean=mean)
    assert report["mean_cosine"] > 0.9  # plain cosine flatters a constant...
    assert report["mean_cosine"] == pytest.approx(report["baseline_mean_vector_cosine"])
    assert abs(report["centred_cosine"]) < 1e-6 and report["r2"] < 0.05  # ...the centred numbers do not


def test_a_resume_with_other_settings_is_refused_before_any_work(tmp_path):
    from dataclasses import replace

    from torch import nn

    from slimvision.training.checkpoint import CheckpointStore

    model = nn.Linear(1, 1)
    CheckpointStore(tmp_path / "run" / "checkpoints").save(
        2, model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)}, extra={"config": tiny(3).to_dict()})
    with pytest.raises(ConfigError, match=r"was started with other settings \(batch_size, width_multiplier differ\)"):
        distill_predictor(replace(tiny(5), width_multiplier=0.2, batch_size=4),
                          tmp_path / "run", progress=False, export=export_predictor)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]  # no cache, no student
