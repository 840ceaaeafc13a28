"""Self-organising map: lattice geometry, the two update rules by hand, schedules, labels, I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slimvision.errors import ConfigError, InputError, SlimvisionError
from slimvision.models.som import SelfOrganizingMap, SOMConfig
from slimvision.models.som.lattice import (decay, neighbourhood, neighbours, node_coordinates,
                                           squared_lattice_distances)


def two_blobs(count: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 4.0, 0.0, 0.0]], np.float32)
    return (centres[labels] + 0.3 * rng.standard_normal((count, 4))).astype(np.float32), labels


# ------------------------------------------------------------------ lattice
def test_hex_inner_node_has_six_neighbours_all_at_distance_one():
    coords = node_coordinates(5, 5, "hex")
    centre = 2 * 5 + 2
    near = neighbours(coords, "hex")[centre]
    assert len(near) == 6
    np.testing.assert_allclose(np.sqrt(squared_lattice_distances(coords[near], coords[[centre]])[:, 0]), 1.0)
    # The hex rows shift: the two neighbours above an even row are straight up and up-left.
    assert sorted(near.tolist()) == [6, 7, 11, 13, 16, 17]


def test_rect_inner_node_has_eight_neighbours_and_a_corner_three():
    near = neighbours(node_coordinates(4, 4, "rect"), "rect")
    assert len(near[5]) == 8
    assert sorted(near[0].tolist()) == [1, 4, 5]


def test_unknown_lattice_is_rejected_by_name():
    with pytest.raises(ConfigError, match="lattice"):
        SOMConfig(lattice="triangle")


# ------------------------------------------------------ neighbourhood, decay
def test_neighbourhood_shapes():
    squared = np.array([0.0, 1.0, 4.0, 9.0])
    np.testing.assert_allclose(neighbourhood(squared, 2.0, "gaussian"), np.exp(-squared / 8))
    np.testing.assert_array_equal(neighbourhood(squared, 2.0, "bubble"), [1, 1, 1, 0])
    hat = neighbourhood(squared, 2.0, "mexican_hat")
    assert hat[0] == 1.0 and hat[2] == 0.0 and hat[3] < 0 < hat[1]


@pytest.mark.parametrize("kind", ["linear", "exponential", "inverse"])
def test_decay_hits_both_ends_and_shrinks_monotonically(kind):
    values = [decay(10.0, 0.5, t, kind) for t in np.linspace(0, 1, 11)]
    assert values[0] == pytest.approx(10.0) and values[-1] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_decay_kinds_differ_in_the_middle():
    middle = {kind: decay(10.0, 0.5, 0.5, kind) for kind in ("linear", "exponential", "inverse")}
    assert middle["linear"] == pytest.approx(5.25)
    assert middle["exponential"] == pytest.approx(np.sqrt(5.0))
    assert middle["inverse"] == pytest.approx(10.0 / 10.5)
    with pytest.raises(ValueError, match="progress"):
        decay(1.0, 0.5, 1.5, "linear")


# ------------------------------------------------------------- update rules
def test_online_rule_on_a_hand_checked_2x2_map():
    config = SOMConfig(rows=2, cols=2, dim=2, rule="online", epochs=1, learning_rate=0.5,
                       learning_rate_end=0.5, radius=1.0, radius_end=1.0)
    start = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    som = SelfOrganizingMap(config, start)
    som.fit(np.array([[0.2, 0.1]], np.float32), progress=False)
    # Winner: node 0 at (0, 0). Lattice distances^2 to nodes 0..3: 0, 1, 1, 2.
    pull = 0.5 * np.exp(-0.5 * np.array([0.0, 1.0, 1.0, 2.0]))
    expected = start + pull[:, None] * (np.array([0.2, 0.1]) - start)
    np.testing.assert_allclose(som.weights, expected, rtol=1e-6)


def test_batch_rule_with_a_winner_only_neighbourhood_is_a_k_means_step():
    config = SOMConfig(rows=1, cols=2, dim=1, epochs=1, batch_steps=1, neighbourhood="bubble", radius=0.5, radius_end=0.5,
                       init="random")
    som = SelfOrganizingMap(config, np.array([[0.0], [10.0]], np.float32))
    som.fit(np.array([[1.0], [2.0], [9.0]], np.float32), progress=False)
    np.testing.assert_allclose(som.weights[:, 0], [1.5, 9.0])


def test_batch_rule_with_a_gaussian_mixes_in_the_neighbours_samples():
    config = SOMConfig(rows=1, cols=2, dim=1, epochs=1, batch_steps=1, radius=1.0, radius_end=1.0)
    som = SelfOrganizingMap(config, np.array([[0.0], [10.0]], np.float32))
    som.fit(np.array([[1.0], [9.0]], np.float32), progress=False)
    h = np.exp(-0.5)   # pull between the two nodes, one lattice step apart
    np.testing.assert_allclose(som.weights[:, 0], [(1 + 9 * h) / (1 + h), (h + 9) / (1 + h)], rtol=1e-6)


def test_batch_rule_refuses_the_mexican_hat():
    with pytest.raises(ConfigError, match="non-negative"):
        SOMConfig(neighbourhood="mexican_hat", rule="batch")
    SOMConfig(neighbourhood="mexican_hat", rule="online")


@pytest.mark.parametrize("rule,lattice,init", [("batch", "rect", "pca"), ("batch", "hex", "random"),
                                               ("online", "hex", "pca")])
def test_training_orders_a_map_over_a_square(rule, lattice, init):
    data = np.random.default_rng(1).random((600, 2), dtype=np.float32)
    som = SelfOrganizingMap(SOMConfig(rows=6, cols=6, dim=2, epochs=8, rule=rule, lattice=lattice, init=init,
                                      radius_end=0.7))
    history = som.fit(data, progress=False)
    assert history.quantization_error[-1] < history.quantization_error[0]
    assert history.quantization_error[-1] < 0.12          # 36 nodes over a unit square: ~0.1 spacing
    assert history.topographic_error[-1] < 0.2
    assert len(history.radius) == 8 and history.radius[0] > history.radius[-1]


def test_pca_start_lies_on_the_data_plane_and_is_reproducible():
    data = np.random.default_rng(2).standard_normal((300, 5)).astype(np.float32) * [5, 2, 0.1, 0.1, 0.1]
    first = SelfOrganizingMap(SOMConfig(rows=4, cols=3, dim=5))
    first.initialize(data)
    second = SelfOrganizingMap(SOMConfig(rows=4, cols=3, dim=5))
    second.initialize(data)
    np.testing.assert_array_equal(first.weights, second.weights)
    assert np.abs(first.weights[:, 2:]).max() < 0.1       # the small directions stay near the mean
    assert np.ptp(first.weights[:, 0]) > np.ptp(first.weights[:, 1]) > 1.0


# ------------------------------------------------------ measuring, labels
def test_bmu_k2_returns_nearest_first():
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=3, dim=1), np.array([[0.0], [1.0], [3.0]], np.float32))
    nodes, distances = som.bmu(np.array([[2.9], [0.4]], np.float32), k=2)
    assert nodes.tolist() == [[2, 1], [0, 1]]
    np.testing.assert_allclose(distances, [[0.1, 1.9], [0.4, 0.6]], rtol=1e-5)


def test_labels_classify_and_call_far_samples_unknown():
    data, labels = two_blobs()
    som = SelfOrganizingMap(SOMConfig(rows=4, cols=4, dim=4, epochs=6))
    som.fit(data, progress=False)
    som.label(data, labels, ("a", "b"))
    test, truth = two_blobs(seed=5)
    prediction = som.classify(test)
    assert np.mean(prediction.label == truth) > 0.97
    assert set(np.unique(som.node_labels)) == {0, 1}
    far = som.classify(np.full((1, 4), 50.0, np.float32))
    assert far.label.tolist() == [-1] and far.distance[0] > som.unknown_distance


def test_nodes_without_samples_take_their_neighbours_vote():
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=3, dim=1), np.array([[0.0], [50.0], [100.0]], np.float32))
    som.label(np.array([[1.0], [99.0], [98.0]], np.float32), np.array([0, 1, 1]), ("low", "high"))
    assert som.node_labels.tolist() == [0, 1, 1]
    assert som.node_confidence[1] < 1.0          # the empty middle node is less sure than its neighbours


def test_label_rejects_bad_labels_and_classify_needs_labels():
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=2, dim=1), np.zeros((2, 1), np.float32))
    with pytest.raises(SlimvisionError, match="no node labels"):
        som.classify(np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="index the 2 classes"):
        som.label(np.zeros((2, 1), np.float32), np.array([0, 2]), ("a", "b"))


def test_bad_samples_are_rejected_with_the_shape():
    som = SelfOrganizingMap(SOMConfig(rows=2, cols=2, dim=3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        som.fit(np.zeros((10, 4), np.float32), progress=False)
    with pytest.raises(ValueError, match="NaN"):
        som.fit(np.full((10, 3), np.nan, np.float32), progress=False)
    with pytest.raises(SlimvisionError, match="no weights"):
        som.u_matrix()


def test_u_matrix_has_a_ridge_between_two_clusters():
    weights = np.array([[0.0], [0.0], [9.0], [9.0]], np.float32)   # 1 x 4 map: two flat halves
    umatrix = SelfOrganizingMap(SOMConfig(rows=1, cols=4, dim=1), weights).u_matrix()
    assert umatrix.shape == (1, 4)
    np.testing.assert_allclose(umatrix[0], [0.0, 4.5, 4.5, 0.0])


def test_lvq1_pulls_an_agreeing_node_and_pushes_a_disagreeing_one_by_hand():
    # Two nodes on a line, labelled a (at 0) and b (at 10). One batch, learning rate 0.5:
    # the a-sample at 2 pulls node 0 to 0 + 0.5 * (2 - 0) = 1; the a-sample at 8 wins node 1
    # (label b) and pushes it to 10 - 0.5 * (8 - 10) = 11.
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=2, dim=1), np.array([[0.0], [10.0]], np.float32))
    som.node_labels = np.array([0, 1])
    errors = som.fine_tune(np.array([[2.0], [8.0]], np.float32), np.array([0, 0]), epochs=1, learning_rate=0.5,
                           batch_size=2)
    np.testing.assert_allclose(som.weights[:, 0], [1.0, 11.0])
    assert errors == [0.5]


def test_lvq1_moves_a_misplaced_border_to_where_the_classes_part():
    # Class a is x < 1 and class b is x > 1, but the samples crowd at 0 and 2 around a few far b's:
    # the unsupervised fit puts a b node where b is rare; LVQ1 fixes what labels it wins.
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.uniform(0.0, 1.0, 300), rng.uniform(1.0, 3.0, 300)]).astype(np.float32)[:, None]
    labels = (data[:, 0] > 1.0).astype(np.int64)
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=3, dim=1), np.array([[0.2], [1.4], [2.6]], np.float32))
    som.label(data, labels, ("a", "b"))
    before = np.mean(som.classify(data, unknown_distance=np.inf).label != labels)
    errors = som.fine_tune(data, labels, epochs=20, learning_rate=0.1, batch_size=32)
    som.label(data, labels, ("a", "b"))
    after = np.mean(som.classify(data, unknown_distance=np.inf).label != labels)
    assert after < before and errors[-1] < errors[0]


def test_lvq1_needs_a_labelled_map():
    som = SelfOrganizingMap(SOMConfig(rows=1, cols=2, dim=1), np.zeros((2, 1), np.float32))
    with pytest.raises(SlimvisionError, match="labelled map"):
        som.fine_tune(np.zeros((2, 1), np.float32), np.array([0, 1]))


# ------------------------------------------------------------------ storage
def test_half_precision_storage_halves_the_file_and_keeps_the_answers(tmp_path):
    data, labels = two_blobs()
    som = SelfOrganizingMap(SOMConfig(rows=6, cols=6, dim=4, epochs=2))
    som.fit(data, progress=False)
    som.label(data, labels, ("a", "b"))
    som.save(tmp_path / "full")
    som.save(tmp_path / "half", half=True)
    loaded = SelfOrganizingMap.load(tmp_path / "half")
    assert loaded.weights.dtype == np.float32
    np.testing.assert_allclose(loaded.weights, som.weights, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(loaded.classify(data).label, som.classify(data).label)
    weights_bytes = {name: np.load(tmp_path / name / "map.npz")["weights"].nbytes for name in ("full", "half")}
    assert weights_bytes["half"] * 2 == weights_bytes["full"]


def test_save_load_round_trip_keeps_weights_labels_and_config(tmp_path):
    data, labels = two_blobs()
    som = SelfOrganizingMap(SOMConfig(rows=3, cols=4, dim=4, lattice="hex", epochs=2))
    som.fit(data, progress=False)
    som.label(data, labels, ("a", "b"))
    som.save(tmp_path / "map")
    loaded = SelfOrganizingMap.load(tmp_path / "map")
    assert loaded.config == som.config
    np.testing.assert_array_equal(loaded.weights, som.weights)
    np.testing.assert_array_equal(loaded.node_labels, som.node_labels)
    assert loaded.classes == ("a", "b") and loaded.unknown_distance == som.unknown_distance
    np.testing.assert_array_equal(loaded.classify(data).label, som.classify(data).label)
    with pytest.raises(Exception, match="exists"):
        som.save(tmp_path / "map")


def test_load_names_the_broken_file(tmp_path):
    som = SelfOrganizingMap(SOMConfig(rows=2, cols=2, dim=3), np.zeros((4, 3), np.float32))
    folder = som.save(tmp_path / "map")
    config = json.loads((folder / "config.json").read_text())
    config["dim"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="map.npz.*do not match"):
        SelfOrganizingMap.load(folder)
    (folder / "map.npz").unlink()
    with pytest.raises(InputError, match="map.npz.*missing"):
        SelfOrganizingMap.load(folder)


def test_batch_steps_shrink_the_radius_within_an_epoch_and_fit_tighter():
    data = np.random.default_rng(3).random((2000, 2), dtype=np.float32)
    errors = {}
    for steps in (1, 10):
        som = SelfOrganizingMap(SOMConfig(rows=8, cols=8, dim=2, epochs=2, batch_steps=steps, radius_end=1.0))
        errors[steps] = som.fit(data, progress=False).quantization_error[-1]
    assert errors[10] < errors[1]
    with pytest.raises(ConfigError, match="batch_steps"):
        SOMConfig(batch_steps=0)


@pytest.mark.parametrize("lattice, kind", [("rect", "gaussian"), ("rect", "bubble"), ("hex", "gaussian")])
def test_spreading_sums_equals_the_full_neighbourhood_product(lattice, kind):
    # The rect Gaussian is spread by two small separable products; it must equal the full one.
    som = SelfOrganizingMap(SOMConfig(rows=5, cols=7, dim=3, lattice=lattice, neighbourhood=kind))
    values = np.random.default_rng(0).random((35, 4), dtype=np.float32)
    pull = neighbourhood(squared_lattice_distances(som.coords, som.coords), 1.7, kind)
    np.testing.assert_allclose(som._spread(values, 1.7), pull @ values, rtol=1e-5, atol=1e-6)


def test_per_node_sums_match_a_plain_accumulation():
    som = SelfOrganizingMap(SOMConfig(rows=3, cols=4, dim=5))
    rng = np.random.default_rng(1)
    nodes, vectors = rng.integers(0, 12, 50), rng.random((50, 5), dtype=np.float32)
    expected = np.zeros((12, 5))
    np.add.at(expected, nodes, vectors)
    sums, counts = som._per_node_sums(nodes, vectors)
    np.testing.assert_allclose(sums, expected, rtol=1e-5)
    np.testing.assert_array_equal(counts, np.bincount(nodes, minlength=12))
    empty_sums, empty_counts = som._per_node_sums(np.zeros(0, np.int64), np.zeros((0, 5), np.float32))
    assert not empty_sums.any() and not empty_counts.any()


def test_a_damaged_map_file_is_an_input_error_naming_it(tmp_path):
    data, labels = two_blobs()
    som = SelfOrganizingMap(SOMConfig(rows=3, cols=3, dim=4, epochs=2))
    som.fit(data, progress=False)
    som.label(data, labels, ("a", "b"))
    folder = som.save(tmp_path / "map")
    whole = (folder / "map.npz").read_bytes()
    for damaged in (whole[: len(whole) // 2], whole[:10], b"", whole[:-40]):
        (folder / "map.npz").write_bytes(damaged)
        with pytest.raises(InputError, match="map.npz: cannot read the map"):
            SelfOrganizingMap.load(folder)
    (folder / "config.json").write_text('{"rows": 3, "cols"')
    with pytest.raises(InputError, match="config.json: not a valid map config"):
        SelfOrganizingMap.load(folder)


@pytest.mark.parametrize("change, problem", [
    (lambda arrays: arrays.pop("node_confidence"), "no node_confidence"),
    (lambda arrays: arrays.update(node_labels=np.full(9, 7)), "indices into the 2 classes"),
    (lambda arrays: arrays.update(node_confidence=np.full(4, 0.5)), "shares in"),
    (lambda arrays: arrays.update(unknown_distance=np.asarray(-1.0)), "one positive number"),
    (lambda arrays: arrays.update(weights=np.full((3, 3, 4), np.nan, np.float32)), "not all finite"),
])
def test_a_map_with_inconsistent_arrays_is_refused(tmp_path, change, problem):
    data, labels = two_blobs()
    som = SelfOrganizingMap(SOMConfig(rows=3, cols=3, dim=4, epochs=2))
    som.fit(data, progress=False)
    som.label(data, labels, ("a", "b"))
    folder = som.save(tmp_path / "map")
    with np.load(folder / "map.npz") as stored:
        arrays = {name: stored[name] for name in stored.files}
    change(arrays)
    np.savez(folder / "map.npz", **arrays)
    with pytest.raises(InputError, match=f"map.npz: damaged map: .*{problem}"):
        SelfOrganizingMap.load(folder)
