"""The eleventh class end to end: trained on generated negatives, exported, answered as "not a
digit" by the predictor, the CLI and the API, and kept out of ensembles with ten-class runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from digits.answers import (
    NOT_DIGIT_THRESHOLD,
    NOT_SURE_THRESHOLD,
    answer_kind,
    judge,
    percent,
    split_not_digit,
)
from digits.cli import app
from digits.data import DigitData
from digits.data.negatives import generate
from digits.ensemble import build_ensemble
from digits.evaluate import compute_metrics
from digits.predictor import Predictor
from digits.segment import read_number
from digits.serve import Settings, create_app
from digits.train import RunError, load_model

runner = CliRunner()


def _png(pixels: np.ndarray, scale: int = 4) -> bytes:
    image = Image.fromarray(255 - pixels).resize(
        (28 * scale, 28 * scale), Image.Resampling.BILINEAR
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_model_has_an_eleventh_output_and_metrics_count_refusals(
    refusing_run: Path,
) -> None:
    model = load_model(refusing_run)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 11)
    metrics = json.loads((refusing_run / "metrics.json").read_text())
    assert "refused" in metrics["test"] and metrics["test"]["refused"] < 50
    assert metrics["test"]["accuracy"] > 0.9


def test_held_out_non_digits_are_refused_and_digits_are_not(
    refusing_run: Path, mnist: DigitData
) -> None:
    predictor = Predictor.from_path(refusing_run)
    assert predictor.refuses_non_digits
    probabilities, not_digit = predictor.score_arrays(generate("heldout", 300).images)
    assert not_digit is not None and probabilities.shape == (300, 10)
    assert np.allclose(probabilities.sum(1), 1, atol=1e-5)  # digits renormalised among themselves
    assert (not_digit >= NOT_DIGIT_THRESHOLD).mean() > 0.6
    _, on_digits = predictor.score_arrays(mnist.x_test[:1000])
    assert on_digits is not None and (on_digits >= NOT_DIGIT_THRESHOLD).mean() < 0.05


def test_predict_answers_not_a_digit_in_cli_and_api(refusing_run: Path, tmp_path: Path) -> None:
    drawn = generate("heldout", 200)
    predictor = Predictor.from_path(refusing_run)
    _, not_digit = predictor.score_arrays(drawn.images)
    assert not_digit is not None
    surest = drawn.images[int(np.argmax(not_digit))]
    image = tmp_path / "star.png"
    image.write_bytes(_png(surest))
    result = runner.invoke(app, ["predict", str(refusing_run), str(image), "--json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["digit"] is None and entry["answer"] == "not_digit"
    assert entry["reason"].startswith("not a digit:") and entry["not_digit"] >= NOT_DIGIT_THRESHOLD

    client = TestClient(create_app(Settings(model=refusing_run)))
    response = client.post("/api/predict", files={"file": ("star.png", image.read_bytes())})
    assert response.status_code == 200
    body = response.json()
    assert body["digit"] is None and body["answer"] == "not_digit"
    assert body["reason"].startswith("not a digit:") and body["not_digit"] >= NOT_DIGIT_THRESHOLD


def test_ensembles_do_not_mix_ten_and_eleven_classes(
    refusing_run: Path, trained_cnn_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(RunError, match="'not a digit' class"):
        build_ensemble([refusing_run, trained_cnn_run], tmp_path / "mixed")


def test_answer_rules() -> None:
    row = np.array([0.05, 0.6, *[0.35 / 8] * 8])
    assert judge(row, NOT_SURE_THRESHOLD).digit == 1
    unsure = judge(row, 0.7)
    assert unsure.digit is None and answer_kind(None, unsure.reason) == "not_sure"
    assert unsure.reason == "not sure: best guess 1 at 60 %, below the 70 % threshold"
    refused = judge(row, NOT_SURE_THRESHOLD, not_digit=0.8)
    assert refused.digit is None and answer_kind(None, refused.reason) == "not_digit"
    assert answer_kind(None, "no digit: the image is blank") == "no_digit"
    # A confidence just under the threshold never reads as the threshold itself.
    assert percent(0.9299) == "92 %" and "93 % threshold" in judge(row, 0.93).reason
    digits, not_digit = split_not_digit(np.array([[0.2] + [0.0] * 9 + [0.8]]))
    assert not_digit is not None and not_digit[0] == pytest.approx(0.8)
    assert digits[0, 0] == pytest.approx(1.0)


def test_metrics_count_a_refused_digit_as_wrong() -> None:
    probabilities = np.zeros((4, 11))
    probabilities[[0, 1, 2], [3, 4, 5]] = 0.9
    probabilities[3, 10] = 0.9  # the fourth digit is refused
    probabilities[:, 0] += 0.1
    metrics = compute_metrics(probabilities, np.array([3, 4, 5, 6]))
    assert metrics.accuracy == pytest.approx(0.75) and metrics.refused == 1
    assert sum(map(sum, metrics.confusion_matrix)) == 3


class _RefusesWidePieces:
    """A stand-in model: sure of a 1 for every piece, except pieces wider than tall, which it
    takes for no digit at all (as a trained model takes a dash)."""

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        return self.score_arrays(images)[0]

    def score_arrays(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = np.full((len(images), 10), 0.01, dtype=np.float32)
        probabilities[:, 1] = 0.91
        columns = (images > 0).any(axis=1).sum(axis=1)
        rows = (images > 0).any(axis=2).sum(axis=1)
        return probabilities, (columns > rows).astype(np.float32)


def test_read_leaves_pieces_that_are_not_digits_out() -> None:
    canvas = Image.new("L", (400, 120), 255)
    draw = ImageDraw.Draw(canvas)
    draw.line([(60, 20), (60, 100)], fill=0, width=8)  # a 1
    draw.line([(150, 60), (250, 60)], fill=0, width=8)  # a dash
    draw.line([(330, 20), (330, 100)], fill=0, width=8)  # a 1
    reading = read_number(_RefusesWidePieces(), canvas)  # type: ignore[arg-type]
    assert reading.text == "11" and len(reading.digits) == 2
    assert reading.reason == "left out 1 mark that is not a digit"
    bar = Image.new("L", (400, 120), 255)
    ImageDraw.Draw(bar).line([(20, 60), (380, 60)], fill=0, width=10)
    nothing = read_number(_RefusesWidePieces(), bar)  # type: ignore[arg-type]
    assert nothing.text == "" and nothing.digits == []
    assert nothing.reason is not None and nothing.reason.startswith("not a digit")
