"""`digits report`: every figure written, one self-contained page, numbers from digits.evaluate."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData, load_dataset
from digits.finish import fit
from digits.report import Report, build_report
from digits.report.results import classification_rows, misclassified
from digits.train import TrainConfig, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALWAYS = {"samples", "class_balance", "mean_images", "curves", "confusion_matrix", "predictions"}


@pytest.fixture(scope="module")
def tiny_run(small_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ann trained 1 epoch on 1 000 images: weak enough to make mistakes worth showing."""
    config = TrainConfig(model="ann", epochs=1, limit=1000, data=str(small_npz))
    return fit(config, tmp_path_factory.mktemp("report") / "ann")


@pytest.fixture(scope="module")
def report(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    return build_report(tiny_run, tmp_path_factory.mktemp("report") / "out")


def test_report_writes_every_figure_and_one_self_contained_page(
    report: Report, tiny_run: Path
) -> None:
    out = report.html.parent
    assert ALWAYS | {"misclassified"} <= set(report.images)
    for stem, path in report.images.items():
        assert path == out / f"{stem}.png"
        assert path.read_bytes().startswith(PNG_MAGIC), stem
    page = report.html.read_text()
    assert report.html.name == "report.html"
    # Every picture is embedded; nothing is fetched from anywhere (no URL, no script).
    assert page.count('src="data:image/png;base64,') == len(report.images)
    assert not re.search(r'(?:src|href)="(?!data:)', page)
    assert "<script" not in page
    for heading in ("Training data", "Training", "Results on the test set"):
        assert f"<h2>{heading}</h2>" in page
    assert "classification report" in page
    assert "most-confused pairs" in page
    # The report scores the same model on the same test images as training did.
    test = read_metrics(tiny_run)["test"]
    assert report.split == "test"
    assert report.metrics.count == test["count"]
    assert report.metrics.accuracy == pytest.approx(test["accuracy"])
    assert f"{100 * test['accuracy']:.2f} %" in page


def test_report_command_defaults_to_the_run_folder(tiny_run: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tiny_run)])

    assert result.exit_code == 0, result.output
    assert (tiny_run / "report" / "report.html").is_file()
    assert "report written to" in result.output


def test_report_without_a_test_split_uses_the_runs_validation_split(
    tiny_run: Path, small_npz: Path, tmp_path: Path
) -> None:
    full = load_dataset(small_npz)
    no_test = DigitData(full.x_train, full.y_train, None, None, "npz", small_npz)

    report = build_report(tiny_run, tmp_path, data=no_test)

    config = json.loads((tiny_run / "config.json").read_text())
    assert report.split == "validation"
    assert report.metrics.count == round(config["limit"] * config["val_split"])
    assert "Results on the validation set" in report.html.read_text()


def test_report_leaves_out_augmentation_when_the_module_is_missing(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "digits.augment", None)  # makes the import fail

    report = build_report(tiny_run, tmp_path)

    assert "augmented" not in report.images
    assert set(report.images) >= ALWAYS
    assert "no augmentation module" in report.html.read_text()


def test_report_on_an_ensemble_directory(tiny_run: Path, small_npz: Path, tmp_path: Path) -> None:
    pytest.importorskip("digits.ensemble")
    from digits.ensemble import build_ensemble

    ensemble = build_ensemble([tiny_run], tmp_path / "ensemble")

    # No config.json and no history there: the data comes from --data, the curves are left out.
    report = build_report(ensemble, data=load_dataset(small_npz))

    assert report.html == ensemble / "report" / "report.html"
    assert "curves" not in report.images
    assert report.metrics.accuracy == pytest.approx(read_metrics(tiny_run)["test"]["accuracy"])
    assert "No history.csv" in report.html.read_text()


def test_figures_never_need_a_display() -> None:
    assert matplotlib.get_backend().lower() == "agg"


def test_mistakes_are_ordered_most_confident_first() -> None:
    probabilities = np.full((4, 10), 0.01)
    probabilities[0, 3] = 0.91  # right (label 3)
    probabilities[1, 5] = 0.60  # wrong, less sure
    probabilities[2, 7] = 0.90  # wrong, surest
    probabilities[3, 1] = 0.50  # wrong, least sure
    labels = np.array([3, 2, 2, 2])

    assert misclassified(probabilities, labels, limit=10).tolist() == [2, 1, 3]
    assert misclassified(probabilities, labels, limit=2).tolist() == [2, 1]


def test_classification_rows_end_with_the_averages(report: Report) -> None:
    metrics = report.metrics
    rows = classification_rows(metrics)

    assert [row.name for row in rows] == [*map(str, range(10)), "macro avg", "weighted avg"]
    assert rows[10].f1 == pytest.approx(metrics.macro_f1)
    assert rows[11].recall == pytest.approx(metrics.accuracy)  # weighted recall is accuracy
    assert rows[11].support == metrics.count


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda tmp: tmp / "missing", "no such run directory"),
        (lambda tmp: tmp, "model.safetensors"),
    ],
)
def test_bad_run_directories_are_one_line_errors(
    tmp_path: Path, make_input: object, message: str
) -> None:
    run = make_input(tmp_path)  # type: ignore[operator]
    result = CliRunner().invoke(app, ["report", str(run)])

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
