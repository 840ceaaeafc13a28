"""Distil the teacher's style transformer into a student with depthwise-separable convolutions.

The next step the paper we build on named (its transformer kept full convolutions): every inner
3x3 convolution becomes a depthwise 3x3 + a 1x1, and the two 9x9 convolutions at full
resolution (the first and the last, a third of the teacher's multiply-adds and most of its
time) become 3x3. The student starts from the teacher: separable layers from the best rank-1
factorisation of the teacher's filters, the smaller edge kernels fitted by least squares to the
teacher's own layer outputs, every style-conditioned norm copied (``compress.decompose``).

Training pairs are (content crop, style vector): content crops from every image installed
packages ship (``data.style_images``), style vectors from the teacher predictor on augmented
style samples, single or blended, as users blend them. The loss is L1 to the teacher's
stylization plus a perceptual term on frozen EfficientNet-Lite0 features; teacher images are
cached on disk (fp16), so the teacher runs once per pair. Held-out pairs (content and style
files never trained on) are scored by SSIM/PSNR against the float teacher and the shipped int8
graph, for the torch student and for the exported file that ships.

The student that ships takes another route (``space_to_depth=2``, ``separable=()``): the
teacher's own convolutions rewritten to run on 2x2 phase planes at half resolution
(``compress.space_to_depth``, :func:`warm_start_space_to_depth`), exact away from the border
before any training, then fine-tuned with an SSIM term. Separable students stayed below SSIM
0.83 even after GPU training (docs/compress.md has both tables). With ``online_teacher``,
``workers`` and ``time_budget_s`` a GPU lease trains without a teacher cache and for a fixed time.

Example (the command that trains the shipped student; see ``slimvision train style-transformer``):
    >>> report = distill_transformer(TransformerDistillConfig(), "runs/t-sep")   # doctest: +SKIP
    >>> report["held_out"]["vs_fp32_teacher"]["ssim_mean"]                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimvision.data.style_families import STYLE_DATA
from slimvision.training.config import TrainingConfig
from slimvision.errors import ConfigError

log = logging.getLogger(__name__)

STYLE_SIZE = 256  # the predictor's input size
TEACHERS = ("fp32", "int8")
INITS = ("teacher", "scratch", "shipped")
#: The shipped transformer student's torch weights, what ``init="shipped"`` fine-tunes.
SHIPPED_STUDENT = "weights/style/transform-phase"
ImageFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B, 3, H, W), (B, D) -> (B, 3, H, W)


@dataclass
class TransformerDistillConfig(TrainingConfig):
    #: Parts made depthwise-separable (see ``StyleTransformerConfig.separable``).
    separable: tuple[str, ...] = ("contract", "residual", "expand")
    #: Kernels of the first and the last convolution (the teacher's: 9 and 9).
    edge_kernels: tuple[int, int] = (3, 3)
    residual_blocks: int = 5
    #: "zeros" drops the separate reflect-pad passes (see ``ReflectConv``); "reflect" as the teacher.
    padding: str = "zeros"
    crop_size: int = 128
    steps: int = 3000
    batch_size: int = 8
    learning_rate: float = 2e-3
    samples: int = 12_000
    #: Distinct content crops the pairs paint (0: one per pair; fewer: each is reused with other
    #: style vectors, see ``PairDataset``).
    contents: int = 0
    style_bank: int = 512
    #: Share of pairs whose style vector is a random blend of two (the rest use one).
    blend_fraction: float = 0.4
    #: Weight of the EfficientNet-Lite0 feature L1 against the pixel L1 (0: pixels only).
    #: (The feature L1 is about 100x the pixel L1 at the start, so 0.02 weighs them about alike.)
    feature_weight: float = 0.02
    held_out_fraction: float = 0.15
    eval_size: int = 384
    device: str = "cpu"
    #: "fp32": the shipped transformer with its weights dequantized, computed in float (the
    #: fastest teacher graph here); "int8": the graph as shipped.
    teacher: str = "fp32"
    #: "teacher": warm start from the teacher's weights (see the module docstring); "scratch";
    #: "shipped": fine-tune the shipped student (``SHIPPED_STUDENT``, or ``init_from``; needs its architecture).
    init: str = "teacher"
    #: A saved student folder (config.json + model.safetensors) that ``init="shipped"`` fine-tunes
    #: instead of ``SHIPPED_STUDENT``, e.g. ``src/slimvision/weights/style/transform-phase53`` or a
    #: run's ``student`` folder ("": the default).
    init_from: str = ""
    #: Weight of a 1 - SSIM term (the index the reports score; 0: none).
    ssim_weight: float = 0.0
    #: Channels of the residual blocks (the teacher's: 32).
    residual_width: int = 32
    #: 2: the teacher's layers on 2x2 phase planes, every conv at half resolution or below
    #: (``StyleTransformerConfig.space_to_depth``; what ships); edge kernels are then half-
    #: resolution ones (5 holds the teacher's 9x9). 1: the teacher's layout.
    space_to_depth: int = 1
    #: Run the torch port of the float teacher on ``device`` for every batch instead of caching
    #: ONNX Runtime outputs (on a GPU the port costs less than reading a cache).
    online_teacher: bool = False
    #: Processes that cut and augment every content sample up front, into one memory-mapped
    #: array in the run folder (0: each sample is made when a batch needs it).
    workers: int = 0
    #: Seconds to train for (0: train ``steps``). The first ``TIMING_STEPS`` steps are timed
    #: and ``steps`` becomes what fits; the report records it (pass it as ``steps`` to resume).
    time_budget_s: float = 0.0
    #: Where the style bank's samples come from: "files" (``data.style_images``: the installed
    #: real images, augmented, and five textures; what the shipped student used) or "families"
    #: (``data.style_families``: the training families, real crops and collages; held-out
    #: families and origins never seen). Content crops come from the real images either way.
    style_data: str = "files"

    def validate(self) -> None:
        super().validate()
        self.require_at_least(1, "steps", "samples", "style_bank")
        self.require_one_of("teacher", TEACHERS)
        self.require_one_of("init", INITS)
        if len(self.edge_kernels) != 2 or any(k < 1 or k % 2 == 0 for k in self.edge_kernels):
            raise ConfigError(f"TransformerDistillConfig.edge_kernels must be two odd sizes (first, last), "
                              f"got {self.edge_kernels}")
        if self.crop_size < 32 or self.crop_size % 4:
            raise ConfigError(f"TransformerDistillConfig.crop_size must be a multiple of 4 and >= 32, "
                              f"got {self.crop_size}")
        self.require_range("blend_fraction", 0, 1)
        self.require_at_least(0, "ssim_weight", "feature_weight", "workers", "time_budget_s", "contents")
        self.require_one_of("space_to_depth", (1, 2))
        self.require_one_of("style_data", STYLE_DATA)
        if self.init_from and self.init != "shipped":
            raise ConfigError(f"TransformerDistillConfig.init_from is the folder init='shipped' copies; "
                              f"with init={self.init!r} it would be ignored")
        if self.init == "teacher" and self.residual_width != 32:
            raise ConfigError("TransformerDistillConfig: init='teacher' copies the teacher's layers, so it needs "
                              "residual_width=32; use init='scratch'")
        if self.space_to_depth == 2 and any(k > 5 for k in self.edge_kernels):
            raise ConfigError("TransformerDistillConfig: with space_to_depth=2 the edge kernels work on half "
                              f"resolution, where 5 already holds the teacher's 9x9; got {self.edge_kernels}")
        if self.online_teacher and self.teacher != "fp32":
            raise ConfigError("TransformerDistillConfig: online_teacher runs the float port; set teacher='fp32'")
        self.student_config()  # checks the separable parts and the padding

    def student_config(self) -> Any:
        from slimvision.models.style import StyleTransformerConfig

        teacher = StyleTransformerConfig()
        first, last = self.edge_kernels
        common = {"separable": tuple(self.separable), "residual_blocks": self.residual_blocks,
                  "padding": self.padding, "space_to_depth": self.space_to_depth}
        if self.space_to_depth == 2:
            # The teacher's layers on 2x2 phase planes (``compress.space_to_depth``): its full-
            # resolution 8-channel maps become 32 channels at half resolution, its 9x9 edge convs
            # 5x5 ones (exact; smaller kernels crop them), its stride-2 conv a stride-1 one.
            return StyleTransformerConfig(**common, contract_channels=(32, 16, self.residual_width),
                                          contract_kernels=(first, 3, 3), contract_strides=(1, 1, 2),
                                          expand_channels=(16, 32, 12), expand_kernels=(3, 3, last),
                                          expand_upsample=(2, 1, 1))
        return StyleTransformerConfig(**common, contract_channels=(*teacher.contract_channels[:-1], self.residual_width),
                                      contract_kernels=(first, *teacher.contract_kernels[1:]),
                                      expand_kernels=(*teacher.expand_kernels[:-1], last))

    def data_fingerprint(self) -> str:
        """What decides the pairs behind each sample id (the teacher cache is bound to it)."""
        keys = ("crop_size", "samples", "contents", "style_bank", "blend_fraction", "seed", "held_out_fraction")
        # style_data joins only when it is not the default, so caches of "files" runs stay valid
        keys += ("style_data",) if self.style_data != "files" else ()
        return json.dumps({key: getattr(self, key) for key in keys}, sort_keys=True)


class PairDataset:
    """``dataset[i] -> (id, content (S, S, 3) uint8, style vector (D,))``, fixed by ``(seed, i)``.

    With ``length`` above the number of contents, pair ``i`` paints content ``i % len(contents)``:
    the same crops come back with other style vectors.
    """

    def __init__(self, contents: Any, bank: np.ndarray, seed: int, blend_fraction: float,
                 length: int | None = None) -> None:
        self.contents, self.bank, self.seed, self.blend_fraction = contents, bank, seed, blend_fraction
        self.length = length or len(contents)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[str, np.ndarray, np.ndarray]:
        sample_id, content = self.contents[index % len(self.contents)]
        if index >= len(self.contents):
            sample_id = f"{sample_id}-pair{index}"  # another style vector: another teacher image
        rng = np.random.default_rng([self.seed, 104729, index])
        first, second = rng.integers(len(self.bank), size=2)
        weight = rng.uniform(0.0, 1.0) if rng.random() < self.blend_fraction else 1.0
        vector = weight * self.bank[first] + (1.0 - weight) * self.bank[second]
        return sample_id, content, vector.astype(np.float32)


def _batches(dataset: PairDataset, batch_size: int, seed: int, device: str) -> Iterator[dict[str, Any]]:
    """Shuffled epochs of {"inputs": (B, 3, S, S) in [0, 1], "style": (B, D), "ids": [...]}."""
    from slimvision.training.trainer import shuffled_batches

    for indices in shuffled_batches(len(dataset), batch_size, seed):
        ids, contents, vectors = zip(*(dataset[i] for i in indices))
        # uint8 to the device, then to float: a quarter of the bytes to move
        pixels = torch.from_numpy(np.stack(contents)).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, S, S)
        yield {"inputs": pixels, "style": torch.from_numpy(np.stack(vectors)).to(device), "ids": list(ids)}


def style_samples(config: TransformerDistillConfig, train_sources: list[Any]) -> Any:
    """The style samples behind the bank: ``(id, (256, 256, 3) uint8)`` items, as ``config.style_data`` says."""
    count, seed = config.style_bank, config.seed + 1
    if config.style_data == "families":
        from slimvision.data.style_families import family_training_data

        # holds out the same hashed files as split_sources (so no held-out pair's style is in
        # the bank), plus whole origins and copies of held-out pictures
        return family_training_data(count, seed=seed, size=STYLE_SIZE, held_out_fraction=config.held_out_fraction)[0]
    from slimvision.data.style_images import StyleImageDataset

    return StyleImageDataset(train_sources, count, seed=seed, size=STYLE_SIZE, texture_fraction=0.25)


def style_bank(samples: Any, predictor: Any, path: Path, progress: bool = True) -> np.ndarray:
    """Teacher style vectors (len(samples), D) of style samples, computed once and kept at ``path``."""
    from slimvision.compress.distill import npy_bytes
    from slimvision.io.atomic import write_bytes_atomic
    from slimvision.progress import progress_bar
    from slimvision.training.checkpoint import read_cached_array

    count = len(samples)
    bank = read_cached_array(path)  # None when missing or damaged
    if bank is not None and bank.ndim == 2 and len(bank) == count:
        return bank
    vectors = []
    with progress_bar(count, enabled=progress, desc="style bank") as bar:
        for index in range(count):
            pixels = samples[index][1][None].astype(np.float32).transpose(0, 3, 1, 2) / 255.0  # (1, 3, 256, 256)
            vectors.append(predictor(pixels).reshape(-1))
            bar.update()
    bank = np.stack(vectors).astype(np.float32)
    write_bytes_atomic(path, npy_bytes(bank), overwrite=True)
    return bank


def _teachers() -> tuple[Any, Any, Any]:
    """The fp32 and the shipped int8 teacher transform graphs, and the fp32 teacher predictor."""
    from slimvision.assets import STYLE_TEACHER_PREDICTOR, STYLE_TEACHER_TRANSFORM
    from slimvision.compress.distill import OnnxTeacher
    from slimvision.graph.precision import with_float_weights
    from slimvision.graph.rewrite import with_free_spatial_dims

    fp32 = OnnxTeacher(with_float_weights(STYLE_TEACHER_TRANSFORM.path()), layout="NHWC")
    # The shipped graph is fixed at 384x384; with free H/W it computes the same at any size.
    shipped = OnnxTeacher(with_free_spatial_dims(STYLE_TEACHER_TRANSFORM.path()), layout="NHWC")
    predictor = OnnxTeacher(with_float_weights(STYLE_TEACHER_PREDICTOR.path()), layout="NHWC")
    return fp32, shipped, predictor


class _HalfStored:
    """A teacher whose outputs are cached as fp16 (pixel values in [0, 1]: 3 decimal digits is plenty)."""

    def __init__(self, teacher: Any, data_fingerprint: str) -> None:
        import hashlib

        self.teacher = teacher
        self.fingerprint = hashlib.sha256(f"{teacher.fingerprint}|{data_fingerprint}".encode()).hexdigest()

    def __call__(self, inputs: np.ndarray, *extra: np.ndarray) -> np.ndarray:
        return self.teacher(inputs, *extra).astype(np.float16)


#: The export step a distillation is handed: (student, run_dir, weights file) -> {name: graph}.
#: Export sits above training, so training is given it (``export.style.export_transformer``).
TransformerExporter = Callable[[torch.nn.Module, Path, Path], dict[str, Path]]


def distill_transformer(config: TransformerDistillConfig, run_dir: str | Path, progress: bool = True, *,
                        export: TransformerExporter) -> dict[str, Any]:
    """Train (or resume) a transformer student in ``run_dir``; write it, its exports (through
    ``export``, e.g. :func:`slimvision.export.style.export_transformer`) and a report.

    Raises:
        ConfigError: ``run_dir`` was started with other settings (see :data:`RESUMABLE_CHANGES`).
    """
    from slimvision.compress.distill import ImageDistillTask, TeacherCache
    from slimvision.data.style_images import StyleImageDataset, find_style_sources, split_sources
    from slimvision.io.atomic import write_text_atomic
    from slimvision.models.layers.efficientnet_lite import PerceptualFeatures
    from slimvision.models.style import StyleTransformer
    from slimvision.models.weights import save_model
    from slimvision.training.checkpoint import CheckpointStore
    from slimvision.training.trainer import CosineDecay, Trainer, TrainerConfig, check_same_config

    run_dir = Path(run_dir)
    check_same_config(CheckpointStore(run_dir / "checkpoints"), config, RESUMABLE_CHANGES)  # before any setup
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    train_sources, held_out = split_sources(find_style_sources(), config.held_out_fraction)
    fp32, shipped, predictor = _teachers()
    teacher = fp32 if config.teacher == "fp32" else shipped
    bank = style_bank(style_samples(config, train_sources), predictor, run_dir / "style-bank.npy", progress)
    contents = StyleImageDataset(train_sources, config.contents or config.samples, seed=config.seed,
                                 size=config.crop_size, texture_fraction=0.1, mix_fraction=0.1)
    pairs = PairDataset(_contents(contents, config, run_dir, progress), bank, config.seed, config.blend_fraction,
                        length=config.samples)
    student = StyleTransformer(config.student_config())
    init_report = None
    if config.init == "teacher":
        init_report = (warm_start_space_to_depth(student) if config.space_to_depth == 2
                       else warm_start(student, _batches(pairs, 4, config.seed + 7919, "cpu")))
    elif config.init == "shipped":
        init_report = warm_start_from_shipped(student, Path(config.init_from) if config.init_from else None)
    student.to(config.device)
    features = PerceptualFeatures().to(config.device) if config.feature_weight > 0 else None
    if config.online_teacher:
        from slimvision.models.style.port import port_transformer

        task = ImageDistillTask(student, port_transformer().to(config.device), features=features,
                                feature_weight=config.feature_weight, ssim_weight=config.ssim_weight)
    else:
        stored = _HalfStored(teacher, config.data_fingerprint())
        task = ImageDistillTask(student, stored, TeacherCache(run_dir / "teacher-cache", stored.fingerprint),
                                features=features, feature_weight=config.feature_weight,
                                ssim_weight=config.ssim_weight)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    trainer = Trainer(task, {"main": optimizer},
                      TrainerConfig(steps=config.steps, log_every=config.log_every,
                                    checkpoint_every=config.checkpoint_every, progress=progress),
                      run_dir=run_dir / "checkpoints", extra={"config": config.to_dict()})
    start = trainer.resume()
    loader = _batches(pairs, config.batch_size, config.seed + start, config.device)
    if config.time_budget_s > 0 and start == 0:
        _fit_steps_to_budget(trainer, loader, config)  # its timed steps start the trainer's log
    batches = CosineDecay(loader, optimizer, config.learning_rate, trainer.step, trainer.config.steps)
    trainer.fit(batches, resume=False)
    student.eval().cpu()
    folder = save_model(student, run_dir / "student", overwrite=True)
    exports = export(student, run_dir, folder / "model.safetensors")
    held_pairs = held_out_pairs(held_out, predictor, config.eval_size)
    report = {"config": trainer.extra["config"], "steps_done": trainer.step, "resumed_from": start,
              "params": sum(p.numel() for p in student.parameters()), "init": init_report,
              "train_log": {"steps": trainer.log.steps, **trainer.log.values},  # the whole run's
              "exports": {name: {"file": path.name, "bytes": path.stat().st_size} for name, path in exports.items()},
              "held_out": score_students({"torch": _torch_fn(student),
                                          **{name: _onnx_fn(path) for name, path in exports.items()}},
                                         {"fp32_teacher": fp32, "int8_teacher": shipped}, held_pairs),
              "teacher_cache": ({"hits": task.cache.hits, "misses": task.cache.misses} if task.cache else "online")}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=2) + "\n", overwrite=True)
    return report


#: Steps timed before a time budget is turned into a step count.
TIMING_STEPS = 60
#: Settings a resumed run may change: the step count (a time budget sets it; the report says
#: to pass it as ``steps`` to resume), checkpoint and log steps, device and data workers.
RESUMABLE_CHANGES = frozenset({"steps", "time_budget_s", "checkpoint_every", "log_every", "device", "workers"})


def _contents(dataset: Any, config: TransformerDistillConfig, run_dir: Path, progress: bool) -> Any:
    """The content samples: made on demand, or, with ``workers``, all made up front by that many
    processes into one memory-mapped array (a GPU outruns one process cutting and augmenting)."""
    if config.workers == 0:
        return dataset
    import hashlib

    key = hashlib.sha256(config.data_fingerprint().encode()).hexdigest()[:12]
    return RenderedContents(dataset, run_dir / f"contents-{key}.npy", config.workers, progress)


class RenderedContents:
    """``contents[i] -> (id, (S, S, 3) uint8)`` like the dataset it renders, read from one
    ``.npy`` that holds every sample (written once by ``workers`` processes, then reused)."""

    def __init__(self, dataset: Any, path: Path, workers: int, progress: bool = True) -> None:
        self.dataset = dataset
        if not path.is_file():
            _render(dataset, path, workers, progress)
        self.pixels = np.load(path, mmap_mode="r")  # (N, S, S, 3) uint8
        if self.pixels.shape[:2] != (len(dataset), dataset.size):
            raise ConfigError(f"{path} holds {self.pixels.shape} samples, not {len(dataset)} of {dataset.size} px; "
                              "delete it to render them again")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray]:
        return f"{self.dataset.seed}-{index}", np.asarray(self.pixels[index])


def _render(dataset: Any, path: Path, workers: int, progress: bool) -> None:
    """Every sample of ``dataset`` into ``path`` (a .npy), atomically: a partial file never stands."""
    import multiprocessing
    import os

    from slimvision.progress import progress_bar

    partial = path.with_name(path.stem + ".partial.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                    shape=(len(dataset), dataset.size, dataset.size, 3))
    blocks = [(start, min(start + 256, len(dataset))) for start in range(0, len(dataset), 256)]
    with multiprocessing.get_context("fork").Pool(workers, _render_init, (dataset,)) as pool, \
            progress_bar(len(dataset), enabled=progress, desc="content crops") as bar:
        for start, block in pool.imap_unordered(_render_block, blocks):
            out[start:start + len(block)] = block
            bar.update(len(block))
    out.flush()
    del out
    os.replace(partial, path)


_RENDERED: Any = None  # the dataset a render worker cuts from (set once per worker process)


def _render_init(dataset: Any) -> None:
    global _RENDERED
    _RENDERED = dataset


def _render_block(bounds: tuple[int, int]) -> tuple[int, np.ndarray]:
    start, stop = bounds
    return start, np.stack([_RENDERED[index][1] for index in range(start, stop)])


def _fit_steps_to_budget(trainer: Any, loader: Iterator[dict[str, Any]], config: TransformerDistillConfig) -> Any:
    """Train ``TIMING_STEPS`` steps at the base rate, then set the trainer's step count to what
    ``config.time_budget_s`` holds at the speed of the last two thirds of them (the first third
    warms up kernels and data workers). Returns the timed steps' log."""
    import itertools
    import time

    marks: list[float] = []

    def timed() -> Iterator[dict[str, Any]]:
        for batch in loader:
            marks.append(time.perf_counter())  # the previous step has finished
            yield batch

    trainer.config.steps = TIMING_STEPS
    # One batch more than it uses: the trainer asks for it (and so marks the last step's end)
    # before it sees that it is done.
    history = trainer.fit(itertools.islice(timed(), TIMING_STEPS + 1), resume=False)
    third = TIMING_STEPS // 3
    seconds_per_step = (marks[TIMING_STEPS] - marks[third]) / (TIMING_STEPS - third)
    spent = marks[TIMING_STEPS] - marks[0]
    steps = TIMING_STEPS + int(max(config.time_budget_s - spent, 0.0) / seconds_per_step)
    trainer.config.steps = steps
    trainer.extra["config"]["steps"] = steps
    log.info("time budget %.0f s at %.1f ms/step: %d steps", config.time_budget_s, 1000 * seconds_per_step, steps)
    return history


def _torch_fn(student: torch.nn.Module) -> ImageFn:
    def run(contents: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return student(torch.from_numpy(contents), torch.from_numpy(vectors)).numpy()

    return run


def _onnx_fn(path: Path) -> ImageFn:
    from slimvision.compress.distill import OnnxTeacher

    return OnnxTeacher(path, layout="NHWC")


def held_out_pairs(sources: list[Any], predictor: Any, size: int, styles_per_content: int = 2) -> list[dict[str, Any]]:
    """(content, style) pairs from files never trained on: each file's centre square as content,
    painted with the teacher vectors of the next ``styles_per_content`` files."""
    from slimvision.data.style_images import load_rgb
    from slimvision.io.pixels import centre_square

    images = {source.name: load_rgb(source.path) for source in sources}
    names = sorted(images)
    vectors = {}
    for name in names:
        pixels = np.array(centre_square(images[name], STYLE_SIZE))[None].transpose(0, 3, 1, 2) / 255.0
        vectors[name] = predictor(pixels.astype(np.float32)).reshape(-1)
    pairs = []
    for index, name in enumerate(names):
        content = np.array(centre_square(images[name], size)).transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        for step in range(1, min(styles_per_content, len(names) - 1) + 1):
            style = names[(index + step) % len(names)]
            pairs.append({"content": name, "style": style, "pixels": content,
                          "vector": vectors[style][None].astype(np.float32)})
    return pairs


def score_students(students: dict[str, ImageFn], references: dict[str, ImageFn],
                   pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """SSIM / PSNR of every student's output against every reference's, over ``pairs``; plus the
    references against each other (how far apart the teachers themselves are)."""

    def image(fn: ImageFn, pair: dict[str, Any]) -> np.ndarray:
        return np.clip(fn(pair["pixels"], pair["vector"])[0].transpose(1, 2, 0), 0.0, 1.0)

    reference_images = {name: [image(fn, pair) for pair in pairs] for name, fn in references.items()}
    scores: dict[str, Any] = {"pairs": len(pairs)}
    for student_name, fn in students.items():
        outputs = [image(fn, pair) for pair in pairs]
        scores[student_name] = {f"vs_{name}": _summary(outputs, images)
                                for name, images in reference_images.items()}
    names = list(reference_images)
    for a, b in zip(names, names[1:]):
        scores[f"{b}_vs_{a}"] = _summary(reference_images[b], reference_images[a])
    return scores


def _summary(outputs: list[np.ndarray], targets: list[np.ndarray]) -> dict[str, float]:
    from slimvision.metrics import psnr, ssim

    ssims = [ssim(t, o) for o, t in zip(outputs, targets)]
    psnrs = [psnr(t, o) for o, t in zip(outputs, targets)]
    return {"ssim_mean": float(np.mean(ssims)), "ssim_min": float(np.min(ssims)),
            "ssim_median": float(np.median(ssims)), "psnr_mean": float(np.mean(psnrs))}


@torch.no_grad()
def warm_start(student: torch.nn.Module, batches: Iterator[dict[str, Any]], calibration_batches: int = 2,
               teacher: torch.nn.Module | None = None) -> dict[str, Any]:
    """Fill ``student`` from the teacher port: norms copied, inner convs factorised, edge convs
    fitted to the teacher's outputs on a few real batches. Returns the fit errors."""
    from slimvision.models.style.port import port_transformer

    teacher = teacher or port_transformer()
    # Residual blocks pair up from the first (a shallower student keeps the teacher's first
    # blocks); the expand norms pair up one to one.
    for mine, theirs in zip(student.residual, teacher.residual):
        for a, b in ((mine.conv1.norm, theirs.conv1.norm), (mine.conv2.norm, theirs.conv2.norm)):
            a.load_state_dict(b.state_dict())
    for mine, theirs in zip(student.expand, teacher.expand):
        mine.norm.load_state_dict(theirs.norm.state_dict())
    report: dict[str, Any] = {"separable_rank1_error": {}}
    inner = [(f"contract.{i}", student.contract[i], teacher.contract[i].conv) for i in range(1, len(student.contract))]
    for b, (mine, theirs) in enumerate(zip(student.residual, teacher.residual)):
        inner += [(f"residual.{b}.conv1", mine.conv1.conv, theirs.conv1.conv.conv),
                  (f"residual.{b}.conv2", mine.conv2.conv, theirs.conv2.conv.conv)]
    inner += [(f"expand.{i}", student.expand[i].conv, teacher.expand[i].conv.conv)
              for i in range(len(student.expand) - 1)]
    for name, mine, theirs in inner:
        error = _copy_conv(mine, theirs.weight, theirs.bias)
        if error is not None:
            report["separable_rank1_error"][name] = round(error, 4)
    report["edges_r2"] = _fit_edges(student, teacher, batches, calibration_batches)
    return report


@torch.no_grad()
def warm_start_from_shipped(student: torch.nn.Module, folder: Path | None = None) -> dict[str, Any]:
    """Copy the shipped student's weights (``SHIPPED_STUDENT``, or ``folder``) into ``student``,
    to fine-tune it on other data; its architecture must be the shipped one's.

    Raises:
        ConfigError: the configs differ (named, with the recipe that builds the shipped one).
    """
    from slimvision.assets import BundledPath
    from slimvision.models.weights import load_model

    source = Path(folder) if folder is not None else BundledPath(SHIPPED_STUDENT).path()
    shipped = load_model(source)
    if shipped.config != student.config:
        raise ConfigError(f"init='shipped' fine-tunes {source}, whose architecture differs from this config's; "
                          f"take the architecture settings of {source / 'config.json'}")
    student.load_state_dict(shipped.state_dict())
    return {"from": str(source)}


@torch.no_grad()
def warm_start_space_to_depth(student: torch.nn.Module, teacher: torch.nn.Module | None = None) -> dict[str, Any]:
    """Fill a ``space_to_depth=2`` student (see ``TransformerDistillConfig.student_config``) with
    the teacher's weights rewritten for phase planes: exact inside the image with 5x5 edge
    kernels, except that each norm's statistics are taken per phase. Returns what was lost:
    the share of each cropped edge kernel's weight energy, and the separable rank-1 errors."""
    from slimvision.compress.space_to_depth import crop_kernel, phase_conv_weight
    from slimvision.models.style.port import port_transformer

    teacher = teacher or port_transformer()
    report: dict[str, Any] = {"edge_energy_dropped": {}, "separable_rank1_error": {}}

    def put(target: Any, weight: torch.Tensor, bias: torch.Tensor, name: str) -> None:
        size = (target.depthwise if target.separable else target.conv).kernel_size[0]
        if size < weight.shape[-1]:
            cropped = crop_kernel(weight, size)
            report["edge_energy_dropped"][name] = round(1.0 - float(cropped.pow(2).sum() / weight.pow(2).sum()), 4)
            weight = cropped
        error = _copy_conv(target, weight, bias)
        if error is not None:
            report["separable_rank1_error"][name] = round(error, 4)

    first, down, down2 = (layer.conv for layer in teacher.contract)
    put(student.contract[0], *phase_conv_weight(first.weight, first.bias), "first")
    put(student.contract[1], *phase_conv_weight(down.weight, down.bias, outputs="even"), "contract.1")
    put(student.contract[2], down2.weight, down2.bias, "contract.2")
    for b, (mine, theirs) in enumerate(zip(student.residual, teacher.residual)):
        for part in ("conv1", "conv2"):
            a, t = getattr(mine, part), getattr(theirs, part)
            a.norm.load_state_dict(t.norm.state_dict())
            put(a.conv, t.conv.conv.weight, t.conv.conv.bias, f"residual.{b}.{part}")
    up, phases, last = (layer.conv.conv for layer in teacher.expand)
    put(student.expand[0].conv, up.weight, up.bias, "expand.0")
    put(student.expand[1].conv, *phase_conv_weight(phases.weight, phases.bias, inputs="repeated"), "expand.1")
    put(student.expand[2].conv, *phase_conv_weight(last.weight, last.bias), "last")
    student.expand[0].norm.load_state_dict(teacher.expand[0].norm.state_dict())
    for mine, theirs in zip(student.expand[1:], teacher.expand[1:]):  # one norm per channel -> per phase plane
        for linear in ("gamma", "beta"):
            source, target = getattr(theirs.norm, linear), getattr(mine.norm, linear)
            target.weight.copy_(source.weight.repeat_interleave(4, dim=0))
            target.bias.copy_(source.bias.repeat_interleave(4, dim=0))
    return report


def _copy_conv(target: Any, weight: torch.Tensor, bias: torch.Tensor) -> float | None:
    """Put a full conv's weight into ``target`` (a ReflectConv), factorised if it is separable."""
    from slimvision.compress.decompose import separable_from_conv

    if not target.separable:
        target.conv.weight.copy_(weight)
        target.conv.bias.copy_(bias)
        return None
    depthwise, pointwise, error = separable_from_conv(weight)
    target.depthwise.weight.copy_(depthwise)
    target.pointwise.weight.copy_(pointwise)
    target.pointwise.bias.copy_(bias)
    return error


def _fit_edges(student: Any, teacher: Any, batches: Iterator[dict[str, Any]], count: int) -> dict[str, float]:
    """Least-squares fits of the student's first and last convs to the teacher's (pre-activation) outputs."""
    from slimvision.compress.decompose import fit_conv_to_outputs

    captured: dict[str, list[torch.Tensor]] = {"last_in": []}
    hook = teacher.expand[-1].conv.register_forward_pre_hook(lambda _m, args: captured["last_in"].append(args[0]))
    contents = []
    try:
        for _, batch in zip(range(count), batches):
            contents.append(batch["inputs"])
            teacher(batch["inputs"], batch["style"])
    finally:
        hook.remove()
    scores = {}
    for name, mine, theirs, inputs in (("first", student.contract[0], teacher.contract[0], torch.cat(contents)),
                                       ("last", student.expand[-1].conv, teacher.expand[-1].conv,
                                        torch.cat(captured["last_in"]))):
        inputs = inputs[:, :, ::2, ::2].contiguous()  # every other pixel: plenty of rows, a quarter of the memory
        targets = theirs(inputs)
        kernel = student.config.contract_kernels[0] if name == "first" else student.config.expand_kernels[-1]
        mode = "reflect" if student.config.padding == "reflect" else "constant"
        weight, bias, r2 = fit_conv_to_outputs(inputs, targets, kernel, padding_mode=mode)
        _copy_conv(mine, weight, bias)
        scores[name] = round(r2, 4)
    return scores
