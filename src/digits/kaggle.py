"""Kaggle "Digit Recognizer": predict `test.csv` into a submission file (ImageId,Label).

Kaggle's rows are already MNIST images (28×28, ink bright on dark, 0–255), so they go to the model
as they are, with no preprocessing. Reading checks every row (`digits.data.read_kaggle_csv` stops
at the first bad one and names it). Torch-free: it runs on the ONNX predictor.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.atomic import atomic_write_text
from digits.data.readers import read_kaggle_csv

if TYPE_CHECKING:
    from digits.predictor import Predictor

HEADER = "ImageId,Label"


class SubmissionError(ValueError):
    """An `--out` that cannot take the submission; the message names it and says why."""


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


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_destination(out: Path, inputs: list[Path]) -> None:
    """Refuse, before any work, an `out` that would overwrite an input or cannot be written."""
    for given in inputs:
        if _same_file(out, given) or out.resolve() == given.resolve():
            raise SubmissionError(
                f"{out}: is the input {given}; writing the submission there would destroy it "
                "(choose another --out)"
            )
    if out.is_dir():
        raise SubmissionError(
            f"{out}: is a folder; --out takes a file, e.g. {out / 'submission.csv'}"
        )
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # the folders atomic writing creates
        folder = folder.parent
    if not folder.is_dir():
        raise SubmissionError(f"{out}: cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SubmissionError(f"{out}: cannot be written: {folder} is read-only")


def write_submission(out: Path, labels: np.ndarray) -> None:
    """Write atomically; a failure that the checks could not foresee is still one clear line."""
    try:
        atomic_write_text(out, submission_text(labels))
    except OSError as exc:
        raise SubmissionError(f"{out}: cannot be written ({exc.strerror or exc})") from None


def predict_submission(predictor: Predictor, csv_path: str | Path, out: str | Path) -> Submission:
    """Predict every row of a Kaggle CSV and write the submission to `out` (atomically).

    `out` is checked first: it may not be the CSV itself (or the model), and its folder must be
    writable, so that a mistake costs no prediction time and never destroys the input.
    """
    csv_path, out = Path(csv_path), Path(out)
    check_destination(out, [csv_path, Path(predictor.info.path)])
    table = read_kaggle_csv(csv_path)
    predicted = predictor.predict_arrays(table.images).argmax(axis=1)
    write_submission(out, predicted)
    accuracy = None
    if table.labels is not None:
        accuracy = float((predicted == table.labels).mean())
    counts = np.bincount(predicted, minlength=10).tolist()
    return Submission(out, len(predicted), [int(c) for c in counts], accuracy)
