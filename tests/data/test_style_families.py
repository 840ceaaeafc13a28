"""Style families: pure functions of (seed, index, size), varied, and held-out families stay held out."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from slimvision.data.style_families import (
    FAMILIES,
    HELD_OUT_FAMILIES,
    LABEL_WIDTH,
    PaletteBank,
    StyleFamilyDataset,
    colour_jitter,
    cut_mix,
    family_seed,
    family_sheet,
    family_training_data,
    held_out_styles,
    image_palette,
    patch_collage,
    render,
    split_families,
    split_real_sources,
    validation_styles,
)
from slimvision.data.style_images import StyleSource
from slimvision.errors import ConfigError

SIZE = 64


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_image_is_a_function_of_seed_index_and_size(family):
    image = render(family, 3, 5, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert np.array_equal(render(family, 3, 5, SIZE), image)
    assert not np.array_equal(render(family, 4, 5, SIZE), image)
    assert render(family, 3, 5, 50).shape == (50, 50, 3)  # any side, not only powers of two


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_varies_across_indices(family):
    images = [render(family, 0, index, SIZE).astype(np.float32) for index in range(6)]
    assert all(image.std() > 0 for image in images)  # never a flat image
    for a, b in itertools.combinations(images, 2):
        assert np.abs(a - b).mean() > 3.0  # a family, not one template in one colour


def test_families_draw_from_their_own_random_streams_and_differ():
    assert len(FAMILIES) >= 20
    assert len({family_seed(name) for name in FAMILIES}) == len(FAMILIES)
    for index in range(3):
        images = {name: render(name, 0, index, SIZE).astype(np.float32) for name in FAMILIES}
        for a, b in itertools.combinations(FAMILIES, 2):
            assert np.abs(images[a] - images[b]).mean() > 3.0, (a, b, index)


def _structure(image: np.ndarray) -> np.ndarray:
    """Colour- and orientation-free features of an image: spectrum by scale, edge density, how
    peaked the gradient orientations are, how many colours."""
    grey = image.astype(np.float32).mean(axis=2) / 255.0
    grey -= grey.mean()
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2
    rows, columns = np.indices(power.shape) - grey.shape[0] // 2
    scale = np.digitize(np.hypot(rows, columns), [1, 2, 4, 8, 16, 32, 64])
    spectrum = np.log1p([power[scale == band].sum() / max(power.sum(), 1e-9) * 1000 for band in range(1, 8)])
    gx, gy = np.diff(grey, axis=1)[:-1], np.diff(grey, axis=0)[:, :-1]
    magnitude = np.hypot(gx, gy)
    orientations = np.histogram(np.mod(np.arctan2(gy, gx), np.pi), 8, (0, np.pi), weights=magnitude)[0]
    peaked = np.sort(orientations / max(orientations.sum(), 1e-9))[::-1]
    colours = len(np.unique(image.reshape(-1, 3) // 16, axis=0))
    return np.concatenate([spectrum, [(magnitude > t).mean() for t in (0.02, 0.1, 0.3)], peaked, [np.log(colours)]])


def test_families_are_different_kinds_of_picture_not_recolourings():
    # Leave-one-out nearest neighbour on structure alone (no colour, no orientation) tells the
    # families apart far above chance (1/25): each is its own kind of picture.
    names = list(FAMILIES)
    features = np.array([_structure(render(name, 0, index, 128)) for name in names for index in range(10)])
    labels = np.repeat(np.arange(len(names)), 10)
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-9)
    distances = ((features[:, None] - features[None]) ** 2).sum(axis=-1)
    np.fill_diagonal(distances, np.inf)
    accuracy = float((labels[distances.argmin(axis=1)] == labels).mean())
    assert accuracy > 10 / len(names)  # measured 0.66 with 25 families


def test_the_family_split_is_the_documented_one_and_stable():
    train, held_out = split_families()
    assert held_out == ("concentric", "halftone", "stained_glass", "woven", "marble")  # FAMILIES order
    assert set(held_out) == set(HELD_OUT_FAMILIES)
    assert set(train).isdisjoint(held_out) and set(train) | set(held_out) == set(FAMILIES)
    assert split_families(reversed(HELD_OUT_FAMILIES)) == (train, held_out)  # order-free
    assert split_families(["spiral"]) == (tuple(n for n in FAMILIES if n != "spiral"), ("spiral",))
    with pytest.raises(ConfigError, match="unknown style families.*'spirals'"):
        split_families(["spirals"])
    with pytest.raises(ConfigError, match="every family"):
        split_families(FAMILIES)


def test_training_data_never_uses_a_held_out_family_or_file():
    dataset, held_out_files = family_training_data(300, seed=1, size=32, mix_fraction=1.0, real_fraction=0.3)
    used = set()
    for index in range(len(dataset)):
        used |= set(dataset.ingredients(index))
    families = {entry.split(":", 1)[1] for entry in used if entry.startswith("family:")}
    files = {entry.split(":", 1)[1] for entry in used if entry.startswith("real:")}
    assert families == set(split_families()[0])  # every training family, and only those
    assert files and files.isdisjoint({source.name for source in held_out_files})
    assert "slimvision/starry_night.jpg" in {source.name for source in held_out_files}
    names = [name for name, _ in held_out_styles(per_family=2, size=32)]
    assert {name.split("/")[0] for name in names} == set(HELD_OUT_FAMILIES) and len(names) == 10


def test_validation_styles_draw_training_families_only_and_refuse_held_out_ones():
    styles = validation_styles(per_family=2, seed=1, size=32)
    assert {name.split("/")[0] for name, _ in styles} == set(split_families()[0]) and len(styles) % 2 == 0
    again = dict(validation_styles(per_family=2, seed=1, size=32))
    assert all(np.array_equal(again[name], image) for name, image in styles)
    other_seed = dict(validation_styles(per_family=2, seed=2, size=32))
    assert not all(np.array_equal(other_seed[name], image) for name, image in styles)
    with pytest.raises(ConfigError, match="concentric held out"):
        validation_styles(per_family=1, size=32, families=["spiral", "concentric"])


def test_dataset_items_are_a_function_of_seed_and_index():
    train = split_families()[0]
    a, b = StyleFamilyDataset(train, 40, seed=2, size=SIZE), StyleFamilyDataset(train, 40, seed=2, size=SIZE)
    id_a, image_a = a[7]
    id_b, image_b = b[7]
    assert id_a == id_b == "fam2-7" and np.array_equal(image_a, image_b)
    assert image_a.shape == (SIZE, SIZE, 3) and image_a.dtype == np.uint8 and image_a.flags.c_contiguous
    assert not np.array_equal(a[8][1], image_a)
    assert not np.array_equal(StyleFamilyDataset(train, 40, seed=3, size=SIZE)[7][1], image_a)
    with pytest.raises(IndexError):
        a[40]
    with pytest.raises(ConfigError, match="mix_fraction"):
        StyleFamilyDataset(train, 4, mix_fraction=1.5)
    only = StyleFamilyDataset(["spiral"], 20, size=SIZE, mix_fraction=1.0)
    assert all(set(only.ingredients(i)) == {"family:spiral"} for i in range(20))


def _write(path, pixels):
    Image.fromarray(pixels).save(path)
    return path


def test_real_images_split_by_origin_and_copies_follow_the_held_out_picture(tmp_path):
    rng = np.random.default_rng(0)
    picture = (rng.random((80, 80, 3)) * 255).astype(np.uint8)
    other = (rng.random((80, 80, 3)) * 255).astype(np.uint8)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    sources = [StyleSource(_write(tmp_path / "a" / "picture.png", picture), "museum"),
               StyleSource(_write(tmp_path / "b" / "copy.jpg", picture), "package"),  # the same picture, re-encoded
               StyleSource(_write(tmp_path / "b" / "other.png", other), "package"),
               StyleSource(_write(tmp_path / "b" / "starry_night.png", other[::-1]), "package")]
    train, held_out = split_real_sources(sources, held_out_origins=("museum",))
    assert [s.name for s in train] == ["package/other.png"]
    assert [s.name for s in held_out] == ["museum/picture.png", "package/copy.jpg", "package/starry_night.png"]
    assert split_real_sources(list(reversed(sources)), held_out_origins=("museum",)) == (train, held_out)


def test_palettes_come_from_the_image():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 40)
    image[:, 32:] = (10, 120, 250)
    palette = image_palette(image, 4)
    assert palette.dtype == np.float32 and palette.shape[1] == 3
    found = {tuple(np.round(colour * 255).astype(int)) for colour in palette}
    assert found == {(200, 30, 40), (10, 120, 250)}


def test_palette_bank_draws_colours_of_one_real_image(tmp_path):
    image = np.zeros((64, 64, 3), np.uint8)
    image[::2] = (250, 200, 0)
    source = StyleSource(_write(tmp_path / "two.png", image), "user")
    bank = PaletteBank([source])
    drawn = bank.draw(np.random.default_rng(0))
    assert {tuple(np.round(c * 255).astype(int)) for c in drawn} == {(250, 200, 0), (0, 0, 0)}
    with_bank = [render("stripes", 0, index, 32, bank) for index in range(12)]
    colours = {tuple(pixel) for image in with_bank for pixel in image.reshape(-1, 3)}
    assert {(250, 200, 0), (0, 0, 0)} <= colours  # half the renders paint in the image's colours


def test_colour_jitter_moves_colours_and_keeps_the_picture():
    rng = np.random.default_rng(0)
    image = render("stripes", 0, 1, SIZE)
    outputs = [colour_jitter(image, rng) for _ in range(12)]
    assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outputs)
    means = np.array([out.reshape(-1, 3).mean(axis=0) for out in outputs])
    assert means.std(axis=0).max() > 20  # colours change a lot
    edges = np.abs(np.diff(image.astype(np.float32).mean(axis=2), axis=1)) > 0
    for out in outputs:  # but a pixel that is flat in the original stays flat (the bands stay)
        out_edges = np.abs(np.diff(out.astype(np.float32), axis=1)).max(axis=2) > 2
        assert not (out_edges & ~edges).any()


def test_cut_mix_and_collage_combine_their_inputs():
    rng = np.random.default_rng(0)
    a = np.zeros((SIZE, SIZE, 3), np.uint8)
    b = np.full((SIZE, SIZE, 3), 255, np.uint8)
    for _ in range(12):
        mixed = cut_mix(a, b, rng)
        assert mixed.shape == a.shape and (mixed == 0).any() and (mixed == 255).any()
    collage = patch_collage([a, b], np.random.default_rng(3), SIZE)
    assert collage.shape == (SIZE, SIZE, 3)
    assert set(np.unique(collage)) <= {0, 255}


def test_the_sheet_shows_each_family_row_as_rendered():
    sheet = family_sheet(["spiral", "woven"], per_family=3, tile=32)
    assert sheet.shape == (64, LABEL_WIDTH + 96, 3) and sheet.dtype == np.uint8
    tile = np.asarray(Image.fromarray(render("woven", 0, 2, 256)).resize((32, 32), Image.Resampling.BOX))
    assert np.array_equal(sheet[32:64, LABEL_WIDTH + 64:LABEL_WIDTH + 96], tile)
    assert (sheet[:, :LABEL_WIDTH] < 100).any()  # the labels are drawn
    with pytest.raises(ConfigError, match="unknown style families"):
        family_sheet(["spirals"])
