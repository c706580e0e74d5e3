"""`digits report`: every figure written, one self-contained page, numbers from digits.evaluate."""

from __future__ import annotations

import itertools
import json
import re
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from typer.testing import CliRunner

from digits.cli import app
from digits.compare import ComparisonRow
from digits.data import DigitData, load_dataset
from digits.finish import fit
from digits.report import Report, build_report, curves, eda
from digits.report.augmented import typical_examples
from digits.report.comparison import comparison_figure
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


# --- figures that read well: nothing covers the data, no axis passes what a value can be -------


def _drawn(figure: Figure) -> RendererBase:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def test_class_balance_legend_covers_no_bar() -> None:
    # MNIST's own counts: bars of nearly one height leave a legend inside the axes no free corner.
    train = np.repeat(np.arange(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    test = np.repeat(np.arange(10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    figure = eda.class_balance(train, test)
    renderer = _drawn(figure)
    (axes,) = figure.axes
    inside = axes.get_legend()
    legends = [*figure.legends, *([inside] if inside is not None else [])]
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in axes.patches]
    assert len(bars) == 20
    assert not [bar for bar in bars if box.overlaps(bar)]
    assert figure.bbox.contains(box.x0, box.y0) and figure.bbox.contains(box.x1, box.y1)


@pytest.mark.parametrize("accuracies", [(0.676, 0.866), (1.0, 1.0), (0.995, None)])
def test_one_epoch_curves_read_well(accuracies: tuple[float, float | None]) -> None:
    train, val = accuracies
    history = [{"epoch": 1.0, "train_loss": 1.47, "val_loss": None if val is None else 0.73,
                "train_accuracy": train, "val_accuracy": val}]  # fmt: skip
    figure = curves.learning_curves(history)
    _drawn(figure)
    for axes in figure.axes:
        low, high = axes.get_xlim()
        shown = [tick for tick in axes.get_xticks() if low <= tick <= high]
        assert shown == [1.0], axes.get_title()  # one epoch, one tick: "1", not 0.945…1.050
    accuracy_axes = figure.axes[1]
    bottom, top = accuracy_axes.get_ylim()
    assert top <= 1.0
    assert bottom < min(v for v in accuracies if v is not None)  # the point sits inside
    assert top - bottom >= 0.01  # and the axis is not squeezed to nothing


def test_many_epoch_curves_have_whole_epoch_ticks() -> None:
    history: list[dict[str, float | None]] = [
        {"epoch": float(e), "train_loss": 1 / e, "val_loss": 1.1 / e,
         "train_accuracy": 1 - 0.1 / e, "val_accuracy": min(1.0, 1 - 0.05 / e)}
        for e in range(1, 16)
    ]  # fmt: skip
    figure = curves.learning_curves(history)
    _drawn(figure)
    for axes in figure.axes:
        assert all(float(tick).is_integer() for tick in axes.get_xticks())
    assert figure.axes[1].get_ylim()[1] <= 1.0
    assert figure.axes[0].get_ylim()[0] >= 0.0


def _row(model: str, seconds: float, accuracy: float) -> ComparisonRow:
    return ComparisonRow(
        model=model, architecture="", parameters=1, epochs=1, seeds=1, train_seconds=seconds,
        accuracy_mean=accuracy, accuracy_std=0.0, loss=0.1, macro_f1=accuracy, images_per_s=1.0,
        claimed_accuracy=0.98, claim_note="", runs=[],
    )  # fmt: skip


@pytest.mark.parametrize(
    "seconds",
    [(0.276, 0.285), (3.1, 60.0), (0.3, 45.0, 1900.0), (12.0, 12.0)],
    ids=["within-a-decade", "a-decade", "four-decades", "equal"],
)
def test_comparison_time_labels_never_overlap(seconds: tuple[float, ...]) -> None:
    rows = [_row(f"m{i}", s, 0.9 + 0.01 * i) for i, s in enumerate(seconds)]
    figure = comparison_figure(rows)
    renderer = _drawn(figure)
    time_axes = figure.axes[1]
    frame = time_axes.get_window_extent(renderer)
    labels = [
        label.get_window_extent(renderer)
        for label in time_axes.xaxis.get_ticklabels(which="both")
        if label.get_visible() and label.get_text()
    ]
    shown = [box for box in labels if frame.x0 - 1 <= (box.x0 + box.x1) / 2 <= frame.x1 + 1]
    assert len(shown) >= 2  # the axis is labelled at all
    for first, second in itertools.combinations(shown, 2):
        assert not first.overlaps(second), (first, second)


def test_augmentation_example_is_a_typical_clean_digit() -> None:
    ring = np.zeros((28, 28), dtype=np.uint8)
    ring[8:20, 8:20] = 255
    ring[11:17, 11:17] = 0
    speck = ring.copy()
    speck[2, 25] = 90  # a stray dot far from the stroke
    other = np.roll(ring, 3, axis=1)
    # Most copies carry the speck, so the mean (and the image nearest it) does too.
    images = np.stack([speck] * 5 + [ring, other])
    labels = np.array([0] * 6 + [1])

    picked = typical_examples(images, labels)

    np.testing.assert_array_equal(picked[0], ring)
    np.testing.assert_array_equal(picked[1], other)
    assert picked[2:] == [None] * 8
    again = typical_examples(images, labels)
    np.testing.assert_array_equal(again[0], picked[0])
