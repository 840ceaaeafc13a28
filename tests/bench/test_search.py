"""The latency-budgeted search's core on tiny candidates (a few channels, 32 px, 1-2 training steps).

The candidates are real networks, exported and timed in ONNX Runtime; training is a real regression
onto a fixed random "teacher" network, scored by held-out R². No assertion depends on a timing
value: budgets are either far above or far below anything these graphs take.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from slimvision.bench.search import (  # noqa: E402
    Candidate, Fidelity, Reference, Row, SearchSettings, pareto_front, pick_front_runners, search, table,
    within_budget,
)
from slimvision.errors import ConfigError  # noqa: E402
from slimvision.export.onnx import CardInfo, ImageInput, export_onnx  # noqa: E402

SIDE = 32


def tiny_net(channels: int, depth: int = 1) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth - 1):
        layers += [torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(channels, 4))


def feeds(seed: int = 0) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).random((1, 3, SIDE, SIDE), dtype=np.float32)}


EXPORT = {"output_names": ("vector",), "preprocessing": {"image": ImageInput(layout="NCHW")},
          "card": CardInfo(system="style", task="search-test")}


def candidates(widths=(2, 4, 6)) -> list[Candidate]:
    return [Candidate(f"w{width}", {"channels": width}, lambda width=width: tiny_net(width), {"32px": feeds()},
                      EXPORT) for width in widths]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Reference:
    path = tmp_path_factory.mktemp("reference") / "teacher.onnx"
    torch.manual_seed(1)
    export_onnx(tiny_net(8, depth=2), path, {"image": torch.rand(1, 3, SIDE, SIDE)},
                preprocessing=EXPORT["preprocessing"], card=EXPORT["card"])
    return Reference("teacher", path, {"32px": feeds()})


class Regression:
    """Real training: the candidate learns a fixed random teacher's vectors on random images."""

    def __init__(self) -> None:
        torch.manual_seed(2)
        self.teacher = tiny_net(8, depth=2).eval()
        self.calls: list[str] = []

    def train(self, candidate: Candidate, steps: int, folder) -> torch.nn.Module:
        self.calls.append(candidate.name)
        torch.manual_seed(3)
        student = tiny_net(candidate.knobs["channels"])
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
        for _ in range(steps):
            images = torch.rand(8, 3, SIDE, SIDE)
            with torch.no_grad():
                target = self.teacher(images)
            loss = torch.nn.functional.mse_loss(student(images), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        folder.mkdir(parents=True, exist_ok=True)
        return student

    def score(self, candidate: Candidate, student: torch.nn.Module, folder) -> Fidelity:
        torch.manual_seed(4)
        images = torch.rand(16, 3, SIDE, SIDE)
        with torch.no_grad():
            target, predicted = self.teacher(images), student(images)
        r2 = 1 - float(((predicted - target) ** 2).sum() / ((target - target.mean(0)) ** 2).sum())
        return Fidelity(r2, {"held_out_images": 16})


def test_the_front_on_hand_made_points():
    # (latency, fidelity): b beats a on fidelity at the same latency; d is slower and worse than c;
    # e is the fastest; f ties c exactly (both stay); g is NaN (never on the front).
    points = [(2.0, 0.5), (2.0, 0.7), (3.0, 0.9), (4.0, 0.8), (1.0, 0.1), (3.0, 0.9), (float("nan"), 1.0)]
    assert pareto_front(points) == [False, True, True, False, True, True, False]
    assert pareto_front([]) == []


def test_the_budget_keeps_what_fits_including_equal():
    assert within_budget([1.0, 5.0, 5.0001, 12.0], 5.0) == [True, True, False, False]


def row(name: str, ms: float, params: int, fits: bool = True) -> Row:
    return Row(name, {}, params, 0, {"w": ms}, {"w": 1.0}, fits)


def test_front_runners_spread_along_the_capacity_front_within_the_budget():
    rows = [row("fast-small", 1, 10), row("fast-big", 1, 30), row("mid", 2, 50), row("slow-small", 3, 40),
            row("slow-big", 4, 90), row("over", 9, 500, fits=False)]
    # capacity front: fast-big (1 ms, 30), mid (2 ms, 50), slow-big (4 ms, 90); over budget never
    assert [r.name for r in pick_front_runners(rows, 1, "w")] == ["slow-big"]
    assert [r.name for r in pick_front_runners(rows, 2, "w")] == ["fast-big", "slow-big"]
    assert [r.name for r in pick_front_runners(rows, 3, "w")] == ["fast-big", "mid", "slow-big"]
    assert [r.name for r in pick_front_runners(rows, 4, "w")] == ["fast-big", "mid", "slow-big", "slow-small"]
    assert len(pick_front_runners(rows, 10, "w")) == 5
    assert pick_front_runners(rows, 0, "w") == []


def test_a_search_times_trains_scores_and_writes_its_report_and_plot(tmp_path, reference):
    regression = Regression()
    settings = SearchSettings(budget_ms=1e6, front_runners=3, train_steps=2, repeats=2, pause_s=0.0, threads=1)
    result = search(candidates(), reference, settings, train=regression.train, score=regression.score,
                    folder=tmp_path, progress=False)
    assert sorted(regression.calls) == ["w2", "w4", "w6"]
    report = json.loads((tmp_path / "search.json").read_text())
    assert report["budget_workload"] == "32px" and report["over_budget"] == []
    assert report["reference"]["name"] == "teacher" and report["reference"]["ms"]["32px"] > 0
    rows = {entry["name"]: entry for entry in report["candidates"]}
    assert [rows[name]["params"] for name in ("w2", "w4", "w6")] == [3 * 2 * 9 + 2 + 2 * 4 + 4,
                                                                     3 * 4 * 9 + 4 + 4 * 4 + 4,
                                                                     3 * 6 * 9 + 6 + 6 * 4 + 4]
    for entry in rows.values():
        assert entry["onnx_bytes"] > 0 and entry["fidelity"] is not None
        assert entry["speedup"]["32px"] == pytest.approx(report["reference"]["ms"]["32px"] / entry["ms"]["32px"])
        assert (tmp_path / "candidates" / entry["name"] / "result.json").is_file()
    # the front the report names is the Pareto front of its own figures
    points = [(entry["ms"]["32px"], entry["fidelity"]) for entry in report["candidates"]]
    expected = [entry["name"] for entry, flag in zip(report["candidates"], pareto_front(points)) if flag]
    assert sorted(report["front"]) == sorted(expected) and report["front"]
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = table(result)
    assert "[ref] teacher" in text and all(name in text for name in ("w2", "w4", "w6"))


def test_over_budget_candidates_are_dropped_and_never_trained(tmp_path, reference):
    regression = Regression()
    settings = SearchSettings(budget_ms=1e-6, front_runners=3, train_steps=1, repeats=1, pause_s=0.0)
    result = search(candidates(), reference, settings, train=regression.train, score=regression.score,
                    folder=tmp_path, progress=False)
    assert regression.calls == []
    assert all(not row.within_budget and row.fidelity is None and not row.on_front for row in result.rows)
    report = json.loads((tmp_path / "search.json").read_text())
    assert sorted(report["over_budget"]) == ["w2", "w4", "w6"] and report["front"] == []
    assert "over" in table(result)


def test_a_resumed_search_skips_the_candidates_already_scored(tmp_path, reference):
    settings = SearchSettings(budget_ms=1e6, front_runners=2, train_steps=1, repeats=1, pause_s=0.0)
    first = Regression()
    search(candidates((2, 4)), reference, settings, train=first.train, score=first.score, folder=tmp_path,
           progress=False)
    assert sorted(first.calls) == ["w2", "w4"]
    saved = json.loads((tmp_path / "candidates" / "w2" / "result.json").read_text())
    second = Regression()
    result = search(candidates((2, 4)), reference, settings, train=second.train, score=second.score,
                    folder=tmp_path, progress=False)
    assert second.calls == []
    assert all(row.resumed for row in result.rows)
    assert next(row for row in result.rows if row.name == "w2").fidelity == saved["fidelity"]
    # more steps: the saved result no longer answers, the candidate trains again
    third = Regression()
    search(candidates((2, 4)), reference, SearchSettings(budget_ms=1e6, front_runners=2, train_steps=2, repeats=1,
                                                         pause_s=0.0),
           train=third.train, score=third.score, folder=tmp_path, progress=False)
    assert sorted(third.calls) == ["w2", "w4"]


def test_a_damaged_result_file_is_trained_again(tmp_path, reference):
    settings = SearchSettings(budget_ms=1e6, front_runners=1, train_steps=1, repeats=1, pause_s=0.0)
    (tmp_path / "candidates" / "w2").mkdir(parents=True)
    (tmp_path / "candidates" / "w2" / "result.json").write_text("{not json")
    regression = Regression()
    search(candidates((2,)), reference, settings, train=regression.train, score=regression.score, folder=tmp_path,
           progress=False)
    assert regression.calls == ["w2"]
    assert json.loads((tmp_path / "candidates" / "w2" / "result.json").read_text())["train_steps"] == 1


@pytest.mark.parametrize("settings, message", [
    (dict(budget_ms=0), "budget"), (dict(budget_ms=float("nan")), "budget"), (dict(budget_ms=1, repeats=0), "repeats"),
    (dict(budget_ms=1, train_steps=0), "train_steps"), (dict(budget_ms=1, front_runners=-1), "front_runners"),
    (dict(budget_ms=1, threads=0), "threads"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        SearchSettings(**settings)


@pytest.mark.parametrize("make, message", [
    (lambda: [], "no candidates"),
    (lambda: candidates((2,)) + candidates((2,)), "two candidates"),
    (lambda: [Candidate("a/b", {}, lambda: tiny_net(2), {"32px": feeds()}, EXPORT)], "letters, digits"),
    (lambda: [Candidate("a", {}, lambda: tiny_net(2), {"64px": feeds()}, EXPORT)], "workloads"),
    (lambda: [Candidate("a", {}, lambda: tiny_net(2), {"32px": feeds()})], "needs a 'card'"),
])
def test_bad_candidates_are_refused_before_any_export(tmp_path, reference, make, message):
    regression = Regression()
    with pytest.raises(ConfigError, match=message):
        search(make(), reference, SearchSettings(budget_ms=1), train=regression.train, score=regression.score,
               folder=tmp_path, progress=False)
    assert not (tmp_path / "search.json").exists()


def test_a_stopped_search_keeps_its_timings_and_the_results_already_saved(tmp_path, reference):
    regression = Regression()

    def train_then_stop(candidate, steps, folder):
        if regression.calls:
            raise KeyboardInterrupt  # stopped while training the second front runner
        return regression.train(candidate, steps, folder)

    settings = SearchSettings(budget_ms=1e6, front_runners=2, train_steps=1, repeats=1, pause_s=0.0)
    with pytest.raises(KeyboardInterrupt):
        search(candidates((2, 4)), reference, settings, train=train_then_stop, score=regression.score,
               folder=tmp_path, progress=False)
    report = json.loads((tmp_path / "search.json").read_text())
    assert all(entry["ms"]["32px"] > 0 and entry["fidelity"] is None for entry in report["candidates"])
    (first,) = regression.calls
    assert (tmp_path / "candidates" / first / "result.json").is_file()
    rerun = Regression()
    search(candidates((2, 4)), reference, settings, train=rerun.train, score=rerun.score, folder=tmp_path,
           progress=False)
    assert len(rerun.calls) == 1 and rerun.calls != [first]
