"""The fidelity harness: how closely students reproduce their teacher, case by case, worst first.

A student is only as good as its worst case on pictures nobody tuned it to. This module scores
students against a teacher in OUTPUT space over a held-out set and reports what a mean hides:
the worst value of every score, the worst cases by name, the mean per group (a style family, a
photo source: a family that fails stands out) and a side-by-side sheet of the worst cases.

It knows nothing about style: an :class:`Adapter` turns one :class:`Case` (its labelled input
images) into scores per student and the images to show. The style adapter lives in
:mod:`slimvision.bench.style_fidelity`; a face adapter (issue 25) plugs into the same loop,
aggregation, tables and sheet.

Example:
    >>> import numpy as np
    >>> class Halves:                    # a toy adapter: the "student" darkens the image
    ...     metrics = (Metric("mae", higher_is_better=False, about="mean absolute error"),)
    ...     students = ("dark",)
    ...     def score(self, case):
    ...         image = case.inputs["photo"].image
    ...         student = image // 2
    ...         error = float(np.abs(image / 255 - student / 255).mean())
    ...         return CaseResult(case, {"dark": {"mae": error}}, {"teacher": image, "dark": student})
    ...     def set_scores(self):
    ...         return {}
    >>> photos = [LabelledImage("grey", f"level{v}", np.full((8, 8, 3), v, np.uint8)) for v in (0, 100, 200)]
    >>> cases = [Case(p.label, {"family": p.family}, {"photo": p}) for p in photos]
    >>> report = evaluate(cases, Halves(), rank_by="mae", worst=1, progress=False)
    >>> report["worst"][0]["key"], round(report["summary"]["dark"]["worst"]["mae"], 3)
    ('grey/level200', 0.392)
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class LabelledImage:
    """An input image and the group it belongs to (a style family, a photo source).

    Attributes:
        family: what a held-out split is made by; means are reported per family.
        name: the image's own name within its family.
        image: (H, W, 3) uint8 RGB.
    """

    family: str
    name: str
    image: np.ndarray = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.family}/{self.name}"


@dataclass(frozen=True)
class Metric:
    """One score: its name in tables and JSON, which way is better, one line saying what it is."""

    name: str
    higher_is_better: bool
    about: str

    def badness(self, value: float) -> float:
        """Larger is worse, whichever way the metric points (for ranking cases)."""
        return -value if self.higher_is_better else value

    def worst(self, values: Iterable[float]) -> float:
        return min(values) if self.higher_is_better else max(values)


@dataclass(frozen=True)
class Case:
    """One scored unit: for style, a (content, style) pair.

    Attributes:
        key: unique name, used in tables and to find the case in the JSON.
        groups: group kind -> group, e.g. {"style family": "spiral", "content source": "sklearn"}.
        inputs: sheet column -> input image, in column order (e.g. style, content).
    """

    key: str
    groups: dict[str, str]
    inputs: dict[str, LabelledImage]


@dataclass
class CaseResult:
    """What an adapter made of one case.

    Attributes:
        case: the case scored.
        scores: student -> metric -> value; a metric a student has no value for is left out.
        outputs: sheet column -> output image ((H, W, 3) uint8 or float in [0, 1]), in column
            order after the inputs (e.g. teacher, then each student).
    """

    case: Case
    scores: dict[str, dict[str, float]]
    outputs: dict[str, np.ndarray]


class Adapter(Protocol):
    """What the harness needs from a kind of model (style, faces): its metrics, its students'
    names, a score per case, and the scores that only exist over the whole set (e.g. R²)."""

    metrics: tuple[Metric, ...]
    students: tuple[str, ...]

    def score(self, case: Case) -> CaseResult: ...

    def set_scores(self) -> dict[str, dict[str, float]]: ...


def evaluate(cases: Sequence[Case], adapter: Adapter, *, rank_by: str, worst: int = 8,
             progress: bool = True, sheet: Path | None = None, sheet_side: int = 160,
             overwrite: bool = False) -> dict[str, Any]:
    """Score every case, aggregate, list the worst and optionally draw them.

    Args:
        cases: the held-out set.
        adapter: turns a case into scores and images.
        rank_by: the metric that orders cases from worst (of the first student).
        worst: how many worst cases to list (and draw).
        progress: show a progress bar on stderr.
        sheet: write a PNG of the worst cases here (rows worst first; inputs, then outputs).
        sheet_side: side of each image on the sheet, px.
        overwrite: replace an existing sheet.

    Returns:
        A JSON-ready report: ``metrics``, ``students``, ``rank_by``, ``cases`` (every case's
        scores), ``summary`` (per student: mean, worst, the worst case per metric, set scores),
        ``groups`` (per group kind, per student, per group: case count and mean of each metric)
        and ``worst`` (the worst cases of the first student, worst first).
    """
    from slimvision.errors import ConfigError
    from slimvision.progress import progress_bar

    metrics = {metric.name: metric for metric in adapter.metrics}
    if rank_by not in metrics:
        raise ConfigError(f"rank_by {rank_by!r} is not one of the metrics: {', '.join(metrics)}")
    if not cases:
        raise ConfigError("the fidelity harness got no cases to score")
    primary = adapter.students[0]
    results: list[CaseResult] = []
    kept: list[tuple[float, int]] = []  # min-heap of (badness, index): the worst cases' images are kept
    with progress_bar(len(cases), enabled=progress, desc="fidelity", unit="case") as bar:
        for index, case in enumerate(cases):
            result = adapter.score(case)
            results.append(result)
            heapq.heappush(kept, (metrics[rank_by].badness(result.scores[primary][rank_by]), index))
            if len(kept) > worst:  # free the images of the least bad case kept: memory stays flat
                _, dropped = heapq.heappop(kept)
                results[dropped].outputs = {}
            bar.update()
    worst_results = sorted((results[i] for _, i in kept),
                           key=lambda r: metrics[rank_by].badness(r.scores[primary][rank_by]), reverse=True)
    report = {
        "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better, "about": m.about}
                    for m in adapter.metrics],
        "students": list(adapter.students),
        "rank_by": rank_by,
        "cases": [{"key": r.case.key, "groups": r.case.groups,
                   "inputs": {column: image.label for column, image in r.case.inputs.items()},
                   "scores": r.scores} for r in results],
        "summary": summarise(results, adapter.metrics, adapter.students, adapter.set_scores()),
        "groups": group_means(results, adapter.metrics, adapter.students),
        "worst": [{"key": r.case.key, "groups": r.case.groups, "scores": r.scores} for r in worst_results],
        "sheet": None,
    }
    if sheet is not None:
        save_sheet(worst_results, sheet, side=sheet_side, metrics=adapter.metrics, student=primary,
                   overwrite=overwrite)
        report["sheet"] = str(sheet)
    return report


def _values(results: Sequence[CaseResult], student: str, metric: str) -> list[tuple[float, str]]:
    return [(r.scores[student][metric], r.case.key) for r in results if metric in r.scores.get(student, {})]


def summarise(results: Sequence[CaseResult], metrics: Sequence[Metric], students: Sequence[str],
              set_scores: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per student: the mean and the worst of each metric, the case that gave the worst, set scores."""
    summary: dict[str, dict[str, Any]] = {}
    for student in students:
        entry: dict[str, Any] = {"mean": {}, "worst": {}, "worst_case": {}, "set": set_scores.get(student, {})}
        for metric in metrics:
            values = _values(results, student, metric.name)
            if not values:
                continue
            entry["mean"][metric.name] = float(np.mean([v for v, _ in values]))
            value, key = max(values, key=lambda pair: metric.badness(pair[0]))
            entry["worst"][metric.name], entry["worst_case"][metric.name] = value, key
        summary[student] = entry
    return summary


def group_means(results: Sequence[CaseResult], metrics: Sequence[Metric],
                students: Sequence[str]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """group kind -> student -> group -> {"cases": count, metric: mean, ...}, groups sorted by name."""
    kinds = sorted({kind for r in results for kind in r.case.groups})
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for kind in kinds:
        members: dict[str, list[CaseResult]] = {}
        for r in results:
            if kind in r.case.groups:
                members.setdefault(r.case.groups[kind], []).append(r)
        out[kind] = {student: {group: {"cases": len(rs), **{m.name: float(np.mean([v for v, _ in _values(rs, student, m.name)]))
                                                        for m in metrics if _values(rs, student, m.name)}}
                               for group, rs in sorted(members.items())}
                     for student in students}
    return out


# --------------------------------------------------------------------------- text
def format_report(report: dict[str, Any], *, cases: bool = True) -> str:
    """The report as plain text: the per-case table, the summary per student, the means per group
    (of the first student) and the worst cases."""
    metrics = [m["name"] for m in report["metrics"]]
    students = report["students"]
    primary = students[0]
    lines: list[str] = []
    if cases:
        others = [s for s in students[1:]]
        header = f"{'case':<58} " + " ".join(f"{m:>10}" for m in metrics) + "".join(
            f" {_short(report['rank_by'] + '@' + s):>14}" for s in others)
        lines += [f"per case ({primary}; {report['rank_by']} of the other students at the right)", header,
                  "-" * len(header)]
        for case in report["cases"]:
            scores = case["scores"]
            lines.append(f"{_short(case['key'], 58):<58} " + " ".join(_cell(scores[primary].get(m), 10) for m in metrics)
                         + "".join(" " + _cell(scores[s].get(report["rank_by"]), 14) for s in others))
        lines.append("")
    lines += _summary_lines(report, metrics)
    for kind, per_student in report["groups"].items():
        lines += ["", f"mean per {kind} ({primary})",
                  f"{kind:<30} {'cases':>5} " + " ".join(f"{m:>10}" for m in metrics)]
        for group, row in per_student[primary].items():
            lines.append(f"{_short(group, 30):<30} {int(row['cases']):>5} " + " ".join(_cell(row.get(m), 10) for m in metrics))
    lines += ["", f"worst {len(report['worst'])} cases by {report['rank_by']} ({primary})"]
    for rank, case in enumerate(report["worst"], 1):
        cells = ", ".join(f"{m} {case['scores'][primary][m]:.3f}" for m in metrics if m in case["scores"][primary])
        lines.append(f"{rank:>3}. {case['key']}: {cells}")
    if report.get("sheet"):
        lines.append(f"sheet of the worst cases: {report['sheet']}")
    return "\n".join(lines)


def _summary_lines(report: dict[str, Any], metrics: list[str]) -> list[str]:
    higher = {m["name"]: m["higher_is_better"] for m in report["metrics"]}
    set_names = sorted({name for entry in report["summary"].values() for name in entry["set"]})
    header = (f"{'student':<22} " + " ".join(f"{m + ' mean':>15} {'worst':>7}" for m in metrics)
              + "".join(f" {name:>12}" for name in set_names))
    lines = [f"summary ({'; '.join(f'{m}: ' + ('higher' if higher[m] else 'lower') + ' is better' for m in metrics)})",
             header, "-" * len(header)]
    for student, entry in report["summary"].items():
        lines.append(f"{_short(student, 22):<22} "
                     + " ".join(f"{_cell(entry['mean'].get(m), 15)} {_cell(entry['worst'].get(m), 7)}" for m in metrics)
                     + "".join(" " + _cell(entry["set"].get(name), 12) for name in set_names))
    return lines


def _cell(value: float | None, width: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'-':>{width}}"
    return f"{value:>{width}.3f}"


def _short(text: str, width: int = 14) -> str:
    return text if len(text) <= width else text[:width - 1] + "~"


# --------------------------------------------------------------------------- sheet
def save_sheet(results: Sequence[CaseResult], path: Path, *, side: int, metrics: Sequence[Metric],
               student: str, overwrite: bool = False) -> None:
    """A PNG, one row per case in the order given: inputs then outputs, each ``side`` px square,
    columns named at the top, each row headed by its key and the student's scores. Written atomically."""
    from PIL import Image, ImageDraw

    from slimvision.errors import ConfigError
    from slimvision.io.atomic import atomic_write

    if not results:
        raise ConfigError("no cases to draw on the sheet")
    columns = [*results[0].case.inputs, *results[0].outputs]
    header, caption = 16, 14
    row_height = caption + side
    sheet = Image.new("RGB", (side * len(columns), header + row_height * len(results)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(columns):
        draw.text((column * side + 4, 2), _short(name, side // 6), fill="black")
    for row, result in enumerate(results):
        top = header + row * row_height
        scores = result.scores[student]
        text = f"{row + 1}. {result.case.key}  " + "  ".join(f"{m.name} {scores[m.name]:.3f}"
                                                           for m in metrics if m.name in scores)
        draw.text((4, top + 1), _short(text, side * len(columns) // 6), fill="black")
        images = [image.image for image in result.case.inputs.values()] + list(result.outputs.values())
        for column, image in enumerate(images):
            sheet.paste(_tile(image, side), (column * side, top + caption))
    with atomic_write(path, overwrite=overwrite) as temporary:
        sheet.save(temporary, format="PNG", optimize=True)


def _tile(image: np.ndarray, side: int) -> Any:
    """A square ``side`` px PIL tile of an (H, W, 3) uint8 or [0, 1] float image (centre crop)."""
    from PIL import Image

    from slimvision.io.pixels import centre_square

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(centre_square(pixels, side)))
