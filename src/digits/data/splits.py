"""A deterministic, stratified validation split carved from the training data."""

from __future__ import annotations

import numpy as np


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train_indices, validation_indices) with `fraction` of each class held out.

    The same labels, fraction and seed always give the same split, on any machine.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held_out: list[np.ndarray] = []
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        count = round(len(members) * fraction)
        held_out.append(rng.permutation(members)[:count])
    validation = np.sort(np.concatenate(held_out)) if held_out else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), validation, assume_unique=True)
    return train, validation
