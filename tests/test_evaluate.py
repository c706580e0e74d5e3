"""Metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from digits.evaluate import compute_metrics


def test_metrics_on_a_hand_checked_example() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.full((4, 10), 0.0)
    probabilities[0, 0] = 1.0  # right
    probabilities[1, 1] = 1.0  # 0 taken for 1
    probabilities[2, 1] = 0.5  # right, half sure
    probabilities[2, 2] = 0.5
    probabilities[3, 1] = 1.0  # right
    metrics = compute_metrics(probabilities, labels)
    assert metrics.accuracy == 0.75
    assert metrics.count == 4
    # loss: -log of the true class probability, averaged; sample 1 gives log(1e-12)
    expected_loss = (0 - math.log(1e-12) - math.log(0.5) + 0) / 4
    assert metrics.loss == pytest.approx(expected_loss)
    assert metrics.precision[0] == 1.0
    assert metrics.recall[0] == 0.5
    assert metrics.precision[1] == pytest.approx(2 / 3)
    assert metrics.recall[1] == 1.0
    assert metrics.f1[1] == pytest.approx(0.8)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8) / 10)
    assert metrics.confusion_matrix[0][:2] == [1, 1]
    assert metrics.confusion_matrix[1][:2] == [0, 2]
    assert metrics.most_confused() == [(0, 1, 1)]
    document = metrics.to_dict()
    assert {"accuracy", "loss", "macro_f1", "confusion_matrix"} <= set(document)


def test_shape_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match="N×10"):
        compute_metrics(np.zeros((3, 9)), np.zeros(3))
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics(np.zeros((3, 10)), np.zeros(2))
