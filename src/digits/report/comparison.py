"""The picture of `digits compare`: accuracy per item beside its seed's claim, and accuracy
against training time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from digits.report.figures import new_figure

if TYPE_CHECKING:
    from digits.compare import ComparisonRow

# Below this ratio of slowest to fastest, a log scale shows no decade and its minor-tick labels
# (2×10⁻¹, 3×10⁻¹, ...) crowd into one another: seconds are then drawn on a linear axis.
LOG_SCALE_FROM = 10.0


def comparison_figure(rows: Sequence[ComparisonRow]) -> Figure:
    """Points with error bars rather than bars: accuracies sit within a few percent of each other,
    and bars cut off at an axis limit would make small gaps look large."""
    figure = new_figure(11, 0.4 * len(rows) + 2.4)
    dots, scatter = figure.subplots(1, 2, width_ratios=(3, 2))
    positions = np.arange(len(rows))[::-1]
    ours = np.array([100 * r.accuracy_mean for r in rows])
    spread = np.array([100 * r.accuracy_std for r in rows])
    dots.errorbar(ours, positions, xerr=spread, fmt="o", color="#4c72b0", capsize=3,
                  label="ours (mean ± std over seeds)")  # fmt: skip
    claims = [(p, 100 * r.claimed_accuracy) for p, r in zip(positions, rows, strict=True)
              if r.claimed_accuracy is not None]  # fmt: skip
    if claims:
        dots.plot([c for _, c in claims], [p for p, _ in claims], "D", color="#dd8452",
                  label="seed claims")  # fmt: skip
    dots.set_yticks(positions, [r.model for r in rows])
    dots.set_ylim(-0.7, len(rows) - 0.3)
    dots.set_xlabel("test accuracy (%)")
    dots.legend(loc="best", fontsize=8)
    dots.grid(axis="x", alpha=0.3)
    seconds = [r.train_seconds for r in rows]
    scatter.plot(seconds, ours, "o", color="#4c72b0")
    for row, value in zip(rows, ours, strict=True):
        scatter.annotate(row.model, (row.train_seconds, value), fontsize=8, xytext=(4, 3),
                         textcoords="offset points")  # fmt: skip
    scatter.margins(x=0.25, y=0.15)  # room for the labels
    _time_axis(scatter, seconds)
    scatter.set_ylabel("test accuracy (%)")
    scatter.grid(alpha=0.3)
    return figure


def _time_axis(axes: Axes, seconds: Sequence[float]) -> None:
    """Training seconds on a log scale when they span a decade or more, labelled as plain
    numbers (1, 2, 5, 10, ...) on major ticks only; else on a linear scale with a few ticks."""
    positive = [s for s in seconds if s > 0]
    if positive and max(positive) / min(positive) >= LOG_SCALE_FROM:
        axes.set_xscale("log")
        decades = math.log10(max(positive) / min(positive))
        # 1-2-5 ticks while they fit; over more decades, the powers of ten alone.
        subs = (1.0, 2.0, 5.0) if decades <= 2.5 else (1.0,)
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        axes.xaxis.set_minor_locator(NullLocator())
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.set_xlabel("train time (s, log scale)")
    else:
        axes.xaxis.set_major_locator(MaxNLocator(5))
        axes.set_xlabel("train time (s)")
