"""Confidence calibration: temperature scaling and expected calibration error (ECE).

A network trained with cross-entropy is usually over-confident: "99 %" answers are right less
often than 99 % of the time. Dividing the logits by one temperature T > 1, fitted to minimise
the negative log-likelihood on held-out data (Guo et al., 2017), fixes most of it without
changing any prediction (argmax is unchanged). The maths here is NumPy; only `calibrate_run`
and `calibration_summary` touch the torch model.

The temperature is fitted on data the model did not train on: the validation split when the run
has one. A run trained on all its images (`speed`, the `-long` recipes) has none; it is fitted
instead on views it never saw: 10 000 of its training images, each randomly rotated, scaled and
shifted (`held_out_views`, up to 5° and 5 %). A digit turned by a few degrees is still that
digit, but not the image the network fitted, so its confidence there behaves as on new images
(docs/results.md, "Calibration", has the test ECE of each way). A model with the eleventh class
"not a digit" is calibrated on its ten digit logits: what it says once it has said "a digit".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from digits.atomic import atomic_write_text

ECE_BINS = 15
VIEWS = 10_000
"""Training images seen through `VIEWS_AUGMENT` that calibrate a run without a validation split."""
# Light on purpose: views distorted as strongly as `best`'s augmentation are much harder than new
# digits for a network trained without augmentation (87 % right against 98.7 % on test for the
# seed cnn), which would make it under-confident.
VIEWS_AUGMENT = {"rotation": 5.0, "zoom": 0.05, "shift": 0.05}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Gap between confidence and accuracy, averaged over equal-width confidence bins,
    weighted by how many predictions fall in each."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if len(probabilities) == 0:
        raise ValueError("no predictions to measure calibration on")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin k holds confidences in (k/bins, (k+1)/bins]; confidence is never below 1/10.
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for k in range(bins):
        members = index == k
        if members.any():
            gap = abs(float(correct[members].mean()) - float(confidence[members].mean()))
            total += members.mean() * gap
    return float(total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the NLL of softmax(logits / T); golden-section search on
    log T (the NLL is smooth and unimodal in it)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if len(logits) == 0:
        raise ValueError("no data to fit a temperature on")
    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa = negative_log_likelihood(logits, labels, math.exp(a))
    fb = negative_log_likelihood(logits, labels, math.exp(b))
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = negative_log_likelihood(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = negative_log_likelihood(logits, labels, math.exp(b))
    return float(math.exp((low + high) / 2))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """NLL and ECE before and after applying `temperature`."""
    return {
        "nll_before": negative_log_likelihood(logits, labels, 1.0),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "ece_before": expected_calibration_error(softmax(logits), labels),
        "ece_after": expected_calibration_error(softmax(logits, temperature), labels),
    }


def _digit_logits(model: Any, images: Any) -> np.ndarray:
    """The ten digit logits for uint8 N×28×28 arrays or float N×1×28×28 tensors, as NumPy
    (a model with the "not a digit" class has an eleventh, left out here)."""
    from digits.run import predict_logits, to_tensor

    tensor = to_tensor(images) if isinstance(images, np.ndarray) else images
    return predict_logits(model, tensor).double().numpy()[:, :10]


def held_out_views(images: Any, labels: Any, seed: int = 0) -> tuple[Any, np.ndarray]:
    """`VIEWS` of the training images (float N×1×28×28), randomly distorted: a stand-in for
    held-out data when a run has none. Seeded, so a run's temperature is reproducible."""
    import torch

    from digits.augment import AugmentConfig, augment_batch

    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(images), generator=generator)[:VIEWS]
    views = augment_batch(images[chosen], AugmentConfig.from_dict(VIEWS_AUGMENT), generator)
    return views, np.asarray(labels)[chosen.numpy()]


def calibrate_run(
    run_dir: str | Path, images: Any, labels: Any, *, source: str | None = None
) -> dict[str, Any]:
    """Fit the temperature of a finished run on held-out images; record it in metrics.json.

    `images`/`labels` are the validation split, or `held_out_views` (then `source` says so).
    """
    from digits.run import METRICS_FILE, load_model, read_json

    run_dir = Path(run_dir)
    labels = np.asarray(labels).astype(np.int64)
    if len(labels) == 0:
        raise ValueError(f"{run_dir}: no images to calibrate on")
    logits = _digit_logits(load_model(run_dir), images)
    temperature = fit_temperature(logits, labels)
    calibration: dict[str, Any] = {
        "temperature": temperature,
        "source": source or f"validation split ({len(labels):,} images)",
        **{
            f"val_{key}": value
            for key, value in calibration_report(logits, labels, temperature).items()
        },
    }
    path = run_dir / METRICS_FILE
    metrics = read_json(path)
    metrics["calibration"] = calibration
    atomic_write_text(path, json.dumps(metrics, indent=2))
    return calibration


def calibrate_held_out_views(run_dir: str | Path, images: Any, labels: Any) -> dict[str, Any]:
    """Calibrate a run that has no validation split on `held_out_views` of its training images
    (uint8 N×28×28 arrays or float N×1×28×28 tensors)."""
    from digits.run import to_tensor

    tensor = to_tensor(images) if isinstance(images, np.ndarray) else images
    views, view_labels = held_out_views(tensor, labels)
    source = (
        f"held-out views: {len(view_labels):,} training images, randomly rotated, scaled and "
        "shifted (the run has no validation split)"
    )
    return calibrate_run(run_dir, views, view_labels, source=source)


def run_temperature(run_dir: str | Path) -> tuple[float, str]:
    """The temperature recorded for a run, and where it came from (1 when none was fitted)."""
    from digits.run import METRICS_FILE, read_json

    path = Path(run_dir) / METRICS_FILE
    if path.exists():
        calibration = read_json(path).get("calibration")
        if calibration:
            return float(calibration["temperature"]), str(calibration["source"])
    return 1.0, "none: the run records no calibration, so the temperature stays 1"


def calibration_summary(
    run_dir: str | Path, probabilities: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """ECE of a model's probabilities on some data, before and after the run's temperature.

    Temperature scaling of log-probabilities equals that of logits (they differ by a per-row
    constant, which softmax ignores), so the probabilities alone are enough. With the "not a
    digit" class, the ten digit probabilities (renormalised) are what is calibrated.
    """
    from digits.answers import split_not_digit

    temperature, source = run_temperature(run_dir)
    digits, _ = split_not_digit(np.asarray(probabilities, dtype=np.float64))
    log_probabilities = np.log(np.clip(digits, 1e-30, 1.0))
    labels = np.asarray(labels).astype(np.int64)
    return {
        "temperature": temperature,
        "temperature_source": source,
        "ece": expected_calibration_error(softmax(log_probabilities), labels),
        "ece_calibrated": expected_calibration_error(
            softmax(log_probabilities, temperature), labels
        ),
    }
