"""Which pixels drove a prediction: SHAP, LIME or occlusion on the ONNX model, or integrated
gradients and saliency with Captum on the torch one.

The model-agnostic methods (`digits.explain_agnostic`) need only the model's answers on perturbed
copies of the input, asked of ONNX Runtime in batches: they run on a run directory or an .onnx
file alike and never import torch.

Integrated gradients (Sundararajan et al., 2017) add up the gradient of the predicted class along
the straight path from a baseline to the input. The baseline here is the black 28×28, an image
with no ink, so the attribution says how much each stroke pixel pushed the answer towards the
digit (red) or away from it (blue). Saliency is the gradient at the input alone. Both need the
torch model of a run directory: an exported .onnx has no gradients to follow.

Every method gives a signed 28×28 map, drawn beside the 28×28 input the model saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digits.explain_agnostic import AGNOSTIC_METHODS, SEED, agnostic_attributions
from digits.explain_agnostic import occlusion as occlusion
from digits.preprocess import Source, describe_source, preprocess

TORCH_METHODS = ("integrated-gradients", "saliency")
METHODS = ("shap", "lime", "occlusion", *TORCH_METHODS)
# The names to type: `ig` for integrated gradients, which an explanation reports by its full name
# (the name the command took, and printed, before the short one).
ALIASES = {"ig": "integrated-gradients"}
CHOICES = ("shap", "lime", "occlusion", "ig", "saliency")
LABELS = {
    "shap": "SHAP (superpixels)",
    "lime": "LIME (superpixels)",
    "occlusion": "occlusion",
    "integrated-gradients": "integrated gradients",
    "saliency": "saliency",
}
DEFAULT_METHOD = "ig"


@dataclass
class Explanation:
    source: str
    digit: int
    confidence: float
    method: str
    attributions: np.ndarray  # float 28×28, signed, in the units of the method's class score
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


def method_name(method: str) -> str:
    """The method's full name (`ig` is `integrated-gradients`), or a ValueError naming them."""
    name = ALIASES.get(method, method)
    if name not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(CHOICES)}")
    return name


def _torch_run_dir(model: str | Path, method: str) -> Path:
    path = Path(model)
    if path.suffix == ".onnx":
        raise ValueError(
            f"{path}: explaining by {LABELS[method]} needs the torch model, and an .onnx file has "
            "no gradients to follow; give the run directory that holds model.safetensors, or use "
            f"a method that runs on ONNX ({', '.join(AGNOSTIC_METHODS)})"
        )
    return path


def attributions(model: Any, pixels: np.ndarray, target: int, method: str = "ig") -> np.ndarray:
    """Signed per-pixel attribution of the class `target` for one uint8 28×28 input, by a
    gradient method on a torch model."""
    import torch

    name = ALIASES.get(method, method)
    if name not in TORCH_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: ig, saliency")
    from captum.attr import IntegratedGradients, Saliency

    inputs = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None, None].requires_grad_()
    model = model.eval()
    if name == "saliency":
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
    axes[1].set_title(LABELS.get(explanation.method, explanation.method))
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


def _prepared_pixels(source: Source, name: str) -> np.ndarray:
    prepared = preprocess(source, name=name)
    if prepared.pixels is None:
        raise ValueError(f"{name}: nothing to explain ({prepared.reason})")
    return prepared.pixels


def explain(
    model: str | Path,
    source: Source,
    *,
    out: str | Path | None = None,
    method: str = DEFAULT_METHOD,
    name: str | None = None,
    seed: int = SEED,
) -> Explanation:
    """Predict one image and attribute the answer to its pixels: SHAP, LIME or occlusion on the
    ONNX model (a run directory or an .onnx file), the gradient methods on a run's torch model;
    with `out`, also draw the overlay PNG there. `seed` fixes SHAP's and LIME's samples."""
    method = method_name(method)
    name = name or describe_source(source)
    if method in AGNOSTIC_METHODS:
        explanation = _explain_on_onnx(model, source, method, name, seed)
    else:
        explanation = _explain_on_torch(model, source, method, name)
    if out is not None:
        explanation.out = render(explanation, out)
    return explanation


def _explain_on_onnx(
    model: str | Path, source: Source, method: str, name: str, seed: int
) -> Explanation:
    from digits.predictor import Predictor

    predictor = Predictor.from_path(model)  # unfinished runs are refused there
    pixels = _prepared_pixels(source, name)
    probabilities = predictor.predict_arrays(pixels)[0]
    digit = int(probabilities.argmax())
    values = agnostic_attributions(predictor.predict_arrays, pixels, digit, method, seed=seed)
    return Explanation(name, digit, float(probabilities[digit]), method, values, pixels)


def _explain_on_torch(model: str | Path, source: Source, method: str, name: str) -> Explanation:
    import torch

    from digits.calibration import run_temperature
    from digits.run import load_model, require_finished

    run_dir = _torch_run_dir(model, method)
    pixels = _prepared_pixels(source, name)
    network = load_model(run_dir)  # damaged weights are named before "not finished"
    require_finished(run_dir)
    temperature, _ = run_temperature(run_dir)
    inputs = torch.from_numpy(pixels.astype(np.float32) / 255.0)[None, None]
    with torch.inference_mode():
        probabilities = torch.softmax(network(inputs) / temperature, dim=1)[0].numpy()
    digit = int(probabilities.argmax())
    values = attributions(network, pixels, digit, method)
    return Explanation(name, digit, float(probabilities[digit]), method, values, pixels)
