"""Kaggle "Digit Recognizer": predict `test.csv` into a submission file (ImageId,Label).

Kaggle's rows are already MNIST images (28×28, ink bright on dark, 0–255), so they go to the model
as they are, with no preprocessing. Reading checks every row (`digits.data.read_kaggle_csv` stops
at the first bad one and names it). Torch-free: it runs on the ONNX predictor.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.atomic import atomic_write_text
from digits.data.readers import read_kaggle_csv

if TYPE_CHECKING:
    from digits.predictor import Predictor

HEADER = "ImageId,Label"


@dataclass(frozen=True)
class Submission:
    path: Path
    rows: int
    label_counts: list[int]
    accuracy: float | None  # when the CSV carried labels (a train.csv), how many were right

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "label_counts": self.label_counts,
            "accuracy": self.accuracy,
        }


def submission_text(labels: np.ndarray) -> str:
    """ImageId,Label with ImageId counting from 1, as Kaggle expects."""
    buffer = io.StringIO()
    buffer.write(HEADER + "\n")
    for image_id, label in enumerate(np.asarray(labels).tolist(), start=1):
        buffer.write(f"{image_id},{label}\n")
    return buffer.getvalue()


def predict_submission(predictor: Predictor, csv_path: str | Path, out: str | Path) -> Submission:
    """Predict every row of a Kaggle CSV and write the submission to `out` (atomically)."""
    table = read_kaggle_csv(csv_path)
    predicted = predictor.predict_arrays(table.images).argmax(axis=1)
    out = Path(out)
    atomic_write_text(out, submission_text(predicted))
    accuracy = None
    if table.labels is not None:
        accuracy = float((predicted == table.labels).mean())
    counts = np.bincount(predicted, minlength=10).tolist()
    return Submission(out, len(predicted), [int(c) for c in counts], accuracy)
