"""Metrics from predictions: loss, accuracy, per-class precision/recall/F1, confusion matrix.

`compute_metrics` works on probabilities and labels alone (NumPy and scikit-learn), so it scores a
torch model, an ONNX model or an ensemble the same way. A model with the eleventh class "not a
digit" is scored as it answers (`digits.answers`): a digit it refuses as not a digit is a wrong
answer, counted in `refused`.

`run_data` and `scored_images` decide what a run is scored on: by default the data it trained on
(its config's, or its members' for an ensemble), and there its test split, else the validation
split it held out; never the images it trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digits.answers import NOT_DIGIT_THRESHOLD, split_not_digit

if TYPE_CHECKING:
    from digits.config import TrainConfig
    from digits.data import DigitData

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


def per_class_scores(
    labels: np.ndarray, predicted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confusion matrix (rows true, columns predicted), precision, recall, F1 and support per
    digit, as scikit-learn's `confusion_matrix` and `precision_recall_fscore_support` give them
    with `labels=0..9, zero_division=0` (tests/test_evaluate.py checks they agree): a prediction
    of -1 (refused) counts in no column but against its row's recall. Counted here because
    importing scikit-learn's metrics takes 1.5 s, a sixth of a whole `sprint` run."""
    classes = len(LABELS)
    kept = (predicted >= 0) & (predicted < classes)
    confusion = np.bincount(
        labels[kept] * classes + predicted[kept], minlength=classes * classes
    ).reshape(classes, classes)
    support = np.bincount(labels, minlength=classes)[:classes]
    hits = np.diag(confusion)
    claimed = confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(claimed > 0, hits / claimed, 0.0)
        recall = np.where(support > 0, hits / support, 0.0)
        # 2·tp / (2·tp + fp + fn): the harmonic mean of the two, 0 where both are 0.
        both = claimed + support
        f1 = np.where(both > 0, 2 * hits / both, 0.0)
    return confusion, precision, recall, f1, support


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
    confusion, precision, recall, f1, support = per_class_scores(labels, predicted)
    return Metrics(
        count=len(labels),
        accuracy=float((predicted == labels).mean()),
        loss=loss,
        macro_f1=float(np.mean(f1)),
        precision=[float(v) for v in precision],
        recall=[float(v) for v in recall],
        f1=[float(v) for v in f1],
        support=[int(v) for v in support],
        confusion_matrix=confusion.tolist(),
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


@dataclass(frozen=True)
class HeldOut:
    """The labelled images a run is scored on, and which part of which data set they are."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    """"test", "validation" (the run's own held-out split) or "all" (data the run never saw,
    with no test split)."""
    source: str
    """What kind of data set: mnist, idx, npz or kaggle-csv."""
    path: str
    seen_in_training: int | None = None
    """How many of the images are ones the run trained on: counted for "all" (another file may
    hold copies of them), None where not counted or the run's data cannot be read."""

    def to_dict(self) -> dict[str, Any]:
        """The `data` entry of `digits evaluate --json`."""
        return {
            "source": self.source,
            "path": self.path,
            "split": self.name,
            "count": self.count,
            "seen_in_training": self.seen_in_training,
        }

    @property
    def count(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        """'the test split of /data/idx (idx)', for a line that says what was scored."""
        if self.name == "all":
            return f"all images of {self.path} ({self.source}, which has no test split)"
        return f"the {self.name} split of {self.path} ({self.source})"


def trained_on(run_dir: str | Path) -> str | None:
    """The data set a run trained on, as its config names it (None: MNIST). An ensemble records
    its members' in ensemble.json; one built before that takes its members' configs (those whose
    run directories are still there)."""
    from digits.run_files import CONFIG_FILE, ENSEMBLE_FILE

    run_dir = Path(run_dir)
    configs = [run_dir / CONFIG_FILE]
    if (run_dir / ENSEMBLE_FILE).exists():
        ensemble = _read_object(run_dir / ENSEMBLE_FILE)
        if "data" in ensemble:  # recorded when it was built (null: MNIST)
            data = ensemble["data"]
            return None if data is None else os.path.abspath(os.path.expanduser(str(data)))
        members = ensemble.get("members") or []
        configs = [Path(str(m.get("run"))) / CONFIG_FILE for m in members if isinstance(m, dict)]
    named = {_read_object(path).get("data") for path in configs if path.exists()}
    if len(named) > 1:
        raise ValueError(f"{run_dir}: its members were trained on different data sets")
    data = named.pop() if named else None
    # A config written before paths were stored absolute names its data relative to where it ran.
    return None if data is None else os.path.abspath(os.path.expanduser(str(data)))


def _read_object(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    return document if isinstance(document, dict) else {}


def held_out(
    data: DigitData, config: TrainConfig | None, *, own: bool, run_dir: str | Path
) -> HeldOut:
    """What of `data` scores the run: its test split when it has one; else, when it is the run's
    own data (`own`), the validation split the run held out (the same first `limit` images and
    seed); else, data the run never trained on, all of it. The run's own training images never
    score it: with no test split and no validation split, that is a RunError."""
    path = os.path.abspath(data.path)
    if data.x_test is not None and data.y_test is not None:
        return HeldOut(data.x_test, data.y_test, "test", data.source, path)
    if not own:
        return HeldOut(data.x_train, data.y_train, "all", data.source, path)
    if config is not None and config.val_split > 0:
        from digits.data import stratified_split

        images, labels = data.x_train[: config.limit], data.y_train[: config.limit]
        _, validation = stratified_split(labels, config.val_split, config.seed)
        return HeldOut(images[validation], labels[validation], "validation", data.source, path)
    from digits.run import RunError

    raise RunError(
        f"{run_dir}: its data ({path}) has no test split and the run held out no validation "
        "data, so there is nothing unseen to score it on; give --data with a test split"
    )


def run_data(run_dir: str | Path, data_path: str | Path | None = None) -> DigitData:
    """`data_path`'s data set, by default the one the run trained on (MNIST when it names none)."""
    from digits.data import load_dataset, load_mnist

    if data_path is not None:
        return load_dataset(data_path)  # an error names the path as it was typed
    own_path = trained_on(run_dir)
    return load_mnist() if own_path is None else load_dataset(own_path)


def scored_images(run_dir: str | Path, data: DigitData) -> HeldOut:
    """What of `data` scores the run (see `held_out`); it is the run's own data when it is the
    file or folder the run trained on."""
    from digits.run import read_config
    from digits.run_files import CONFIG_FILE

    own_path = trained_on(run_dir)
    own = own_path is not None and os.path.abspath(data.path) == own_path
    config = read_config(run_dir) if (Path(run_dir) / CONFIG_FILE).exists() else None
    scored = held_out(data, config, own=own, run_dir=run_dir)
    if scored.name != "all":
        return scored
    return replace(scored, seen_in_training=_seen_in_training(scored.images, config, own_path))


def _seen_in_training(
    images: np.ndarray, config: TrainConfig | None, own_path: str | None
) -> int | None:
    """How many of `images` are, pixel for pixel, among the images the run trained on (for an
    ensemble, whose members held out different images, among all its data's training images)."""
    from digits.data import DataFormatError, FetchError, load_dataset, load_mnist

    try:
        own = load_mnist() if own_path is None else load_dataset(own_path)
    except (DataFormatError, FetchError, OSError):
        return None  # the count only warns; a run whose data is gone is still scored
    trained = own.x_train
    if config is not None:
        from digits.data import stratified_split

        limited = own.y_train[: config.limit]
        trained_indices, _ = stratified_split(limited, config.val_split, config.seed)
        trained = own.x_train[: config.limit][trained_indices]
    fingerprints = {image.tobytes() for image in np.ascontiguousarray(trained, dtype=np.uint8)}
    contiguous = np.ascontiguousarray(images, dtype=np.uint8)
    return sum(image.tobytes() in fingerprints for image in contiguous)
