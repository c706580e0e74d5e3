"""ONNX export of a trained run, checked against torch before it is written.

The exported graph takes float32 N×1×28×28 images in [0, 1] (any N) and returns two outputs:
`logits` (the model's raw output) and `probabilities` (softmax of the digit logits divided by the
run's calibration temperature). A model with the eleventh class has a third, `not_digit`: the
probability that the input is no digit at all (at temperature 1). What the model is
travels inside the file as metadata, so a bare .onnx is self-describing for `digits.Predictor`.

Parity: on a fixed set of inputs the exported probabilities must match torch's within 1e-4
(max abs difference), at batch sizes 1 and many, or the export fails and nothing is written.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from digits import __version__
from digits.atomic import atomic_write_bytes
from digits.calibration import run_temperature
from digits.predictor import (
    INPUT_NAME,
    LOGITS_OUTPUT,
    METADATA_PREFIX,
    NOT_DIGIT_OUTPUT,
    PROBABILITIES_OUTPUT,
)
from digits.preprocess import PREPROCESSING_VERSION
from digits.run_files import ONNX_FILE

PARITY_TOLERANCE = 1e-4
OPSET = 17
LABELS = [str(digit) for digit in range(10)]


class ExportError(RuntimeError):
    """The exported graph does not reproduce the torch model (or could not be built)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_difference: float
    checked_images: int
    bytes: int
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "max_abs_difference": self.max_abs_difference,
            "checked_images": self.checked_images,
            "bytes": self.bytes,
            "metadata": self.metadata,
        }


class _WithProbabilities(nn.Module):
    """The model plus its calibrated softmax. Softmax of logits and of log-probabilities is the
    same distribution (they differ by a per-row constant), so ensembles export the same way.

    With the "not a digit" class: the digit probabilities are the softmax of the ten digit
    logits alone, and `not_digit` the eleventh probability of the full softmax at T = 1."""

    def __init__(self, model: nn.Module, temperature: float, classes: int) -> None:
        super().__init__()
        self.model = model
        self.classes = classes
        self.register_buffer("inverse_temperature", torch.tensor(1.0 / temperature))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(images)
        scaled = logits * self.inverse_temperature
        if self.classes == 10:
            return logits, torch.softmax(scaled, dim=1)
        digits = torch.softmax(scaled[:, :10], dim=1)
        # The temperature is fitted on digits alone, so it has no say in whether an input is one:
        # "not a digit" is judged at temperature 1, as the test metrics judge it.
        return logits, digits, torch.softmax(logits, dim=1)[:, 10]

    @property
    def output_names(self) -> list[str]:
        names = [LOGITS_OUTPUT, PROBABILITIES_OUTPUT]
        return names if self.classes == 10 else [*names, NOT_DIGIT_OUTPUT]


def parity_images(count: int = 256, seed: int = 0) -> np.ndarray:
    """uint8 N×28×28 inputs for the parity check: blank, saturated, sparse and dense noise,
    and random thick strokes, so every activation range is exercised."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    images[1] = 255
    quarter = count // 4
    images[2:quarter] = rng.integers(0, 256, (quarter - 2, 28, 28), dtype=np.uint8)
    sparse = rng.random((quarter, 28, 28)) < 0.1
    images[quarter : 2 * quarter] = sparse * rng.integers(128, 256, sparse.shape)
    rows, cols = np.mgrid[0:28, 0:28]
    for index in range(2 * quarter, count):
        canvas = np.zeros((28, 28))
        for _ in range(3):  # a few soft line segments, digit-like in scale
            (y0, x0), (y1, x1) = rng.uniform(4, 24, (2, 2))
            t = np.clip(
                ((rows - y0) * (y1 - y0) + (cols - x0) * (x1 - x0))
                / max((y1 - y0) ** 2 + (x1 - x0) ** 2, 1e-6),
                0,
                1,
            )
            distance = np.hypot(rows - (y0 + t * (y1 - y0)), cols - (x0 + t * (x1 - x0)))
            canvas = np.maximum(canvas, np.clip(2.0 - distance, 0, 1))
        images[index] = np.round(canvas * 255)
    return images


def _to_onnx_bytes(wrapped: _WithProbabilities) -> bytes:
    example = torch.zeros(2, 1, 28, 28)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but it is ~10× faster
        # (training exports every run) and handles these models exactly.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            buffer,  # type: ignore[arg-type]  # file objects work; the stub says paths
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=wrapped.output_names,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *wrapped.output_names]},
            opset_version=OPSET,
        )
    return buffer.getvalue()


def _with_metadata(model_bytes: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(model_bytes)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    proto.producer_name = "digits"
    proto.producer_version = __version__
    return bytes(proto.SerializeToString())


def check_parity(model_bytes: bytes, wrapped: _WithProbabilities, images: np.ndarray) -> float:
    """Max abs difference of the probabilities (and of `not_digit`), ONNX Runtime vs torch, at
    batch 1 and all at once."""
    import onnxruntime as ort

    from digits.run import to_tensor

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    inputs = to_tensor(images)
    names = wrapped.output_names[1:]
    with torch.inference_mode():
        expected = [output.numpy() for output in wrapped(inputs)[1:]]
    batched = session.run(names, {INPUT_NAME: inputs.numpy()})
    singles = [
        session.run(names, {INPUT_NAME: inputs[i : i + 1].numpy()})
        for i in range(min(8, len(inputs)))
    ]
    difference = 0.0
    for index, want in enumerate(expected):
        single = np.concatenate([outputs[index] for outputs in singles])
        difference = max(
            difference,
            float(np.abs(batched[index] - want).max()),
            float(np.abs(single - want[: len(single)]).max()),
        )
    return difference


def export_model(
    model: nn.Module,
    out: str | Path,
    *,
    temperature: float = 1.0,
    metadata: dict[str, str] | None = None,
    check: np.ndarray | None = None,
) -> ExportResult:
    """Export a torch model (logits or log-probabilities out) to ONNX at `out`, parity-checked."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    out = Path(out)
    # Traced in the default memory format: training leaves weights channels_last, and ONNX
    # Runtime picks its own layout anyway.
    model = model.to(memory_format=torch.contiguous_format).float().eval()  # type: ignore[call-overload]
    with torch.inference_mode():
        classes = int(model(torch.zeros(1, 1, 28, 28)).shape[1])
    if classes not in (10, 11):
        raise ExportError(f"{out}: the model has {classes} outputs; expected 10 or 11")
    wrapped = _WithProbabilities(model, temperature, classes).eval()
    metadata = {
        "temperature": repr(float(temperature)),
        "labels": json.dumps(LABELS),
        "preprocessing_version": PREPROCESSING_VERSION,
        **(metadata or {}),
    }
    try:
        model_bytes = _with_metadata(_to_onnx_bytes(wrapped), metadata)
    except Exception as exc:
        raise ExportError(f"{out}: ONNX export failed ({type(exc).__name__}: {exc})") from exc
    images = parity_images() if check is None else check
    difference = check_parity(model_bytes, wrapped, images)
    if not difference <= PARITY_TOLERANCE:
        raise ExportError(
            f"{out}: ONNX output differs from torch by {difference:.2e} (max abs, probabilities)"
            f", more than the allowed {PARITY_TOLERANCE:.0e}; nothing was written"
        )
    atomic_write_bytes(out, model_bytes)
    return ExportResult(out, difference, len(images), len(model_bytes), metadata)


def run_metadata(run_dir: Path) -> dict[str, str]:
    """What the run directory says about its model, as ONNX metadata strings."""
    from digits.models import count_parameters
    from digits.run import CONFIG_FILE, METRICS_FILE, load_model, read_json

    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    config_path = run_dir / CONFIG_FILE
    config = read_json(config_path) if config_path.exists() else {}
    test = metrics.get("test") or {}
    temperature, source = run_temperature(run_dir)
    return {
        "model": str(metrics.get("model") or config.get("model") or "unknown"),
        "recipe": str(metrics.get("recipe") or config.get("recipe") or ""),
        "test_accuracy": "" if test.get("accuracy") is None else repr(float(test["accuracy"])),
        "parameters": str(metrics.get("parameters") or count_parameters(load_model(run_dir))),
        "temperature": repr(temperature),
        "temperature_source": source,
        "run": run_dir.name,
        "digits_version": __version__,
    }


def export_run(run_dir: str | Path, out: str | Path | None = None) -> ExportResult:
    """Export a run directory's model (best epoch) to `out` (default RUN/model.onnx)."""
    from digits.run import load_model

    run_dir = Path(run_dir)
    if run_dir.suffix == ".onnx" and run_dir.is_file():
        raise ValueError(f"{run_dir}: already an ONNX file; export takes a run directory")
    model = load_model(run_dir)
    metadata = run_metadata(run_dir)
    return export_model(
        model,
        run_dir / ONNX_FILE if out is None else Path(out),
        temperature=float(metadata["temperature"]),
        metadata=metadata,
    )


def finish_run(
    run_dir: str | Path, val_images: Any, val_labels: Any, train_images: Any, train_labels: Any
) -> ExportResult:
    """End of training: fit the temperature on the validation split (on held-out views of the
    training images when there is none), then write model.onnx."""
    from digits.calibration import calibrate_held_out_views, calibrate_run

    if len(val_labels) > 0:
        calibrate_run(run_dir, val_images, val_labels)
    else:
        calibrate_held_out_views(run_dir, train_images, train_labels)
    return export_run(run_dir)
