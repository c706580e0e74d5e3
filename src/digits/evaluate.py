"""Metrics from predictions: loss, accuracy, per-class precision/recall/F1, confusion matrix.

`compute_metrics` works on probabilities and labels alone (NumPy and scikit-learn), so it scores a
torch model, an ONNX model or an ensemble the same way. A model with the eleventh class "not a
digit" is scored as it answers (`digits.answers`): a digit it refuses as not a digit is a wrong
answer, counted in `refused`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from digits.answers import NOT_DIGIT_THRESHOLD, split_not_digit

LABELS = list(range(10))


@dataclass
class Metrics:
    """Scores of one set of predictions; `to_dict()` is the `--json` document."""

    count: int
    accuracy: float
    loss: float
    macro_f1: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion_matrix: list[list[int]]
    refused: int = 0
    """Digits answered "not a digit" (left out of the confusion matrix, wrong in accuracy)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def most_confused(self, top: int = 5) -> list[tuple[int, int, int]]:
        """(true, predicted, count) for the largest off-diagonal cells."""
        matrix = np.array(self.confusion_matrix)
        np.fill_diagonal(matrix, 0)
        order = np.argsort(matrix, axis=None)[::-1][:top]
        pairs = [(int(i // 10), int(i % 10), int(matrix.flat[i])) for i in order]
        return [pair for pair in pairs if pair[2] > 0]


def compute_metrics(probabilities: np.ndarray, labels: np.ndarray) -> Metrics:
    """Score N×10 class probabilities (N×11 with "not a digit") against N digit labels."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probabilities.ndim != 2 or probabilities.shape[1] not in (10, 11):
        raise ValueError(f"probabilities must be N×10 or N×11, got {probabilities.shape}")
    if len(probabilities) != len(labels):
        raise ValueError(f"{len(probabilities)} predictions for {len(labels)} labels")
    digits, not_digit = split_not_digit(probabilities)
    predicted = digits.argmax(1)
    refused = np.zeros(len(labels), dtype=bool)
    if not_digit is not None:
        refused = not_digit >= NOT_DIGIT_THRESHOLD
        predicted = np.where(refused, -1, predicted)  # -1: no digit in LABELS, so never right
    # The loss is that of the full distribution: mass on "not a digit" is mass off the truth.
    true_class_probability = probabilities[np.arange(len(labels)), labels]
    loss = float(-np.log(np.clip(true_class_probability, 1e-12, 1.0)).mean())
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=LABELS, zero_division=0
    )
    return Metrics(
        count=len(labels),
        accuracy=float((predicted == labels).mean()),
        loss=loss,
        macro_f1=float(np.mean(f1)),
        precision=[float(v) for v in precision],
        recall=[float(v) for v in recall],
        f1=[float(v) for v in f1],
        support=[int(v) for v in support],
        confusion_matrix=confusion_matrix(labels, predicted, labels=LABELS).tolist(),
        refused=int(refused.sum()),
    )


def model_probabilities(model: Any, images: np.ndarray) -> np.ndarray:
    """Softmax outputs of a torch model for uint8 N×28×28 images."""
    import torch

    from digits.run import predict_logits, to_tensor

    logits = predict_logits(model, to_tensor(images))
    return torch.softmax(logits, dim=1).numpy()


def evaluate_model(model: Any, images: np.ndarray, labels: np.ndarray) -> Metrics:
    return compute_metrics(model_probabilities(model, images), labels)
