"""Temperature scaling and ECE: the maths on synthetic data with known answers, the fit at train
time, and the figures `digits evaluate` reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digits.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    softmax,
)
from digits.cli import app
from digits.data import DigitData
from digits.finish import fit
from digits.predictor import Predictor
from digits.train import TrainConfig

runner = CliRunner()


def _sampled(temperature: float, count: int = 20_000, seed: int = 0):
    """Logits and labels drawn from softmax(logits / temperature): calibrated at that T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (count, 10))
    probabilities = softmax(logits, temperature)
    labels = (probabilities.cumsum(1) > rng.random((count, 1))).argmax(1)
    return logits, labels


def test_fit_recovers_the_true_temperature() -> None:
    logits, labels = _sampled(temperature=2.0)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(2.0, rel=0.05)
    assert negative_log_likelihood(logits, labels, fitted) < negative_log_likelihood(
        logits, labels, 1.0
    )


def test_ece_of_calibrated_and_overconfident_predictions() -> None:
    logits, labels = _sampled(temperature=2.0)
    calibrated = expected_calibration_error(softmax(logits, 2.0), labels)
    overconfident = expected_calibration_error(softmax(logits, 1.0), labels)
    assert calibrated < 0.02 < overconfident
    # Confidently wrong every time: the gap is the whole confidence.
    wrong = np.full((100, 10), 0.0)
    wrong[:, 3] = 1.0
    assert expected_calibration_error(wrong, np.zeros(100, int)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no predictions"):
        expected_calibration_error(np.zeros((0, 10)), np.zeros(0, int))


def test_temperature_never_changes_the_answer() -> None:
    logits, _ = _sampled(temperature=1.0, count=500)
    assert np.array_equal(softmax(logits, 0.3).argmax(1), softmax(logits, 7.0).argmax(1))


def test_training_fits_the_temperature_on_validation(mnist: DigitData, tmp_path: Path) -> None:
    small = DigitData(
        mnist.x_train[:4000],
        mnist.y_train[:4000],
        mnist.x_test[:500],
        mnist.y_test[:500],
        mnist.source,
        mnist.path,
    )
    config = TrainConfig(model="mlp", epochs=2, lr=0.003, val_split=0.2)
    run = fit(config, tmp_path / "mlp", data=small)
    calibration = json.loads((run / "metrics.json").read_text())["calibration"]
    assert calibration["source"] == "validation split (800 images)"
    assert 0.3 < calibration["temperature"] < 5
    assert calibration["val_nll_after"] <= calibration["val_nll_before"] + 1e-9
    info = Predictor.from_path(run).info
    assert info.temperature == pytest.approx(calibration["temperature"])
    assert info.temperature_source == calibration["source"]


def test_run_without_validation_is_calibrated_on_held_out_views(
    trained_cnn_run: Path, mnist: DigitData
) -> None:
    calibration = json.loads((trained_cnn_run / "metrics.json").read_text())["calibration"]
    assert calibration["source"].startswith("held-out views: 10,000 training images")
    assert calibration["temperature"] != 1.0
    assert calibration["val_nll_after"] < calibration["val_nll_before"]
    # What the fit is for: confidence that means what it says on images never trained on.
    probabilities = Predictor.from_path(trained_cnn_run).predict_arrays(mnist.x_test[:5000])
    uncalibrated = Predictor.from_path(trained_cnn_run).session.run(
        ["logits"], {"images": mnist.x_test[:5000, None].astype(np.float32) / 255}
    )[0]
    ece = expected_calibration_error(probabilities, mnist.y_test[:5000])
    assert ece < 0.01
    assert ece <= expected_calibration_error(softmax(uncalibrated), mnist.y_test[:5000]) + 0.002


def test_evaluate_reports_ece_before_and_after(trained_cnn_run: Path, small_npz: Path) -> None:
    result = runner.invoke(
        app, ["evaluate", str(trained_cnn_run), "--data", str(small_npz), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"accuracy", "loss", "confusion_matrix", "run"} <= set(report)  # existing keys stay
    assert report["count"] == 1000
    # A seed cnn without label smoothing is nearly calibrated as it is; it must stay so.
    assert 0 <= report["ece"] < 0.05 and 0 <= report["ece_calibrated"] < 0.02
    assert report["temperature"] != 1.0 and "no validation split" in report["temperature_source"]
    human = runner.invoke(app, ["evaluate", str(trained_cnn_run), "--data", str(small_npz)])
    assert "calibration: ECE" in human.stdout
