"""Output-space distillation of the style predictor: the norm-parameter and painting losses, their
report, and runs saved before these settings existed resuming as before."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from slimvision.compress.distill import VectorDistillTask  # noqa: E402
from slimvision.models.style import StylePredictor, StyleTransformer  # noqa: E402
from slimvision.models.style.config import StylePredictorConfig, StyleTransformerConfig  # noqa: E402
from slimvision.models.style.norm_params import NormParameterMap  # noqa: E402
from slimvision.training.style_predictor import (OutputSpaceDistillTask, PredictorDistillConfig,  # noqa: E402
                                                 RESUMABLE_CHANGES, evaluate_output_space)

TINY_TRANSFORMER = StyleTransformerConfig(contract_channels=(4, 8), contract_kernels=(3, 3), contract_strides=(1, 2),
                                          residual_blocks=1, expand_channels=(4, 3), expand_kernels=(3, 3),
                                          expand_upsample=(2, 1))


def tiny_student(seed: int) -> StylePredictor:
    torch.manual_seed(seed)
    return StylePredictor(StylePredictorConfig(width_multiplier=0.1, last_channels=16))


def tiny_transformer() -> StyleTransformer:
    torch.manual_seed(3)
    return StyleTransformer(TINY_TRANSFORMER).eval()


class FixedTeacher(torch.nn.Module):
    """A frozen torch teacher: a fixed vector per image from its mean colour (run online, no cache)."""

    def __init__(self) -> None:
        super().__init__()
        self.map = torch.nn.Linear(3, 100)
        torch.nn.init.normal_(self.map.weight, std=2.0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.map(pixels.mean(dim=(2, 3)))


def fixed_batch() -> dict:
    generator = torch.Generator().manual_seed(1)
    return {"inputs": torch.rand(4, 3, 64, 64, generator=generator), "ids": ["a", "b", "c", "d"]}


def config(**weights: float) -> PredictorDistillConfig:
    return PredictorDistillConfig(width_multiplier=0.1, last_channels=16, image_batch=2, image_size=16, **weights)


def test_the_norm_parameters_are_exactly_affine_in_the_vector_and_share_the_vector_mse_scale():
    transformer = tiny_transformer()
    params = NormParameterMap(transformer)
    channels = sum(norm.gamma.out_features for norm in transformer.norms())
    assert params.matrix.shape == (2 * channels, 100)
    vectors = torch.randn(5, 100) * 3
    assert params.check_affine(transformer, vectors) < 1e-5
    halfway = params(0.25 * vectors[:1] + 0.75 * vectors[1:2])
    assert torch.allclose(halfway, 0.25 * params(vectors[:1]) + 0.75 * params(vectors[1:2]), atol=1e-5)
    # An error of one unit along each axis in turn: vector MSE 1/D, and the normalised
    # norm-parameter error sums |W e_i|^2 = tr(W^T W) over the axes, so it is 1/D too.
    basis = torch.eye(100)
    assert float(params.normalised_error(basis, torch.zeros(100, 100))) == pytest.approx(1 / 100, rel=1e-5)
    # ...while one axis alone is weighted by how much the norms use it.
    weights = params.direction_weights()
    assert weights.shape == (100,) and float(weights.sum()) == pytest.approx(100, rel=1e-4)
    assert weights[0] > 1 > weights[-1]


def test_the_norm_parameter_loss_is_zero_when_the_vectors_match():
    params = NormParameterMap(tiny_transformer())
    vectors = torch.randn(3, 100)
    assert float(params.normalised_error(vectors, vectors.clone())) == 0.0
    teacher = FixedTeacher()  # the teacher as its own student: the same vectors
    task = OutputSpaceDistillTask(teacher, teacher, None, config(norm_param_weight=1.0, image_weight=1.0),
                                  tiny_transformer(), torch.rand(1, 3, 16, 16))
    out = task(fixed_batch())
    assert float(out["norm_param_loss"]) == 0.0 and float(out["image_loss"]) == 0.0 and float(out["mse"]) == 0.0


def test_weights_zero_give_exactly_the_vector_mse_task():
    batch = fixed_batch()
    teacher = FixedTeacher()
    old_student, new_student = tiny_student(0), tiny_student(0)
    old = VectorDistillTask(old_student, teacher)(batch)
    new = OutputSpaceDistillTask(new_student, teacher, None, config())(batch)
    assert sorted(new) == sorted(old) == ["cosine", "loss", "mse"]  # the same train log columns
    assert all(torch.equal(new[key], old[key]) for key in old)
    old["loss"].backward()
    new["loss"].backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(old_student.parameters(), new_student.parameters()))


@pytest.mark.parametrize("term", ["norm_param_loss", "image_loss"])
def test_each_output_space_loss_is_finite_and_decreases_on_a_fixed_batch(term):
    weights = {"norm_param_weight": 1.0} if term == "norm_param_loss" else {"image_weight": 10.0}
    student = tiny_student(0)
    task = OutputSpaceDistillTask(student, FixedTeacher(), None, config(**weights), tiny_transformer(),
                                  torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2)))
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    batch = fixed_batch()
    values = []
    for _ in range(25):
        optimizer.zero_grad()
        out = task(batch)
        assert all(torch.isfinite(value) for value in out.values())
        out["loss"].backward()
        optimizer.step()
        values.append(float(out[term]))
    assert values[-1] < 0.5 * values[0]
    assert all(p.grad is None for p in task.transformer.parameters())  # frozen: only the student learns


def test_the_painting_loss_runs_every_k_steps_and_the_log_keeps_its_latest_value():
    student = tiny_student(0)
    task = OutputSpaceDistillTask(student, FixedTeacher(), None, config(image_weight=1.0, image_every=3),
                                  tiny_transformer(), torch.rand(4, 3, 16, 16))
    losses = []
    for _ in range(4):
        out = task(fixed_batch())
        losses.append(float(out["image_loss"]))
        painted = float(out["loss"].detach()) != float(out["mse"])
        assert painted == ((task.step - 1) % 3 == 0)
    assert losses[0] > 0 and losses[1] == losses[2] == losses[0] and losses[3] != losses[0]


def test_output_space_scores_of_matching_and_differing_vectors():
    transformer = tiny_transformer()
    teacher = np.random.default_rng(0).standard_normal((3, 100)).astype(np.float32)
    names = ["style-a", "style-b", "style-c"]
    contents = [("photo", torch.rand(1, 3, 24, 24)), ("style-b", torch.rand(1, 3, 24, 24))]
    same = evaluate_output_space(names, teacher.copy(), teacher, transformer, contents, teacher.mean(axis=0))
    assert same["norm_param_error"] == 0.0 and same["norm_param_r2"] == 1.0
    assert same["paintings"] == 5  # a style never paints its own file
    assert same["painting_ssim_mean"] == pytest.approx(1.0) and "photo / style-a" in same["per_pair"]
    off = evaluate_output_space(names, teacher + 3.0 * np.eye(3, 100, dtype=np.float32), teacher, transformer,
                                contents, teacher.mean(axis=0))
    assert off["norm_param_error"] > 0 and off["norm_param_r2"] < 1
    assert off["painting_ssim_min"] < off["painting_ssim_mean"] <= 1 and off["painting_ssim_min"] < 0.999
    assert off["per_pair"][off["worst_pair"]] == off["painting_ssim_min"]


def test_a_run_saved_before_the_output_space_settings_resumes_and_other_weights_are_refused(tmp_path):
    from slimvision.errors import ConfigError
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import check_same_config

    base = PredictorDistillConfig(width_multiplier=0.1, last_channels=16)  # output-space fields at their defaults
    old = {key: value for key, value in base.to_dict().items()
           if key not in ("norm_param_weight", "image_weight", "image_every", "image_batch", "image_size",
                          "eval_contents", "eval_painting_size")}
    model = torch.nn.Linear(1, 1)
    store = CheckpointStore(tmp_path / "checkpoints")
    store.save(2, model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)}, extra={"config": old})
    check_same_config(store, base, RESUMABLE_CHANGES)  # same defaults: resumes
    for changed in ({"image_weight": 1.0}, {"image_size": 64}):
        wanted = replace(base, **changed)
        with pytest.raises(ConfigError, match=rf"\({next(iter(changed))} differ\)"):
            check_same_config(store, wanted, RESUMABLE_CHANGES)
    new = replace(base, norm_param_weight=0.5)
    store.save(4, model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)}, extra={"config": new.to_dict()})
    with pytest.raises(ConfigError, match=r"\(norm_param_weight differ\)"):
        check_same_config(store, base, RESUMABLE_CHANGES)
    evaluation_only = replace(new, eval_contents=5, eval_painting_size=128)
    check_same_config(store, evaluation_only, RESUMABLE_CHANGES)


def test_config_checks_of_the_output_space_fields():
    from slimvision.errors import ConfigError

    with pytest.raises(ConfigError, match="image_weight must be at least 0"):
        PredictorDistillConfig(image_weight=-1)
    with pytest.raises(ConfigError, match="image_every must be at least 1"):
        PredictorDistillConfig(image_every=0)
    with pytest.raises(ConfigError, match="image_size must be at least 16"):
        PredictorDistillConfig(image_size=8)


def test_a_tiny_run_with_both_losses_reports_vector_and_output_space_scores(tmp_path):
    pytest.importorskip("torch_pruning")
    from slimvision.export.style import export_predictor
    from slimvision.training.style_predictor import distill_predictor

    run = PredictorDistillConfig(width_multiplier=0.1, last_channels=32, steps=2, batch_size=2, samples=4,
                                 checkpoint_every=2, log_every=1, norm_param_weight=1.0, image_weight=1.0,
                                 image_batch=1, image_size=32, eval_contents=2, eval_painting_size=32)
    report = distill_predictor(run, tmp_path / "run", progress=False, export=export_predictor)
    for key in ("loss", "mse", "cosine", "norm_param_loss", "image_loss"):
        assert len(report["train_log"][key]) == 2 and all(np.isfinite(report["train_log"][key]))
    held = report["held_out"]
    assert {"r2", "centred_cosine", "mean_cosine"} <= set(held)
    output = report["held_out_output_space"]
    assert output["styles"] == held["images"] and output["norm_param_error"] > 0
    assert output["paintings"] >= 2 * held["images"] - 2 and 0 < output["painting_ssim_mean"] <= 1
    families = report["held_out_families"]  # 4 styles of each of the 5 held-out procedural families
    assert families["vectors"]["images"] == families["output_space"]["styles"] == 20
    assert families["output_space"]["paintings"] == 20 * 2 and "r2" in families["vectors"]
    assert all(name.startswith("family/") for name in families["vectors"]["per_image"])
    facts = report["norm_parameters"]
    assert facts["parameters"] == 694 and facts["affine_max_abs_diff"] < 1e-4
    assert facts["direction_weight_largest"] > 1 > facts["direction_weight_smallest"]
    assert json.loads((tmp_path / "run" / "report.json").read_text())["held_out_output_space"] == output
