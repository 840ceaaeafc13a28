"""Ink on a scanned page: Otsu's threshold, connected components, and one glyph cut out of a patch.

Both sides of the numeral system use these: the renderer cuts its training symbols out with
them, and the page reader finds words with them, so a symbol looks the same to the map
whichever way it arrived.

Example:
    >>> gray = np.full((20, 30), 230, np.uint8); gray[5:15, 4:8] = 20; gray[5:15, 20:24] = 30
    >>> labels, boxes, areas = connected_components(binarize(gray))
    >>> boxes, areas.tolist()
    ([(5, 4, 15, 8), (5, 20, 15, 24)], [40, 40])
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # (top, left, bottom, right), bottom and right exclusive


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's global threshold of a uint8 image: ink is ``gray <= threshold``.

    The threshold maximises the between-class variance of the grey histogram; where a range of
    thresholds ties (an empty gap between the two modes) the middle of the range is taken.
    An image of a single grey level has no ink: the threshold is that level minus one.
    """
    values = np.asarray(gray)
    if values.dtype != np.uint8:
        raise ValueError(f"otsu_threshold: expected a uint8 image, got {values.dtype}")
    counts = np.bincount(values.reshape(-1), minlength=256).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("otsu_threshold: empty image")
    weight = np.cumsum(counts)[:-1] / total  # share at or below each threshold 0..254
    mean = np.cumsum(counts * np.arange(256))[:-1] / total
    overall = mean[-1] + counts[255] * 255 / total
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (overall * weight - mean) ** 2 / (weight * (1.0 - weight))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    if between.max() <= 0:
        return int(values.reshape(-1)[0]) - 1
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return int((best[0] + best[-1]) // 2)


def binarize(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey page -> (H, W) bool ink mask (dark ink on light paper), by Otsu's threshold."""
    return np.asarray(gray) <= otsu_threshold(gray)


def connected_components(mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, list[Box], np.ndarray]:
    """Label the connected regions of a bool mask.

    Runs of ink along each row are found with numpy, runs that touch in consecutive rows are
    joined by a union-find, and labels are painted back by a cumulative sum: a 3000 x 2000 page
    of text takes about 0.1 s (0.2 s with 1 % speck noise).

    Args:
        mask: (H, W) bool.
        connectivity: 8 (diagonal neighbours touch: the default, so a thin diagonal stroke of
            an X or V stays one piece) or 4.

    Returns:
        labels: (H, W) int32, 0 for background, components numbered 1.. in raster order of
            their first pixel.
        boxes: ``boxes[k]`` is (top, left, bottom, right) of label ``k + 1``, bottom/right exclusive.
        areas: (count,) int64 pixel counts.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"connected_components: expected a 2-D mask, got shape {mask.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connected_components: connectivity must be 4 or 8, got {connectivity}")
    height, width = mask.shape
    rows, starts, ends = _runs(mask)
    if rows.size == 0:
        return np.zeros((height, width), np.int32), [], np.zeros(0, np.int64)
    roots = _join_runs(rows, starts, ends, width, reach=1 if connectivity == 8 else 0)
    is_root = roots == np.arange(rows.size)  # a component's root is its first run in raster order
    run_label = np.cumsum(is_root, dtype=np.int32)[roots]
    count = int(is_root.sum())
    marks = np.zeros((height, width + 1), np.int32)  # +label at a run's start, -label after its end
    marks[rows, starts] = run_label
    marks[rows, ends] -= run_label
    labels = np.cumsum(marks, axis=1, dtype=np.int32)[:, :width]
    areas = np.bincount(run_label, weights=ends - starts, minlength=count + 1)[1:].astype(np.int64)
    index = run_label - 1
    bottom = np.zeros(count, np.int64)
    np.maximum.at(bottom, index, rows + 1)
    left = np.full(count, width, np.int64)
    np.minimum.at(left, index, starts)
    right = np.zeros(count, np.int64)
    np.maximum.at(right, index, ends)
    boxes = list(zip(rows[is_root].tolist(), left.tolist(), bottom.tolist(), right.tolist()))
    return labels, boxes, areas


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of ink in raster order: rows, start columns, end columns (exclusive)."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1).reshape(-1)  # (H * (W + 1),): +1 where a run starts, -1 after it
    starts = np.flatnonzero(steps == 1)
    ends = np.flatnonzero(steps == -1)
    rows, start_cols = np.divmod(starts, width + 1)
    return rows, start_cols, ends - rows * (width + 1)


def _join_runs(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int, reach: int) -> np.ndarray:
    """Root run of every run: runs in consecutive rows overlapping (diagonally too if reach=1) join."""
    stride = width + 2  # key = row * stride + column orders runs in raster order, rows kept apart
    start_keys, end_keys = rows * stride + starts, rows * stride + ends
    below = np.flatnonzero(rows > 0)
    above_row = (rows[below] - 1) * stride
    # Runs a of the row above touch run b when a.end > b.start - reach and a.start < b.end + reach;
    # both bounds are sorted within a row, so the touching runs are one index range [first, last).
    first = np.searchsorted(end_keys, above_row + starts[below] - reach, "right")
    last = np.searchsorted(start_keys, above_row + ends[below] + reach, "left")
    counts = np.maximum(last - first, 0)
    lower = np.repeat(below, counts)
    upper = np.repeat(first, counts) + np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    parent = list(range(rows.size))
    for a, b in zip(upper.tolist(), lower.tolist()):
        while parent[a] != a:  # find with path halving
            parent[a] = a = parent[parent[a]]
        while parent[b] != b:
            parent[b] = b = parent[parent[b]]
        if a < b:  # the smaller index stays root, so roots are first runs in raster order
            parent[b] = a
        elif b < a:
            parent[a] = b
    roots = np.array(parent, np.int64)
    while True:  # every parent points to a smaller index: pointer jumping ends in log steps
        jumped = roots[roots]
        if np.array_equal(jumped, roots):
            return roots
        roots = jumped


#: A piece at least this share of the largest one's height, overlapping its rows as much and
#: no farther from it than ``_BESIDE_GAP`` of that height, is part of the glyph.
_BESIDE_HEIGHT, _BESIDE_GAP = 0.6, 0.25


def main_glyph(mask: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """The largest ink component of a patch plus the pieces whose boxes overlap its box, cropped.

    A piece broken off inside the glyph's box stays with it; specks away from it (and specks
    smaller than ``min_fraction`` of the glyph or 2 pixels) are left out, as a page reader
    leaves them.

    Raises:
        ValueError: the mask holds no ink.
    """
    labels, boxes, areas = connected_components(mask)
    if not boxes:
        raise ValueError("main_glyph: the patch holds no ink")
    largest = int(np.argmax(areas))
    box = np.array(boxes)  # (count, 4): top, left, bottom, right
    top, left, bottom, right = box[largest]
    floor = max(2.0, min_fraction * float(areas[largest]))
    keep = (areas >= floor) & (box[:, 0] < bottom) & (box[:, 2] > top) & (box[:, 1] < right) & (box[:, 3] > left)
    # A hairline that breaks in worn print (the diagonal of a math italic M) leaves a tall piece
    # beside the largest one, not inside its box; the reader joins such pieces across paper up
    # to a quarter of the height, so the cutter keeps them too (else only half an M is scored).
    height = bottom - top
    gap = np.maximum(box[:, 1] - right, left - box[:, 3])
    keep |= ((areas >= floor) & (box[:, 2] - box[:, 0] >= _BESIDE_HEIGHT * height)
             & (np.minimum(box[:, 2], bottom) - np.maximum(box[:, 0], top) >= _BESIDE_HEIGHT * height)
             & (gap <= _BESIDE_GAP * height))
    kept = box[keep]
    top, left = kept[:, :2].min(0)
    bottom, right = kept[:, 2:].max(0)
    kept_label = np.concatenate([[False], keep])  # label -> kept?; a table lookup beats np.isin
    return kept_label[labels[top:bottom, left:right]]
