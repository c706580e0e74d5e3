"""The validation split: deterministic, stratified, disjoint, complete."""

from __future__ import annotations

import numpy as np
import pytest

from digits.data import stratified_split


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), [100, 200, 50, 80, 120, 90, 60, 70, 110, 120])
    train, val = stratified_split(labels, 0.1, seed=7)
    again_train, again_val = stratified_split(labels, 0.1, seed=7)
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert np.intersect1d(train, val).size == 0
    assert len(train) + len(val) == len(labels)
    np.testing.assert_array_equal(
        np.bincount(labels[val], minlength=10), np.round(np.bincount(labels) * 0.1)
    )
    _, other = stratified_split(labels, 0.1, seed=8)
    assert not np.array_equal(val, other)


def test_zero_fraction_keeps_everything_for_training() -> None:
    train, val = stratified_split(np.arange(10) % 3, 0.0, seed=0)
    assert len(val) == 0
    assert len(train) == 10


def test_bad_fraction() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        stratified_split(np.zeros(5), 1.0, seed=0)
