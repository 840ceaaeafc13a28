"""The style students' side of the search: candidate families, knob checks, the teacher references,
timing both students' candidates (the transformer at two small sizes), and the recipes' scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from slimvision.bench.search import SearchSettings, measure  # noqa: E402
from slimvision.bench.style_search import (  # noqa: E402
    default_predictor_family, default_transformer_family, predictor_candidates, read_family, score_predictor,
    score_transformer, size_label, style_search_parts, transformer_candidates,
)
from slimvision.errors import ConfigError, InputError  # noqa: E402

TINY_PREDICTOR = {"name": "tiny", "width_multiplier": 0.1, "last_channels": 32, "stem_stride": 4,
                  "stage_repeats": [1, 1, 1, 1, 1, 1, 1]}
TINY_TRANSFORMER = {"name": "p-r1", "space_to_depth": 2, "separable": [], "edge_kernels": [3, 3], "residual_blocks": 1}


def test_the_default_families_are_valid_candidates_with_unique_names():
    predictors = predictor_candidates(default_predictor_family())
    transformers = transformer_candidates(default_transformer_family())
    for candidates in (predictors, transformers):
        names = [candidate.name for candidate in candidates]
        assert len(set(names)) == len(names)
    assert len(predictors) == 32 and {c.knobs["stem_stride"] for c in predictors} == {2, 4}
    assert list(transformers[0].inputs) == ["512px", "1280x720"]
    assert transformers[0].inputs["1280x720"]["content_image"].shape == (1, 720, 1280, 3)


def test_a_candidate_builds_the_network_its_knobs_describe():
    (candidate,) = predictor_candidates([TINY_PREDICTOR])
    network = candidate.build()
    assert network.predictor.config.stem_stride == 4 and len(network.predictor.blocks) == 7
    vector = network(torch.from_numpy(candidate.inputs["256px"]["style_image"]))
    assert vector.shape == (1, 1, 1, 100)
    (transformer,) = transformer_candidates([TINY_TRANSFORMER], sizes=[(32, 32)])
    net = transformer.build()
    assert len(net.transformer.residual) == 1 and net.transformer.config.space_to_depth == 2


@pytest.mark.parametrize("knobs, message", [
    ({"width_multiplier": 0.5}, "needs a \"name\""),
    ({"name": "a", "width": 0.5}, "unknown knob.*'width'"),
    ({"name": "a", "batch_size": 4}, "unknown knob"),  # a training setting, not an architecture knob
    ({"name": "a", "stem_stride": 3}, "candidate 'a'.*stem_stride"),
    ({"name": "a", "stage_repeats": [1, 2]}, "candidate 'a'.*stage_repeats"),
])
def test_bad_predictor_knobs_are_one_line_errors_naming_the_candidate(knobs, message):
    with pytest.raises(ConfigError, match=message):
        predictor_candidates([knobs])


def test_bad_transformer_knobs_and_sizes_are_refused():
    with pytest.raises(ConfigError, match="residual_width"):
        transformer_candidates([{**TINY_TRANSFORMER, "residual_width": 16}])  # teacher init needs 32
    with pytest.raises(ConfigError, match="multiple of 4"):
        transformer_candidates([TINY_TRANSFORMER], sizes=[(34, 34)])
    with pytest.raises(ConfigError, match="student must be one of"):
        style_search_parts("vae")
    with pytest.raises(ConfigError, match="sizes are for the transformer"):
        style_search_parts("predictor", [TINY_PREDICTOR], sizes=[(64, 64)])


def test_candidate_files_are_read_or_refused_by_name(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([TINY_PREDICTOR]))
    assert read_family(good) == [TINY_PREDICTOR]
    for text, problem in (("{not json", "not valid JSON"), ("[]", "non-empty JSON list"),
                          ('{"name": "a"}', "non-empty JSON list")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(InputError, match=problem):
            read_family(bad)
    with pytest.raises(InputError, match="no such file"):
        read_family(tmp_path / "missing.json")


def test_transformer_candidates_are_timed_at_every_size_next_to_the_teacher():
    sizes = [(32, 32), (32, 48)]
    candidates, reference, _, _ = style_search_parts("transformer", [TINY_TRANSFORMER], sizes=sizes, progress=False)
    assert reference.name == "teacher transform fp32" and list(reference.inputs) == ["32px", "48x32"]
    rows, figures = measure(candidates, reference, SearchSettings(budget_ms=1e6, repeats=1, pause_s=0.0),
                            progress=False)
    (row,) = rows
    assert set(row.ms) == set(figures["ms"]) == {"32px", "48x32"}
    assert all(np.isfinite(value) and value > 0 for value in row.speedup.values())
    assert row.params == sum(p.numel() for p in candidates[0].build().parameters()) and row.within_budget


def test_size_labels():
    assert size_label((512, 512)) == "512px" and size_label((720, 1280)) == "1280x720"


def test_the_scores_come_from_the_recipes_held_out_reports():
    (candidate,) = predictor_candidates([TINY_PREDICTOR])
    predictor_report = {"params": 10, "held_out": {"images": 3, "r2": 0.25, "centred_cosine": 0.6,
                                                  "mean_cosine": 0.9, "min_cosine": 0.8},
                        "pipeline_model": {"bytes": 100, "held_out": {"r2": 0.24}}}
    fidelity = score_predictor(candidate, predictor_report, None)
    assert fidelity.score == 0.25 and fidelity.details["pipeline_model_r2"] == 0.24
    with pytest.raises(ConfigError, match="no held-out R²"):
        score_predictor(candidate, {**predictor_report, "held_out": {**predictor_report["held_out"], "r2": None}}, None)
    summary = {"ssim_mean": 0.8, "ssim_min": 0.7, "ssim_median": 0.8, "psnr_mean": 20.0}
    transformer_report = {"params": 5, "held_out": {"pairs": 4, "torch": {"vs_fp32_teacher": summary},
                                                    "fp16_weights": {"vs_fp32_teacher": {**summary, "ssim_mean": 0.79}}}}
    fidelity = score_transformer(candidate, transformer_report, None)
    assert fidelity.score == 0.8 and fidelity.details["fp16_weights_ssim_mean"] == 0.79
