"""Metrics against values worked out by hand."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digits.cli import app
from digits.config import TrainConfig
from digits.data import DigitData, load_dataset, stratified_split
from digits.evaluate import (
    compute_metrics,
    held_out,
    per_class_scores,
    run_data,
    scored_images,
    trained_on,
)
from digits.finish import fit
from digits.run import RunError, read_config, read_metrics
from tests.helpers import idx_gz_bytes

runner = CliRunner()


def test_metrics_on_a_hand_checked_example() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.full((4, 10), 0.0)
    probabilities[0, 0] = 1.0  # right
    probabilities[1, 1] = 1.0  # 0 taken for 1
    probabilities[2, 1] = 0.5  # right, half sure
    probabilities[2, 2] = 0.5
    probabilities[3, 1] = 1.0  # right
    metrics = compute_metrics(probabilities, labels)
    assert metrics.accuracy == 0.75
    assert metrics.count == 4
    # loss: -log of the true class probability, averaged; sample 1 gives log(1e-12)
    expected_loss = (0 - math.log(1e-12) - math.log(0.5) + 0) / 4
    assert metrics.loss == pytest.approx(expected_loss)
    assert metrics.precision[0] == 1.0
    assert metrics.recall[0] == 0.5
    assert metrics.precision[1] == pytest.approx(2 / 3)
    assert metrics.recall[1] == 1.0
    assert metrics.f1[1] == pytest.approx(0.8)
    assert metrics.macro_f1 == pytest.approx((2 / 3 + 0.8) / 10)
    assert metrics.confusion_matrix[0][:2] == [1, 1]
    assert metrics.confusion_matrix[1][:2] == [0, 2]
    assert metrics.most_confused() == [(0, 1, 1)]
    document = metrics.to_dict()
    assert {"accuracy", "loss", "macro_f1", "confusion_matrix"} <= set(document)


@pytest.mark.parametrize("seed", range(5))
def test_per_class_scores_agree_with_scikit_learn(seed: int) -> None:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 10, 500)
    # Mostly right, some wrong, some refused (-1), and one digit never predicted at all.
    predicted = np.where(generator.random(500) < 0.7, labels, generator.integers(-1, 10, 500))
    predicted[predicted == 7] = 3
    confusion, precision, recall, f1, support = per_class_scores(labels, predicted)
    expected = precision_recall_fscore_support(
        labels, predicted, labels=list(range(10)), zero_division=0
    )
    for ours, theirs in zip((precision, recall, f1, support), expected, strict=True):
        np.testing.assert_allclose(ours, theirs)
    np.testing.assert_array_equal(
        confusion, confusion_matrix(labels, predicted, labels=list(range(10)))
    )


def test_shape_mismatches_are_errors() -> None:
    with pytest.raises(ValueError, match="N×10"):
        compute_metrics(np.zeros((3, 9)), np.zeros(3))
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics(np.zeros((3, 10)), np.zeros(2))


# --- what a run is scored on: its own data, and saying which ---------------------------------


def _idx_folder(folder: Path, data: DigitData, train: int, test: int | None) -> Path:
    """An IDX folder of the first `train` MNIST training and `test` test images (None: none)."""
    folder.mkdir(parents=True)
    arrays = {"train-images-idx3-ubyte.gz": data.x_train[:train],
              "train-labels-idx1-ubyte.gz": data.y_train[:train]}  # fmt: skip
    if test is not None:
        assert data.x_test is not None and data.y_test is not None
        arrays["t10k-images-idx3-ubyte.gz"] = data.x_test[:test]
        arrays["t10k-labels-idx1-ubyte.gz"] = data.y_test[:test]
    for name, array in arrays.items():
        (folder / name).write_bytes(idx_gz_bytes(array))
    return folder


@pytest.fixture(scope="module")
def idx_run(mnist: DigitData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ann trained one epoch on an IDX folder of 600 training and 200 test images (~3 s)."""
    root = tmp_path_factory.mktemp("own-data")
    folder = _idx_folder(root / "idx", mnist, train=600, test=200)
    return fit(TrainConfig(model="ann", epochs=1, data=str(folder)), root / "run")


def test_evaluate_scores_the_runs_own_test_split_and_names_it(idx_run: Path) -> None:
    folder = json.loads((idx_run / "config.json").read_text())["data"]

    result = runner.invoke(app, ["evaluate", str(idx_run), "--json"])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["count"] == 200  # not MNIST's 10 000
    assert document["data"] == {
        "source": "idx", "path": folder, "split": "test", "count": 200, "seen_in_training": None,
    }  # fmt: skip
    # The same images and the same model as training's own test metrics.
    assert document["accuracy"] == pytest.approx(read_metrics(idx_run)["test"]["accuracy"])
    table = runner.invoke(app, ["evaluate", str(idx_run)], env={"COLUMNS": "400"})
    assert f"scored on the test split of {folder} (idx): 200 images" in table.stdout


def test_evaluate_with_the_same_data_typed_relative_is_the_runs_own(
    idx_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = Path(json.loads((idx_run / "config.json").read_text())["data"])
    monkeypatch.chdir(folder.parent)

    result = runner.invoke(app, ["evaluate", str(idx_run), "--data", folder.name, "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["path"] == str(folder)


def test_data_without_a_test_split_is_scored_whole_and_named_so(
    idx_run: Path, mnist: DigitData, tmp_path: Path
) -> None:
    # Another folder holding copies of the very images the run trained on, and no test split.
    copies = _idx_folder(tmp_path / "copies", mnist, train=600, test=None)

    result = runner.invoke(app, ["evaluate", str(idx_run), "--data", str(copies), "--json"])

    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)["data"]
    assert scored["split"] == "all" and scored["count"] == 600
    trained, _ = stratified_split(mnist.y_train[:600], 0.1, 0)  # all but the validation split
    assert scored["seen_in_training"] == len(trained) > 500
    assert f"warning: {len(trained)} of these 600 images are ones" in result.stderr
    table = runner.invoke(app, ["evaluate", str(idx_run), "--data", str(copies)])
    assert "which has no test split" in table.stdout


def test_own_data_without_a_test_split_scores_the_validation_split(
    mnist: DigitData, tmp_path: Path
) -> None:
    folder = _idx_folder(tmp_path / "idx", mnist, train=500, test=None)
    kept = fit(TrainConfig(model="ann", epochs=1, data=str(folder)), tmp_path / "kept")
    scored = scored_images(kept, run_data(kept))
    _, validation = stratified_split(mnist.y_train[:500], 0.1, 0)  # the split training held out
    assert (scored.name, scored.count) == ("validation", len(validation))
    np.testing.assert_array_equal(scored.images, mnist.x_train[:500][validation])
    config = TrainConfig(model="ann", epochs=1, val_split=0.0, data=str(folder))
    with pytest.raises(RunError, match="nothing unseen to score it on"):
        held_out(load_dataset(folder), config, own=True, run_dir=tmp_path / "none")


def test_a_relative_data_path_is_stored_absolute_and_old_configs_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert TrainConfig(model="ann", data="sets/mine.npz").data == str(tmp_path / "sets/mine.npz")
    assert TrainConfig(model="ann", data=str(tmp_path)).data == str(tmp_path)
    assert TrainConfig(model="ann").data is None
    # A config.json written with a relative path: read as it always was, from the working folder.
    run = tmp_path / "old-run"
    run.mkdir()
    stored = asdict(TrainConfig(model="ann")) | {"data": "sets/mine.npz"}
    (run / "config.json").write_text(json.dumps(stored))
    assert read_config(run).data == str(tmp_path / "sets" / "mine.npz")
    assert trained_on(run) == str(tmp_path / "sets" / "mine.npz")
