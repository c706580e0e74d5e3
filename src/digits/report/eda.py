"""Pictures of the training data: samples of every class, class balance, mean image per class."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from digits.report.figures import mosaic, new_figure


def sample_grid(
    images: np.ndarray, labels: np.ndarray, per_class: int = 10, seed: int = 0
) -> Figure:
    """One row per digit, `per_class` random samples of it (fixed seed: the same picture always)."""
    rng = np.random.default_rng(seed)
    rows = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False)
        row = np.zeros((per_class, *images.shape[1:]), dtype=images.dtype)
        row[: len(chosen)] = images[np.sort(chosen)]
        rows.append(row)
    canvas = mosaic(np.concatenate(rows), columns=per_class)
    figure = new_figure(6.5, 6.8)
    axes = figure.subplots()
    axes.imshow(canvas, cmap="gray", interpolation="nearest")
    side = images.shape[1] + 2
    axes.set_yticks(
        [side * digit + side / 2 - 1 for digit in range(10)], [str(d) for d in range(10)]
    )
    axes.set_xticks([])
    axes.set_ylabel("class")
    axes.set_title(f"{per_class} random training samples per class")
    return figure


def class_balance(train_labels: np.ndarray, test_labels: np.ndarray | None) -> Figure:
    """Images per class, training next to test, so an imbalance shows at a glance."""
    digits = np.arange(10)
    train_counts = np.bincount(train_labels, minlength=10)[:10]
    figure = new_figure(7, 3.4)
    axes = figure.subplots()
    width = 0.4 if test_labels is not None else 0.8
    offset = width / 2 if test_labels is not None else 0.0
    axes.bar(digits - offset, train_counts, width, label=f"train ({len(train_labels):,})")
    if test_labels is not None:
        test_counts = np.bincount(test_labels, minlength=10)[:10]
        axes.bar(digits + offset, test_counts, width, label=f"test ({len(test_labels):,})")
    axes.set_xticks(digits)
    axes.set_xlabel("digit")
    axes.set_ylabel("images")
    axes.set_title("class balance")
    # Outside the axes, right of them: inside, it would cover the tallest bars.
    figure.legend(loc="outside right upper")
    return figure


def mean_images(images: np.ndarray, labels: np.ndarray) -> Figure:
    """The average training image of each digit: what a linear model would learn to look for."""
    means = np.stack(
        [
            images[labels == digit].mean(axis=0)
            if np.any(labels == digit)
            else np.zeros(images.shape[1:])
            for digit in range(10)
        ]
    )
    figure = new_figure(10, 1.5)
    axes = figure.subplots()
    axes.imshow(mosaic(means, columns=10, pad=4), cmap="gray", interpolation="nearest")
    side = images.shape[2] + 4
    axes.set_xticks(
        [side * digit + side / 2 - 2 for digit in range(10)], [str(d) for d in range(10)]
    )
    axes.set_yticks([])
    axes.set_title("mean training image per class")
    return figure
