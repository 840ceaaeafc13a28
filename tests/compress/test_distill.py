"""Distillation: an ONNX teacher, a disk cache that runs it once per sample, and students that learn."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

from slimvision.compress.distill import ImageDistillTask, OnnxTeacher, TeacherCache, VectorDistillTask  # noqa: E402
from slimvision.errors import InputError, SlimvisionError  # noqa: E402
from slimvision.training.trainer import Trainer, TrainerConfig  # noqa: E402


def _vector_teacher(path, seed: int = 0):
    """NCHW image -> global average -> 3x5 matrix: a 5-d 'style vector' per image, batch 1."""
    weight = np.random.default_rng(seed).standard_normal((3, 5)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["vector"])]
    graph = helper.make_graph(nodes, "vector_teacher",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 5])],
                              [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, weight


def _styled_image_teacher(path):
    """NHWC image times a per-channel style gain [1, 1, 1, 3] (Magenta's layout and inputs)."""
    graph = helper.make_graph([helper.make_node("Mul", ["image", "style"], ["out"])], "styled",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, "h", "w", 3]),
                               helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 1, 1, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, "h", "w", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _image_batches(count: int, size: int = 8, seed: int = 0, style: bool = False):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for b in range(count):
        batch = {"inputs": torch.rand(4, 3, size, size, generator=generator), "ids": [f"s{b}-{i}" for i in range(4)]}
        if style:
            batch["style"] = torch.rand(4, 3, generator=generator) * 2
        out.append(batch)
    return out


class CountingTeacher:
    def __init__(self, teacher):
        self.teacher, self.samples = teacher, 0

    def __call__(self, inputs, *extra):
        self.samples += len(inputs)
        return self.teacher(inputs, *extra)


def test_onnx_teacher_runs_a_batch_one_sample_at_a_time(tmp_path):
    path, weight = _vector_teacher(tmp_path / "t.onnx")
    teacher = OnnxTeacher(path)
    images = np.random.default_rng(1).random((3, 3, 6, 7), dtype=np.float32)
    np.testing.assert_allclose(teacher(images), images.mean(axis=(2, 3)) @ weight, rtol=1e-5, atol=1e-6)
    assert len(teacher.fingerprint) == 64


def test_nhwc_teacher_gets_transposed_images_and_reshaped_extras(tmp_path):
    teacher = OnnxTeacher(_styled_image_teacher(tmp_path / "s.onnx"), layout="NHWC")
    images = np.random.default_rng(2).random((2, 3, 5, 4), dtype=np.float32)  # NCHW, like a student's
    gains = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(teacher(images, gains), images * gains[:, :, None, None], rtol=1e-6)


def test_vector_student_learns_the_teacher_and_the_cache_runs_it_once(tmp_path):
    path, _ = _vector_teacher(tmp_path / "t.onnx")
    teacher = CountingTeacher(OnnxTeacher(path))
    cache = TeacherCache(tmp_path / "cache", OnnxTeacher(path).fingerprint)
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                            nn.Linear(8, 5))
    task = VectorDistillTask(student, teacher, cache)
    data = _image_batches(4)
    first = task(data[0])
    history = Trainer(task, {"main": torch.optim.Adam(student.parameters(), lr=0.02)},
                      TrainerConfig(steps=200, log_every=20, progress=False)).fit(data)
    assert history.values["loss"][-1] < 0.2 * float(first["mse"])
    assert history.values["cosine"][-1] > 0.9
    assert teacher.samples == 16  # 4 batches x 4 samples, over 50 epochs: the teacher ran once each
    assert cache.misses == 16 and cache.hits >= 16 * 49  # the first call above computed batch 0 already
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 16


def test_a_cache_refuses_another_teacher_and_duplicate_ids(tmp_path):
    TeacherCache(tmp_path / "cache", "a" * 64)
    with pytest.raises(InputError, match="cache belongs to teacher aaaaaaaaaaaa"):
        TeacherCache(tmp_path / "cache", "b" * 64)
    cache = TeacherCache(tmp_path / "cache", "a" * 64)
    with pytest.raises(SlimvisionError, match="unique"):
        cache.outputs(["x", "x"], np.zeros((2, 1)), lambda inputs: inputs)


def test_damaged_or_foreign_cached_outputs_are_recomputed_never_fed_to_the_student(tmp_path, caplog):
    folder = tmp_path / "cache"
    cache = TeacherCache(folder, "a" * 64)
    teacher = CountingTeacher(lambda inputs: inputs * 2.0)
    inputs = np.arange(8, dtype=np.float32).reshape(4, 2)
    ids = ["a", "b", "c", "d"]
    expected = cache.outputs(ids, inputs, teacher)
    (folder / "a.npy").write_bytes(b"\x93NUMPY half a file")                  # damaged
    np.save(folder / "b.npy", np.full(2, np.nan, np.float32))                 # not finite
    np.save(folder / "c.npy", np.zeros((3, 3), np.float32))                   # another teacher's shape
    teacher.samples = 0
    np.testing.assert_array_equal(cache.outputs(ids, inputs, teacher), expected)
    assert teacher.samples == 3 and cache.rebuilt == 3                        # d came from the cache
    np.testing.assert_array_equal(cache.outputs(ids, inputs, teacher), expected)
    assert teacher.samples == 3                                               # the files were replaced
    assert "damaged" in caplog.text and "not finite" in caplog.text
    (folder / "teacher.json").write_text("{not json")
    with pytest.raises(InputError, match="teacher.json: damaged teacher-cache manifest"):
        TeacherCache(folder, "a" * 64)


class GainStudent(nn.Module):
    """Learns the teacher's per-channel style gain as a function of the style input."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Linear(3, 3)

    def forward(self, image, style):
        return image * self.gain(style)[:, :, None, None]


def test_image_student_with_style_and_a_feature_term(tmp_path):
    teacher = OnnxTeacher(_styled_image_teacher(tmp_path / "s.onnx"), layout="NHWC")
    torch.manual_seed(3)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    task = ImageDistillTask(GainStudent(), teacher, TeacherCache(tmp_path / "c", teacher.fingerprint),
                            features=features, feature_weight=0.5)
    assert not any(p.requires_grad for p in features.parameters())
    data = _image_batches(3, style=True)
    start = task(data[0])
    assert set(start) == {"loss", "l1", "feature_l1"}
    history = Trainer(task, {"main": torch.optim.Adam(task.model.parameters(), lr=0.05)},
                      TrainerConfig(steps=150, log_every=50, progress=False)).fit(data)
    assert history.values["l1"][-1] < 0.1 * float(start["l1"])
    assert history.values["feature_l1"][-1] < 0.2 * float(start["feature_l1"])


def test_cached_teacher_needs_ids(tmp_path):
    path, _ = _vector_teacher(tmp_path / "t.onnx")
    task = VectorDistillTask(nn.Linear(1, 5), OnnxTeacher(path), TeacherCache(tmp_path / "c", "f" * 64))
    with pytest.raises(SlimvisionError, match="needs sample 'ids'"):
        task({"inputs": torch.rand(2, 3, 4, 4)})


def test_structural_similarity_is_the_reported_ssim_and_trains():
    from slimvision.compress.distill import structural_similarity
    from slimvision.metrics import ssim

    generator = torch.Generator().manual_seed(4)
    a = torch.rand(1, 3, 20, 24, generator=generator, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(1, 3, 20, 24, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = ssim(a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy())
    assert float(structural_similarity(a, b)) == pytest.approx(expected, abs=1e-9)
    assert float(structural_similarity(a, a)) == pytest.approx(1.0)


class _GainTeacher(nn.Module):
    def forward(self, image, style):
        return image * style[:, :, None, None]


def test_a_torch_teacher_runs_online_and_an_ssim_term_is_reported(tmp_path):
    torch.manual_seed(5)
    task = ImageDistillTask(GainStudent(), _GainTeacher(), ssim_weight=0.5)
    data = _image_batches(3, size=12, style=True)
    for batch in data:
        batch["style"] = batch["style"] / 2  # gains in [0, 1]: images stay in [0, 1]
    start = task(data[0])
    assert set(start) == {"loss", "l1", "ssim"} and float(start["ssim"]) < 1.0
    history = Trainer(task, {"main": torch.optim.Adam(task.model.parameters(), lr=0.05)},
                      TrainerConfig(steps=150, log_every=50, progress=False)).fit(data)
    assert history.values["l1"][-1] < 0.2 * float(start["l1"]) and history.values["ssim"][-1] > 0.97
    with pytest.raises(SlimvisionError, match="takes no TeacherCache"):
        ImageDistillTask(GainStudent(), _GainTeacher(), TeacherCache(tmp_path / "cache", "f" * 64))(data[0])
