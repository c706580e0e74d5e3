"""Test-time augmentation: average a model's probabilities over a few fixed, small distortions.

A digit shifted by a pixel or turned by a few degrees is the same digit, so averaging the softmax
over such views smooths out the model's sensitivity to exact placement. The views are fixed (no
randomness), so evaluation stays deterministic; the cost is one forward pass per view.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional

if TYPE_CHECKING:
    from rich.console import Console

# Images per forward pass of a view: small enough that the progress bar moves every second or so.
CHUNK = 2000

# (dx pixels, dy pixels, degrees): the original, four one-pixel shifts, two small rotations.
VIEWS: tuple[tuple[float, float, float], ...] = (
    (0, 0, 0),
    (1, 0, 0),
    (-1, 0, 0),
    (0, 1, 0),
    (0, -1, 0),
    (0, 0, 7),
    (0, 0, -7),
)


def transform(images: torch.Tensor, dx: float, dy: float, degrees: float) -> torch.Tensor:
    """The whole N×1×H×W batch shifted by (dx, dy) pixels and rotated by `degrees`."""
    if dx == dy == degrees == 0:
        return images
    n, _, height, width = images.shape
    angle = math.radians(degrees)
    # Sampling matrix (output → input), so the content moves by +dx, +dy and turns by +degrees.
    theta = torch.tensor(
        [
            [math.cos(angle), -math.sin(angle), -2.0 * dx / width],
            [math.sin(angle), math.cos(angle), -2.0 * dy / height],
        ]
    )
    grid = functional.affine_grid(theta.expand(n, 2, 3), [n, 1, height, width], align_corners=False)
    return functional.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def tta_probabilities(
    model: nn.Module,
    images: np.ndarray,
    views: tuple[tuple[float, float, float], ...] = VIEWS,
    *,
    progress: Console | None = None,
) -> np.ndarray:
    """Softmax outputs averaged over `views` for uint8 N×28×28 images. With a `progress`
    console, a transient bar there counts the views and images done (it is gone at the end)."""
    from digits.run import predict_logits, to_tensor

    if not views:
        raise ValueError("test-time augmentation needs at least one view")
    tensor = to_tensor(images)
    views_probabilities = []
    with _progress_bar(progress, len(views) * len(images)) as advance:
        for dx, dy, degrees in views:
            viewed = transform(tensor, dx, dy, degrees)
            parts = []
            # In chunks, so that the bar moves; an empty batch still makes its one (empty) pass.
            for start in range(0, len(viewed) or 1, CHUNK):
                chunk = viewed[start : start + CHUNK]
                parts.append(torch.softmax(predict_logits(model, chunk).double(), dim=1))
                advance(len(chunk))
            views_probabilities.append(torch.cat(parts))
    return (torch.stack(views_probabilities).sum(0) / len(views)).numpy()


@contextmanager
def _progress_bar(console: Console | None, total: int) -> Iterator[Callable[[int], None]]:
    """`advance(count)` for a transient Rich bar on `console`, or one that does nothing."""
    if console is None:
        yield lambda count: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("test-time augmentation"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda count: bar.advance(task, count)
