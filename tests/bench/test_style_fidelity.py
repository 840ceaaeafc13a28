"""bench.style_fidelity's photo finder: the real photos the benchmarks paint, found by name."""

from __future__ import annotations

import numpy as np


def test_named_photos_follow_the_names_order_count_and_minimum_side(tmp_path, monkeypatch):
    from PIL import Image

    from slimvision.bench import style_fidelity

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    rng = np.random.default_rng(0)
    for folder, name, side in ((first, "big.png", 300), (first, "small.png", 100), (second, "big.png", 50),
                               (second, "other.png", 280)):
        Image.fromarray(rng.integers(0, 255, (side, side + 10, 3), dtype=np.uint8)).save(folder / name)
    monkeypatch.setattr(style_fidelity, "photo_folders", lambda: [("one", first), ("two", second)])
    found = style_fidelity.named_photos(["missing.png", "other.png", "small.png", "big.png"], 3, min_side=256)
    assert [(name, image.shape) for name, image in found] == [("other.png", (280, 290, 3)), ("big.png", (300, 310, 3))]
    assert [name for name, _ in style_fidelity.named_photos(["big.png", "small.png", "other.png"], 2)] == \
        ["big.png", "small.png"]
