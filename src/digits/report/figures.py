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


def digit_gallery(
    images: np.ndarray, titles: list[str], colors: list[str], columns: int, title: str
) -> Figure:
    """A grid of digits, each with its own caption (used for predictions and mistakes).

    Drawn as one image with text on it rather than one axes per digit: a few dozen axes cost
    seconds to lay out, one costs milliseconds.
    """
    count, side = len(images), images.shape[1]
    gap, band = 6, 16  # pixels between tiles, and above each tile for its (two-line) caption
    rows = max(1, -(-count // columns))
    canvas = np.full((rows * (side + band), columns * (side + gap) - gap), np.nan)
    positions = []
    for index, image in enumerate(images):
        top = (index // columns) * (side + band) + band
        left = (index % columns) * (side + gap)
        canvas[top : top + side, left : left + side] = image
        positions.append((left + side / 2, top - 1))
    figure = new_figure(1.05 * columns, 1.3 * rows + 0.4)
    axes = figure.subplots()
    colormap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    axes.imshow(canvas, cmap=colormap, vmin=0, vmax=255, interpolation="nearest")
    for (x, y), caption, color in zip(positions, titles, colors, strict=True):
        axes.text(x, y, caption, ha="center", va="bottom", fontsize=7, color=color)
    axes.set_axis_off()
    axes.set_title(title)
    return figure
