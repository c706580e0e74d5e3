"""Which pixels drove a prediction: occlusion on the ONNX model, or integrated gradients and
saliency with Captum on the torch one.

Integrated gradients (Sundararajan et al., 2017) add up the gradient of the predicted class along
the straight path from a baseline to the input. The baseline here is the black 28×28, an image
with no ink, so the attribution says how much each stroke pixel pushed the answer towards the
digit (red) or away from it (blue). They need the torch model of a run directory: an exported
.onnx has no gradients to follow.

Occlusion (Zeiler and Fergus, 2014) needs only the model's answers: it blacks out a small square
at every position, all positions in one batch through ONNX Runtime, and credits each pixel with
how much the predicted digit's probability fell while it was hidden. It runs on a run directory
or an .onnx file alike and never imports torch. The result is drawn beside the 28×28 input the
model saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.preprocess import Source, describe_source, preprocess

TORCH_METHODS = ("integrated-gradients", "saliency")
METHODS = ("occlusion", *TORCH_METHODS)
# The occluding square and its step, in pixels of the 28×28: a stroke is 2–3 pixels wide, so a
# 4-pixel square hides a piece of one stroke at a time; every pixel is under four positions.
PATCH = 4
STRIDE = 2


@dataclass
class Explanation:
    source: str
    digit: int
    confidence: float
    method: str
    attributions: np.ndarray  # float 28×28, signed, in the units of the class score
    pixels: np.ndarray  # uint8 28×28: what the model saw
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "digit": self.digit,
            "confidence": self.confidence,
            "method": self.method,
            "out": None if self.out is None else str(self.out),
            "attribution_sum": float(self.attributions.sum()),
            # The 28×28 the model saw and the map itself, row by row, for other tools to draw.
            "pixels": self.pixels.astype(int).tolist(),
            "attributions": [[float(f"{v:.6g}") for v in row] for row in self.attributions],
        }


def _torch_run_dir(model: str | Path) -> Path:
    path = Path(model)
    if path.suffix == ".onnx":
        raise ValueError(
            f"{path}: explain needs the torch model, and an .onnx file has no gradients to "
            "follow; give the run directory that holds model.safetensors"
        )
    return path


def occlusion(
    probabilities: Any, pixels: np.ndarray, target: int, patch: int = PATCH, stride: int = STRIDE
) -> np.ndarray:
    """Per-pixel occlusion attribution of class `target` for one uint8 28×28 input:
    `probabilities` maps uint8 N×28×28 to N×10 (a Predictor's `predict_arrays`). Each pixel gets
    the mean drop of the target's probability over the squares that covered it."""
    size = pixels.shape[0]
    starts = range(0, size - patch + 1, stride)
    positions = [(top, left) for top in starts for left in starts]
    hidden = np.repeat(pixels[None], len(positions), axis=0)
    for copy, (top, left) in zip(hidden, positions, strict=True):
        copy[top : top + patch, left : left + patch] = 0
    base = float(probabilities(pixels[None])[0, target])
    drops = base - probabilities(hidden)[:, target]
    total = np.zeros((size, size))
    count = np.zeros((size, size))
    for drop, (top, left) in zip(drops, positions, strict=True):
        total[top : top + patch, left : left + patch] += drop
        count[top : top + patch, left : left + patch] += 1
    return total / np.maximum(count, 1)


def attributions(
    model: Any, pixels: np.ndarray, target: int, method: str = "integrated-gradients"
) -> np.ndarray:
    """Signed per-pixel attribution of the class `target` for one uint8 28×28 input, by a
    gradient method on a torch model."""
    import torch

    if method not in TORCH_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(TORCH_METHODS)}")
    from captum.attr import IntegratedGradients, Saliency

    inputs = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None, None].requires_grad_()
    model = model.eval()
    if method == "saliency":
        result = Saliency(model).attribute(inputs, target=target, abs=False)
    else:
        result = IntegratedGradients(model).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=64
        )
    return result.detach()[0, 0].numpy().astype(np.float64)


def render(explanation: Explanation, out: str | Path) -> Path:
    """Input, attribution map and overlay side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    values = explanation.attributions
    limit = float(np.abs(values).max()) or 1.0
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    axes[0].imshow(explanation.pixels, cmap="gray", vmin=0, vmax=255)
    axes[0].set_title("what the model sees (28×28)")
    shown = axes[1].imshow(values, cmap="bwr", vmin=-limit, vmax=limit)
    axes[1].set_title(explanation.method)
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04)
    axes[2].imshow(explanation.pixels, cmap="gray", vmin=0, vmax=255)
    axes[2].imshow(values, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.6)
    axes[2].set_title(f"digit {explanation.digit} ({100 * explanation.confidence:.1f} %)")
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"red pushed towards {explanation.digit}, blue away from it", fontsize=9)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def explain(
    model: str | Path,
    source: Source,
    *,
    out: str | Path | None = None,
    method: str = "integrated-gradients",
    name: str | None = None,
) -> Explanation:
    """Predict one image and attribute the answer to its pixels: occlusion on the ONNX model
    (a run directory or an .onnx file), the gradient methods on a run's torch model; with `out`,
    also draw the overlay PNG there."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    if method == "occlusion":
        return _explain_on_onnx(model, source, out=out, name=name)
    import torch

    from digits.calibration import run_temperature
    from digits.run import load_model, require_finished

    run_dir = _torch_run_dir(model)
    name = name or describe_source(source)
    prepared = preprocess(source, name=name)
    if prepared.pixels is None:
        raise ValueError(f"{name}: nothing to explain ({prepared.reason})")
    network = load_model(run_dir)  # damaged weights are named before "not finished"
    require_finished(run_dir)
    temperature, _ = run_temperature(run_dir)
    inputs = torch.from_numpy(prepared.pixels.astype(np.float32) / 255.0)[None, None]
    with torch.inference_mode():
        probabilities = torch.softmax(network(inputs) / temperature, dim=1)[0].numpy()
    digit = int(probabilities.argmax())
    explanation = Explanation(
        name,
        digit,
        float(probabilities[digit]),
        method,
        attributions(network, prepared.pixels, digit, method),
        prepared.pixels,
    )
    if out is not None:
        explanation.out = render(explanation, out)
    return explanation


def _explain_on_onnx(
    model: str | Path, source: Source, *, out: str | Path | None, name: str | None
) -> Explanation:
    from digits.predictor import Predictor

    predictor = Predictor.from_path(model)  # unfinished runs are refused there
    name = name or describe_source(source)
    prepared = preprocess(source, name=name)
    if prepared.pixels is None:
        raise ValueError(f"{name}: nothing to explain ({prepared.reason})")
    probabilities = predictor.predict_arrays(prepared.pixels)[0]
    digit = int(probabilities.argmax())
    explanation = Explanation(
        name,
        digit,
        float(probabilities[digit]),
        "occlusion",
        occlusion(predictor.predict_arrays, prepared.pixels, digit),
        prepared.pixels,
    )
    if out is not None:
        explanation.out = render(explanation, out)
    return explanation
