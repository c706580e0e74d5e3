"""Matplotlib set up for files only: the Agg backend, figures built without pyplot, PNG bytes out.

Reports are written on servers and in CI, where no display exists and no window may ever open, so
the backend is forced to Agg here and figures are `Figure` objects that pyplot never tracks (no
global state, nothing to close, no leak when many reports are built in one process).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before anything below can create a figure

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

DPI = 100
RIGHT = "#2e7d32"
WRONG = "#c62828"


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def mosaic(images: np.ndarray, columns: int, pad: int = 2) -> np.ndarray:
    """Tile N×H×W images into one array, row by row, with `pad` pixels of background between.

    One `imshow` of a mosaic draws a 10×10 grid far faster than a hundred separate axes.
    """
    count, height, width = images.shape
    rows = max(1, -(-count // columns))
    canvas = np.zeros(
        (rows * (height + pad) - pad, columns * (width + pad) - pad), dtype=images.dtype
    )
    for index, image in enumerate(images):
        top, left = (index // columns) * (height + pad), (index % columns) * (width + pad)
        canvas[top : top + height, left : left + width] = image
    return canvas


def show_digit(axes: Axes, image: np.ndarray, title: str = "", color: str = "black") -> None:
    axes.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=8, color=color)


def digit_gallery(
    images: np.ndarray, titles: list[str], colors: list[str], columns: int, title: str
) -> Figure:
    """A grid of digits, each with its own caption (used for predictions and mistakes)."""
    rows = max(1, -(-len(images) // columns))
    figure = new_figure(1.3 * columns, 1.45 * rows + 0.4)
    figure.suptitle(title)
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, axes in enumerate(grid.flat):
        if index < len(images):
            show_digit(axes, images[index], titles[index], colors[index])
        else:
            axes.set_axis_off()
    return figure
