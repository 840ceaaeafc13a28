"""Knowledge distillation: fit a student to a frozen teacher's outputs, the teacher run once per sample.

The teacher can be anything that maps a batch of inputs to outputs without gradients, most
usefully an ONNX model on ONNX Runtime (:class:`OnnxTeacher`): the shipped int8 Magenta
networks teach their torch students this way. Teacher outputs are cached on disk by sample id
(:class:`TeacherCache`), so epochs two and later never run the teacher again, and a cache made
for another teacher (another sha256) is refused instead of silently reused.

Two tasks for ``slimvision.training.trainer.Trainer``:

* :class:`VectorDistillTask`: MSE between student and teacher vectors (the style-predictor
  compression of the paper we build on: Inception-v3 -> MobileNetV2 by MSE on style vectors);
* :class:`ImageDistillTask`: L1 between student and teacher images, plus an optional feature
  (perceptual) term from a frozen feature extractor.

A batch is a dict: ``{"inputs": student input (B, ...), "ids": B sample ids}``, and for image
tasks optionally ``"style"`` (B, D) passed to both networks.

Example:
    >>> teacher = OnnxTeacher(STYLE_TEACHER_PREDICTOR.path(), layout="NHWC")     # doctest: +SKIP
    >>> task = VectorDistillTask(student, teacher, TeacherCache("cache/predictor", teacher.fingerprint))  # doctest: +SKIP
    >>> Trainer(task, {"main": torch.optim.Adam(student.parameters(), 1e-3)}, cfg).fit(loader)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from slimvision.errors import InputError, SlimvisionError
from slimvision.io.atomic import write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

TeacherFn = Callable[..., np.ndarray]
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


class OnnxTeacher:
    """An ONNX model as a teacher: numpy batch in (NCHW, like the student), numpy outputs out.

    Args:
        model: path to (or bytes of) the ONNX model.
        layout: the model's image layout; "NHWC" inputs are transposed from the student's NCHW
            and image outputs transposed back.
        output: which output to return (index).
        run_one_by_one: feed samples one at a time (for graphs fixed at batch 1, like Magenta's).
    """

    def __init__(self, model: str | Path | bytes, layout: Literal["NCHW", "NHWC"] = "NCHW", output: int = 0,
                 run_one_by_one: bool = True) -> None:
        from slimvision.assets import file_sha256
        from slimvision.graph.session import OnnxModel

        self.model = OnnxModel(model, name="teacher")
        self.layout = layout
        self.output = output
        self.run_one_by_one = run_one_by_one
        self.fingerprint = (file_sha256(Path(model)) if not isinstance(model, bytes)
                            else _bytes_sha256(model))

    def __call__(self, inputs: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        images = inputs.transpose(0, 2, 3, 1) if self.layout == "NHWC" and inputs.ndim == 4 else inputs
        images = np.ascontiguousarray(images, dtype=np.float32)
        if not self.run_one_by_one:
            return self._run(images, *extra)
        return np.concatenate([self._run(images[i:i + 1], *(e[i:i + 1] for e in extra)) for i in range(len(images))])

    def _run(self, images: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        names = self.model.input_names
        feeds = {names[0]: images}
        for name, value in zip(names[1:], extra):
            shape = self.model.input_shapes()[name]
            feeds[name] = np.ascontiguousarray(value.reshape([len(images)] + [d if isinstance(d, int) else -1
                                                                                for d in shape[1:]]), np.float32)
        out = self.model.run(feeds)[self.output]
        return out.transpose(0, 3, 1, 2) if self.layout == "NHWC" and out.ndim == 4 else out


def _bytes_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


class TeacherCache:
    """Teacher outputs on disk, one ``.npy`` per sample id, bound to one teacher fingerprint."""

    def __init__(self, folder: str | Path, fingerprint: str) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        manifest = self.folder / "teacher.json"
        if manifest.is_file():
            try:
                recorded = json.loads(manifest.read_text()).get("fingerprint")
            except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
                raise InputError(manifest, f"damaged teacher-cache manifest ({type(error).__name__}); "
                                           "delete the cache folder to rebuild it") from None
            if recorded != fingerprint:
                raise InputError(manifest, f"cache belongs to teacher {str(recorded)[:12]}..., not "
                                           f"{fingerprint[:12]}...; use another folder or delete it")
        else:
            write_text_atomic(manifest, json.dumps({"fingerprint": fingerprint}) + "\n", overwrite=True)
        self.rebuilt = 0
        self.hits = 0
        self.misses = 0

    def _path(self, sample_id: str) -> Path:
        return self.folder / f"{_SAFE_ID.sub('_', sample_id)}.npy"

    def outputs(self, ids: Sequence[str], inputs: np.ndarray, teacher: TeacherFn, *extra: np.ndarray) -> np.ndarray:
        """Teacher outputs for a batch, computing (in one teacher call) only the missing ones.

        A cached file that is damaged, not finite, or of another shape or dtype than the
        teacher's outputs is recomputed and replaced, never fed to the student.
        """
        if len(set(ids)) != len(ids):
            raise SlimvisionError("sample ids in a batch must be unique (they key the teacher cache)")
        found = {i: value for i, sid in enumerate(ids) if (value := self._cached(sid)) is not None}
        missing = [i for i in range(len(ids)) if i not in found]
        if missing:
            computed = teacher(inputs[missing], *(e[missing] for e in extra))
            kind = (np.asarray(computed[0]).shape, np.asarray(computed[0]).dtype)
            stale = [i for i, value in found.items() if (value.shape, value.dtype) != kind]
            if stale:   # written by another teacher run (the fingerprint missed it): recompute those too
                log.warning("teacher cache: %d cached output(s) in %s are not %s %s like the teacher's; recomputing",
                            len(stale), self.folder, kind[1], kind[0])
                self.rebuilt += len(stale)
                computed = [*computed, *teacher(inputs[stale], *(e[stale] for e in extra))]
                missing = missing + stale
            for i, value in zip(missing, computed):
                found[i] = value
                write_bytes_atomic(self._path(ids[i]), npy_bytes(value), overwrite=True)
        elif len({(value.shape, value.dtype) for value in found.values()}) > 1:
            raise InputError(self.folder, "cached teacher outputs differ in shape or dtype; delete the cache folder")
        self.hits += len(found) - len(missing)
        self.misses += len(missing)
        return np.stack([found[i] for i in range(len(ids))])

    def _cached(self, sample_id: str) -> np.ndarray | None:
        """A cached output, or None when absent or unusable (damaged, pickled, not finite): such a
        file is recomputed and replaced rather than fed to the student."""
        path = self._path(sample_id)
        if not path.is_file():
            return None
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            log.warning("teacher cache: %s is damaged (%s); recomputing it", path, error)
            self.rebuilt += 1
            return None
        if value.dtype.kind not in "fiu" or (value.dtype.kind == "f" and not np.isfinite(value).all()):
            log.warning("teacher cache: %s holds %s values that are not finite numbers; recomputing it", path,
                        value.dtype)
            self.rebuilt += 1
            return None
        return value


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (for atomic writes), never pickled."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _teacher_targets(batch: dict[str, Any], teacher: TeacherFn | nn.Module, cache: TeacherCache | None,
                     extra_keys: Sequence[str]) -> torch.Tensor:
    if isinstance(teacher, nn.Module):  # a torch teacher runs on the batch's device, every time
        if cache is not None:
            raise SlimvisionError("a torch teacher runs online; it takes no TeacherCache")
        with torch.no_grad():
            return teacher(batch["inputs"], *(batch[key] for key in extra_keys if key in batch))
    inputs = batch["inputs"].detach().cpu().numpy()
    extra = [batch[key].detach().cpu().numpy() for key in extra_keys if key in batch]
    if cache is None:
        values = teacher(inputs, *extra)
    else:
        if "ids" not in batch:
            raise SlimvisionError("a cached teacher needs sample 'ids' in every batch")
        values = cache.outputs(list(batch["ids"]), inputs, teacher, *extra)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(batch["inputs"].device)


class VectorDistillTask:
    """Student vector vs teacher vector: MSE (reported with the mean cosine similarity)."""

    def __init__(self, student: nn.Module, teacher: TeacherFn, cache: TeacherCache | None = None) -> None:
        self.model = student
        self.teacher = teacher
        self.cache = cache

    def __call__(self, batch: dict[str, Any], phase: str = "main") -> dict[str, torch.Tensor]:
        target = _teacher_targets(batch, self.teacher, self.cache, ())
        predicted = self.model(batch["inputs"]).reshape(target.shape)
        mse = nn.functional.mse_loss(predicted, target)
        cosine = nn.functional.cosine_similarity(predicted.flatten(1), target.flatten(1)).mean()
        return {"loss": mse, "mse": mse.detach(), "cosine": cosine.detach()}


def structural_similarity(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of two (B, C, H, W) batches in [0, 1], differentiable: the same index as
    ``slimvision.metrics.ssim`` (a window x window box, sample covariance, scikit-image's
    default), so a loss of 1 - SSIM trains for the number the reports print."""
    count = window * window
    correction = count / (count - 1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(x, window, stride=1)

    mean_a, mean_b = mean(a), mean(b)
    var_a = (mean(a * a) - mean_a ** 2) * correction
    var_b = (mean(b * b) - mean_b ** 2) * correction
    cov = (mean(a * b) - mean_a * mean_b) * correction
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    index = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    return index.mean()


class ImageDistillTask:
    """Student image vs teacher image: L1, plus ``feature_weight`` x L1 between frozen features,
    plus ``ssim_weight`` x (1 - SSIM).

    Args:
        student: maps ``inputs`` (and ``style`` if the batch has it) to images like the teacher's.
        teacher: a teacher function (e.g. :class:`OnnxTeacher` with layout "NHWC"), or a frozen
            torch module run online on the batch's device (no cache: on a GPU that is cheaper
            than reading one).
        features: a frozen network giving a feature map (or list of maps) of an image, e.g.
            EfficientNet-Lite0's early stages; its parameters are frozen here.
    """

    def __init__(self, student: nn.Module, teacher: TeacherFn | nn.Module, cache: TeacherCache | None = None,
                 features: nn.Module | None = None, feature_weight: float = 0.1, ssim_weight: float = 0.0) -> None:
        self.model = student
        self.teacher = teacher
        self.cache = cache
        self.features = features
        self.feature_weight = feature_weight
        self.ssim_weight = ssim_weight
        if features is not None:
            features.eval().requires_grad_(False)
        if isinstance(teacher, nn.Module):
            teacher.eval().requires_grad_(False)

    def __call__(self, batch: dict[str, Any], phase: str = "main") -> dict[str, torch.Tensor]:
        target = _teacher_targets(batch, self.teacher, self.cache, ("style",))
        args = (batch["inputs"], batch["style"]) if "style" in batch else (batch["inputs"],)
        predicted = self.model(*args)
        l1 = nn.functional.l1_loss(predicted, target)
        out = {"l1": l1.detach()}
        loss = l1
        if self.features is not None and self.feature_weight > 0:
            feature_loss = sum(nn.functional.l1_loss(p, t) for p, t in
                               zip(_as_list(self.features(predicted)), _as_list(self.features(target))))
            loss = loss + self.feature_weight * feature_loss
            out["feature_l1"] = feature_loss.detach()
        if self.ssim_weight > 0:
            similarity = structural_similarity(predicted.clamp(0.0, 1.0), target)
            loss = loss + self.ssim_weight * (1.0 - similarity)
            out["ssim"] = similarity.detach()
        out["loss"] = loss
        return out


def _as_list(maps: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [maps] if isinstance(maps, torch.Tensor) else list(maps)
