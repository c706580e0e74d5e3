"""ONNX export: what training writes, parity with torch on real digits at any batch size,
metadata inside the file, every registered model, ensembles, and a loud failure on mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from digits import export as export_module
from digits.cli import app
from digits.data import DigitData
from digits.ensemble import SoftmaxAverage
from digits.export import ExportError, export_model
from digits.models import REGISTRY, create_model
from digits.predictor import Predictor
from digits.train import load_model, predict_logits, to_tensor

runner = CliRunner()


def _torch_probabilities(model: torch.nn.Module, images: np.ndarray, temperature: float = 1.0):
    return torch.softmax(predict_logits(model, to_tensor(images)) / temperature, dim=1).numpy()


def test_training_writes_a_matching_onnx_model(trained_cnn_run: Path, mnist: DigitData) -> None:
    assert (trained_cnn_run / "model.onnx").exists()
    predictor = Predictor.from_path(trained_cnn_run)
    images = mnist.x_test[:2000]
    # The fixture has no validation split: its temperature was fitted on held-out views.
    temperature = predictor.info.temperature
    assert temperature != 1.0
    expected = _torch_probabilities(load_model(trained_cnn_run), images, temperature)
    for batch in (1, 7, 1000):  # the batch axis is dynamic
        got = predictor.predict_arrays(images[:batch])
        assert np.abs(got - expected[:batch]).max() <= 1e-4
    got = predictor.predict_arrays(images)
    assert np.abs(got - expected).max() <= 1e-4
    assert np.array_equal(got.argmax(1), expected.argmax(1))


def test_export_command(trained_cnn_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cnn.onnx"
    result = runner.invoke(app, ["export", str(trained_cnn_run), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["path"] == str(out) and out.stat().st_size == report["bytes"]
    assert report["max_abs_difference"] <= 1e-4 and report["checked_images"] >= 256
    metadata = report["metadata"]
    metrics = json.loads((trained_cnn_run / "metrics.json").read_text())
    assert metadata["model"] == "cnn"
    assert float(metadata["test_accuracy"]) == pytest.approx(metrics["test"]["accuracy"])
    assert json.loads(metadata["labels"]) == [str(d) for d in range(10)]
    assert Predictor.from_path(out).info.model == "cnn"
    human = runner.invoke(app, ["export", str(trained_cnn_run), "--out", str(out)])
    assert human.exit_code == 0 and "match torch" in human.stdout


def test_temperature_is_inside_the_graph(tmp_path: Path, mnist: DigitData) -> None:
    torch.manual_seed(0)
    model = create_model("cnn").eval()
    path = tmp_path / "hot.onnx"
    export_model(model, path, temperature=2.5, metadata={"model": "cnn"})
    predictor = Predictor.from_path(path)
    expected = _torch_probabilities(model, mnist.x_test[:64], temperature=2.5)
    assert np.abs(predictor.predict_arrays(mnist.x_test[:64]) - expected).max() <= 1e-4
    assert predictor.info.temperature == 2.5
    with pytest.raises(ValueError, match="temperature must be > 0"):
        export_model(model, path, temperature=0.0)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_model_exports(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    result = export_model(create_model(name), tmp_path / f"{name}.onnx", metadata={"model": name})
    assert result.max_abs_difference <= 1e-4
    assert Predictor.from_path(result.path).predict_arrays(
        np.zeros((3, 28, 28), np.uint8)
    ).shape == (
        3,
        10,
    )


def test_the_cropping_fast_cnn_of_sprint_exports(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("fast-cnn", first=16, crop=2)
    result = export_model(model, tmp_path / "sprint.onnx")
    assert result.max_abs_difference <= 1e-4  # at batch 1 and 256: the crop is not baked in
    predictor = Predictor.from_path(result.path)
    assert predictor.predict_arrays(np.zeros((5, 28, 28), np.uint8)).shape == (5, 10)


def test_ensemble_of_log_probabilities_exports(tmp_path: Path, mnist: DigitData) -> None:
    torch.manual_seed(1)
    ensemble = SoftmaxAverage([create_model("cnn"), create_model("mlp")]).eval()
    result = export_model(ensemble, tmp_path / "ensemble.onnx")
    expected = _torch_probabilities(ensemble, mnist.x_test[:100])
    got = Predictor.from_path(result.path).predict_arrays(mnist.x_test[:100])
    assert np.abs(got - expected).max() <= 1e-4


def test_parity_failure_is_loud_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "check_parity", lambda *args: 3e-3)
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differs from torch by 3\.00e-03"):
        export_model(create_model("ann"), out)
    assert not out.exists()


def test_export_errors_name_the_input(tmp_path: Path, trained_cnn_run: Path) -> None:
    missing = runner.invoke(app, ["export", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "nowhere" in missing.stderr
    onnx_file = runner.invoke(app, ["export", str(trained_cnn_run / "model.onnx")])
    assert onnx_file.exit_code == 1 and "already an ONNX file" in onnx_file.stderr
