"""Kohonen self-organising map in numpy: training (batch and online rules), errors, labels, I/O.

A map is a lattice of nodes, each holding a weight vector as long as an input. Training
repeats two moves: find each sample's best-matching unit (BMU, the node whose weights are
nearest), then pull the BMU and its lattice neighbours towards the sample, with the
neighbourhood radius (and the online rule's learning rate) shrinking over time. The map ends
ordered: nearby nodes hold similar prototypes.

Why it is fast: BMUs come from one matrix product per chunk of samples (||x||^2 - 2 x.w +
||w||^2), and the batch rule never touches samples one by one: it sums the samples won by each
node once, then spreads those sums over the lattice with one (nodes x nodes) product, so an
epoch costs about two matrix products, however wide the neighbourhood.

Example:
    >>> rng = np.random.default_rng(0)
    >>> data = rng.random((500, 3), dtype=np.float32)
    >>> som = SelfOrganizingMap(SOMConfig(rows=6, cols=6, dim=3, epochs=5))
    >>> history = som.fit(data, progress=False)
    >>> bool(history.quantization_error[-1] < history.quantization_error[0])
    True
"""

from __future__ import annotations

import json
import logging
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slimvision.errors import InputError, SlimvisionError
from slimvision.io.atomic import atomic_write, write_text_atomic
from slimvision.models.som.config import SOMConfig
from slimvision.models.som.lattice import (NEIGHBOUR_DISTANCE, decay, neighbourhood, neighbours,
                                           node_coordinates, squared_lattice_distances)
from slimvision.progress import progress_bar

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "map.npz"
#: Samples per BMU matrix product: 4096 x 1024 float32 inputs against a 400-node map is
#: ~6 MB of distances, small enough for any cache-friendly BLAS call.
_CHUNK = 4096
#: Samples the per-epoch errors are measured on (a fixed random subset: cheap, comparable).
_MONITOR_SAMPLES = 2000
#: Samples the PCA starting plane is fitted on (a random subset of larger data).
_PCA_SAMPLES = 4096
#: The online rule skips nodes whose pull is below this: a Gaussian is never exactly zero.
_NEGLIGIBLE_PULL = 1e-4


@dataclass
class TrainingHistory:
    """Errors after each epoch, measured on a fixed subset of the training data."""

    radius: list[float] = field(default_factory=list)
    quantization_error: list[float] = field(default_factory=list)
    topographic_error: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        return {"radius": self.radius, "quantization_error": self.quantization_error,
                "topographic_error": self.topographic_error}


@dataclass
class Prediction:
    """What :meth:`SelfOrganizingMap.classify` says of each sample.

    ``label`` indexes :attr:`SelfOrganizingMap.classes`, or is -1 ("unknown") when the sample is
    farther from its BMU than the map's unknown distance.
    """

    label: np.ndarray        # (N,) int64
    confidence: np.ndarray   # (N,) float32: share of the BMU's training samples with that label
    distance: np.ndarray     # (N,) float32: Euclidean distance to the BMU's weights
    node: np.ndarray         # (N,) int64: the BMU


class SelfOrganizingMap:
    """A Kohonen map: ``fit`` it, ``label`` its nodes, then ``classify`` by best-matching unit."""

    def __init__(self, config: SOMConfig, weights: np.ndarray | None = None) -> None:
        self.config = config
        self.coords = node_coordinates(config.rows, config.cols, config.lattice)
        self.weights: np.ndarray | None = None
        if weights is not None:
            self.weights = self._checked_weights(weights)
        self.classes: tuple[str, ...] = ()
        self.node_labels: np.ndarray | None = None       # (nodes,) int64
        self.node_confidence: np.ndarray | None = None   # (nodes,) float32
        self.unknown_distance: float = float("inf")
        self._lattice_squared: np.ndarray | None = None

    # ----------------------------------------------------------------- training
    def initialize(self, data: np.ndarray) -> None:
        """Set the starting weights from ``data`` as the config's ``init`` says."""
        data = self._checked_data(data)
        rng = np.random.default_rng(self.config.seed)
        if self.config.init == "random" or len(data) < 3:
            picks = rng.choice(len(data), self.config.nodes, replace=len(data) < self.config.nodes)
            self.weights = data[picks].copy()
        else:
            self.weights = self._pca_weights(data, rng)

    def fit(self, data: np.ndarray, *, progress: bool = True) -> TrainingHistory:
        """Initialise (unless weights are set) and train for ``config.epochs`` epochs.

        Args:
            data: (N, dim) samples.
            progress: show a progress bar on stderr.

        Returns:
            The quantization and topographic errors after every epoch.
        """
        data = self._checked_data(data)
        if self.weights is None:
            self.initialize(data)
        rng = np.random.default_rng(self.config.seed + 1)
        monitor = data[rng.choice(len(data), min(len(data), _MONITOR_SAMPLES), replace=False)]
        history = TrainingHistory()
        epochs = self.config.epochs
        unit = "epoch" if self.config.rule == "batch" else "sample"
        total = epochs if self.config.rule == "batch" else epochs * len(data)
        with progress_bar(total, enabled=progress, desc=f"SOM {self.config.rows}x{self.config.cols}",
                          unit=unit) as bar:
            for epoch in range(epochs):
                radius = self._batch_epoch(data, epoch, rng) if self.config.rule == "batch" else \
                    self._online_epoch(data, epoch, rng, bar)
                if self.config.rule == "batch":
                    bar.update()
                history.radius.append(radius)
                quantization, topographic = self._errors(monitor)
                history.quantization_error.append(quantization)
                history.topographic_error.append(topographic)
                bar.set_postfix({"qe": f"{history.quantization_error[-1]:.3f}",
                                 "te": f"{history.topographic_error[-1]:.3f}"})
        return history

    def _radius(self, progress: float) -> float:
        return decay(self.config.start_radius, self.config.radius_end, progress, self.config.decay)

    def _batch_epoch(self, data: np.ndarray, epoch: int, rng: np.random.Generator) -> float:
        """Kohonen's batch map on mini-batches: each replaces the nodes it reaches by a weighted mean."""
        steps = min(self.config.batch_steps, len(data))
        total = max(self.config.epochs * steps - 1, 1)
        order = rng.permutation(len(data)) if steps > 1 else np.arange(len(data))
        radius = self.config.start_radius
        for step, chunk in enumerate(np.array_split(order, steps)):
            radius = self._radius((epoch * steps + step) / total)
            self._batch_update(data[np.sort(chunk)], radius)
        return radius

    def _batch_update(self, data: np.ndarray, radius: float) -> None:
        """Every node becomes the neighbourhood-weighted mean of ``data`` (unless no sample reaches it).

        The samples won by each node are summed once, then the sums are spread over the lattice
        with one (nodes x nodes) product: cheaper than spreading every sample's pull directly
        (a nodes x batch x dim product, 2.5x the time for 1,000 samples on a 400-node map).
        """
        winners, _ = self._nearest_nodes(data, distances=False)
        sums, counts = self._per_node_sums(winners, data)
        numerator, denominator = self._spread(sums, radius), self._spread(counts[:, None], radius)[:, 0]
        reached = denominator > 1e-12   # a bubble can leave a node with no sample in reach
        self.weights[reached] = numerator[reached] / denominator[reached, None]

    def _spread(self, values: np.ndarray, radius: float) -> np.ndarray:
        """(nodes, k) values -> each node's neighbourhood-weighted sum of them, (nodes, k).

        A Gaussian on the rectangular lattice factors into one along the rows times one along
        the columns, so two small products (rows x rows, then cols x cols) replace the
        (nodes x nodes) one: 0.8 ms instead of 3.4 ms for a 20 x 20 map of 1024-d sums.
        """
        config = self.config
        if config.lattice == "rect" and config.neighbourhood == "gaussian":
            along_rows, along_cols = (neighbourhood(np.square(np.subtract.outer(np.arange(n), np.arange(n)))
                                                    .astype(np.float32), radius, "gaussian")
                                      for n in (config.rows, config.cols))
            grid = values.reshape(config.rows, -1)                                       # (rows, cols * k)
            grid = (along_rows @ grid).reshape(config.rows, config.cols, -1)            # spread down the rows
            return np.matmul(along_cols, grid).reshape(config.nodes, -1)               # then along each row
        pull = neighbourhood(self._lattice_distances(), radius, config.neighbourhood)     # (nodes, nodes)
        return pull @ values

    def _lattice_distances(self) -> np.ndarray:
        """(nodes, nodes) float32 squared lattice distances, computed once per map (the lattice never moves)."""
        if self._lattice_squared is None:
            self._lattice_squared = squared_lattice_distances(self.coords, self.coords).astype(np.float32)
        return self._lattice_squared

    def _per_node_sums(self, nodes: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nodes, dim) float32 sum of the vectors each node won, and (nodes,) how many it won.

        The vectors are sorted by node and each node's run is summed as one contiguous block.
        For 1,000 x 1024 samples into 400 nodes that took 2.6 ms, against 11 ms for
        ``np.add.reduceat`` (which walks the rows with a stride), 10 ms for a one-hot product
        and more for ``np.add.at``. Float32 like the weights: sums of a few thousand glyph
        pixels in [0, 1] lose nothing a distance can see, and a float64 copy doubled the cost
        of the product that spreads them.
        """
        sums = np.zeros((self.config.nodes, vectors.shape[1]), np.float32)
        if not len(nodes):
            return sums, np.zeros(self.config.nodes, np.float32)
        order = np.argsort(nodes, kind="stable")
        sorted_nodes, sorted_vectors = nodes[order], vectors[order]
        ends = np.append(np.flatnonzero(np.diff(sorted_nodes)) + 1, len(sorted_nodes))
        starts = np.concatenate([[0], ends[:-1]])
        for start, end in zip(starts.tolist(), ends.tolist()):
            sums[sorted_nodes[start]] = sorted_vectors[start:end].sum(axis=0)
        return sums, np.bincount(nodes, minlength=self.config.nodes).astype(np.float32)

    def _online_epoch(self, data: np.ndarray, epoch: int, rng: np.random.Generator, bar: object) -> float:
        """Kohonen's rule, one random sample at a time: w += rate * pull * (x - w)."""
        config, weights = self.config, self.weights
        total_steps = max(config.epochs * len(data) - 1, 1)
        squared_norms = np.einsum("nd,nd->n", weights, weights)
        lattice = self._lattice_distances() if config.nodes <= 4096 else None
        step = epoch * len(data)
        radius = config.start_radius
        for count, index in enumerate(rng.permutation(len(data)), start=1):
            progress = step / total_steps
            rate = decay(config.learning_rate, config.learning_rate_end, progress, config.decay)
            radius = self._radius(progress)
            sample = data[index]
            dots = weights @ sample                                                  # (nodes,)
            winner = int(np.argmin(squared_norms - 2.0 * dots))
            spread = lattice[winner] if lattice is not None else \
                squared_lattice_distances(self.coords[winner:winner + 1], self.coords)[0]
            step_size = (rate * neighbourhood(spread, radius, config.neighbourhood)).astype(np.float32)
            moved = np.flatnonzero(np.abs(step_size) > _NEGLIGIBLE_PULL * rate)
            keep = 1.0 - step_size[moved]
            # w' = (1 - a) w + a x, so ||w'||^2 follows from ||w||^2, w.x and ||x||^2 already at hand.
            squared_norms[moved] = (keep * keep * squared_norms[moved] + 2 * step_size[moved] * keep * dots[moved]
                                    + step_size[moved] ** 2 * float(sample @ sample))
            if len(moved) == config.nodes:
                weights *= keep[:, None]
                weights += step_size[:, None] * sample
            else:
                weights[moved] = keep[:, None] * weights[moved] + step_size[moved, None] * sample
            step += 1
            if count % 1000 == 0:
                bar.update(1000)
        bar.update(len(data) % 1000)
        return radius

    def _pca_weights(self, data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Nodes spread over the plane of the two main principal components, +-2 std each way.

        The plane is fitted on at most ``_PCA_SAMPLES`` random samples: a starting plane needs
        the data's main directions, not their last digit, and the fit reads the data a dozen times.
        """
        if len(data) > _PCA_SAMPLES:
            data = data[np.sort(rng.choice(len(data), _PCA_SAMPLES, replace=False))]
        mean = data.mean(axis=0, dtype=np.float64)
        axes, spread = _top_two_components(data, mean, rng)
        rows, cols = self.config.rows, self.config.cols
        # The longer lattice side follows the first (widest) component, as in the SOM Toolbox.
        long_side, short_side = (rows, cols) if rows >= cols else (cols, rows)
        along_long = np.linspace(-2.0, 2.0, long_side) if long_side > 1 else np.zeros(1)
        along_short = np.linspace(-2.0, 2.0, short_side) if short_side > 1 else np.zeros(1)
        grid_long, grid_short = np.meshgrid(along_long, along_short, indexing="ij")   # (long, short)
        if rows < cols:
            grid_long, grid_short = grid_long.T, grid_short.T                          # -> (rows, cols)
        weights = (mean + grid_long.reshape(-1, 1) * spread[0] * axes[0]
                   + grid_short.reshape(-1, 1) * spread[1] * axes[1])
        return weights.astype(np.float32)

    # ------------------------------------------------------------- measuring
    def bmu(self, data: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Best-matching units: (N,) node indices and Euclidean distances (k=1), or (N, k) each."""
        return self._nearest_nodes(self._checked_data(data), k)

    def _nearest_nodes(self, data: np.ndarray, k: int = 1, distances: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bmu` for data already checked (training calls it every epoch on 40 MB).

        ``distances=False`` skips them (the batch rule needs only the winners) and returns zeros.
        """
        weights = self._trained_weights()
        squared_norms = np.einsum("nd,nd->n", weights, weights)
        nodes = np.empty((len(data), k), np.int64)
        found = np.zeros((len(data), k), np.float32)
        for start in range(0, len(data), _CHUNK):
            chunk = data[start:start + _CHUNK]
            squared = squared_norms[None, :] - 2.0 * (chunk @ weights.T)       # (chunk, nodes): d^2 - ||x||^2
            if k == 1:
                best = np.argmin(squared, axis=1)[:, None]
            else:
                best = np.argpartition(squared, k - 1, axis=1)[:, :k]
                best = np.take_along_axis(best, np.argsort(np.take_along_axis(squared, best, 1), axis=1), 1)
            nodes[start:start + len(chunk)] = best
            # Exact distances to the chosen nodes: the expanded form above cancels badly in
            # float32 when a sample sits close to its node, and the errors are reported.
            if distances:
                found[start:start + len(chunk)] = np.linalg.norm(chunk[:, None, :] - weights[best], axis=2)
        return (nodes[:, 0], found[:, 0]) if k == 1 else (nodes, found)

    def quantization_error(self, data: np.ndarray) -> float:
        """Mean Euclidean distance from each sample to its BMU's weights (lower: tighter fit)."""
        return float(np.mean(self.bmu(data)[1])) if len(data) else 0.0

    def topographic_error(self, data: np.ndarray) -> float:
        """Share of samples whose two nearest nodes are not lattice neighbours (lower: better ordered)."""
        if self.config.nodes < 2 or not len(data):
            return 0.0
        return self._apart(self.bmu(data, k=2)[0])

    def _apart(self, nodes: np.ndarray) -> float:
        """Topographic error from each sample's two nearest nodes, (N, 2)."""
        first, second = self.coords[nodes[:, 0]], self.coords[nodes[:, 1]]
        apart = np.sum((first - second) ** 2, axis=1) > NEIGHBOUR_DISTANCE[self.config.lattice] ** 2
        return float(np.mean(apart))

    def _errors(self, data: np.ndarray) -> tuple[float, float]:
        """Quantization and topographic error from one two-nearest-nodes search (training's monitor)."""
        if self.config.nodes < 2:
            return self.quantization_error(data), 0.0
        nodes, distances = self._nearest_nodes(data, k=2)
        return float(np.mean(distances[:, 0])), self._apart(nodes)

    def u_matrix(self) -> np.ndarray:
        """(rows, cols) mean weight distance of each node to its lattice neighbours: ridges are cluster borders."""
        weights = self._trained_weights()
        values = [float(np.mean(np.linalg.norm(weights[near] - weights[node], axis=1))) if len(near) else 0.0
                  for node, near in enumerate(neighbours(self.coords, self.config.lattice))]
        return np.asarray(values, np.float32).reshape(self.config.rows, self.config.cols)

    # --------------------------------------------------------- classification
    def label(self, data: np.ndarray, labels: np.ndarray, classes: tuple[str, ...] | list[str],
              unknown_quantile: float = 0.999) -> None:
        """Label every node by majority vote of the samples it wins.

        A node that wins no sample takes the vote of the nodes around it, weighted by a
        Gaussian of lattice distance (radius 1), so every node can answer. The unknown distance
        is the ``unknown_quantile`` of the labelled samples' BMU distances: a sample farther
        from its BMU than almost every training sample is called unknown.
        """
        labels = np.asarray(labels)
        if labels.shape != (len(data),):
            raise ValueError(f"label: expected {len(data)} labels, got shape {labels.shape}")
        if len(data) == 0:
            raise ValueError("label: no samples to label the map with")
        if labels.min() < 0 or labels.max() >= len(classes):
            raise ValueError(f"label: labels must index the {len(classes)} classes, got {labels.min()}..{labels.max()}")
        if not 0 < unknown_quantile <= 1:
            raise ValueError(f"label: unknown_quantile must be in (0, 1], got {unknown_quantile}")
        nodes, distances = self.bmu(data)
        votes = np.zeros((self.config.nodes, len(classes)), np.float64)
        np.add.at(votes, (nodes, labels), 1.0)
        empty = votes.sum(axis=1) == 0
        if empty.any():
            pull = np.exp(-0.5 * squared_lattice_distances(self.coords[empty], self.coords))
            votes[empty] = pull @ votes
        self.classes = tuple(classes)
        self.node_labels = np.argmax(votes, axis=1).astype(np.int64)
        self.node_confidence = (votes.max(axis=1) / votes.sum(axis=1)).astype(np.float32)
        self.unknown_distance = float(np.quantile(distances, unknown_quantile))

    def fine_tune(self, data: np.ndarray, labels: np.ndarray, *, epochs: int = 4, learning_rate: float = 0.05,
                  batch_size: int = 256, seed: int = 0, progress: bool = False) -> list[float]:
        """Kohonen's LVQ1 on a labelled map: move the prototypes' borders to where the classes part.

        The map is fitted without labels, so a node near the border of two classes sits where
        the samples are dense, not where they part. LVQ1 pulls each sample's BMU towards it when
        their labels agree and pushes it away when they differ, with a learning rate falling
        linearly to zero. Mini-batches: each node moves by the mean of its batch's pulls and
        pushes, so an epoch is a few matrix products. Call :meth:`label` again afterwards to
        refresh the confidences and the unknown distance.

        Returns:
            The share of training samples whose BMU had the wrong label, before each epoch.
        """
        if self.node_labels is None:
            raise SlimvisionError("fine_tune needs a labelled map: call label() first")
        data, labels = self._checked_data(data), np.asarray(labels)
        if labels.shape != (len(data),):
            raise ValueError(f"fine_tune: expected {len(data)} labels, got shape {labels.shape}")
        rng = np.random.default_rng(seed)
        weights = self._trained_weights()
        batches = max(1, len(data) // batch_size)
        errors = []
        with progress_bar(epochs * batches, enabled=progress, desc="LVQ1", unit="batch", leave=False) as bar:
            for epoch in range(epochs):
                wrong = 0
                for step, chunk in enumerate(np.array_split(rng.permutation(len(data)), batches)):
                    rate = learning_rate * (1 - (epoch * batches + step) / (epochs * batches))
                    nodes, _ = self._nearest_nodes(data[chunk], distances=False)
                    agree = self.node_labels[nodes] == labels[chunk]
                    wrong += int((~agree).sum())
                    pull = np.where(agree, 1.0, -1.0).astype(np.float32)[:, None] * (data[chunk] - weights[nodes])
                    moves, counts = self._per_node_sums(nodes, pull)
                    weights += (rate * moves / np.maximum(counts, 1.0)[:, None]).astype(np.float32)
                    bar.update()
                errors.append(wrong / len(data))
        self.weights = weights
        return errors

    def classify(self, data: np.ndarray, unknown_distance: float | None = None) -> Prediction:
        """Label of each sample's BMU, or -1 when it lies beyond ``unknown_distance`` (default: the map's)."""
        if self.node_labels is None:
            raise SlimvisionError("this map has no node labels yet: call label() with labelled samples first")
        nodes, distances = self.bmu(data)
        limit = self.unknown_distance if unknown_distance is None else unknown_distance
        label = np.where(distances <= limit, self.node_labels[nodes], -1)
        return Prediction(label=label, confidence=self.node_confidence[nodes], distance=distances, node=nodes)

    # ---------------------------------------------------------------- storage
    def save(self, folder: str | Path, *, overwrite: bool = False, half: bool = False) -> Path:
        """Write ``config.json`` and ``map.npz`` (weights, node labels) into ``folder``; no pickle.

        ``half`` stores the weights as float16: half the size, and :meth:`load` widens them back
        to float32 (for weights in [0, 1], distances move by about 0.05%).
        """
        folder = Path(folder)
        weights = self._trained_weights().reshape(self.config.rows, self.config.cols, self.config.dim)
        arrays = {"weights": weights.astype(np.float16) if half else weights}
        if self.node_labels is not None:
            arrays.update(node_labels=self.node_labels, node_confidence=self.node_confidence,
                          classes=np.asarray(self.classes, dtype=str),
                          unknown_distance=np.asarray(self.unknown_distance, np.float64))
        # Weights first, config last: a folder with a config always has the weights it describes.
        with atomic_write(folder / WEIGHTS_FILE, overwrite=overwrite) as temp:
            with open(temp, "wb") as handle:
                np.savez(handle, **arrays)
        write_text_atomic(folder / CONFIG_FILE, self.config.to_json(), overwrite=overwrite)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> SelfOrganizingMap:
        """Read a map written by :meth:`save`.

        Raises:
            InputError: a file is missing, unreadable, or does not match the config.
        """
        folder = Path(folder)
        config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise InputError(path, "missing: a saved map is a folder with config.json and map.npz")
        try:
            config = SOMConfig.from_json(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, SlimvisionError) as exc:
            raise InputError(config_path, f"not a valid map config: {exc}") from None
        arrays = _read_arrays(weights_path)
        expected = (config.rows, config.cols, config.dim)
        if "weights" not in arrays or arrays["weights"].shape != expected:
            found = arrays["weights"].shape if "weights" in arrays else "none"
            raise InputError(weights_path, f"weights of shape {found} do not match the config's {expected}")
        if not np.issubdtype(arrays["weights"].dtype, np.floating) or not np.isfinite(arrays["weights"]).all():
            raise InputError(weights_path, "damaged map: the weights are not all finite numbers")
        som = cls(config, arrays["weights"].reshape(config.nodes, config.dim))
        if "node_labels" in arrays:
            som._load_labels(arrays, weights_path)
        return som

    def _load_labels(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        """Node labels, confidences, class names and unknown distance from a saved map, checked."""
        names = ("node_labels", "node_confidence", "classes", "unknown_distance")
        missing = [name for name in names if name not in arrays]
        if missing:
            raise InputError(path, f"damaged map: it has node labels but no {', '.join(missing)}")
        labels, confidence, classes, unknown = (arrays[name] for name in names)
        nodes = self.config.nodes
        problem = None
        if classes.ndim != 1 or not len(classes) or classes.dtype.kind != "U":
            problem = "the class names are not a list of words"
        elif labels.shape != (nodes,) or labels.dtype.kind not in "iu" or not np.all((labels >= 0) & (labels < len(classes))):
            problem = f"the node labels are not {nodes} indices into the {len(classes)} classes"
        elif confidence.shape != (nodes,) or not np.all((confidence >= 0) & (confidence <= 1)):
            problem = f"the node confidences are not {nodes} shares in [0, 1]"
        elif unknown.shape != () or not float(unknown) > 0:
            problem = "the unknown distance is not one positive number"
        if problem:
            raise InputError(path, f"damaged map: {problem}")
        self.classes = tuple(str(name) for name in classes)
        self.node_labels = labels.astype(np.int64)
        self.node_confidence = confidence.astype(np.float32)
        self.unknown_distance = float(unknown)

    # ----------------------------------------------------------------- checks
    def _checked_data(self, data: np.ndarray) -> np.ndarray:
        data = np.asarray(data)
        if data.ndim != 2 or data.shape[1] != self.config.dim:
            raise ValueError(f"expected samples of shape (N, {self.config.dim}), got {data.shape}")
        if not np.issubdtype(data.dtype, np.number):
            raise ValueError(f"expected numeric samples, got dtype {data.dtype}")
        data = np.ascontiguousarray(data, dtype=np.float32)
        if not np.isfinite(data).all():
            raise ValueError("samples contain NaN or infinite values")
        return data

    def _checked_weights(self, weights: np.ndarray) -> np.ndarray:
        weights = np.asarray(weights, np.float32)
        if weights.shape != (self.config.nodes, self.config.dim):
            raise ValueError(f"weights must have shape ({self.config.nodes}, {self.config.dim}), got {weights.shape}")
        return weights.copy()

    def _trained_weights(self) -> np.ndarray:
        if self.weights is None:
            raise SlimvisionError("this map has no weights yet: call fit() or initialize() first")
        return self.weights


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of a saved map's ``.npz``; a damaged file is an :class:`InputError` naming it.

    A truncated or corrupted zip shows up as any of several exceptions (a bad zip directory, a
    CRC mismatch, an early end of file, a broken deflate stream, a member that is not an
    array), so all of them are caught here, where the file is read, and said in one line.
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        reason = str(exc) or type(exc).__name__
        raise InputError(path, f"cannot read the map (damaged or truncated file?): {reason}") from None


def _top_two_components(data: np.ndarray, mean: np.ndarray, rng: np.random.Generator,
                        iterations: int = 5, block: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(2, dim) leading principal axes and (2,) standard deviations along them.

    Block subspace iteration: a few products with the data instead of an SVD of it (an SVD of
    10,000 x 1024 samples takes seconds; this takes milliseconds). Each product reads all the
    data whatever the block's width, so a block of 8 vectors, which converges on the leading
    two in 5 rounds, costs a third of 2 vectors' 12. The data are never centred in a copy:
    (X - m) B = X B - m B, and (X - m)^T Y = X^T Y - m (1^T Y).
    """
    if data.shape[1] == 1:   # one input dimension: one axis to spread along, the other is flat
        return np.array([[1.0], [0.0]]), np.array([float(np.std(data - mean.astype(np.float32))), 0.0])
    mean32 = mean.astype(np.float32)
    width = min(block, data.shape[1])
    basis = rng.standard_normal((data.shape[1], width)).astype(np.float32)      # (dim, width)

    def centred_times(vectors: np.ndarray) -> np.ndarray:                        # (N, width)
        return data @ vectors - mean32 @ vectors

    for _ in range(iterations):
        projected = centred_times(basis)
        basis, _ = np.linalg.qr(data.T @ projected - np.outer(mean32, projected.sum(axis=0)))
    projected = centred_times(basis)                                              # (N, width)
    small_cov = projected.T.astype(np.float64) @ projected / max(len(data) - 1, 1)
    variances, rotation = np.linalg.eigh(small_cov)
    order = np.argsort(variances)[::-1][:2]
    axes = (basis.astype(np.float64) @ rotation[:, order]).T
    return axes, np.sqrt(np.maximum(variances[order], 0.0))
