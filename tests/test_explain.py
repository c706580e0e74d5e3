"""`digits explain`: SHAP, LIME and occlusion on the ONNX model, integrated gradients and saliency
on the torch one, drawn beside the 28×28 input; and how faithful each map is to the model."""

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
from digits.explain import attributions, explain
from digits.explain_agnostic import (
    AGNOSTIC_METHODS,
    agnostic_attributions,
    lime_weights,
    shap_values,
    superpixels,
)
from digits.explain_faithfulness import at_random, by_attribution, deletion_curve, ink_means
from digits.explain_overlay import overlay
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
    with pytest.raises(ValueError, match="unknown method 'shap'; choose one of: ig, saliency"):
        attributions(model, pixels, target=1, method="shap")
    with pytest.raises(
        ValueError, match="unknown method 'gradcam'; choose one of: shap, lime, occlusion, ig"
    ):
        explain(trained_cnn_run, pixels, method="gradcam")
    # `ig` is short for the name the command took before, which an explanation reports.
    long = explain(trained_cnn_run, pixels, method="integrated-gradients")
    short = explain(trained_cnn_run, pixels, method="ig")
    assert long.method == short.method == "integrated-gradients"
    np.testing.assert_array_equal(long.attributions, short.attributions)


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
    assert "use a method that runs on ONNX (occlusion, shap, lime)" in onnx.stderr
    blank = tmp_path / "blank.png"
    Image.new("L", (60, 60), 255).save(blank)
    nothing = runner.invoke(app, ["explain", str(trained_cnn_run), str(blank)])
    assert nothing.exit_code == 1 and "nothing to explain" in nothing.stderr


# --- the model-agnostic methods, on the ONNX model ----------------------------------------------


@pytest.mark.parametrize("method", AGNOSTIC_METHODS)
def test_the_credit_is_on_the_ink_and_deleting_it_first_hurts_most(
    method: str, trained_cnn_run: Path, mnist: DigitData
) -> None:
    predictor = Predictor.from_path(trained_cnn_run / "model.onnx")
    rng = np.random.default_rng(0)
    on_ink, off_ink, guided, random, random_ink = [], [], [], [], []
    steps = (0, 40)
    for pixels in mnist.x_test[:20]:
        digit = int(predictor.predict_arrays(pixels)[0].argmax())
        values = agnostic_attributions(predictor.predict_arrays, pixels, digit, method)
        assert values.shape == (28, 28) and np.isfinite(values).all()
        on, off = ink_means(values, pixels)
        on_ink.append(on)
        off_ink.append(off)
        for order, drops in (
            (by_attribution(values, rng), guided),
            (at_random(pixels, rng), random),
            (at_random(pixels, rng, ink_only=True), random_ink),
        ):
            before, after = deletion_curve(predictor.predict_arrays, pixels, order, digit, steps)
            drops.append(before - after)
    # Faithful: the credit is on the strokes, and blacking out the 40 most credited pixels first
    # drops the digit's probability much more than blacking out 40 at random, of the whole image
    # (mostly black already) or of the ink alone.
    assert np.mean(on_ink) > 2 * np.mean(off_ink)
    assert np.mean(guided) > 2 * np.mean(random)
    assert np.mean(guided) > 2 * np.mean(random_ink)
    assert np.mean(guided) > 0.2


def test_shap_values_add_up_to_the_log_odds(trained_cnn_run: Path, mnist: DigitData) -> None:
    predictor = Predictor.from_path(trained_cnn_run / "model.onnx")
    pixels = mnist.x_test[3]
    digit = int(predictor.predict_arrays(pixels)[0].argmax())
    values = shap_values(predictor.predict_arrays, pixels, digit)
    pieces, count = superpixels(pixels)
    # Every pixel of a piece carries the piece's value, the background none.
    per_piece = [np.unique(values[pieces == piece]) for piece in range(count + 1)]
    assert all(len(value) == 1 for value in per_piece) and per_piece[count][0] == 0
    # Efficiency, exact for the Permutation explainer: the pieces' values add up to the digit's
    # log-odds on the input minus those on the black image (every piece hidden).
    black = np.zeros_like(pixels)
    probability = predictor.predict_arrays(np.stack([pixels, black]))[:, digit].astype(np.float64)
    log_odds = np.log(probability) - np.log1p(-probability)
    total = sum(value[0] for value in per_piece)
    assert total == pytest.approx(log_odds[0] - log_odds[1], rel=1e-4)


def test_superpixels_cut_the_strokes_and_leave_the_background_whole(mnist: DigitData) -> None:
    pixels = mnist.x_test[0]
    pieces, count = superpixels(pixels)
    assert pieces.shape == (28, 28)
    assert set(np.unique(pieces)) == set(range(count + 1))
    ink = pixels > 0
    assert (pieces[~ink] <= count).all() and (pieces[ink] < count).all()
    assert not ink[pieces == count].any()  # the background piece holds no ink
    assert 10 <= count <= 100  # short pieces of stroke, not single pixels nor whole strokes


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_the_same_input_and_seed_give_the_same_map(
    method: str, trained_cnn_run: Path, mnist: DigitData
) -> None:
    predictor = Predictor.from_path(trained_cnn_run / "model.onnx")
    explainer = shap_values if method == "shap" else lime_weights
    pixels = mnist.x_test[1]
    digit = int(predictor.predict_arrays(pixels)[0].argmax())
    first = explainer(predictor.predict_arrays, pixels, digit)
    again = explainer(predictor.predict_arrays, pixels, digit)
    other = explainer(predictor.predict_arrays, pixels, digit, seed=1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)  # the seed does choose the samples
    # Another seed samples differently but tells the same story.
    assert np.corrcoef(first.ravel(), other.ravel())[0, 1] > 0.8


def test_overlay_colours_by_sign_over_the_grey_input() -> None:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 12:16] = 200
    values = np.zeros((28, 28))
    values[4:10, 12:16] = 2.0  # towards
    values[18:24, 12:16] = -1.0  # away, half as strong
    image = overlay(pixels, values)
    assert image.shape == (112, 112, 3) and image.dtype == np.uint8
    blue, _, red = (int(v) for v in image[4 * 5, 4 * 13])
    assert red > 200 and blue < 80  # the strongest credit: nearly pure red
    blue, _, red = (int(v) for v in image[4 * 20, 4 * 13])
    assert blue > red + 50  # away: blue, and paler than the red
    assert image[4 * 14, 4 * 13].tolist() == [110, 110, 110]  # ink with no credit: grey, dimmed
    assert image[4 * 14, 4 * 2].tolist() == [0, 0, 0]  # background
    # Each of the 28×28 pixels is a 4×4 block, lined up with the input.
    assert (image[80:84, 52:56] == image[80, 52]).all()
    with pytest.raises(ValueError, match="expected the same 2-D shape"):
        overlay(pixels, values[:10])


# --- the command, without torch -----------------------------------------------------------------

NO_TORCH_PROBE = (
    "import json, sys\n"
    "if sys.argv[4] == 'hide':\n"
    "    sys.modules['shap'] = sys.modules['lime'] = None  # as if not installed\n"
    "from digits.cli import app\n"
    "sys.argv = ['digits', 'explain', sys.argv[1], sys.argv[2], '--method', sys.argv[3], "
    "'--out', sys.argv[5], '--json']\n"
    "try:\n    app()\nexcept SystemExit:\n    pass\n"
    "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
)


def _explain_in_subprocess(
    model: Path, image: Path, method: str, out: Path, hide: bool = False
) -> subprocess.CompletedProcess[str]:
    hiding = "hide" if hide else "keep"
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH_PROBE, str(model), str(image), method, hiding, str(out)],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize("method", ["shap", "lime", "occlusion"])
def test_model_agnostic_methods_take_an_onnx_file_and_never_load_torch(
    method: str, trained_cnn_run: Path, tmp_path: Path
) -> None:
    image = tmp_path / "eight.png"
    pen_photo(8, LOOKS["plain"]).save(image)
    out = tmp_path / "why.png"
    result = _explain_in_subprocess(trained_cnn_run / "model.onnx", image, method, out)
    assert result.returncode == 0, result.stderr
    *answer, loaded = result.stdout.strip().splitlines()
    document = json.loads("\n".join(answer))
    assert document["digit"] == 8 and document["method"] == method
    assert document["confidence"] > 0.5 and document["out"] == str(out)
    pixels, values = np.array(document["pixels"]), np.array(document["attributions"])
    assert pixels.shape == values.shape == (28, 28) and pixels.max() == 255
    assert abs(values).sum() == pytest.approx(abs(values[pixels > 0]).sum(), rel=0.5)
    assert loaded == "NO-TORCH"
    assert Image.open(out).format == "PNG"


@pytest.mark.parametrize("method", ["shap", "lime"])
def test_a_missing_library_is_one_line_that_says_what_to_install(
    method: str, trained_cnn_run: Path, tmp_path: Path
) -> None:
    image = tmp_path / "eight.png"
    pen_photo(8, LOOKS["plain"]).save(image)
    out = tmp_path / "why.png"
    result = _explain_in_subprocess(trained_cnn_run, image, method, out, hide=True)
    assert result.returncode == 0, result.stderr  # the probe itself ran to its end
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: explaining by {method} needs {method}, which is not installed: "
        "install digits[explain] (pip install 'digits[explain]')"
    ]
    assert not out.exists()
