"""The command line: JSON documents on stdout, one-line errors on stderr, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from tests.helpers import kaggle_csv

runner = CliRunner()


def test_models_json_lists_every_seed_with_its_claim() -> None:
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["cnn"]["parameters"] == 93_322
    assert rows["cnn"]["claimed_accuracy"] == 0.9912
    assert rows["ann"]["claimed_accuracy"] == 0.9777


def test_data_info_json_counts_every_class(small_npz: Path) -> None:
    result = runner.invoke(app, ["data", "info", "--json", "--data", str(small_npz)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["count"] == 6000
    assert sum(info["splits"]["train"]["class_counts"]) == 6000
    assert info["splits"]["test"]["shape"] == [1000, 28, 28]
    assert info["dtype"] == "uint8"


def test_data_info_on_full_mnist(mnist: DigitData) -> None:
    result = runner.invoke(app, ["data", "info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["splits"]["train"]["class_counts"] == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert info["splits"]["test"]["class_counts"] == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_train_then_evaluate_json(tmp_path: Path, small_npz: Path) -> None:
    run = tmp_path / "run"
    trained = runner.invoke(
        app,
        [
            "train",
            "--model",
            "ann",
            "--epochs",
            "1",
            "--data",
            str(small_npz),
            "--out",
            str(run),
            "--quiet",
        ],
    )
    assert trained.exit_code == 0, trained.output
    assert "test accuracy" in trained.stdout
    result = runner.invoke(app, ["evaluate", str(run), "--json", "--data", str(small_npz)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"accuracy", "loss", "macro_f1", "confusion_matrix"} <= set(document)
    assert sum(map(sum, document["confusion_matrix"])) == 1000
    table = runner.invoke(app, ["evaluate", str(run), "--data", str(small_npz)])
    assert "confusion matrix" in table.stdout


def test_train_on_kaggle_csv(tmp_path: Path, mnist: DigitData) -> None:
    path = tmp_path / "train.csv"
    path.write_text(kaggle_csv(mnist.x_train[:300], mnist.y_train[:300]))
    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "fnn",
            "--epochs",
            "1",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "validation accuracy" in result.stdout


def test_errors_are_one_line_naming_the_input(tmp_path: Path) -> None:
    bad = tmp_path / "train.csv"
    bad.write_text(
        "label,"
        + ",".join(f"pixel{i}" for i in range(784))
        + "\n"
        + "3,"
        + ",".join(["0"] * 783)
        + ",x\n"
    )
    result = runner.invoke(
        app, ["train", "--model", "ann", "--data", str(bad), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}: row 2, column 785: not a number: 'x'"
    missing = runner.invoke(app, ["evaluate", str(tmp_path / "none")])
    assert missing.exit_code == 1
    assert "not a trained run directory" in missing.stderr
    unknown = runner.invoke(app, ["train", "--model", "resnet"])
    assert unknown.exit_code == 1
    assert "unknown model 'resnet'" in unknown.stderr
