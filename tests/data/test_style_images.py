"""Style samples for predictor distillation: reproducible, varied, and held-out files stay held out."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.data.style_images import (
    StyleImageDataset,
    StyleSource,
    augment,
    find_style_sources,
    mix,
    procedural_texture,
    random_crop,
    split_sources,
)


@pytest.fixture(scope="module")
def sources():
    return find_style_sources()


def test_installed_packages_provide_sources(sources):
    origins = {source.origin for source in sources}
    assert {"scikit-image", "slimvision"} <= origins  # both come with `make test`
    assert len(sources) >= 25
    assert any(source.path.stem == "starry_night" for source in sources)


def test_split_is_stable_disjoint_and_keeps_the_demo_painting_out(sources):
    train, held_out = split_sources(sources, 0.2)
    assert {s.name for s in train}.isdisjoint({s.name for s in held_out})
    assert len(train) + len(held_out) == len(sources)
    assert "starry_night" in {s.path.stem for s in held_out}
    assert {s.name for s in split_sources(list(reversed(sources)), 0.2)[1]} == {s.name for s in held_out}  # order-free
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_sources(sources, 1.0)


def test_samples_are_a_function_of_seed_and_index(sources):
    train, _ = split_sources(sources)
    a, b = StyleImageDataset(train, 50, seed=3, size=64), StyleImageDataset(train, 50, seed=3, size=64)
    id_a, image_a = a[7]
    id_b, image_b = b[7]
    assert id_a == id_b == "3-7" and np.array_equal(image_a, image_b)
    assert image_a.shape == (64, 64, 3) and image_a.dtype == np.uint8
    assert not np.array_equal(a[8][1], image_a)
    assert not np.array_equal(StyleImageDataset(train, 50, seed=4, size=64)[7][1], image_a)
    with pytest.raises(IndexError):
        a[50]


def test_samples_vary_in_colour_and_texture(sources):
    dataset = StyleImageDataset(split_sources(sources)[0], 40, seed=0, size=64)
    images = np.stack([dataset[i][1] for i in range(40)]).astype(np.float32)
    means = images.mean(axis=(1, 2))  # (40, 3) mean colours
    assert means.std(axis=0).min() > 15  # not one colour cast
    sharpness = np.abs(np.diff(images, axis=2)).mean(axis=(1, 2, 3))
    assert sharpness.max() > 4 * sharpness.min()  # smooth and busy samples both


@pytest.mark.parametrize("seed", range(10))
def test_procedural_textures_of_every_kind(seed):
    texture = procedural_texture(np.random.default_rng(seed), 48)
    assert texture.shape == (48, 48, 3) and texture.dtype == np.uint8
    assert texture.std() > 0  # never a flat image


def test_augmentations_keep_shape_and_range():
    rng = np.random.default_rng(0)
    image = (np.random.default_rng(1).random((120, 90, 3)) * 255).astype(np.uint8)
    crop = random_crop(image, rng, 32)
    assert crop.shape == (32, 32, 3)
    for _ in range(20):
        out = augment(crop, rng)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    mixed = mix(crop, 255 - crop, rng)
    assert mixed.shape == crop.shape and not np.array_equal(mixed, crop)


def test_textures_only_without_sources():
    dataset = StyleImageDataset([], 5, size=32, texture_fraction=1.0)
    assert dataset[4][1].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="no source images"):
        StyleImageDataset([], 5)


def test_a_user_folder_is_a_source(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((80, 80, 3), 200, np.uint8)).save(tmp_path / "mine.png")
    Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(tmp_path / "tiny.png")  # too small: skipped
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")  # unreadable: skipped
    found = [s for s in find_style_sources([tmp_path]) if s.origin == "user"]
    assert found == [StyleSource(tmp_path / "mine.png", "user")]
