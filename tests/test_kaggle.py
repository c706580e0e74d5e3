"""Kaggle Digit Recognizer: submissions in the exact format, bad rows named, train.csv trains."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.predictor import Predictor
from tests.helpers import kaggle_csv

runner = CliRunner()


def test_submission_format(trained_cnn_run: Path, mnist: DigitData, tmp_path: Path) -> None:
    images, truth = mnist.x_test[:300], mnist.y_test[:300]
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(images, None))
    out = tmp_path / "submission.csv"
    result = runner.invoke(
        app, ["kaggle", "predict", str(trained_cnn_run), str(test_csv), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "300 predictions" in result.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == "ImageId,Label" and len(lines) == 301
    rows = list(csv.DictReader(lines))
    assert [int(r["ImageId"]) for r in rows] == list(range(1, 301))
    labels = np.array([int(r["Label"]) for r in rows])
    expected = Predictor.from_path(trained_cnn_run).predict_arrays(images).argmax(1)
    assert np.array_equal(labels, expected)
    assert (labels == truth).mean() > 0.95


def test_labelled_csv_reports_accuracy(trained_cnn_run: Path, mnist: DigitData, tmp_path: Path):
    train_csv = tmp_path / "train.csv"
    train_csv.write_text(kaggle_csv(mnist.x_test[:200], mnist.y_test[:200]))
    out = tmp_path / "sub.csv"
    result = runner.invoke(
        app,
        ["kaggle", "predict", str(trained_cnn_run), str(train_csv), "--out", str(out), "--json"],
    )
    report = json.loads(result.stdout)
    assert report["rows"] == 200 and sum(report["label_counts"]) == 200
    assert report["accuracy"] > 0.95


def test_bad_row_stops_with_its_number(trained_cnn_run: Path, mnist: DigitData, tmp_path: Path):
    text = kaggle_csv(mnist.x_test[:5], None).splitlines()
    text[3] = text[3].rsplit(",", 1)[0]  # line 4 of the file loses a pixel
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("\n".join(text) + "\n")
    out = tmp_path / "submission.csv"
    result = runner.invoke(
        app, ["kaggle", "predict", str(trained_cnn_run), str(test_csv), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "test.csv: row 4: 783 columns (expected 784)" in result.stderr
    assert not out.exists()


def test_training_on_kaggle_train_csv(mnist: DigitData, tmp_path: Path) -> None:
    train_csv = tmp_path / "train.csv"
    train_csv.write_text(kaggle_csv(mnist.x_train[:1500], mnist.y_train[:1500]))
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "mlp",
            "--epochs",
            "3",
            "--lr",
            "0.003",
            "--data",
            str(train_csv),
            "--out",
            str(run),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"] is None and metrics["val_accuracy"] > 0.8  # no test split in Kaggle
    assert metrics["calibration"]["source"].startswith("validation split (14")  # ~10 % of 1500
    predictor = Predictor.from_path(run)
    accuracy = (predictor.predict_arrays(mnist.x_test[:500]).argmax(1) == mnist.y_test[:500]).mean()
    assert accuracy > 0.8
