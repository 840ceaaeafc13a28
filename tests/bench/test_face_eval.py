"""LFW pairs protocol: parsing the file format, threshold choice across folds, TAR at FAR, the ROC plot."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.bench.face_eval import (best_threshold, read_pairs, save_roc_plot, tar_at_far,
                                        verification_scores)
from slimvision.errors import InputError


def write_pairs(path, folds=2, per_class=2):
    lines = [f"{folds}\t{per_class}"]
    for fold in range(folds):
        lines += [f"Ada_Lovelace\t{fold + 1}\t{fold + 2}" for _ in range(per_class)]
        lines += [f"Ada_Lovelace\t1\tAlan_Turing\t{fold + 1}" for _ in range(per_class)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_files_are_read_in_the_lfw_layout(tmp_path):
    pairs = read_pairs(write_pairs(tmp_path / "pairs.txt"), tmp_path / "lfw")
    assert len(pairs) == 8 and [p.fold for p in pairs] == [0] * 4 + [1] * 4
    assert [p.same for p in pairs[:4]] == [True, True, False, False]
    assert pairs[4].first == tmp_path / "lfw" / "Ada_Lovelace" / "Ada_Lovelace_0002.jpg"
    assert pairs[2].second.name == "Alan_Turing_0001.jpg"
    (tmp_path / "dev.txt").write_text("1\nAda 1 2\nAda 1 Alan 1\n")  # development files: one fold
    assert [p.same for p in read_pairs(tmp_path / "dev.txt", tmp_path)] == [True, False]


@pytest.mark.parametrize("text, message", [("", "first line"), ("10 300\nAda 1 2\n", "promises 10 folds"),
                                           ("1\nAda 1\nAda 1 Alan 1\n", "line 2: expected a same-person"),
                                           ("1\nAda 1 x\nAda 1 Alan 1\n", "line 2: image number 'x'")])
def test_malformed_pairs_files_are_one_clear_error(tmp_path, text, message):
    (tmp_path / "pairs.txt").write_text(text)
    with pytest.raises(InputError, match=f"pairs.txt: .*{message}"):
        read_pairs(tmp_path / "pairs.txt", tmp_path)


def test_the_threshold_is_the_most_accurate_cut_between_distances():
    distances = np.array([0.1, 0.2, 0.35, 0.5, 0.8, 0.9])
    same = np.array([True, True, True, False, False, False])
    assert best_threshold(distances, same) == pytest.approx(0.425)
    assert best_threshold(np.array([0.5, 0.5]), np.array([True, False])) in (0.5 - 1e-6, 0.5 + 1e-6)


def test_protocol_accuracy_uses_thresholds_from_the_other_folds():
    # Fold 0 separates at 0.5, fold 1 at 1.5: trained on the other fold, each threshold is wrong
    # for the held-out one, which plain per-fold fitting would hide.
    distances = np.array([0.4, 0.6, 1.4, 1.6])
    same = np.array([True, False, True, False])
    folds = np.array([0, 0, 1, 1])
    scores = verification_scores(distances, same, folds)
    assert scores["fold_accuracies"] == [0.5, 0.5] and scores["accuracy"] == 0.5
    single = verification_scores(distances[:2], same[:2], folds[:2])
    assert single["accuracy"] == 1.0


def test_tar_at_far_counts_the_false_accepts_it_allows():
    rng = np.random.default_rng(0)
    different = rng.uniform(1, 2, 1000)
    same_pairs = np.concatenate([rng.uniform(0, 1, 900), rng.uniform(1, 2, 100)])
    distances = np.concatenate([same_pairs, different])
    same = np.arange(2000) < 1000
    # FAR 1e-3 of 1000 allows one false accept: the threshold is the second-smallest impostor distance.
    threshold = np.sort(different)[1]
    assert tar_at_far(distances, same, 1e-3) == pytest.approx((same_pairs < threshold).mean())
    assert tar_at_far(distances, same, 0.0) == pytest.approx((same_pairs < different.min()).mean())


def test_the_roc_is_monotone_and_plots(tmp_path):
    rng = np.random.default_rng(1)
    distances = np.concatenate([rng.normal(0.4, 0.1, 300), rng.normal(0.9, 0.1, 300)])
    same = np.arange(600) < 300
    scores = verification_scores(distances, same, np.tile(np.arange(10), 60))
    far, tar = np.array(scores["roc"]["far"]), np.array(scores["roc"]["tar"])
    assert (np.diff(far) >= 0).all() and (np.diff(tar) >= 0).all() and far[-1] == tar[-1] == 1.0
    assert 0.97 < scores["accuracy"] <= 1.0
    save_roc_plot(scores, tmp_path / "roc.png", label="test")
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
