"""A picture of training augmentation: each class's sample beside randomly distorted copies.

Drawn with the run's own augmentation when it trained with one, otherwise with the published
MNIST strengths (rotation 10°, zoom 0.1, shift 0.1) to show what augmentation would do. Nothing is
drawn when the installation has no `digits.augment`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from digits.report.figures import mosaic, new_figure
from digits.train import TrainConfig, to_tensor

EXAMPLE_STRENGTHS = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}
COPIES = 7


def _describe(strengths: dict[str, Any]) -> str:
    shown = {name: value for name, value in strengths.items() if value and name != "elastic_sigma"}
    return ", ".join(f"{name} {value:g}" for name, value in shown.items()) or "none"


def augmented_samples(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig | None, seed: int = 0
) -> Figure | None:
    """One row per digit: the original, then COPIES augmented versions (fixed seed)."""
    try:
        from digits.augment import AugmentConfig, augment_batch
    except ImportError:  # an installation without augmentation: the report leaves it out
        return None
    own = getattr(config, "augment", None)
    strengths = dict(own) if own else dict(EXAMPLE_STRENGTHS)
    settings = AugmentConfig.from_dict(strengths)
    rng = np.random.default_rng(seed)
    originals = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        if len(members):
            originals.append(images[rng.choice(members)])
    batch = to_tensor(np.stack(originals)).repeat_interleave(COPIES, dim=0)
    distorted = augment_batch(batch, settings, torch.Generator().manual_seed(seed))
    distorted_images = (distorted.squeeze(1).numpy() * 255).round().astype(np.uint8)
    tiles = []
    for row, original in enumerate(originals):
        tiles.append(original)
        tiles.extend(distorted_images[row * COPIES : (row + 1) * COPIES])
    canvas = mosaic(np.stack(tiles), columns=COPIES + 1)
    figure = new_figure(6.2, 0.62 * len(originals) + 0.8)
    axes = figure.subplots()
    axes.imshow(canvas, cmap="gray", interpolation="nearest")
    side = images.shape[2] + 2
    axes.axvline(side - 1.5, color="#dd8452", linewidth=2)
    axes.set_xticks([side / 2 - 1], ["original"])
    axes.set_yticks([])
    whose = "this run's augmentation" if own else "example augmentation (the run used none)"
    axes.set_title(f"{whose}: {_describe(strengths)}", fontsize=9)
    return figure
