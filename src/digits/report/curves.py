"""Learning curves from a run's history.csv: loss and accuracy per epoch, train and validation."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from digits.report.figures import new_figure

History = Sequence[dict[str, float | None]]


def _series(history: History, key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the rows where `key` has a value (validation may be absent)."""
    epochs, values = [], []
    for row in history:
        epoch, value = row.get("epoch"), row.get(key)
        if epoch is not None and value is not None:
            epochs.append(epoch)
            values.append(value)
    return epochs, values


def value_limits(
    values: Sequence[float], floor: float | None = None, ceiling: float | None = None
) -> tuple[float, float]:
    """Axis limits around `values` with a margin, kept within [floor, ceiling] (an accuracy is
    never above 1, a loss never below 0). The margin is a share of the values' spread, or of
    their size when they are all one value (a one-epoch run), so a single point sits mid-axis."""
    low, high = min(values), max(values)
    margin = 0.1 * (high - low) or 0.05 * max(abs(high), 1e-3)
    low, high = low - margin, high + margin
    if floor is not None:
        low = max(low, floor)
    if ceiling is not None:
        high = min(high, ceiling)
        low = min(low, ceiling - 1e-3)  # a value of exactly 1.0 still gets a visible axis
    return low, high


def _epoch_axis(axes: Axes, epochs: Sequence[float]) -> None:
    """Whole epochs only, half an epoch of room either side: one epoch is one tick, '1'."""
    first, last = min(epochs), max(epochs)
    axes.set_xlim(first - 0.5, last + 0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlabel("epoch")


def learning_curves(history: History) -> Figure:
    """Two panels (loss, accuracy); markers so that a one-epoch run still shows its point."""
    figure = new_figure(9, 3.4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, metric, bounds in (
        (loss_axes, "loss", (0.0, None)),
        (accuracy_axes, "accuracy", (0.0, 1.0)),
    ):
        epochs: list[float] = []
        values: list[float] = []
        for split, style in (("train", "o-"), ("val", "s--")):
            split_epochs, split_values = _series(history, f"{split}_{metric}")
            if split_values:
                name = "train" if split == "train" else "validation"
                # Limits always hold every value, so nothing is cut off unclipped; a marker
                # at accuracy 1.0 is then drawn whole on the axis' top edge, not halved.
                axes.plot(split_epochs, split_values, style, label=name, clip_on=False)
                epochs += split_epochs
                values += split_values
        if values:
            axes.set_ylim(*value_limits(values, *bounds))
            _epoch_axis(axes, epochs)
            axes.legend()
        else:
            axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(metric)
        axes.grid(alpha=0.3)
    return figure
