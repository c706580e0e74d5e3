"""digits: handwritten digit recognition, from MNIST training to a served model.

The public API is small and imported lazily, so that the prediction path never loads torch:
  digits.data.load_mnist()            the MNIST arrays, fetched and cached offline-first
  digits.load_model(run_dir)          a trained torch module (needs the `train` extra)
  digits.Predictor.from_path(model)   ONNX Runtime inference, no torch
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Predictor", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from digits.train import load_model

        return load_model
    if name == "Predictor":
        from digits.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'digits' has no attribute {name!r}")
