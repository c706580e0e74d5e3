"""Learning curves from a run's history.csv: loss and accuracy per epoch, train and validation."""

from __future__ import annotations

from collections.abc import Sequence

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


def learning_curves(history: History) -> Figure:
    """Two panels (loss, accuracy); markers so that a one-epoch run still shows its point."""
    figure = new_figure(9, 3.4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, metric, label in (
        (loss_axes, "loss", "loss"),
        (accuracy_axes, "accuracy", "accuracy"),
    ):
        for split, style in (("train", "o-"), ("val", "s--")):
            epochs, values = _series(history, f"{split}_{metric}")
            if values:
                name = "train" if split == "train" else "validation"
                axes.plot(epochs, values, style, label=name)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.set_title(label)
        axes.grid(alpha=0.3)
        axes.legend()
    return figure
