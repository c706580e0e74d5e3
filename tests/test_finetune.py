"""Fine-tuning (`digits finetune`, digits.finetune): a run adapted to new handwriting keeps its
old skill, is an ordinary run directory, records where it came from, and resumes exactly.

The new handwriting is scikit-learn's load_digits as its 8×8 scans (benchmarks/ood_sets.py),
as image files in digit subfolders: the seed `cnn` fixture reads them far worse than MNIST."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.finetune_curve import balanced, write_folder
from benchmarks.ood_sets import condition
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData, load_dataset
from digits.evaluate import evaluate_model
from digits.finetune import default_epochs, finetune
from digits.run import RunError, load_model, read_config, read_metrics
from digits.run_files import FINETUNE_DATA_FILE, run_state

runner = CliRunner()
TRAIN = 200  # labelled scans to learn from
POOL = 1000  # load_digits' first 1 000 (fixed order) give the training scans, the rest the test


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/train/<digit>/*.png (200 scans) and DIR/test/<digit>/*.png (the other 797)."""
    samples = condition("grey 8×8").make(None)
    images = [image for image, _ in samples]
    labels = np.array([label for _, label in samples])
    folder = tmp_path_factory.mktemp("scans")
    chosen = balanced(labels[:POOL], TRAIN)
    write_folder(folder / "train", [images[i] for i in chosen], labels[chosen])
    write_folder(folder / "test", images[POOL:], labels[POOL:])
    return folder


@pytest.fixture(scope="module")
def tuned(trained_cnn_run: Path, scans: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finetuned") / "run"
    return finetune(trained_cnn_run, str(scans), out, epochs=40, device="cpu")


def accuracy(run: Path, images: np.ndarray, labels: np.ndarray) -> float:
    return float(evaluate_model(load_model(run), images, labels).accuracy)


def test_finetuning_learns_the_new_digits_and_keeps_mnist(
    trained_cnn_run: Path, tuned: Path, scans: Path, mnist: DigitData
) -> None:
    test = load_dataset(scans / "test")
    before = accuracy(trained_cnn_run, test.x_train, test.y_train)
    after = accuracy(tuned, test.x_train, test.y_train)
    assert after >= before + 0.03, (before, after)
    metrics = read_metrics(tuned)
    # The test split of the folder scored the run, and MNIST's test set what it kept.
    assert metrics["test"]["count"] == len(test.y_train)
    assert metrics["test"]["accuracy"] == pytest.approx(after)
    parent_mnist = read_metrics(trained_cnn_run)["test"]["accuracy"]
    assert metrics["mnist_test"]["accuracy"] >= parent_mnist - 0.005


def test_a_finetuned_run_is_an_ordinary_run_that_records_its_parent(
    trained_cnn_run: Path, tuned: Path, scans: Path
) -> None:
    from digits.predictor import Predictor

    assert run_state(tuned) == "finished"
    config = read_config(tuned)
    assert config.parent == str(trained_cnn_run.resolve())
    assert config.source == str(scans.resolve())
    assert config.data == str((tuned / FINETUNE_DATA_FILE).resolve())
    assert (config.model, config.replay, config.freeze) == ("cnn", 1.0, "none")
    metrics = read_metrics(tuned)
    assert metrics["parent"] == str(trained_cnn_run.resolve())
    assert metrics["calibration"]["temperature"] > 0
    # The copy holds the prepared images it trained on, the same as reading the folder again.
    copy = load_dataset(config.data)
    again = load_dataset(scans)
    np.testing.assert_array_equal(copy.x_train, again.x_train)
    np.testing.assert_array_equal(copy.y_train, again.y_train)
    # The torch-free predictor serves it; `digits evaluate` scores it on its own test split.
    predictor = Predictor.from_path(tuned)
    assert predictor.predict_arrays(copy.x_train[:4]).shape[0] == 4
    result = runner.invoke(app, ["evaluate", str(tuned), "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert scored["data"]["split"] == "test"
    assert scored["count"] == len(again.y_test)


def test_finetune_command_prints_the_outcome(
    trained_cnn_run: Path, scans: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            *("finetune", str(trained_cnn_run), "--data", str(scans / "train")),
            *("--out", str(out), "--epochs", "2", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run"] == str(out)
    assert summary["epochs"] == 2
    assert summary["test_accuracy"] is None  # train/ alone: no test split
    assert 0.9 < summary["mnist_test_accuracy"] <= 1.0


def test_freezing_the_features_trains_only_the_classifier(
    trained_cnn_run: Path, scans: Path, tmp_path: Path
) -> None:
    out = finetune(
        trained_cnn_run, str(scans / "train"), tmp_path / "frozen", epochs=2, freeze="features"
    )
    parent, child = load_model(trained_cnn_run).state_dict(), load_model(out).state_dict()
    changed = sorted(name for name in parent if not torch.equal(parent[name], child[name]))
    last = max(int(name.split(".")[0]) for name in parent)  # the Sequential's last layer
    assert changed == [f"{last}.bias", f"{last}.weight"]


def test_an_interrupted_finetune_resumes_exactly(
    trained_cnn_run: Path, scans: Path, tmp_path: Path
) -> None:
    whole = finetune(trained_cnn_run, str(scans / "train"), tmp_path / "whole", epochs=3)
    cut = tmp_path / "cut"
    # Stopped after its second epoch, as a kill would leave it.
    finetune(trained_cnn_run, str(scans / "train"), cut, epochs=3, stop_after_epoch=2)
    assert run_state(cut) == "training"
    result = runner.invoke(app, ["train", "--resume", "--out", str(cut), "--quiet"])
    assert result.exit_code == 0, result.output
    first, second = load_model(whole).state_dict(), load_model(cut).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_refusals_name_the_problem_and_leave_no_run(
    trained_cnn_run: Path, tuned: Path, scans: Path, tmp_path: Path
) -> None:
    with pytest.raises(RunError, match="already holds a run"):
        finetune(trained_cnn_run, str(scans), tuned)
    with pytest.raises(RunError, match="no such run directory"):
        finetune(tmp_path / "nowhere", str(scans), tmp_path / "a")
    empty = tmp_path / "empty-folder"
    (empty / "3").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images in digit subfolders"):
        finetune(trained_cnn_run, str(empty), tmp_path / "b")
    assert not (tmp_path / "b").exists()
    result = runner.invoke(
        app,
        [
            *("finetune", str(trained_cnn_run), "--data", str(scans)),
            *("--out", str(tmp_path / "c"), "--freeze", "everything"),
        ],
    )
    assert result.exit_code != 0
    assert "freeze 'everything' is not one of none, features" in result.output
    assert run_state(tmp_path / "c") == "empty"


def test_default_epochs_make_about_the_same_number_of_steps() -> None:
    assert default_epochs(300, 64) == 80  # 5 steps an epoch
    assert default_epochs(10, 10) == 400
    assert default_epochs(60_000, 64) == 1


def test_finetuning_on_the_corrections_store(
    trained_cnn_run: Path, scans: Path, tmp_path: Path
) -> None:
    """`--data feedback:URL`: the 28×28s the service kept, with the person's labels."""
    from digits.feedback import open_store

    url = f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    folder = load_dataset(scans / "train")
    with open_store(url) as store:
        for pixels, label in zip(folder.x_train[:30], folder.y_train[:30], strict=True):
            store.add(
                label=int(label),
                model_digit=None,
                model_answer="not_sure",
                confidence=0.3,
                model_name="cnn",
                image=b"\x89PNG stand-in: the store keeps what it is given",
                media_type="image/png",
                pixels=pixels,
            )
    out = finetune(trained_cnn_run, f"feedback:{url}", tmp_path / "from-feedback", epochs=2)
    config = read_config(out)
    assert config.source == f"feedback:{url}"
    copy = load_dataset(config.data)
    np.testing.assert_array_equal(copy.x_train, folder.x_train[:30])
    np.testing.assert_array_equal(copy.y_train, folder.y_train[:30])
    assert run_state(out) == "finished"
    with pytest.raises(ValueError, match="no database there"):
        finetune(trained_cnn_run, f"feedback:sqlite:///{tmp_path / 'none.sqlite'}", tmp_path / "x")
    empty = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    with open_store(empty) as store:
        assert store.count() == 0  # made, with its table, and empty
    with pytest.raises(ValueError, match="holds no corrections to train on"):
        finetune(trained_cnn_run, f"feedback:{empty}", tmp_path / "y")
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()
