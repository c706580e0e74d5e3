"""Which model `digits serve` picks when none is named, and what it says when there is none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digits.serve import Settings, create_app
from digits.serve.discovery import HOW_TO_TRAIN, NoModelError, find_best_run


def fake_run(
    source: Path, target: Path, accuracy: float | None, onnx: bool = True, finished: bool = True
) -> Path:
    """A run with the real exported model and the test accuracy given; finished unless told."""
    target.mkdir(parents=True)
    metrics = json.loads((source / "metrics.json").read_text())
    metrics["test"] = None if accuracy is None else {**metrics["test"], "accuracy": accuracy}
    if not finished:  # killed after its metrics: not calibrated, no finished.json yet
        metrics.pop("calibration", None)
    (target / "metrics.json").write_text(json.dumps(metrics))
    shutil.copy(source / "config.json", target / "config.json")
    if onnx:
        shutil.copy(source / "model.onnx", target / "model.onnx")
    if onnx and finished:
        shutil.copy(source / "finished.json", target / "finished.json")
    return target


def test_best_run_is_the_most_accurate_servable_one(trained_cnn_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(trained_cnn_run, runs / "a", 0.97)
    best = fake_run(trained_cnn_run, runs / "compare" / "b", 0.99)
    fake_run(trained_cnn_run, runs / "c", None)
    fake_run(trained_cnn_run, runs / "d", 0.999, onnx=False)  # not exported: cannot be served
    fake_run(trained_cnn_run, runs / "e", 0.999, finished=False)  # not calibrated yet
    assert find_best_run(runs) == best
    app = create_app(Settings(runs_dir=runs))  # no model named: the app finds the same one
    assert Path(app.state.recognizer.predictor.info.path) == best / "model.onnx"
    with TestClient(app) as client:
        assert client.get("/api/health").json()["status"] == "ok"


def test_no_runs_says_how_to_train(tmp_path: Path) -> None:
    with pytest.raises(NoModelError) as caught:
        find_best_run(tmp_path / "runs")
    assert HOW_TO_TRAIN in str(caught.value)
    assert "digits train --model cnn" in HOW_TO_TRAIN


@pytest.mark.parametrize("onnx", [False, True])
def test_unfinished_runs_say_how_to_finish(
    trained_cnn_run: Path, tmp_path: Path, onnx: bool
) -> None:
    run = fake_run(trained_cnn_run, tmp_path / "runs" / "old", 0.98, onnx=onnx, finished=False)
    with pytest.raises(NoModelError, match=f"digits train --resume --out {run}"):
        find_best_run(tmp_path / "runs")


def test_an_unfinished_run_named_as_model_is_refused(trained_cnn_run: Path, tmp_path: Path) -> None:
    from digits.predictor import ModelError, Predictor

    run = fake_run(trained_cnn_run, tmp_path / "half", 0.98, finished=False)
    with pytest.raises(ModelError, match="training has not finished"):
        Predictor.from_path(run)


def test_serve_command_without_a_model_exits_with_the_advice(tmp_path: Path) -> None:
    from digits.cli import app

    result = CliRunner().invoke(app, ["serve", "--runs", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no trained model found" in result.output
    assert HOW_TO_TRAIN in result.output.replace("\n", "")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_command_with_a_bad_model(tmp_path: Path, workers: str) -> None:
    from digits.cli import app

    missing = CliRunner().invoke(
        app, ["serve", str(tmp_path / "missing.onnx"), "--workers", workers]
    )
    assert missing.exit_code == 1
    assert "missing.onnx: no such model" in missing.output
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    result = CliRunner().invoke(app, ["serve", str(broken), "--workers", workers])
    assert result.exit_code == 1
    assert "broken.onnx: not a loadable ONNX model" in result.output.replace("\n", "")
