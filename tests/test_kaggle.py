"""Kaggle Digit Recognizer: submissions in the exact format, bad rows named, train.csv trains."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner, Result

from digits.cli import app
from digits.data import DigitData
from digits.predictor import Predictor
from tests.helpers import kaggle_csv, random_digits, tiny_model

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
            "5",  # 84 % on test in float32 and bfloat16 alike (3 epochs: 79-81 %)
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


# --- what a submission run refuses, each in one line and before any prediction -------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _kaggle(model: Path, test_csv: Path, out: Path, *extra: str) -> Result:
    return runner.invoke(
        app, ["kaggle", "predict", str(model), str(test_csv), "--out", str(out), *extra]
    )


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_csv_without_header_gets_every_row(model: Path, tmp_path: Path) -> None:
    images, _ = random_digits(20, seed=5)
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(images, None).split("\n", 1)[1])  # no header row
    out = tmp_path / "submission.csv"
    result = _kaggle(model, test_csv, out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == 20
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [int(r["ImageId"]) for r in rows] == list(range(1, 21))
    expected = Predictor.from_path(model).predict_arrays(images).argmax(1)
    assert [int(r["Label"]) for r in rows] == expected.tolist()


def test_byte_order_mark_is_not_a_column(model: Path, tmp_path: Path) -> None:
    images, labels = random_digits(5)
    train_csv = tmp_path / "train.csv"
    train_csv.write_text(kaggle_csv(images, labels), encoding="utf-8-sig")
    result = _kaggle(model, train_csv, tmp_path / "submission.csv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 5 and report["accuracy"] is not None  # the label column was seen


@pytest.mark.parametrize("encoding", ["utf-16", "binary"])
def test_not_utf8_names_the_file(model: Path, tmp_path: Path, encoding: str) -> None:
    test_csv = tmp_path / "test.csv"
    text = kaggle_csv(random_digits(2)[0], None)
    test_csv.write_bytes(text.encode("utf-16") if encoding == "utf-16" else bytes(range(256)))
    line = _one_line_error(_kaggle(model, test_csv, tmp_path / "submission.csv"))
    assert line.startswith(f"error: {test_csv}: ") and "not a UTF-8 CSV" in line


def test_out_naming_the_input_is_refused(model: Path, tmp_path: Path) -> None:
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(random_digits(3)[0], None))
    before = test_csv.read_bytes()
    link = tmp_path / "link.csv"
    link.symlink_to(test_csv)
    for out in (test_csv, tmp_path / "." / "test.csv", link, model):
        line = _one_line_error(_kaggle(model, test_csv, out))
        assert line.startswith(f"error: {out}: is the input ") and "choose another --out" in line
    assert test_csv.read_bytes() == before


def test_out_that_cannot_be_a_file(model: Path, tmp_path: Path) -> None:
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(random_digits(3)[0], None))
    folder = _one_line_error(_kaggle(model, test_csv, tmp_path))
    assert folder == f"error: {tmp_path}: is a folder; --out takes a file, e.g. " + str(
        tmp_path / "submission.csv"
    )
    under = tmp_path / "test.csv" / "sub" / "submission.csv"
    line = _one_line_error(_kaggle(model, test_csv, under))
    assert line == f"error: {under}: cannot be written: {test_csv} is a file, not a folder"


def test_read_only_destination(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root a chmod 555 folder stays writable, so the refusal is simulated where it is made.
    import digits.kaggle

    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(random_digits(3)[0], None))
    out = tmp_path / "ro" / "submission.csv"
    out.parent.mkdir()
    real_access = os.access

    def access(path: object, mode: int, **kwargs: object) -> bool:
        return Path(str(path)) != out.parent and real_access(path, mode, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(os, "access", access)
        line = _one_line_error(_kaggle(model, test_csv, out))
    assert line == f"error: {out}: cannot be written: {out.parent} is read-only"

    def refused(path: Path, text: str) -> None:  # e.g. a read-only file system or a full disk
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(digits.kaggle, "atomic_write_text", refused)
    line = _one_line_error(_kaggle(model, test_csv, out))
    assert line == f"error: {out}: cannot be written (Read-only file system)"
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder regardless")
def test_chmod_555_destination(model: Path, tmp_path: Path) -> None:
    test_csv = tmp_path / "test.csv"
    test_csv.write_text(kaggle_csv(random_digits(3)[0], None))
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = _one_line_error(_kaggle(model, test_csv, folder / "submission.csv"))
    finally:
        folder.chmod(0o755)
    assert line.endswith("is read-only")


def test_names_print_as_they_are(model: Path, tmp_path: Path) -> None:
    test_csv = tmp_path / "[bold]test].csv"
    test_csv.write_text(kaggle_csv(random_digits(3)[0], None))
    out = tmp_path / "a[" / "b].csv"  # "[/b]" in the path: a closing tag to Rich
    result = _kaggle(model, test_csv, out)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"3 predictions written to {out}"
