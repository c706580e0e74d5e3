"""Test-time augmentation: average a model's probabilities over a few fixed, small distortions.

A digit shifted by a pixel or turned by a few degrees is the same digit, so averaging the softmax
over such views smooths out the model's sensitivity to exact placement. The views are fixed (no
randomness), so evaluation stays deterministic; the cost is one forward pass per view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional

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
) -> np.ndarray:
    """Softmax outputs averaged over `views` for uint8 N×28×28 images."""
    from digits.run import predict_logits, to_tensor

    if not views:
        raise ValueError("test-time augmentation needs at least one view")
    tensor = to_tensor(images)
    views_probabilities = [
        torch.softmax(predict_logits(model, transform(tensor, dx, dy, degrees)).double(), dim=1)
        for dx, dy, degrees in views
    ]
    return (torch.stack(views_probabilities).sum(0) / len(views)).numpy()
