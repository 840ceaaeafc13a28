"""Lattice geometry, neighbourhood functions and decay schedules of a self-organising map.

Nodes are numbered row-major: node ``k`` sits at row ``k // cols``, column ``k % cols``. On a
hexagonal lattice odd rows are shifted right by half a node and rows are sqrt(3)/2 apart, so
each inner node has six neighbours, every one exactly 1 away.

Example:
    >>> coords = node_coordinates(2, 2, "hex")
    >>> np.sqrt(squared_lattice_distances(coords[:1], coords)).round(3)
    array([[0.   , 1.   , 1.   , 1.732]])
"""

from __future__ import annotations

import numpy as np

#: Largest lattice distance at which two nodes count as neighbours (topographic error, U-matrix):
#: rect takes the 8 around a node (diagonals at sqrt(2)), hex its 6 (all at 1).
NEIGHBOUR_DISTANCE = {"rect": 1.5, "hex": 1.01}


def node_coordinates(rows: int, cols: int, lattice: str) -> np.ndarray:
    """(rows * cols, 2) float64 (y, x) positions of the nodes on the lattice plane."""
    row, col = np.divmod(np.arange(rows * cols), cols)
    if lattice == "rect":
        return np.stack([row, col], axis=1).astype(np.float64)
    if lattice == "hex":
        return np.stack([row * np.sqrt(3) / 2, col + 0.5 * (row % 2)], axis=1)
    raise ValueError(f"unknown lattice {lattice!r}: expected 'rect' or 'hex'")


def squared_lattice_distances(points: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """(P, 2) positions x (N, 2) node positions -> (P, N) squared lattice distances."""
    delta = points[:, None, :] - coords[None, :, :]
    return np.einsum("pnk,pnk->pn", delta, delta)


def neighbours(coords: np.ndarray, lattice: str) -> list[np.ndarray]:
    """Each node's lattice neighbours, as arrays of node indices."""
    near = squared_lattice_distances(coords, coords) <= NEIGHBOUR_DISTANCE[lattice] ** 2
    np.fill_diagonal(near, False)
    return [np.flatnonzero(row) for row in near]


def neighbourhood(squared_distance: np.ndarray, radius: float, kind: str) -> np.ndarray:
    """Pull strength of nodes at the given squared lattice distances from the winner (1 at the winner)."""
    scaled = squared_distance / (radius * radius)
    if kind == "gaussian":
        return np.exp(-0.5 * scaled)
    if kind == "bubble":
        return (scaled <= 1.0).astype(squared_distance.dtype)
    if kind == "mexican_hat":
        return (1.0 - scaled) * np.exp(-0.5 * scaled)
    raise ValueError(f"unknown neighbourhood {kind!r}: expected 'gaussian', 'bubble' or 'mexican_hat'")


def decay(start: float, end: float, progress: float, kind: str) -> float:
    """Value of a schedule going from ``start`` (progress 0) to ``end`` (progress 1).

    All three kinds hit both ends exactly; they differ in between: "linear" is a straight
    line, "exponential" a geometric one, "inverse" ``start / (1 + k progress)`` drops fastest
    early, the shape of Kohonen's ``a / (t + b)`` learning rate.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"decay: progress must be in [0, 1], got {progress}")
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "exponential":
        return start * (end / start) ** progress
    if kind == "inverse":
        return start / (1.0 + (start / end - 1.0) * progress)
    raise ValueError(f"unknown decay {kind!r}: expected 'linear', 'exponential' or 'inverse'")
