"""How far an attribution map can be trusted, measured on the model itself.

Two measures, for any method:

- ink against background: the mean magnitude of the attribution on pixels with ink and on those
  without. Blacking out black pixels changes nothing, so credit off the ink is credit for nothing.
- the deletion curve (Petsiuk et al., 2018, "RISE"): black out the most credited pixels first,
  k at a time, and follow the probability of the digit that was predicted. The faster it falls,
  the better the map found what the answer rests on. The same curve for pixels taken at random,
  from the whole image and from the ink alone, is the bar to clear.

Pixels credited alike (every pixel of a superpixel, or of a flat occlusion region) are taken in
random order, so that a tie is not broken in favour of, or against, any method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Probabilities = Callable[[np.ndarray], np.ndarray]
STEPS = tuple(range(0, 101, 10))  # pixels deleted: 0, 10, ..., 100


def ink_means(values: np.ndarray, pixels: np.ndarray) -> tuple[float, float]:
    """Mean |attribution| on the ink (pixels above 0) and off it."""
    ink = pixels > 0
    magnitude = np.abs(values)
    off = float(magnitude[~ink].mean()) if (~ink).any() else 0.0
    return float(magnitude[ink].mean()), off


def by_attribution(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat pixel indices, the most credited (largest signed value) first, ties in random order."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    order: np.ndarray = np.lexsort((rng.random(flat.size), -flat))
    return order


def at_random(pixels: np.ndarray, rng: np.random.Generator, ink_only: bool = False) -> np.ndarray:
    """Flat pixel indices in random order: all of them, or only those with ink (then the rest,
    which deleting cannot change)."""
    flat = pixels.ravel()
    if not ink_only:
        return rng.permutation(flat.size)
    return np.concatenate(
        [rng.permutation(np.flatnonzero(flat > 0)), rng.permutation(np.flatnonzero(flat == 0))]
    )


def deletion_curve(
    probabilities: Probabilities,
    pixels: np.ndarray,
    order: np.ndarray,
    target: int,
    steps: Sequence[int] = STEPS,
) -> np.ndarray:
    """The probability of `target` with the first k pixels of `order` black, for each k in
    `steps`: one batch of len(steps) images."""
    copies = np.repeat(pixels.reshape(1, -1), len(steps), axis=0)
    for copy, count in zip(copies, steps, strict=True):
        copy[order[:count]] = 0
    curve: np.ndarray = probabilities(copies.reshape(-1, *pixels.shape))[:, target]
    return curve.astype(np.float64)
