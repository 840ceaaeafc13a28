"""Guessing which zero pixels of a damaged slice were removed (``vae denoise --zeros-missing``)."""

from __future__ import annotations

import numpy as np

from slimvision.inference.vae import kept_from_zeros


def test_zeros_inside_the_body_are_missing_and_the_background_is_kept():
    y, x = np.mgrid[:64, :64]
    body = (x - 32) ** 2 + (y - 30) ** 2 < 20 ** 2
    image = np.where(body, 0.6, 0.0).astype(np.float32)
    removed = body & (np.random.default_rng(0).random((64, 64)) < 0.6)
    damaged = np.where(removed, 0.0, image)
    kept = kept_from_zeros(damaged)
    assert not kept[removed].any()                                # every removed pixel is to be filled
    assert kept[(damaged > 0)].all()                              # ink is intact
    far = (x - 32) ** 2 + (y - 30) ** 2 > 25 ** 2                 # well outside the body, plus margin
    assert kept[far].all()
    assert kept_from_zeros(np.zeros((8, 8))).all()                # an empty slice has nothing to fill
