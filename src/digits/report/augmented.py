"""A picture of training augmentation: each class's sample beside randomly distorted copies.

Drawn with the run's own augmentation when it trained with one, otherwise with the published
MNIST strengths (rotation 10°, zoom 0.1, shift 0.1) to show what augmentation would do. Nothing is
drawn when the installation has no `digits.augment`.
"""

from __future__ import annotations

import textwrap
from typing import Any

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure

from digits.report.figures import mosaic, new_figure
from digits.train import TrainConfig, to_tensor

EXAMPLE_STRENGTHS = {"rotation": 10.0, "zoom": 0.1, "shift": 0.1}
COPIES = 7
# Characters of the 9-point title that fit across the 6.2-inch figure.
TITLE_CHARACTERS = 90
# How many of the images nearest to its class mean are looked at for a digit's clean example.
CANDIDATES = 50


def _describe(strengths: dict[str, Any]) -> str:
    shown = {name: value for name, value in strengths.items() if value and name != "elastic_sigma"}
    # A no-break space inside each "name value", so that a wrapped title keeps them together.
    return ", ".join(f"{name}\u00a0{value:g}" for name, value in shown.items()) or "none"


def typical_examples(images: np.ndarray, labels: np.ndarray) -> list[np.ndarray | None]:
    """For each digit 0–9, a clear, typical image of it; None for a digit with no images.

    Typical: nearest (in pixels) to the mean image of its class. Clear: of the CANDIDATES
    nearest, the first whose ink is one connected stroke, since a stray speck barely moves the
    distance to the mean. Deterministic, so the report shows the same pictures every time; a
    random pick may be a scrawl, and then the distortions beside it show nothing.
    """
    chosen: list[np.ndarray | None] = []
    for digit in range(10):
        members = images[labels == digit]
        if not len(members):
            chosen.append(None)
            continue
        pixels = members.reshape(len(members), -1).astype(np.float32)
        distances = ((pixels - pixels.mean(axis=0)) ** 2).sum(axis=1)
        nearest = np.argsort(distances, kind="stable")[:CANDIDATES]
        clean = [index for index in nearest if _one_stroke(members[index])]
        chosen.append(members[clean[0] if clean else nearest[0]])
    return chosen


def _one_stroke(image: np.ndarray) -> bool:
    """Whether every inked pixel (any above zero, faint specks too) is one 8-connected piece."""
    count, _ = cv2.connectedComponents((image > 0).astype(np.uint8), connectivity=8)
    return bool(count == 2)  # the background and one piece of ink


def augmented_samples(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig | None, seed: int = 0
) -> Figure | None:
    """One row per digit: its typical example, then COPIES augmented versions (fixed seed)."""
    try:
        from digits.augment import AugmentConfig, augment_batch
    except ImportError:  # an installation without augmentation: the report leaves it out
        return None
    own = getattr(config, "augment", None)
    strengths = dict(own) if own else dict(EXAMPLE_STRENGTHS)
    settings = AugmentConfig.from_dict(strengths)
    originals = [image for image in typical_examples(images, labels) if image is not None]
    batch = to_tensor(np.stack(originals)).repeat_interleave(COPIES, dim=0)
    distorted = augment_batch(batch, settings, torch.Generator().manual_seed(seed))
    distorted_images = (distorted.squeeze(1).numpy() * 255).round().astype(np.uint8)
    tiles = []
    for row, original in enumerate(originals):
        tiles.append(original)
        tiles.extend(distorted_images[row * COPIES : (row + 1) * COPIES])
    canvas = mosaic(np.stack(tiles), columns=COPIES + 1)
    whose = "this run's augmentation" if own else "example augmentation (the run used none)"
    # A recipe with many distortions names them all: wrapped to the figure's width, not cut off.
    title = textwrap.fill(f"{whose}: {_describe(strengths)}", width=TITLE_CHARACTERS)
    lines = title.count("\n") + 1
    figure = new_figure(6.2, 0.62 * len(originals) + 0.8 + 0.16 * (lines - 1))
    axes = figure.subplots()
    axes.imshow(canvas, cmap="gray", interpolation="nearest")
    side = images.shape[2] + 2
    axes.axvline(side - 1.5, color="#dd8452", linewidth=2)
    axes.set_xticks([side / 2 - 1], ["original"])
    axes.set_yticks([])
    axes.set_title(title, fontsize=9)
    return figure
