"""Connected components of a binary mask (8-connectivity), in NumPy alone.

The mask is run-length encoded row by row; runs that touch in consecutive rows are joined with a
vectorised union-find. A photo's ink mask has a few thousand runs at most, so this stays fast
without SciPy or OpenCV, which the torch-free prediction install does not carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Component:
    """One connected piece of the mask: its label in the label image, size and bounding box."""

    label: int
    area: int
    top: int
    left: int
    bottom: int  # exclusive
    right: int  # exclusive

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, start, end) of every horizontal run of True, in row-major order; end is exclusive."""
    height, width = mask.shape
    padded = np.zeros((height, width + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    steps = np.diff(padded, axis=1).ravel()
    # One scan for both edges: +1 opens a run, -1 closes it; row-major order pairs them up.
    edges = np.flatnonzero(steps)
    opening = steps[edges] == 1
    starts, ends = edges[opening], edges[~opening]
    stride = width + 1
    return starts // stride, starts % stride, ends % stride


def _roots(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union-find over `count` nodes and the edges (a, b): the smallest node of each set."""
    parent = np.arange(count)
    while True:
        while True:  # pointer jumping: every node points straight at its root
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        root_a, root_b = parent[a], parent[b]
        if np.array_equal(root_a, root_b):
            return parent
        low = np.minimum(root_a, root_b)
        np.minimum.at(parent, root_a, low)
        np.minimum.at(parent, root_b, low)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, list[Component]]:
    """Label image (0 = background, 1..K) and the K components, largest first."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    height, width = mask.shape
    labels = np.zeros((height, width), dtype=np.int32)
    rows, starts, ends = _runs(mask)
    if len(rows) == 0:
        return labels, []

    # Runs i (row r) and j (row r-1) touch under 8-connectivity when start_j <= end_i and
    # start_i <= end_j. Keys row*stride+column are sorted, so each run's neighbours in the row
    # above form one contiguous block, found with two binary searches.
    stride = width + 2
    start_keys, end_keys = rows * stride + starts, rows * stride + ends
    above = (rows - 1) * stride
    first = np.searchsorted(end_keys, above + starts, side="left")
    last = np.searchsorted(start_keys, above + ends, side="right")
    counts = np.maximum(last - first, 0)
    edge_a = np.repeat(np.arange(len(rows)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    edge_b = np.repeat(first, counts) + offsets
    roots = _roots(len(rows), edge_a, edge_b)

    unique_roots, run_label = np.unique(roots, return_inverse=True)
    run_label = run_label + 1
    count = len(unique_roots)
    lengths = ends - starts
    area = np.bincount(run_label, weights=lengths, minlength=count + 1).astype(np.int64)
    top = np.full(count + 1, height)
    bottom = np.zeros(count + 1, dtype=np.int64)
    left = np.full(count + 1, width)
    right = np.zeros(count + 1, dtype=np.int64)
    np.minimum.at(top, run_label, rows)
    np.maximum.at(bottom, run_label, rows + 1)
    np.minimum.at(left, run_label, starts)
    np.maximum.at(right, run_label, ends)

    # Paint the label image run by run, touching only the ink pixels (a small share of the image).
    pixel_run = np.repeat(np.arange(len(rows)), lengths)
    within = np.arange(len(pixel_run)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    labels.ravel()[(rows * width + starts)[pixel_run] + within] = run_label[pixel_run]

    components = [
        Component(k, int(area[k]), int(top[k]), int(left[k]), int(bottom[k]), int(right[k]))
        for k in range(1, count + 1)
    ]
    components.sort(key=lambda c: c.area, reverse=True)
    return labels, components
