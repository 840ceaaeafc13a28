"""Every shipped graph has a valid card, and the pipelines take their settings from it."""

from __future__ import annotations

from pathlib import Path

import pytest

import slimvision
from slimvision.export.card import SYSTEMS, card_path, read_card

WEIGHTS = Path(slimvision.__file__).resolve().parent / "weights"
GRAPHS = sorted(WEIGHTS.rglob("*.onnx"))


@pytest.mark.parametrize("graph", GRAPHS, ids=[str(p.relative_to(WEIGHTS)) for p in GRAPHS])
def test_every_shipped_graph_has_a_card_that_describes_it(graph):
    import onnx

    card = read_card(card_path(graph))
    assert card.system in SYSTEMS and card.files["graph"] == graph.name and card.remake and card.licence
    model = onnx.load(str(graph), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    assert [spec.name for spec in card.inputs] == [v.name for v in model.graph.input if v.name not in initializers]
    assert [spec.name for spec in card.outputs] == [v.name for v in model.graph.output]
    assert card.parity, "every shipped graph's card has its parity figures"


def test_no_old_sidecars_are_left():
    assert not list(WEIGHTS.rglob("vae.json"))
    assert not [p for p in WEIGHTS.rglob("*.json") if p.with_suffix(".onnx").is_file()]


def test_the_pipelines_read_their_settings_from_the_cards():
    from slimvision.inference.gan import DEMO_GENERATOR, GANSampler
    from slimvision.inference.style import style_artifact
    from slimvision.inference.vae import DEMO_GENERATIVE, MedicalVAE

    assert GANSampler(DEMO_GENERATOR).latent_dim == read_card(card_path(DEMO_GENERATOR)).input("noise").shape[-1]
    vae = MedicalVAE(DEMO_GENERATIVE)
    assert vae.latent_dim == read_card(DEMO_GENERATIVE / "encoder.card.json").preprocessing["model"]["latent_dim"]
    artifact = style_artifact("slimvision-fast-v3")
    assert (artifact.style_size, artifact.layout, artifact.value_range) == (256, "NHWC", (0.0, 1.0))


def test_a_generator_without_its_card_is_refused_naming_the_card(tmp_path):
    import shutil

    from slimvision.errors import InputError
    from slimvision.inference.gan import DEMO_GENERATOR, GANSampler

    graph = Path(shutil.copy(DEMO_GENERATOR, tmp_path / "generator.onnx"))
    with pytest.raises(InputError, match="no card") as caught:
        GANSampler(graph)
    assert caught.value.path == str(tmp_path / "generator.card.json")
