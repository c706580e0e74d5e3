"""`digits explain`: integrated gradients on the torch model, drawn beside the 28×28 input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from digits.cli import app
from digits.data import DigitData
from digits.explain import attributions, explain, occlusion
from digits.predictor import Predictor
from digits.train import load_model
from tests.handwriting import LOOKS, pen_photo

runner = CliRunner()


def test_integrated_gradients_add_up_to_the_score(trained_cnn_run: Path, tmp_path: Path) -> None:
    image = pen_photo(3, LOOKS["photo"])
    result = explain(trained_cnn_run, image, out=tmp_path / "three.png")
    assert result.digit == Predictor.from_path(trained_cnn_run).predict_image(image).digit == 3
    assert result.attributions.shape == (28, 28)
    # Completeness: the attributions sum to score(input) - score(black baseline).
    model = load_model(trained_cnn_run)
    inputs = torch.from_numpy(result.pixels.astype(np.float32) / 255)[None, None]
    with torch.inference_mode():
        gap = (model(inputs) - model(torch.zeros_like(inputs)))[0, 3].item()
    assert result.attributions.sum() == pytest.approx(gap, rel=0.05)
    # The credit sits on the ink, not on the empty background.
    ink = result.pixels > 0
    assert np.abs(result.attributions[ink]).sum() > 0.95 * np.abs(result.attributions).sum()
    drawing = Image.open(tmp_path / "three.png")
    assert drawing.format == "PNG" and drawing.width > 2 * drawing.height


def test_saliency_and_unknown_methods(trained_cnn_run: Path) -> None:
    model = load_model(trained_cnn_run)
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:15] = 255
    saliency = attributions(model, pixels, target=1, method="saliency")
    assert saliency.shape == (28, 28) and np.abs(saliency).sum() > 0
    with pytest.raises(ValueError, match="unknown method"):
        attributions(model, pixels, target=1, method="shap")
    with pytest.raises(ValueError, match="unknown method 'shap'; choose one of: occlusion"):
        explain(trained_cnn_run, pixels, method="shap")


def test_explain_command(trained_cnn_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "eight.png"
    pen_photo(8, LOOKS["plain"]).save(image)
    out = tmp_path / "why.png"
    result = runner.invoke(
        app, ["explain", str(trained_cnn_run), str(image), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["digit"] == 8 and document["out"] == str(out) and out.exists()


def test_explain_needs_the_torch_model_and_a_digit(trained_cnn_run: Path, tmp_path: Path) -> None:
    image = tmp_path / "eight.png"
    pen_photo(8, LOOKS["plain"]).save(image)
    onnx = runner.invoke(app, ["explain", str(trained_cnn_run / "model.onnx"), str(image)])
    assert onnx.exit_code == 1 and "needs the torch model" in onnx.stderr
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 255).save(blank)
    nothing = runner.invoke(app, ["explain", str(trained_cnn_run), str(blank)])
    assert nothing.exit_code == 1 and "nothing to explain" in nothing.stderr


# --- occlusion, on the ONNX model --------------------------------------------------------------


def _deletion_drop(
    predictor: Predictor, pixels: np.ndarray, order: np.ndarray, digit: int
) -> float:
    """How far the digit's probability falls once the first 40 pixels of `order` are blacked."""
    deleted = pixels.copy().ravel()
    deleted[order[:40]] = 0
    before = predictor.predict_arrays(pixels)[0, digit]
    after = predictor.predict_arrays(deleted.reshape(28, 28))[0, digit]
    return float(before - after)


def test_occlusion_credits_the_ink_and_deleting_it_first_hurts_most(
    trained_cnn_run: Path, mnist: DigitData
) -> None:
    predictor = Predictor.from_path(trained_cnn_run / "model.onnx")
    rng = np.random.default_rng(0)
    on_ink, off_ink, guided, random = [], [], [], []
    for pixels in mnist.x_test[:20]:
        digit = int(predictor.predict_arrays(pixels)[0].argmax())
        values = occlusion(predictor.predict_arrays, pixels, digit)
        ink = pixels > 0
        on_ink.append(np.abs(values[ink]).mean())
        off_ink.append(np.abs(values[~ink]).mean())
        ranked = np.argsort(-values.ravel())
        guided.append(_deletion_drop(predictor, pixels, ranked, digit))
        random.append(_deletion_drop(predictor, pixels, rng.permutation(784), digit))
    # Faithful: the credit is on the strokes, and hiding the most credited pixels first drops
    # the confidence much faster than hiding as many pixels at random.
    assert np.mean(on_ink) > 2 * np.mean(off_ink)
    assert np.mean(guided) > 2 * np.mean(random)


def test_explain_by_occlusion_takes_an_onnx_file_and_never_loads_torch(
    trained_cnn_run: Path, tmp_path: Path
) -> None:
    image = tmp_path / "eight.png"
    pen_photo(8, LOOKS["plain"]).save(image)
    out = tmp_path / "why.png"
    script = (
        "import json, sys; from digits.cli import app; "
        "sys.argv = ['digits', 'explain', sys.argv[1], sys.argv[2], '--method', 'occlusion', "
        "'--out', sys.argv[3], '--json']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    onnx = str(trained_cnn_run / "model.onnx")
    result = subprocess.run(
        [sys.executable, "-c", script, onnx, str(image), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    *answer, loaded = result.stdout.strip().splitlines()
    document = json.loads("\n".join(answer))
    assert document["digit"] == 8 and document["method"] == "occlusion"
    pixels, values = np.array(document["pixels"]), np.array(document["attributions"])
    assert pixels.shape == values.shape == (28, 28) and pixels.max() == 255
    assert abs(values).sum() == pytest.approx(abs(values[pixels > 0]).sum(), rel=0.5)
    assert loaded == "NO-TORCH"
    assert Image.open(out).format == "PNG"
