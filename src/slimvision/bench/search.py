"""Latency-budgeted architecture search: choose a student's size by measurement, not by guess.

Generic over student builders (no style knowledge here; :mod:`slimvision.bench.style_search`
adapts the style students). A search runs four stages:

1. **Time** every :class:`Candidate` in ONNX Runtime: each is built untrained (ONNX Runtime's
   time depends on the architecture, not the weights), exported through
   :func:`~slimvision.export.onnx.export_onnx` (the same graph rewrites and parity check as a
   shipped export), and timed next to the :class:`Reference` graph in the same run, so every
   figure is also a speed-up over the reference. Timings are medians over interleaved repeats
   after a warm-up, with a short pause before each run (ONNX Runtime's pool threads spin for a
   while after a run and would slow the next session's).
2. **Drop** the candidates slower than the budget at the budget's workload (the first one).
3. **Train the front runners** briefly, through the caller's ``train`` callback, and score each
   through its ``score`` callback (higher is better: R², SSIM, ...). Each result is saved as it
   finishes (``candidates/NAME/result.json``), so a rerun into the same folder skips them.
4. **Find the fidelity-vs-latency Pareto front**, and write the report (``search.json``) and
   the plot (``front.png``); :func:`table` prints it.

Example:
    >>> result = search(candidates, reference, SearchSettings(budget_ms=25, front_runners=4,
    ...                 train_steps=300), train=my_train, score=my_score, folder="runs/search")  # doctest: +SKIP
    >>> [row.name for row in result.rows if row.on_front]                                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.errors import ConfigError

log = logging.getLogger(__name__)

#: Input name -> array, in the order the graph takes its inputs.
Feeds = Mapping[str, np.ndarray]
REPORT_NAME = "search.json"
PLOT_NAME = "front.png"
RESULT_NAME = "result.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class Candidate:
    """One architecture to measure.

    Attributes:
        name: a short, file-safe name (letters, digits, ``._+-``): its result folder's name.
        knobs: the settings it was built with (what the caller's train callback reads).
        build: returns the untrained network, with the interface it would ship with.
        inputs: workload label (e.g. ``"512px"``) -> feeds; every candidate and the reference
            share the labels. The first workload's feeds are the export's example inputs.
        export_options: more keyword arguments for ``export_onnx`` (``output_names``,
            ``dynamic_axes``, ``preprocessing``: dynamic axes are needed to time several sizes)
            and its ``card`` (a ``CardInfo``: the system and the tensors' layouts; the graph
            only lives for the timing, but it is exported and checked as a shipped one is).
    """

    name: str
    knobs: Mapping[str, Any]
    build: Callable[[], Any]
    inputs: Mapping[str, Feeds]
    export_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    """The graph every candidate is compared with (the teacher): ``graph`` is an ``.onnx`` path or
    its bytes; ``inputs`` has the candidates' workload labels, feeds in the graph's input order."""

    name: str
    graph: bytes | Path
    inputs: Mapping[str, Feeds]


@dataclass(frozen=True)
class Fidelity:
    """A trained candidate's score against the teacher (higher is better) and what else was measured."""

    score: float
    details: dict[str, Any] = field(default_factory=dict)


#: (candidate, training steps, its own folder) -> whatever the score callback needs.
Train = Callable[[Candidate, int, Path], Any]
#: (candidate, what ``train`` returned, its folder) -> its fidelity.
Score = Callable[[Candidate, Any, Path], Fidelity]


@dataclass
class SearchSettings:
    """How a search measures and trains.

    Attributes:
        budget_ms: the latency budget, in ms at the first workload, on this machine.
        front_runners: how many candidates within the budget to train and score (0: time only).
        train_steps: training steps for each.
        repeats: timed runs of every graph at every workload (after ``warmup`` untimed ones).
        warmup: untimed runs of each graph before the timed rounds.
        threads: ONNX Runtime intra-op threads (None: one per core).
        pause_s: pause before every timed run, so the previous session's spinning threads idle.
    """

    budget_ms: float
    front_runners: int = 3
    train_steps: int = 200
    repeats: int = 7
    warmup: int = 1
    threads: int | None = None
    pause_s: float = 0.05

    def __post_init__(self) -> None:
        if not self.budget_ms > 0 or not np.isfinite(self.budget_ms):
            raise ConfigError(f"the latency budget must be a finite number of ms > 0, got {self.budget_ms}")
        for name, minimum in (("front_runners", 0), ("train_steps", 1), ("repeats", 1), ("warmup", 0)):
            if getattr(self, name) < minimum:
                raise ConfigError(f"{name} must be at least {minimum}, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")
        if self.pause_s < 0:
            raise ConfigError(f"pause_s must be >= 0, got {self.pause_s}")


@dataclass
class Row:
    """One candidate's line in the report: what it costs, how fast it ran, how faithful it is."""

    name: str
    knobs: dict[str, Any]
    params: int
    onnx_bytes: int
    ms: dict[str, float]
    #: Reference ms / candidate ms at each workload (above 1: faster than the reference).
    speedup: dict[str, float]
    within_budget: bool
    fidelity: float | None = None
    fidelity_details: dict[str, Any] | None = None
    #: True when the result came from an earlier run into the same folder.
    resumed: bool = False
    on_front: bool = False


@dataclass
class SearchResult:
    settings: SearchSettings
    reference: dict[str, Any]
    workloads: list[str]
    rows: list[Row]
    report_path: Path | None = None
    plot_path: Path | None = None

    @property
    def budget_workload(self) -> str:
        return self.workloads[0]

    def to_dict(self) -> dict[str, Any]:
        front = sorted((row for row in self.rows if row.on_front), key=lambda row: row.ms[self.budget_workload])
        return {"settings": asdict(self.settings), "budget_workload": self.budget_workload,
                "workloads": self.workloads, "reference": self.reference,
                "machine": {"cpu": _cpu_name(), "python": platform.python_version()},
                "front": [row.name for row in front],
                "over_budget": [row.name for row in self.rows if not row.within_budget],
                "candidates": [asdict(row) for row in self.rows]}


# ---------------------------------------------------------------------------------------------
# Pure parts: the front, the budget, the choice of front runners
# ---------------------------------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which ``(cost, value)`` points no other point dominates (lower cost and higher value are
    better; a point is dominated by one that is no worse in both and better in one). A NaN
    point is never on the front.

    Example:
        >>> pareto_front([(1.0, 0.5), (2.0, 0.9), (3.0, 0.8), (2.0, 0.9)])
        [True, True, False, True]
    """
    flags = []
    for index, (cost, value) in enumerate(points):
        if np.isnan(cost) or np.isnan(value):
            flags.append(False)
            continue
        dominated = any(other_cost <= cost and other_value >= value and (other_cost < cost or other_value > value)
                        for other, (other_cost, other_value) in enumerate(points)
                        if other != index and not (np.isnan(other_cost) or np.isnan(other_value)))
        flags.append(not dominated)
    return flags


def within_budget(ms: Sequence[float], budget_ms: float) -> list[bool]:
    """Which latencies fit the budget (equal to it fits)."""
    return [value <= budget_ms for value in ms]


def pick_front_runners(rows: Sequence[Row], count: int, workload: str) -> list[Row]:
    """The ``count`` candidates within the budget most worth training, before any is trained.

    More parameters for the same time is the best guess at more fidelity, so the choice starts
    from the capacity front (the within-budget candidates that no other beats on both speed and
    parameter count), spread evenly along it from the fastest to the slowest, so the trained
    points span the latency range (one front runner: the slowest, which has the most
    parameters); when ``count`` is larger, the rest follow by parameters.
    """
    fitting = [row for row in rows if row.within_budget]
    if count <= 0 or not fitting:
        return []
    on_front = pareto_front([(row.ms[workload], float(row.params)) for row in fitting])
    capacity = sorted((row for row, flag in zip(fitting, on_front) if flag), key=lambda row: row.ms[workload])
    if count >= len(capacity):
        chosen = list(capacity)
    elif count == 1:
        chosen = capacity[-1:]  # one spot: the most parameters the budget buys
    else:
        spots = np.linspace(0, len(capacity) - 1, count).round().astype(int)
        chosen = [capacity[spot] for spot in dict.fromkeys(spots.tolist())]
    taken = {id(row) for row in chosen}
    rest = sorted((row for row in fitting if id(row) not in taken), key=lambda row: -row.params)
    return chosen + rest[:count - len(chosen)]


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def interleaved_medians(jobs: Mapping[str, Callable[[], Any]], settings: SearchSettings,
                        bar: Any = None) -> dict[str, float]:
    """Median ms of each job, the jobs taking turns within every round (drifting machine load
    then hits every job alike), after ``settings.warmup`` untimed runs of each."""
    for job in jobs.values():
        for _ in range(settings.warmup):
            job()
            if bar is not None:
                bar.update()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(settings.repeats):
        for name, job in jobs.items():
            time.sleep(settings.pause_s)  # let the previous session's spinning pool threads go idle
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
            if bar is not None:
                bar.update()
    return {name: 1000.0 * statistics.median(values) for name, values in times.items()}


def time_graphs(graphs: Mapping[str, tuple[bytes | Path, Mapping[str, Feeds]]], settings: SearchSettings,
                progress: bool = True) -> dict[str, dict[str, float]]:
    """``{name: (graph, {workload: feeds})}`` -> ``{name: {workload: median ms}}``, all graphs
    interleaved at each workload. Feeds are matched to a graph's inputs by position."""
    from slimvision.graph.session import OnnxModel, SessionSettings
    from slimvision.progress import progress_bar

    options = SessionSettings(threads=settings.threads, providers=("CPUExecutionProvider",))
    sessions = {name: OnnxModel(graph if isinstance(graph, bytes) else str(graph), options, name)
                for name, (graph, _) in graphs.items()}
    workloads = list(next(iter(graphs.values()))[1])
    result: dict[str, dict[str, float]] = {name: {} for name in graphs}
    runs = len(graphs) * len(workloads) * (settings.repeats + settings.warmup)
    with progress_bar(runs, enabled=progress, desc="timing") as bar:
        for workload in workloads:
            jobs = {name: _runner(sessions[name], inputs[workload]) for name, (_, inputs) in graphs.items()}
            for name, ms in interleaved_medians(jobs, settings, bar).items():
                result[name][workload] = ms
    return result


def _runner(session: Any, feeds: Feeds) -> Callable[[], Any]:
    named = {name: np.ascontiguousarray(value) for name, value in zip(session.input_names, feeds.values())}
    return lambda: session.run(named)


def export_candidate(candidate: Candidate, folder: Path) -> tuple[bytes, int]:
    """The candidate's ONNX graph (exported and parity-checked like a shipped one) and its parameter count."""
    import torch

    from slimvision.export.onnx import CardInfo, export_onnx

    torch.manual_seed(0)  # the same untrained weights every run (they do not change the time)
    model = candidate.build().eval()
    params = sum(parameter.numel() for parameter in model.parameters())
    example = {name: torch.from_numpy(np.asarray(value)) for name, value in next(iter(candidate.inputs.values())).items()}
    path = folder / f"{candidate.name}.onnx"
    options = dict(candidate.export_options)
    card = replace(options.pop("card"), name=candidate.name, remake="slimvision compress search")
    # Untrained weights give larger activations than trained ones, hence a looser parity check.
    export_onnx(model, path, example, card=card, tolerance=1e-3, overwrite=True, **options)
    return path.read_bytes(), params


def measure(candidates: Sequence[Candidate], reference: Reference, settings: SearchSettings,
            progress: bool = True) -> tuple[list[Row], dict[str, Any]]:
    """Export and time every candidate next to the reference: the rows (not yet scored) and the
    reference's own figures."""
    from slimvision.progress import progress_bar

    check_candidates(candidates, reference)
    graphs: dict[str, tuple[bytes | Path, Mapping[str, Feeds]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="slimvision-search-") as folder, \
            progress_bar(len(candidates), enabled=progress, desc="export") as bar:
        for candidate in candidates:
            graph, params = export_candidate(candidate, Path(folder))
            graphs[candidate.name] = (graph, candidate.inputs)
            sizes[candidate.name] = (params, len(graph))
            bar.update()
    reference_key = f"reference:{reference.name}"  # a candidate may not take the reference's name
    graphs[reference_key] = (reference.graph, reference.inputs)
    timings = time_graphs(graphs, settings, progress)
    base = timings[reference_key]
    budget_workload = next(iter(reference.inputs))
    fits = within_budget([timings[c.name][budget_workload] for c in candidates], settings.budget_ms)
    rows = [Row(name=c.name, knobs=_plain(c.knobs), params=sizes[c.name][0], onnx_bytes=sizes[c.name][1],
                ms=timings[c.name], speedup={w: base[w] / ms for w, ms in timings[c.name].items()},
                within_budget=fit) for c, fit in zip(candidates, fits)]
    graph_bytes = len(reference.graph) if isinstance(reference.graph, bytes) else Path(reference.graph).stat().st_size
    return rows, {"name": reference.name, "ms": base, "onnx_bytes": graph_bytes}


def check_candidates(candidates: Sequence[Candidate], reference: Reference) -> None:
    """Names unique and file-safe; every candidate has a card and the reference's workloads, in its order."""
    from slimvision.export.onnx import CardInfo

    if not candidates:
        raise ConfigError("the search has no candidates")
    seen: set[str] = set()
    workloads = list(reference.inputs)
    if not workloads:
        raise ConfigError(f"the reference {reference.name!r} has no workloads")
    for candidate in candidates:
        if not _NAME.match(candidate.name):
            raise ConfigError(f"candidate name {candidate.name!r}: use letters, digits and ._+- only "
                              "(it names the candidate's folder)")
        if candidate.name in seen:
            raise ConfigError(f"two candidates are named {candidate.name!r}")
        seen.add(candidate.name)
        if not isinstance(candidate.export_options.get("card"), CardInfo):
            raise ConfigError(f"candidate {candidate.name!r}: export_options needs a 'card' (a CardInfo)")
        if list(candidate.inputs) != workloads:
            raise ConfigError(f"candidate {candidate.name!r} has workloads {list(candidate.inputs)}, the reference "
                              f"{workloads}")


# ---------------------------------------------------------------------------------------------
# Training, resuming, the whole search
# ---------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so saved and fresh knobs compare equal."""
    return json.loads(json.dumps(value))


def saved_result(folder: Path, row: Row, steps: int) -> Fidelity | None:
    """The fidelity a previous run saved for this candidate, if it was trained with the same
    knobs and steps (anything else, or a damaged file, is trained again)."""
    path = folder / "candidates" / row.name / RESULT_NAME
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["knobs"] != row.knobs or saved["train_steps"] != steps:
            log.info("%s: saved result is for other knobs or steps; training again", row.name)
            return None
        return Fidelity(float(saved["fidelity"]), saved.get("details") or {})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: ignoring unreadable %s (%s)", row.name, path, exc)
        return None


def train_and_score(candidate: Candidate, row: Row, steps: int, folder: Path, train: Train,
                    score: Score) -> Fidelity:
    """Train one front runner, score it and save the result at once (atomically)."""
    from slimvision.io.atomic import write_text_atomic

    own = folder / "candidates" / candidate.name
    trained = train(candidate, steps, own / "train")
    fidelity = score(candidate, trained, own / "train")
    result = {"name": candidate.name, "knobs": row.knobs, "train_steps": steps,
              "fidelity": float(fidelity.score), "details": _plain(fidelity.details)}
    write_text_atomic(own / RESULT_NAME, json.dumps(result, indent=2) + "\n", overwrite=True)
    return fidelity


def search(candidates: Sequence[Candidate], reference: Reference, settings: SearchSettings, *,
           train: Train, score: Score, folder: str | Path, progress: bool = True) -> SearchResult:
    """Time, filter, train, score; mark the Pareto front; write ``search.json`` and ``front.png``
    into ``folder``. A rerun into the same folder skips the candidates already scored there."""
    from slimvision.progress import progress_bar

    folder = Path(folder)
    rows, reference_figures = measure(candidates, reference, settings, progress)
    workloads = list(reference.inputs)
    result = SearchResult(settings, reference_figures, workloads, rows)
    by_name = {candidate.name: candidate for candidate in candidates}
    write_report(result, folder)  # the timings stand even if a long training stage is stopped
    runners = pick_front_runners(rows, settings.front_runners, workloads[0])
    log.info("%d of %d candidates within %.1f ms; training %s", sum(row.within_budget for row in rows), len(rows),
             settings.budget_ms, [row.name for row in runners])
    with progress_bar(len(runners), enabled=progress, desc="front runners") as bar:
        for row in runners:
            fidelity = saved_result(folder, row, settings.train_steps)
            row.resumed = fidelity is not None
            if fidelity is None:
                fidelity = train_and_score(by_name[row.name], row, settings.train_steps, folder, train, score)
            row.fidelity, row.fidelity_details = float(fidelity.score), _plain(fidelity.details)
            bar.update()
    mark_front(rows, workloads[0])
    write_report(result, folder)
    return result


def mark_front(rows: Sequence[Row], workload: str) -> None:
    """Set ``on_front`` on the scored rows no other scored row beats on both latency and fidelity."""
    scored = [row for row in rows if row.fidelity is not None]
    for row, flag in zip(scored, pareto_front([(row.ms[workload], row.fidelity) for row in scored])):
        row.on_front = flag


def write_report(result: SearchResult, folder: Path) -> None:
    """``search.json`` and ``front.png`` in ``folder``, each written atomically."""
    from slimvision.io.atomic import write_text_atomic

    result.report_path = write_text_atomic(folder / REPORT_NAME, json.dumps(result.to_dict(), indent=2) + "\n",
                                           overwrite=True)
    result.plot_path = plot_front(result, folder / PLOT_NAME)


# ---------------------------------------------------------------------------------------------
# Table and plot
# ---------------------------------------------------------------------------------------------

def _knob_text(knobs: Mapping[str, Any]) -> str:
    def short(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ",".join(short(item) for item in value) or "-"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return " ".join(f"{key}={short(value)}" for key, value in knobs.items())


def table(result: SearchResult) -> str:
    """The search as a plain-text table: every candidate, fastest first, the reference on top."""
    workloads = result.workloads
    head = f"{'candidate':<24} {'params':>9} {'KB':>7} " + " ".join(
        f"{'ms@' + w:>12} {'x ref':>6}" for w in workloads) + f" {'fidelity':>8} {'front':>5}  knobs"
    lines = [head, "-" * len(head)]
    reference = result.reference
    lines.append(f"{'[ref] ' + reference['name']:<24} {'':>9} {reference['onnx_bytes'] / 1024:>7.0f} " + " ".join(
        f"{reference['ms'][w]:>12.2f} {1.0:>6.2f}" for w in workloads))
    for row in sorted(result.rows, key=lambda row: row.ms[workloads[0]]):
        fidelity = "over" if not row.within_budget else ("-" if row.fidelity is None else f"{row.fidelity:.4f}")
        lines.append(f"{row.name:<24} {row.params:>9,} {row.onnx_bytes / 1024:>7.0f} " + " ".join(
            f"{row.ms[w]:>12.2f} {row.speedup[w]:>6.2f}" for w in workloads)
            + f" {fidelity:>8} {'*' if row.on_front else '':>5}  {_knob_text(row.knobs)}")
    settings = result.settings
    lines.append(f"budget {settings.budget_ms:g} ms at {workloads[0]}; medians of {settings.repeats} interleaved runs, "
                 f"threads {settings.threads or 'all'}; 'x ref' = speed-up over the reference; "
                 f"fidelity 'over' = over budget, '-' = not trained; * = on the fidelity-vs-latency Pareto front")
    return "\n".join(lines)


def plot_front(result: SearchResult, path: Path) -> Path:
    """Fidelity (y) against latency (x) of the scored candidates, the front joined, the budget
    drawn, every point labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimvision.io.atomic import atomic_write

    workload = result.budget_workload
    scored = [row for row in result.rows if row.fidelity is not None]
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for row in scored:
        colour = "#d62728" if row.on_front else "#7f7f7f"
        axes.scatter(row.ms[workload], row.fidelity, color=colour, zorder=3)
        axes.annotate(row.name, (row.ms[workload], row.fidelity), textcoords="offset points", xytext=(4, 4),
                      fontsize=7)
    front = sorted((row for row in scored if row.on_front), key=lambda row: row.ms[workload])
    if front:
        axes.plot([row.ms[workload] for row in front], [row.fidelity for row in front], color="#d62728",
                  label="Pareto front", zorder=2)
    axes.axvline(result.settings.budget_ms, color="#1f77b4", linestyle="--",
                 label=f"budget {result.settings.budget_ms:g} ms")
    axes.axvline(result.reference["ms"][workload], color="#2ca02c", linestyle=":",
                 label=f"{result.reference['name']} {result.reference['ms'][workload]:.1f} ms")
    metric = next((row.fidelity_details.get("metric") for row in scored if row.fidelity_details), None)
    axes.set(xlabel=f"median ms at {workload} (ONNX Runtime, this CPU)", ylabel=metric or "fidelity to the teacher",
             title=f"{len(scored)} trained of {len(result.rows)} candidates")
    axes.legend(fontsize=8, loc="lower right")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_write(path, overwrite=True) as temp:
        figure.savefig(temp, dpi=120, format="png")
    plt.close(figure)
    return path


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
